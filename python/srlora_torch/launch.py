"""python -m srlora_torch.launch --standalone --nproc_per_node=N -m srlora_torch.train [--config FILE | --resume RUN_DIR]

torchrun — torch.distributed.run itself: the same arguments, the same processes — for a data-parallel SRLoRA run,
ending quietly when interrupted. On Ctrl+C (SIGINT) or SIGTERM torchrun forwards the signal to every rank (each rank of
srlora_torch.train agrees with the others to stop after the same step; rank 0 checkpoints and records `interrupted`),
then its own process raises SignalException: a traceback of the launcher's internals after three shutdown warnings.
Here that ends in one line instead (the run's state is in its events.jsonl, rank 0's summary above it), exit code
128 + the signal's number. A rank that failed (a config that cannot run data-parallel, a crash) has said why itself
(rank 0 once for what every rank met; a crashed rank its own traceback): torchrun's ChildFailedError — its traceback
and its failure table — ends in one line naming the ranks and exit codes instead, exit code the failed rank's (1
when it was a signal). A bad launcher argument is torchrun's own report, unchanged.
"""
from __future__ import annotations

import logging
import signal
import sys
from typing import Dict, List, Optional, Tuple

from .distributed import FOLLOWED_RANK0

# The elastic agent's notices while it shuts the ranks down after a signal: they repeat what the one line says.
# "failed (exitcode: …)": the error line torchrun logs before it raises ChildFailedError (said once below instead).
_SHUTDOWN_NOTICES = ("death signal, shutting down workers", "closing signal", "failed (exitcode:")
_LOGGERS = ("torch.distributed.elastic.agent.server.api", "torch.distributed.elastic.multiprocessing.api")


class _Quiet(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not any(n in text for n in _SHUTDOWN_NOTICES)


def main(argv: Optional[List[str]] = None) -> int:
    """Runs torchrun with argv (default: sys.argv[1:]). Returns 0 when every rank ended cleanly, 128 + N when signal N
    ended the launch, the failed rank's exit code (≥ 1) when a rank failed (one line on stderr: failed_line); raises what
    torchrun raises otherwise (a bad launcher argument)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    quiet = _Quiet()
    for name in _LOGGERS:
        logging.getLogger(name).addFilter(quiet)
    try:
        torchrun(sys.argv[1:] if argv is None else argv)
    except SignalException as e:
        num = int(e.sigval)
        try:
            name = signal.Signals(num).name
        except ValueError:
            name = f"signal {num}"
        print(f"srlora: {name}: the ranks stopped after one step and rank 0 recorded how the run ended (above; "
              f"its summary's continue line is the command that continues it)", file=sys.stderr, flush=True)
        return 128 + num
    except ChildFailedError as e:
        line, code = failed_line({r: f.exitcode for r, f in e.failures.items()})
        print(line, file=sys.stderr, flush=True)
        return code
    return 0


def failed_line(exits: Dict[int, int]) -> Tuple[str, int]:
    """The launcher's one line for failed ranks and its exit code, from {global rank: exit code (−N: signal N)}: the
    ranks that failed by themselves (exit code ≥ 1, not distributed.FOLLOWED_RANK0: a rank that ended because rank 0
    refused the start and said why; when none did, every one listed), grouped by code —
    ("srlora: rank 0 exited with code 1 (the reason is above); the launch stopped the other ranks", 1)."""
    own = {r: c for r, c in exits.items() if c > 0 and c != FOLLOWED_RANK0} or dict(exits)
    by: Dict[int, List[int]] = {}
    for r, c in sorted(own.items()):
        by.setdefault(c, []).append(r)

    def how(c: int) -> str:
        if c >= 0:
            return f"exited with code {c}"
        try:
            return f"was ended by {signal.Signals(-c).name}"
        except ValueError:
            return f"was ended by signal {-c}"
    parts = [f"rank{'s' if len(rs) > 1 else ''} {', '.join(map(str, rs))} {how(c)}" for c, rs in by.items()]
    rest = "; the launch stopped the other ranks" if len(own) < len(exits) else ""
    code = next((c for c in sorted(own.values(), reverse=True) if c > 0), 1)
    said = " (the reason is above)" if any(c > 0 for c in own.values()) else ""  # a signal: nothing was said
    return f"srlora: {'; '.join(parts)}{said}{rest}", code


if __name__ == "__main__":
    sys.exit(main())
