"""python -m srlora_torch.launch --standalone --nproc_per_node=N -m srlora_torch.train [--config FILE | --resume RUN_DIR]

torchrun — torch.distributed.run itself: the same arguments, the same processes — for a data-parallel SRLoRA run,
ending quietly when interrupted. On Ctrl+C (SIGINT) or SIGTERM torchrun forwards the signal to every rank (each rank of
srlora_torch.train agrees with the others to stop after the same step; rank 0 checkpoints and records `interrupted`),
then its own process raises SignalException: a traceback of the launcher's internals after three shutdown warnings.
Here that ends in one line instead (the run's state is in its events.jsonl, rank 0's summary above it), exit code
128 + the signal's number. Anything else (a rank that failed, a bad argument) is torchrun's own report, unchanged.
"""
from __future__ import annotations

import logging
import signal
import sys
from typing import List, Optional

# The elastic agent's notices while it shuts the ranks down after a signal: they repeat what the one line says.
_SHUTDOWN_NOTICES = ("death signal, shutting down workers", "closing signal")
_LOGGERS = ("torch.distributed.elastic.agent.server.api", "torch.distributed.elastic.multiprocessing.api")


class _Quiet(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not any(n in text for n in _SHUTDOWN_NOTICES)


def main(argv: Optional[List[str]] = None) -> int:
    """Runs torchrun with argv (default: sys.argv[1:]). Returns 0 when every rank ended cleanly, 128 + N when signal N
    ended the launch; raises what torchrun raises otherwise (ChildFailedError: a rank failed, with torchrun's report)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
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
              f"an interrupted run continues with --resume RUN_DIR)", file=sys.stderr, flush=True)
        return 128 + num
    return 0


if __name__ == "__main__":
    sys.exit(main())
