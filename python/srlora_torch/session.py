"""A steerable run for any training loop (docs/protocol.md): the run folder's events.jsonl, the hub link when the
extension launched this process (SRLORA_HUB_URL, SRLORA_TOKEN, SRLORA_RUN_DIR), steering commands applied at step
boundaries, and telemetry. `python -m srlora_torch.train` and the Hugging Face callback are built on it; so is a
hand-written loop:

    session = Session(srl, opt, run_dir, total_steps=10_000, batch_size=32)
    session.start()
    for batch in data:
        loss = model(**batch).loss
        loss.backward(); srl.after_backward(); opt.step(); opt.zero_grad(); srl.after_step()
        session.after_step(loss)       # commands (a pause blocks here until resumed), metrics, snapshots
        if session.stop_reason:
            break
    session.finish()
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import secrets
import signal
import sys
import threading
import time
from typing import Callable, Dict, Optional

import torch

from .checkpoint import write_checkpoint
from .compiled import device_lr, get_lr
from .client import CommandQueue, EventRecorder, HubLink, RecordError
from .controller import Recomposition, SRLoRAController
from .distributed import PAUSE_TICK_S, Diverged, Lockstep, PeerFailed, SilentRecorder, signal_name, signal_number
from .measures import delta_rank
from .protocol import PROTOCOL_MAJOR, PROTOCOL_MINOR, validate_command
from .telemetry import NonFiniteLoss, SystemScalars, Telemetry


def log(text: str) -> None:
    """stderr may be gone: a trainer detached from a closed window keeps training (and logging to events.jsonl)."""
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def device_label(device: torch.device) -> str:
    """What the hello says the run trains on: "CUDA · <GPU name>", "MPS" (Apple's GPU) or "CPU"."""
    if device.type == "cuda":
        return f"CUDA · {torch.cuda.get_device_name(device)}"
    return "MPS" if device.type == "mps" else "CPU"


_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*\Z")


def run_id_of(run_dir: str) -> str:
    """The run id of a run folder (COMMON.md's rule, shared with the TypeScript side through test/vectors/runid.json):
    its basename when that is already a valid id (≤ 128 characters), else a readable slug of it with the first 8 hex
    digits of the name's sha256 appended, so different folders never share an id."""
    name = os.path.basename(str(run_dir).rstrip("/" + os.sep)) or str(run_dir)
    if _RUN_ID.match(name) and len(name) <= 128:
        return name
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name)
    slug = re.sub(r"^[^A-Za-z0-9]+", "", slug)[:100].rstrip("-")
    h = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{slug}-{h}" if slug else f"run-{h}"


PID_FILE = "trainer.pid"


def write_own_pid_file(run_dir: str) -> None:
    """A trainer no supervisor launched records its own identity in trainer.pid ({pid, startTime, pgid, bootId,
    selfStarted: true}, mode 0600, written then renamed; src/runfolder/pidfile.ts reads it), so whoever watches the runs
    folder can tell within seconds that it is gone without a final state. selfStarted: nobody may signal it. Linux
    only (/proc); elsewhere nothing is written."""
    try:
        with open("/proc/self/stat", encoding="utf-8") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # fields[0] is field 3 (state)
        with open("/proc/sys/kernel/random/boot_id", encoding="utf-8") as f:
            boot = f.read().strip()
        ident = {"pid": os.getpid(), "startTime": int(fields[22 - 3]), "pgid": int(fields[5 - 3]), "bootId": boot, "selfStarted": True}
    except (OSError, IndexError, ValueError):
        return
    final = os.path.join(run_dir, PID_FILE)
    tmp = f"{final}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(ident))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)


def remove_own_pid_file(run_dir: str) -> None:
    """Removes the trainer.pid write_own_pid_file wrote, when it still names this process: a trainer that has written
    its final state is no longer the run's (a stale pid may be reused by an unrelated process)."""
    path = os.path.join(run_dir, PID_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            ident = json.load(f)
        if isinstance(ident, dict) and ident.get("selfStarted") is True and ident.get("pid") == os.getpid():
            os.remove(path)
    except (OSError, ValueError):
        pass


def recomposition_head(r: Recomposition, command_id: Optional[str] = None) -> dict:
    """The recomposition message without its layers (recomposition_layers)."""
    return {"type": "recomposition", "step": r.step, "trigger": r.trigger, **({"commandId": command_id} if command_id else {}),
            "rule": r.rule, "outputChange": None}


def recomposition_layers(r: Recomposition) -> dict:
    """{"layers": …} of the recomposition message: reads each layer's ‖ΔW‖ and preservation error, which waits for the
    recomposition's kernels — so the Session builds it on the recorder's writer thread."""
    return {"layers": [
        {"name": e.layer, "slots": e.slots, "scores": e.scores, "oldDirections": e.old_directions, "newDirections": e.new_directions,
         "exhausted": e.exhausted, "deltaNorm": e.delta_norm, "preservationError": e.preservation_error, "p": e.p, "ages": e.ages}
        for e in r.layers]}


# The run folder's identity is checked at least this often (seconds) between checkpoints: one stat. A run with
# checkpoint_every 0 would otherwise train on, to its end, with its folder deleted.
FOLDER_CHECK_S = 2.0


class RunFolderGone(RuntimeError):
    """The run folder was deleted or replaced under the live trainer: it fails loudly rather than re-create it."""



def _device_of(ctl: SRLoRAController) -> Optional[torch.device]:
    """The device the adapters train on (whose memory the metrics rows report), or None when none is known."""
    for layer in ctl.layers.values():
        a = getattr(layer, "A", None)
        if isinstance(a, torch.Tensor):
            return a.device
    return None

def moved_run_line(run_id: str, recorded_as: str) -> str:
    """What a trainer says when it continues a run whose folder was renamed or copied (the built-in trainer's
    movedRunLine, src/trainer/process/trainingRun.ts): its id is its folder's now, its earlier lines read as its own."""
    return (f"run {run_id} was recorded as run {recorded_as} (its folder was renamed or copied): it continues as "
            f"{run_id}, its earlier records read as this run's")


class Session:
    """States (docs/protocol.md): running ⇄ paused, then exactly one final state — finished (every step done), stopped
    (the stop command, or a loop that ended early), interrupted (SIGINT/SIGTERM: checkpointed first, resumable) or
    failed (an exception, a non-finite loss, a full disk, the run folder gone; with the reason)."""

    def __init__(self, ctl: SRLoRAController, optimizer: Optional[torch.optim.Optimizer], run_dir: str, *, total_steps: int,
                 batch_size: int, name: Optional[str] = None, config: Optional[dict] = None, device: str = "",
                 importance_every: int = 10, eval_every: int = 0, checkpoint_every: int = 0,
                 evaluate: Optional[Callable[[], dict]] = None, save_checkpoint: Optional[Callable[[str], None]] = None,
                 on_finish: Optional[Callable[[], None]] = None, env: Optional[Dict[str, str]] = None,
                 handle_signals: bool = True, lockstep: Optional[Lockstep] = None):
        """save_checkpoint(dir) writes a checkpoint into a new folder (written then renamed by the session); evaluate()
        returns {"loss", "metrics"}; on_finish() runs after the final checkpoint of a finished run (the export).
        handle_signals: SIGINT and SIGTERM end the run at the next step boundary as `interrupted`, after a
        checkpoint (installed by start() when it runs on the main thread; a second signal acts as it did before).
        lockstep (distributed.py): one rank of a data-parallel run. Rank 0 records, talks to the hub and checkpoints;
        every other rank records nothing (pass it no evaluate/save_checkpoint/on_finish) and applies the same
        commands after the same step; signals and stops are agreed at step boundaries."""
        self.ctl, self.opt, self.run_dir = ctl, optimizer, os.path.abspath(run_dir)
        self.run_id = run_id_of(self.run_dir)
        self.total_steps, self.name, self.config, self.device = total_steps, name, config or {}, device
        self.settings = {"importanceEvery": importance_every, "evalEvery": eval_every or total_steps}
        self.checkpoint_every, self.evaluate, self.save_checkpoint, self.on_finish = checkpoint_every, evaluate, save_checkpoint, on_finish
        self.env = os.environ if env is None else env
        self.handle_signals = handle_signals
        self.launch: Optional[dict] = None  # hello.launch (progress.launch_facts), when a command line started this trainer
        self.lockstep = lockstep
        self.main = lockstep is None or lockstep.is_main  # the rank that records, talks to the hub and checkpoints
        self.rec = EventRecorder(self.run_id, self.run_dir, on_log=log) if self.main else SilentRecorder()
        st = os.stat(self.run_dir) if self.main else None
        self._identity = (st.st_dev, st.st_ino) if st else None  # the folder this run lives in: checked before each checkpoint
        self.folder_check_s = FOLDER_CHECK_S  # and at least this often (0: after every step, for tests)
        self.folder_gone = False  # the check found the folder deleted or replaced (finish() says so, once)
        self._folder_checked = time.monotonic()
        self._checkpointed_step: Optional[int] = None  # the step this session last checkpointed, while nothing has changed since
        self._signal: Optional[str] = None  # a signal this rank received, to be agreed at the next step boundary
        self._final_lock = threading.Lock()  # one final state, also when a peer's failure is noticed on another thread
        self._final_written = False
        self.incarnation = secrets.token_hex(8)  # this process's turn at the run (rewind names it)
        self.commands = CommandQueue()
        self.link: Optional[HubLink] = None
        self.paused = False
        self.stop_reason: Optional[str] = None  # set: the loop should end at this step boundary
        self.end_state: Optional[str] = None  # the final state that stop_reason leads to (stopped, interrupted, failed)
        self.failure: Optional[BaseException] = None
        self._old_handlers: dict = {}
        self.telemetry = Telemetry(self.rec, ctl, batch_size, self.lr, self.settings, snapshots=ctl.method == "srlora" and self.main,
                                   device_lr=lambda: device_lr(self.opt),
                                   system=SystemScalars(_device_of(ctl)))
        self._command_id: Optional[str] = None  # the recompose command being applied, if any
        ctl.listeners.append(self._on_recomposition)
        if lockstep is not None:
            lockstep.bind(ctl)  # selections from rank 0; every recomposition's result compared across ranks

    def lr(self) -> float:
        return get_lr(self.opt)  # a float, also when the compiled step keeps lr as a device tensor; 0 before a Trainer hands over its optimizer

    def _on_recomposition(self, r: Recomposition) -> None:
        if r.skipped:
            self.rec.emit({"type": "log", "level": "warn", "text": f"step {r.step}: not recomposed, scores not finite: {', '.join(r.skipped)}"[:2000]})
        self.rec.emit(recomposition_head(r, self._command_id), build=lambda: recomposition_layers(r))  # the norms: read off the training thread
        if self.telemetry.snapshots:
            # The state it left, at once (forced while paused, no scheduled snapshot would follow): viewers keep the
            # latest snapshot per step, so this one replaces the step's earlier one. Synchronous, on CUDA too.
            self.telemetry.emit_snapshot(self.ctl.snapshot())

    def srlora_facts(self) -> Optional[dict]:
        """What the trainer decided and viewers show without recomputing: the schedule, min slot age, rule in force."""
        if self.ctl.method != "srlora":
            return None
        return {"schedule": list(self.ctl.schedule.steps), "minSlotAge": self.ctl.min_slot_age, "rule": self.ctl.rule_in_force(),
                "reinitOptimizer": self.ctl.reinit_optimizer, "fusionSelect": self.ctl.fusion_select}

    # ---- lifecycle
    def start(self, resumed: bool = False, checkpoint: Optional[str] = None) -> None:
        """Announces the run (hello; a resumed run's events.jsonl has its hello and continues its seq, and says where
        it rewound to: `rewind {step, checkpoint, incarnation}`), connects to the hub when the env says so, and
        reports it running. SIGINT/SIGTERM are the session's from its first line (a Ctrl+C right after the rewind was a
        KeyboardInterrupt traceback): one that arrives during the start ends the run at its first step boundary."""
        if self.handle_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old_handlers[sig] = signal.signal(sig, self._on_signal)
        try:
            self._announce(resumed, checkpoint)
        except BaseException:  # not started: the process's own handling of signals again
            self._restore_signals()
            raise

    def _announce(self, resumed: bool, checkpoint: Optional[str]) -> None:
        """start()'s work once the signals are the session's."""
        layers = self.ctl.layers
        if self.lockstep is not None:  # every rank: peers watched, the starting state proven identical
            self.lockstep.watch(self._peer_failed)
            self.lockstep.check_identical(layers, "the start" if not resumed else f"resuming at step {self.ctl.step}")
        if not self.main:
            self.state("running")
            return
        if not resumed or self.rec.hello is None:
            facts = self.srlora_facts()
            self.rec.emit({"type": "hello", "protocol": {"major": PROTOCOL_MAJOR, "minor": PROTOCOL_MINOR}, "name": self.name or self.run_id,
                           "method": self.ctl.method, "backend": {"name": "pytorch", "device": self.device or "unknown"}, "totalSteps": self.total_steps,
                           "config": {**self.config, "torch": torch.__version__}, "worldSize": self.lockstep.world if self.lockstep else 1, **({"srlora": facts} if facts else {}),
                           **({"launch": self.launch} if self.launch else {}), "layers": [
                               {"name": n, "shape": [l.out_features, l.in_features], "r": l.r, "rTarget": l.r_target} for n, l in layers.items()]})
        if resumed:
            self.rec.emit({"type": "rewind", "step": self.ctl.step, "checkpoint": checkpoint or f"checkpoints/step-{self.ctl.step}",
                           "incarnation": self.incarnation})
            if self.rec.recorded_as:
                self.rec.emit({"type": "log", "level": "info", "text": moved_run_line(self.run_id, self.rec.recorded_as)[:2000]})
        if not self.env.get("SRLORA_HUB_URL"):
            write_own_pid_file(self.run_dir)  # no supervisor launched us: say who we are, for whoever watches
        if self.env.get("SRLORA_HUB_URL"):
            self.link = HubLink(self.rec, self.env["SRLORA_HUB_URL"], self.env.get("SRLORA_TOKEN", ""), self.run_dir, self.on_command, on_log=log)
            self.link.start()
        self.state("running", f"resumed at step {self.ctl.step}" if resumed else None)
        if self.evaluate and not resumed:  # the starting point, as the built-in trainer reports it
            self.emit_eval()

    def emit_eval(self) -> None:
        """An eval and, with it, every layer's ΔW effective rank (deltaRank: docs/ALGORITHM.md), as the built-in trainer.
        Announced first (`evaluating`, protocol 1.3): a real model's eval set can take a minute, which must not look
        like a stuck run."""
        self.rec.emit({"type": "evaluating", "step": self.ctl.step})
        self.rec.emit({"type": "eval", "step": self.ctl.step, **self.evaluate()})
        self.rec.emit({"type": "deltaRank", "step": self.ctl.step, "layers": delta_rank(self.ctl.layers)})

    def _on_signal(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.lockstep is not None:
            # Every rank ends at the same step, agreed at the next step boundary. The launcher forwards the group's
            # signal to each rank again, so a second one is the same request, not a force quit: torchrun itself
            # kills the ranks (SIGKILL) 30 s after forwarding a signal.
            self._signal = self._signal or name
            return
        if self.stop_reason is None:
            self.interrupt(f"received {name}")
        old = self._old_handlers.get(signum)
        signal.signal(signum, old if old is not None else signal.SIG_DFL)  # a second one acts as before (force quit)

    def interrupt(self, reason: str) -> None:
        """Ends the run at the next step boundary as `interrupted` (resumable: a checkpoint is written first)."""
        self.stop_reason, self.end_state = reason, "interrupted"

    def fail(self, error: BaseException) -> None:
        """Ends the run at the next step boundary as `failed` with this error (no final checkpoint)."""
        if self.failure is None:
            self.failure = error
        self.stop_reason, self.end_state = str(error), "failed"

    def settle(self) -> bool:
        """Deferred telemetry (train.py's graph-replayed step): reads the held losses; False when one was not finite —
        the run then fails as after_step would have it (every row before it emitted, the loss's step named)."""
        if self.end_state == "failed":
            return False
        try:
            self.telemetry.settle()
            if self.telemetry.bad is not None:
                self.telemetry.flush()
        except NonFiniteLoss as e:
            self.fail(e)
        return self.end_state != "failed"

    def after_step(self, loss: Optional[torch.Tensor] = None, skipped: Optional[torch.Tensor] = None,
                   grad_norm: Optional[torch.Tensor] = None) -> None:
        """Call after SRLoRAController.after_step: the metrics row, snapshots, eval and checkpoints on their schedule,
        then the commands that arrived (after this step's scheduled recomposition, in arrival order); while paused, blocks here (on the command queue: no spinning) until resumed or stopped.
        A non-finite loss (seen when its row is flushed) ends the run as failed: stop_reason says why."""
        if self.end_state == "failed":
            return
        try:
            self.telemetry.after_step(loss, skipped, grad_norm)
            step = self.ctl.step
            if self.evaluate and (step % self.settings["evalEvery"] == 0 or step == self.total_steps):
                self.telemetry.flush()
                self.emit_eval()
            if self.checkpoint_every and step % self.checkpoint_every == 0:
                if self.telemetry.held:  # deferred losses: none may be non-finite under a checkpoint
                    self.telemetry.flush()
                self.checkpoint()
            if self.main and time.monotonic() - self._folder_checked >= self.folder_check_s:
                self._check_folder()
        except (NonFiniteLoss, RecordError, RunFolderGone) as e:
            self.fail(e)
        try:  # (under lockstep every rank gets here, also after a failure above: the others must learn of it)
            self._apply_all(self._commands())
            while self.paused and not self.stop_reason:
                self.telemetry.flush()
                self._apply_all(self._commands(wait=PAUSE_TICK_S))
        except (NonFiniteLoss, RecordError, RunFolderGone, Diverged) as e:
            self.fail(e)

    def _commands(self, wait: Optional[float] = None) -> list:
        """The commands to apply at this step boundary (waiting up to `wait` seconds for one while paused). Under
        lockstep: rank 0's, with its stop, agreed by every rank; a signal any rank received interrupts them all."""
        if self.lockstep is None:
            if wait is None:
                return self.commands.drain()
            item = self.commands.wait(timeout=wait)
            return [item] if item else []
        share = None
        if self.main:
            if wait is None:
                cmds = self.commands.drain()
            else:
                item = self.commands.wait(timeout=wait)
                cmds = [item] + self.commands.drain() if item else []
            stop = [self.stop_reason, self.end_state] if self.stop_reason else None
            share = {"commands": [list(c) for c in cmds], "stop": stop} if cmds or stop else None
        got, sig = self.lockstep.exchange(share, signal_number(self._signal))
        if got and got["stop"] and not self.stop_reason:
            self.stop_reason, self.end_state = got["stop"]
            if self.end_state == "failed":
                self.failure = PeerFailed(f"rank 0: {self.stop_reason}")
        if sig and not self.stop_reason:
            self.interrupt(f"received {signal_name(sig)}")
        return [tuple(c) for c in got["commands"]] if got else []

    def _apply_all(self, cmds) -> None:
        if cmds and self.telemetry.held:  # a command acts on a state whose losses are all known to be finite
            self.telemetry.flush()
        for cid, body in cmds:
            self._checkpointed_step = None  # a command may change the model or settings: the next checkpoint is new
            self.apply(cid, body)
            if self.lockstep is not None:
                kind = body.get("kind") if isinstance(body, dict) else None
                self.lockstep.check_identical(self.ctl.layers, f"the {kind} command {cid} at step {self.ctl.step}")

    def finish(self, error: Optional[BaseException] = None) -> str:
        """Ends the run and returns its final state: failed (an error, given or met: its reason), else — after the
        final checkpoint and on_finish (the export, as the built-in trainer writes it for every run that did not
        fail) — interrupted (a signal), stopped (the stop command, or fewer steps than total_steps) or finished (every
        step done). A full disk or a vanished run folder is also said
        on stderr ("disk full: FILE")."""
        error = error or self.failure
        outcome, reason, at = "finished", None, None
        if self.lockstep is None:  # (under torchrun the launcher's forwarded signals keep being absorbed to the end)
            self._restore_signals()
        if self.lockstep is not None:
            self.lockstep.stop_watching()
            if not self.main:  # rank 0 records the run's end; this rank says how it ended, for rank 0 to name
                if error is not None and not isinstance(error, PeerFailed):
                    log(f"rank {self.lockstep.rank}: {type(error).__name__}: {error}")
                    self.lockstep.report(f"{type(error).__name__}: {error}"[:2000])
                    self._restore_signals()
                    return "failed"
                self.lockstep.report(None)
                self._restore_signals()
                if error is not None or self.end_state == "failed":
                    return "failed"
                return self.end_state or ("finished" if self.ctl.step >= self.total_steps else "stopped")
            if error is not None and not isinstance(error, (NonFiniteLoss, RecordError, RunFolderGone, Diverged, PeerFailed)):
                peer = self.lockstep.peer_failure(wait_s=2.0)  # a collective that failed: because a peer did?
                if peer:
                    error = PeerFailed(peer)
        try:
            if error is not None:
                raise error
            self.telemetry.flush()
            if self.stop_reason:
                self.state("stopping", self.stop_reason)
                outcome, reason = self.end_state or "stopped", self.stop_reason
            elif self.ctl.step < self.total_steps:
                outcome, reason = "stopped", f"the training loop ended at step {self.ctl.step} of {self.total_steps}"
            self.checkpoint()
            self._check_folder()
            self.rec.drain()  # on_finish may read events.jsonl (the export's direction history)
            if self.on_finish:  # a stopped or interrupted run exports what it has, as the built-in trainer does
                self.on_finish()
        except (NonFiniteLoss, RunFolderGone, PeerFailed, Diverged) as e:
            outcome, reason, at = "failed", str(e), (e.step - 1 if isinstance(e, NonFiniteLoss) else None)  # steps completed
            log(reason)
        except RecordError as e:
            outcome, reason = "failed", str(e)
            log(reason)
        except OSError as e:
            outcome, reason = "failed", str(RecordError(e.filename or self.run_dir, e)) if e.errno in (errno.ENOSPC, errno.EDQUOT) else f"{type(e).__name__}: {e}"
            log(reason)
        except Exception as e:  # noqa: BLE001 - reported as the run's failure
            outcome, reason = "failed", f"{type(e).__name__}: {e}"
            log(reason)
        try:
            with self._final_lock:
                if self._final_written:  # a peer's failure was recorded meanwhile (the watcher's thread)
                    return "failed"
                self._final_written = True
                self.state(outcome, reason, step=at)
            self.rec.drain()
        except RecordError as e:  # the disk is full: stderr (and the exit code) are all that is left
            if str(e) != reason:
                log(str(e))
            outcome = "failed"
        if self.link:
            self.link.flush(3.0)
            self.link.close()
        self.rec.close()
        if not self.env.get("SRLORA_HUB_URL"):
            remove_own_pid_file(self.run_dir)  # ended, its final state written: the pid no longer trains this run
        self._restore_signals()
        return outcome

    def _restore_signals(self) -> None:
        for sig, old in self._old_handlers.items():
            try:
                signal.signal(sig, old if old is not None else signal.SIG_DFL)
            except (ValueError, OSError):
                pass
        self._old_handlers = {}

    def _peer_failed(self, why: str) -> None:
        """Rank 0's watcher thread: a peer failed or died. The main thread may be stuck in a collective waiting for it
        (NCCL waits without end), so the run's failure is recorded from here and the process ends."""
        with self._final_lock:
            if self._final_written:
                return
            self._final_written = True
            log(why)
            try:
                self.telemetry.flush()
            except Exception:  # noqa: BLE001 - a non-finite loss: the failure said here is the one that ended the run
                pass
            try:
                self.state("failed", why[:2000])
                self.rec.drain()
            except RecordError as e:
                log(str(e))
            if self.link:
                self.link.flush(3.0)
        os._exit(1)

    # ---- what the session emits
    def state(self, s: str, reason: Optional[str] = None, step: Optional[int] = None) -> None:
        self.rec.emit({"type": "state", "state": s, "step": self.ctl.step if step is None else step, **({"reason": reason[:2000]} if reason else {})})

    def _check_folder(self) -> None:
        self._folder_checked = time.monotonic()
        try:
            st = os.stat(self.run_dir)
            same = (st.st_dev, st.st_ino) == self._identity
        except OSError:
            same = False
        if not same:  # said once, in these words, by finish() (train.py adds no line of its own)
            self.folder_gone = True
            where = f"run {run_id_of(self.run_dir)}: its folder {os.path.abspath(self.run_dir)}"
            if os.path.isdir(self.run_dir):
                raise RunFolderGone(f"{where} was replaced while it trained (by another folder of that name: left as it is); this run's record went with the old folder")
            raise RunFolderGone(f"{where} was deleted while it trained; nothing was recorded")

    def checkpoint(self) -> Optional[str]:
        """Writes checkpoints/step-N through save_checkpoint (checkpoint.py: a temporary folder with a COMPLETE.json
        marker, fsynced, then renamed: never half a checkpoint), events.jsonl fsynced before the rename, then
        announces it. Without save_checkpoint there is nothing to write. Raises RunFolderGone if the run folder was
        deleted or replaced (never re-created), RecordError when the disk is full."""
        if self.save_checkpoint is None:
            return None
        if self._checkpointed_step == self.ctl.step:  # already written this step (checkpointEvery divides steps): one event
            self._check_folder()
            return None
        self._check_folder()
        try:
            rel = write_checkpoint(self.run_dir, self.ctl.step, self.save_checkpoint, before_rename=self.rec.sync)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise RecordError(e.filename or os.path.join(self.run_dir, "checkpoints"), e) from None
            raise
        except RuntimeError as e:  # torch.save reports a failed write as a RuntimeError, without errno
            if "write" in str(e) and _disk_nearly_full(self.run_dir):
                raise RecordError(os.path.join(self.run_dir, "checkpoints"), OSError(errno.ENOSPC, "No space left on device")) from None
            raise
        self.rec.emit({"type": "checkpoint", "step": self.ctl.step, "path": rel})
        self._checkpointed_step = self.ctl.step
        return rel

    # ---- commands
    def on_command(self, cid: str, body: dict) -> None:
        """From the hub link's thread: acknowledged as received at once, applied at the next step boundary."""
        self.rec.emit({"type": "ack", "commandId": cid, "status": "received", "step": None})
        self.commands.put(cid, body)

    def current_settings(self) -> dict:
        return {"fusionThreshold": self.ctl.fusion_threshold, "fusionRatio": self.ctl.fusion_ratio, "learningRate": self.lr(),
                "minSlotAge": self.ctl.min_slot_age, **self.settings}

    def apply(self, cid: str, body: dict) -> None:
        ctl, method = self.ctl, self.ctl.method

        def ack(status, reason=None, with_settings=False):
            self.rec.emit({"type": "ack", "commandId": cid, "status": status, "step": ctl.step if status == "applied" else None,
                           **({"reason": reason} if reason else {}), **({"settings": self.current_settings()} if with_settings else {})})
        err = validate_command(body)
        if err:
            return ack("rejected", err)
        k = body["kind"]
        if k in ("pause", "resume"):
            if self.paused == (k == "pause"):
                return ack("rejected", "the run is already paused" if self.paused else "the run is not paused")
            self.paused = k == "pause"
            ack("applied")
            self.state("paused" if self.paused else "running")
            if self.paused and self.telemetry.snapshots and self.telemetry.snapshot_step != ctl.step:
                # While paused the page previews what Recompose Now would fuse from the latest snapshot: make it this
                # step's (the scheduled one may be several steps old).
                self.telemetry.emit_snapshot(ctl.snapshot())
            return None
        if k == "set":
            if method != "srlora" and ("fusionThreshold" in body or "fusionRatio" in body):
                return ack("rejected", f"fusionThreshold and fusionRatio need method srlora; this run is {method}")
            if "learningRate" in body and self.opt is None:
                return ack("rejected", "no optimizer yet to set the learning rate of")
            ctl.set(**({"fusion_threshold": body["fusionThreshold"]} if "fusionThreshold" in body else {}), fusion_ratio=body.get("fusionRatio"))
            if "learningRate" in body:
                for g in self.opt.param_groups:
                    g["lr"] = body["learningRate"]
            for key in ("importanceEvery", "evalEvery"):
                if key in body:
                    self.settings[key] = body[key]
            return ack("applied", with_settings=True)
        if k == "recompose":
            if method != "srlora":
                return ack("rejected", f"recomposition needs method srlora; this run is {method}")
            unknown = [n for n in body.get("layers", []) if n not in ctl.layers]
            if unknown:
                return ack("rejected", f"not adapted: {', '.join(unknown)}")
            self._command_id = cid
            try:
                ctl.recompose("forced", body.get("layers"))
            finally:
                self._command_id = None
            return ack("applied")
        if k == "checkpoint":
            if self.save_checkpoint is None:
                return ack("rejected", "this run has no checkpoint writer")
            self.checkpoint()
            return ack("applied")
        if k == "stop":
            if self.stop_reason is None:
                self.stop_reason, self.end_state = "stopped by the user", "stopped"
            return ack("applied")


def _disk_nearly_full(path: str) -> bool:
    try:
        st = os.statvfs(path)
        return st.f_bavail * st.f_frsize < (1 << 20)
    except OSError:
        return False
