"""The trainer's side of the steering protocol: its record of truth (events.jsonl) and its link to a hub.

The link runs in a background thread with its own asyncio event loop, so a training step never waits on the
network: emit() appends to events.jsonl and hands the frame to the loop. After a drop it reconnects with backoff and
jitter (re-reading the hub's discovery file, hub.json, since a restarted hub has a new port), presents the run's hello
again and resends everything after the hub's `received` seq, from memory or from events.jsonl.
"""
from __future__ import annotations

import asyncio
import errno
import json
import os
import queue
import random
import threading
import time
from typing import Callable, List, Optional, Tuple

from .protocol import PROTOCOL_MAJOR, dumps, loads, validate

EVENTS_FILE = "events.jsonl"
HUB_DISCOVERY_FILE = "hub.json"


class RecordError(Exception):
    """Writing the run's files failed (disk full, the folder gone, …). str() is the one line for stderr:
    "disk full: FILE" for ENOSPC (the supervisor marks the run failed from it), else "cannot write FILE: why"."""

    def __init__(self, path: str, e: OSError):
        super().__init__(f"disk full: {path}" if e.errno in (errno.ENOSPC, errno.EDQUOT) else f"cannot write {path}: {e.strerror or e}")
        self.path, self.errno = path, e.errno


def read_log(file: str, on_log: Callable[[str], None] = lambda s: None, repair: bool = False) -> List[dict]:
    """The messages of an events.jsonl, read line by line with a strict JSON parser. A torn last line (no newline,
    or not a JSON object: a crash or power cut mid-write) is cut off — with repair=True the file is truncated to its
    last complete line, so the next append starts a fresh line; a bad line elsewhere is skipped. Both are reported
    through on_log. A missing file has no messages."""
    out: List[dict] = []
    if not os.path.exists(file):
        return out
    good_end, lineno, bad = 0, 0, []
    with open(file, "rb") as f:
        while True:
            raw = f.readline()
            if not raw:
                break
            lineno += 1
            msg = None
            if raw.endswith(b"\n"):
                try:
                    msg = loads(raw.decode("utf-8"))
                except (ValueError, UnicodeDecodeError):
                    msg = None
                if raw.strip() and not (isinstance(msg, dict) and isinstance(msg.get("seq"), int) and isinstance(msg.get("type"), str)):
                    msg = None
                elif not raw.strip():
                    good_end = f.tell()
                    continue
            if msg is None:
                if f.read(1):  # not the last line: skipped, not cut
                    f.seek(-1, os.SEEK_CUR)
                    bad.append(lineno)
                    good_end = f.tell()
                    continue
                on_log(f"{file}:{lineno}: cut a torn last line ({len(raw)} bytes)")
                if repair:
                    with open(file, "r+b") as w:
                        w.truncate(good_end)
                        os.fsync(w.fileno())
                break
            out.append(msg)
            good_end = f.tell()
    if bad:
        on_log(f"{file}: skipped {len(bad)} line(s) that are not JSON messages (line {', '.join(map(str, bad[:5]))}{', …' if len(bad) > 5 else ''})")
    return out


class LogFacts:
    """What the start-up and resume paths need to know of a run's events.jsonl, folded from its messages in one pass
    (add() each, in seq order; read_facts reads a folder's log; an EventRecorder keeps one up to date as it emits):

    seq: the highest seq (0: none); hello: the first hello (None: none yet);
    reached: the step the run last reached, from its latest rewind on (its newest state's or metrics row's step);
    finished_at: the highest metrics row step when its last state since the latest rewind is `finished`, else None.
    """

    __slots__ = ("seq", "hello", "reached", "_row_step", "_state")

    def __init__(self):
        self.seq, self.hello, self.reached, self._row_step, self._state = 0, None, 0, 0, None

    def add(self, m: dict) -> None:
        """Folds one message (a dict with int seq and str type, as read_log yields)."""
        self.seq = max(self.seq, m["seq"])
        t = m["type"]
        if t == "metrics":
            top = max([0] + [r.get("step", 0) for r in m.get("rows", []) if isinstance(r, dict)])
            self._row_step, self.reached = max(self._row_step, top), max(self.reached, top)
        elif t == "state":
            self._state, self.reached = m.get("state"), max(self.reached, m.get("step", 0))
        elif t == "rewind":
            self._state, self.reached = None, m.get("step", 0)
        elif t == "hello" and self.hello is None:
            self.hello = m

    @property
    def finished_at(self) -> Optional[int]:
        return self._row_step if self._state == "finished" else None

    @property
    def builtin(self) -> bool:
        """Whether the built-in trainer (srlora train) wrote the run: its hello names another backend than pytorch
        (its folder then holds no state.pt; this trainer cannot continue it)."""
        return self.hello is not None and (self.hello.get("backend") or {}).get("name") != "pytorch"

    @property
    def world_size(self) -> int:
        """How many processes trained the run: its first hello's worldSize (1 when it says none, or has no hello)."""
        n = (self.hello or {}).get("worldSize")
        return n if isinstance(n, int) and not isinstance(n, bool) and n >= 1 else 1


def read_facts(run_dir: str) -> LogFacts:
    """The LogFacts of run_dir's events.jsonl, read once with read_log (a torn last line cut, not repaired); a folder
    without one has none (seq 0, no hello). Raises OSError when the file cannot be read."""
    facts = LogFacts()
    for m in read_log(os.path.join(run_dir, EVENTS_FILE)):
        facts.add(m)
    return facts


class EventRecorder:
    """Every message gets the next seq and is appended to events.jsonl before anything else sees it.

    The seq is assigned on the caller's thread (so order is the order of emit calls); encoding, writing and handing the
    frame to the hub link happen on a writer thread, so a training step never waits on JSON or the disk. Every line is
    strict JSON (RFC 8259): a message holding a non-finite number is replaced, under its seq, by an error log line. A
    write that fails (disk full) stops the recorder: `error` holds a RecordError, and the next emit raises it."""

    def __init__(self, run_id: str, run_dir: str, check: bool = False, on_log: Callable[[str], None] = lambda s: None):
        self.run_id, self.file, self.check = run_id, os.path.join(run_dir, EVENTS_FILE), check
        os.makedirs(run_dir, exist_ok=True)
        self.facts = LogFacts()  # the log's so far, this recorder's emits included (a failed resume's step)
        self.recorded_as: Optional[str] = None  # the id earlier lines were written under, when not this run's (see own)
        for m in read_log(self.file, on_log, repair=True):
            self.facts.add(m)
            if m.get("runId") != run_id:  # a run folder is movable (renamed, copied): its id is the folder's
                self.recorded_as = self.recorded_as or m.get("runId")
        self.seq = self.facts.seq
        self.hello = self.own(self.facts.hello) if self.facts.hello is not None else None
        self.error: Optional[RecordError] = None
        try:
            self._fh = open(self.file, "a", encoding="utf-8")
        except OSError as e:
            raise RecordError(self.file, e) from None
        self._lock = threading.Lock()
        self.listeners: List[Callable[[dict, str], None]] = []
        self._q: "queue.Queue[Optional[Tuple[dict, Optional[Callable[[], dict]]]]]" = queue.Queue()
        self._writer = threading.Thread(target=self._write_loop, name="srlora-events", daemon=True)
        self._writer.start()

    def emit(self, body: dict, build: Optional[Callable[[], dict]] = None) -> dict:
        """Appends a message. `build`, if given, returns the rest of the body and runs on the writer thread: a large
        payload (an importance snapshot) is then decoded there too, not on the training thread. Raises the
        recorder's RecordError once a write has failed."""
        if self.error is not None:
            raise self.error
        if build is not None and self.check:  # validated here, on the caller's thread, so a bad message raises here
            body, build = {**body, **build()}, None
        with self._lock:
            msg = {"v": PROTOCOL_MAJOR, "runId": self.run_id, "seq": self.seq + 1, "time": int(time.time() * 1000), **body}
            if self.check:
                dumps(msg)  # strict JSON, or ValueError here
                err = validate(msg)
                if err:
                    raise ValueError(f"the trainer emitted an invalid message: {err}")
            if msg["type"] == "hello":
                self.hello = msg
            self.seq = msg["seq"]
            self.facts.add(msg)
            self._q.put((msg, build))
        return msg

    def _write_loop(self) -> None:
        while True:
            item = self._q.get()
            try:
                if item is None:
                    return
                if self.error is not None:  # stopped: a later line would leave a gap in the seq
                    continue
                msg, build = item
                try:
                    if build is not None:
                        msg.update(build())
                    text = dumps(msg)
                except Exception as e:  # noqa: BLE001 - the seq is taken: it becomes a log line, and the run goes on
                    head = {k: msg[k] for k in ("v", "runId", "seq", "time")}
                    msg = {**head, "type": "log", "level": "error", "text": f"could not write the {msg['type']} message: {type(e).__name__}: {e}"[:2000]}
                    text = dumps(msg)
                try:
                    self._fh.write(text + "\n")
                    if self._q.empty():
                        self._fh.flush()
                except OSError as e:
                    self.error = RecordError(self.file, e)
                    continue
                for fn in self.listeners:
                    fn(msg, text)
            finally:
                self._q.task_done()

    def drain(self) -> None:
        """Waits until everything emitted so far is on disk (and handed to the link); raises the RecordError of a
        failed write."""
        self._q.join()
        self._flush()

    def _flush(self) -> None:
        if self.error is None:
            try:
                self._fh.flush()
            except OSError as e:
                self.error = RecordError(self.file, e)
        if self.error is not None:
            raise self.error

    def sync(self) -> None:
        """drain(), then fsync events.jsonl: what a checkpoint declares is on disk before the checkpoint is."""
        self.drain()
        try:
            os.fsync(self._fh.fileno())
        except OSError as e:
            self.error = RecordError(self.file, e)
            raise self.error from None

    def own(self, m: dict) -> dict:
        """A line of this run's log as this run's: one written before its folder was renamed or copied carries the
        old id; the hub takes only this run's id on this run's connection."""
        return m if m.get("runId") == self.run_id else {**m, "runId": self.run_id}

    def read_after(self, seq: int) -> List[Tuple[int, str]]:
        self.drain()
        return [(m["seq"], dumps(self.own(m))) for m in read_log(self.file) if m["seq"] > seq]

    def close(self) -> None:
        """Stops the writer (never blocks on a failed disk: the queue is always drained) and closes the file."""
        self._q.join()
        self._q.put(None)
        self._writer.join(timeout=5)
        try:
            self._fh.close()
        except OSError as e:
            self.error = self.error or RecordError(self.file, e)


class HubLink:
    def __init__(self, recorder: EventRecorder, url: str, token: str, run_dir: str,
                 on_command: Callable[[str, dict], None], on_log: Callable[[str], None] = lambda s: None):
        self.recorder, self.url, self.token, self.run_dir = recorder, url, token, run_dir
        self.on_command, self.on_log = on_command, on_log
        self.received = 0
        self.pending: List[Tuple[int, str]] = []
        self.connected = False
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._wake: Optional[asyncio.Event] = None
        self._next = 1
        self._ws = None
        self._lock = threading.Lock()
        recorder.listeners.append(self._enqueue)
        self._thread = threading.Thread(target=self._run, name="srlora-hub-link", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _enqueue(self, msg: dict, text: str) -> None:
        if msg["type"] == "hello":
            return
        with self._lock:
            self.pending.append((msg["seq"], text))
            if len(self.pending) > 20000:
                del self.pending[: len(self.pending) - 20000]
        wake = self._wake
        if wake is not None:
            self._loop.call_soon_threadsafe(wake.set)

    def _discover(self) -> None:
        try:
            with open(os.path.join(self.run_dir, HUB_DISCOVERY_FILE), encoding="utf-8") as f:
                d = json.load(f)
            self.url, self.token = d["url"], d["token"]
        except (OSError, ValueError, KeyError):
            pass

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        import websockets
        attempt = 0
        while not self._closed:
            try:
                headers = {"Authorization": f"Bearer {self.token}"}
                # websockets 14 renamed extra_headers (Debian 12 ships 10.4).
                key = "additional_headers" if int(websockets.__version__.split(".")[0]) >= 14 else "extra_headers"
                conn = websockets.connect(f"{self.url}/trainer", max_size=1 << 20, **{key: headers})
                async with conn as ws:
                    await ws.send(dumps(self.recorder.hello))
                    await self._session(ws)
                    attempt = 0
            except Exception as e:  # noqa: BLE001 - any failure means: reconnect
                if not self._closed:
                    self.on_log(f"hub link: {type(e).__name__}: {e}")
            self.connected = False
            if self._closed:
                break
            delay = min(5.0, 0.1 * 2 ** attempt)
            attempt += 1
            await asyncio.sleep(delay / 2 + random.random() * delay / 2)
            self._discover()

    async def _session(self, ws) -> None:
        self._ws = ws
        sender = None
        try:
            async for raw in ws:
                try:
                    msg = loads(raw)
                except ValueError as e:
                    self.on_log(f"ignored a hub frame that is not JSON: {e}")
                    continue
                if isinstance(msg, dict) and msg.get("type") == "command" and isinstance(msg.get("id"), str) and isinstance(msg.get("command"), dict):
                    self.on_command(msg["id"], msg["command"])  # its body is checked where it is applied: a bad one is rejected by ack
                    continue
                if isinstance(msg, dict) and msg.get("type") == "command" and isinstance(msg.get("id"), str) and isinstance(msg.get("command"), dict):
                    self.on_command(msg["id"], msg["command"])  # its body is checked where it is applied: a bad one is rejected by ack
                    continue
                err = validate(msg)
                if err:
                    self.on_log(f"ignored a hub message: {err}")
                    continue
                t = msg["type"]
                if t == "welcome":
                    self._acknowledge(msg["received"])
                    self._load_gap(msg["received"])
                    self._next = msg["received"] + 1
                    self._wake = asyncio.Event()
                    self.connected = True
                    sender = asyncio.ensure_future(self._sender(ws))
                elif t == "received":
                    self._acknowledge(msg["received"])
                elif t == "command":
                    self.on_command(msg["id"], msg["command"])
                elif t == "error":
                    self.on_log(f"hub: {msg['code']}: {msg['message']}")
                    if msg["code"] == "out-of-order":
                        self._next = min(self._next, self.received + 1)  # the hub says where it stands: resend from there
        finally:
            self.connected = False
            if sender is not None:
                sender.cancel()

    async def _sender(self, ws) -> None:
        """Sends every pending frame from seq `_next` on, in order; waits when there is none. Resending after a
        reconnect and streaming new frames are the same loop, so nothing emitted while resending can be skipped."""
        while True:
            with self._lock:
                frames = [(seq, t) for seq, t in self.pending if seq >= self._next]
            if not frames:
                self._wake.clear()
                with self._lock:
                    if any(seq >= self._next for seq, _ in self.pending):
                        continue
                await self._wake.wait()
                continue
            for seq, t in frames:
                await ws.send(t)
                self._next = seq + 1

    def _load_gap(self, after: int) -> None:
        """Memory may not reach back to `after`: the log on disk does. (Read outside the lock: reading waits for the
        recorder's writer thread, which hands new frames to this link under the same lock.)"""
        with self._lock:
            first = self.pending[0][0] if self.pending else None
        if (first is None and self.recorder.seq > after) or (first is not None and first > after + 1):
            disk = self.recorder.read_after(after)
            with self._lock:
                have = {seq for seq, _ in self.pending}
                self.pending = sorted([p for p in disk if p[0] > 1 and p[0] not in have] + self.pending)

    def _acknowledge(self, received: int) -> None:
        with self._lock:
            self.received = max(self.received, received)
            self.pending = [p for p in self.pending if p[0] > received]

    def flush(self, timeout: float = 5.0) -> bool:
        deadline = time.time() + timeout
        while self.received < self.recorder.seq and time.time() < deadline:
            time.sleep(0.02)
        return self.received >= self.recorder.seq

    def close(self) -> None:
        self._closed = True
        if self._ws is not None and self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._ws.close(), self._loop)
        self._thread.join(timeout=2.0)  # a daemon thread: it never holds the process up


class CommandQueue:
    """Commands from the link's thread, applied by the training loop at its control point."""

    def __init__(self):
        self.q: "queue.Queue[Tuple[str, dict]]" = queue.Queue()

    def put(self, cid: str, body: dict) -> None:
        self.q.put((cid, body))

    def drain(self) -> List[Tuple[str, dict]]:
        if self.q.empty():  # every step asks; almost always nothing came, and get_nowait would raise to say so
            return []
        out = []
        while True:
            try:
                out.append(self.q.get_nowait())
            except queue.Empty:
                return out

    def wait(self, timeout: Optional[float] = None) -> Optional[Tuple[str, dict]]:
        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            return None
