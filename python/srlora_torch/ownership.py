"""Resume never runs two trainers on one run: the one rule every resume path follows, twin of
src/runfolder/lock.ts's resumeRefusalOf (test/vectors/ownership/resume.json holds both languages to it).

A run folder may hold owner.json (the supervisor that holds the run: {pid, startTime, pgid, bootId, instance, by,
since}) and trainer.pid (its trainer: {pid, startTime, pgid, bootId, selfStarted?}). A record names a live process
only while /proc/PID/stat still gives the same start time and process group in the same boot (a record without a boot
id: the pid alone, erring towards alive). A resume is refused when the run has a live owner other than the supervisor
that launched this trainer (SRLORA_OWNER), or a live trainer other than this process."""
import json
import os
from typing import Callable, Optional

OWNER_FILE = "owner.json"
PID_FILE = "trainer.pid"


def _is_int(v) -> bool:  # as JavaScript's Number.isInteger on JSON.parse's value: 3.0 is one, True is not
    return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())


def parse_owner(text: str) -> Optional[dict]:
    """owner.json's text as an owner record, or None when it is not one (a missing `by` reads "another supervisor")."""
    try:
        r = json.loads(text)
    except ValueError:
        return None
    if not isinstance(r, dict) or not _is_int(r.get("pid")) or not _is_int(r.get("startTime")) \
            or not isinstance(r.get("instance"), str) or not isinstance(r.get("bootId"), str):
        return None
    return {**r, "pid": int(r["pid"]), "startTime": int(r["startTime"]), "by": r["by"] if isinstance(r.get("by"), str) else "another supervisor"}


def parse_pid(text: str) -> Optional[dict]:
    """trainer.pid's text as a process identity, or None (a bare number, pid ≤ 1 or any other shape proves nothing)."""
    try:
        r = json.loads(text)
    except ValueError:
        return None
    if not isinstance(r, dict) or not all(_is_int(r.get(k)) for k in ("pid", "startTime", "pgid")) or not isinstance(r.get("bootId"), str):
        return None
    if int(r["pid"]) <= 1:
        return None
    return {"pid": int(r["pid"]), "startTime": int(r["startTime"]), "pgid": int(r["pgid"]), "bootId": r["bootId"],
            **({"selfStarted": True} if r.get("selfStarted") is True else {})}


def _identity(pid: int) -> Optional[dict]:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="utf-8") as f:
            boot = f.read().strip()
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # fields[0] is field 3 (state)
    except (OSError, IndexError):
        return None
    if not boot or fields[0] in ("Z", "X"):  # a zombie has ended; only its parent's wait is missing
        return None
    try:
        return {"startTime": int(fields[22 - 3]), "pgid": int(fields[5 - 3]), "bootId": boot}
    except (IndexError, ValueError):
        return None


def alive(rec: dict) -> bool:
    """Is the process a record names still that process? (lock.ts ownerAlive.) Never for pid ≤ 1."""
    pid = rec["pid"]
    if pid <= 1:
        return False
    if rec["bootId"] == "":  # written where /proc is missing: the pid alone, erring towards alive
        try:
            os.kill(pid, 0)
            return True
        except PermissionError:
            return True
        except OSError:
            return False
    now = _identity(pid)
    return now is not None and now["startTime"] == rec["startTime"] and now["bootId"] == rec["bootId"] and now["pgid"] == rec.get("pgid")


def resume_refusal_of(run_dir: str, owner: Optional[dict], trainer: Optional[dict], is_alive: Callable[[dict], bool],
                      launched_by: Optional[str], self_pid: int) -> Optional[str]:
    """The refusal naming who trains the run (the exact words of lock.ts), or None when it may be resumed."""
    if owner is not None and is_alive(owner):
        if launched_by is not None and owner["instance"] == launched_by:
            return None  # our supervisor holds it (and its trainer.pid names our launcher)
        return (f"run {run_dir} belongs to {owner['by']} (pid {owner['pid']}): it is being trained or watched there; "
                f"stop it there, then continue it")
    if trainer is not None and trainer["pid"] != self_pid and is_alive(trainer):
        if trainer.get("selfStarted"):
            return (f"run {run_dir} is being trained by pid {trainer['pid']}, started from a terminal; "
                    f"stop it there (Ctrl+C: it checkpoints), then continue it")
        return (f"run {run_dir} is being trained by pid {trainer['pid']}, whose supervisor is gone; "
                f"stop it (SIGINT: it checkpoints), then continue it")
    return None


def _read(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return None


def resume_refusal(run_dir: str, env=None) -> Optional[str]:
    """resume_refusal_of for the run folder as it is now, for this process (SRLORA_OWNER from env)."""
    env = os.environ if env is None else env
    o, p = _read(os.path.join(run_dir, OWNER_FILE)), _read(os.path.join(run_dir, PID_FILE))
    return resume_refusal_of(run_dir, parse_owner(o) if o is not None else None, parse_pid(p) if p is not None else None,
                             alive, env.get("SRLORA_OWNER") or None, os.getpid())
