"""Checkpoints a resume can trust (COMMON.md's rule, shared with the built-in trainer):

    checkpoints/step-N/            written as .tmp-XXXX/ and renamed; nothing else ever writes into it
      state.pt …                   the trainer's files (save(folder) writes them)
      COMPLETE.json                {"step": N, "files": {name: {"bytes": n, "sha256": hex}}}, written last

Every file and the folder are fsynced before the rename, the parent after it; so after a crash or a power cut a
`step-N` either has its marker, with every byte it names, or is not trusted. `newest_verified` takes the newest
checkpoint whose marker and checksums hold, and says which newer ones it skipped and why.
"""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
from typing import Callable, Iterator, List, Optional, Tuple

from .protocol import dumps, loads

MARKER = "COMPLETE.json"
CHECKPOINTS = "checkpoints"
_MAX_MARKER_BYTES = 1 << 20


def _fsync_path(path: str, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(path: str) -> Tuple[int, str]:
    h, n = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
            n += len(block)
    return n, h.hexdigest()


def _files(folder: str) -> List[str]:
    out = []
    for base, dirs, names in os.walk(folder):
        dirs.sort()
        for n in sorted(names):
            rel = os.path.relpath(os.path.join(base, n), folder).replace(os.sep, "/")
            if rel != MARKER:
                out.append(rel)
    return out


def write_checkpoint(run_dir: str, step: int, save: Callable[[str], None], before_rename: Callable[[], None] = lambda: None) -> str:
    """Writes checkpoints/step-<step> through save(folder) and returns its path relative to run_dir. An existing
    verified one for that step is kept; an unverified one is replaced. before_rename() runs once the files are on
    disk (the session fsyncs events.jsonl there). Never creates run_dir itself: a vanished run folder is an error."""
    root = os.path.join(run_dir, CHECKPOINTS)
    rel = f"{CHECKPOINTS}/step-{step}"
    final = os.path.join(run_dir, CHECKPOINTS, f"step-{step}")
    if os.path.isdir(final) and verify(final, step) is None:
        return rel
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(errno.ENOENT, "the run folder is gone", run_dir)
    try:
        os.mkdir(root)
    except FileExistsError:
        pass
    tmp = tempfile.mkdtemp(dir=root, prefix=".tmp-")
    try:
        save(tmp)
        files = {}
        for name in _files(tmp):
            path = os.path.join(tmp, name)
            _fsync_path(path)
            n, digest = _sha256(path)
            files[name] = {"bytes": n, "sha256": digest}
        marker = os.path.join(tmp, MARKER)
        with open(marker, "w", encoding="utf-8") as f:
            f.write(dumps({"step": step, "files": files}, indent=1))
            f.flush()
            os.fsync(f.fileno())
        _fsync_path(tmp, directory=True)
        before_rename()
        if os.path.exists(final):  # a half-written or corrupt one from an earlier process: replaced
            trash = tempfile.mkdtemp(dir=root, prefix=".old-")
            os.rename(final, os.path.join(trash, "x"))
            os.rename(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(tmp, final)
        _fsync_path(root, directory=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return rel


CHECKS = ("sha256", "size")  # what verify compares of each file the marker lists: its bytes and sha256, or its size only


def verify(folder: str, step: Optional[int] = None, check: str = "sha256") -> Optional[str]:
    """None when `folder` is a complete checkpoint: its marker parses, names the step, and every file it lists is there
    with its size and — check "sha256" (what a resume trusts) — its sha256; check "size" reads no file's content (a
    quick hint that a resume is possible; the resume itself compares the checksums). Else why not, in a few words.
    Raises ValueError for another check."""
    if check not in CHECKS:
        raise ValueError(f"check: one of {', '.join(CHECKS)}, not {check!r}")
    marker = os.path.join(folder, MARKER)
    try:
        if os.path.getsize(marker) > _MAX_MARKER_BYTES:
            return f"{MARKER} is too large"
        with open(marker, encoding="utf-8") as f:
            doc = loads(f.read())
    except FileNotFoundError:
        return f"no {MARKER} (half-written, or written before checkpoints had one)"
    except (OSError, ValueError, UnicodeDecodeError) as e:
        return f"{MARKER} unreadable: {type(e).__name__}"
    files = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(files, dict) or not files or not isinstance(doc.get("step"), int):
        return f"{MARKER} is not a completion marker"
    if step is not None and doc["step"] != step:
        return f"{MARKER} is for step {doc['step']}"
    for name, want in files.items():
        path = os.path.join(folder, *name.split("/"))
        if not isinstance(want, dict) or ".." in name.split("/"):
            return f"{MARKER} lists a bad entry"
        try:
            n, digest = _sha256(path) if check == "sha256" else (os.path.getsize(path), None)
        except OSError:
            return f"{name} is missing"
        if n != want.get("bytes"):
            return f"{name} has {n} bytes, not {want.get('bytes')}"
        if digest is not None and digest != want.get("sha256"):
            return f"{name} does not match its sha256 (corrupt)"
    return None


def checkpoint_steps(run_dir: str) -> List[int]:
    """The steps of checkpoints/step-N folders, newest first."""
    root = os.path.join(run_dir, CHECKPOINTS)
    try:
        names = os.listdir(root)
    except OSError:
        return []
    return sorted((int(d[5:]) for d in names if d.startswith("step-") and d[5:].isdigit()), reverse=True)


def verified_checkpoints(run_dir: str, on_log: Callable[[str], None] = lambda s: None, check: str = "sha256",
                         below: Optional[int] = None) -> Iterator[Tuple[str, int]]:
    """(folder, step) of each complete checkpoint, verified by `check` (verify's), of a step under `below` if given,
    newest first, verified one at a time as iterated; each one skipped is logged with why. A resume takes the first, and goes on past it
    (below its step) only if its state does not load."""
    for step in checkpoint_steps(run_dir):
        if below is not None and step >= below:
            continue
        folder = os.path.join(run_dir, CHECKPOINTS, f"step-{step}")
        why = verify(folder, step, check)
        if why is None:
            yield folder, step
        else:
            on_log(f"skipped checkpoint step-{step}: {why}")


def newest_verified(run_dir: str, on_log: Callable[[str], None] = lambda s: None, check: str = "sha256") -> Optional[Tuple[str, int]]:
    """(folder, step) of the newest complete checkpoint verified by `check` (verify's: "size" for a hint that reads
    no file's content), or None; each newer one skipped is logged with why."""
    return next(verified_checkpoints(run_dir, on_log, check), None)
