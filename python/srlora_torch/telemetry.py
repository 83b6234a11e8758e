"""What a training step reports (docs/protocol.md): metrics rows and importance snapshots, each at most 10 per second,
with as little work as possible on the training thread — the bench times exactly this class.

Losses stay on the device until a flush reads them all in one copy; a snapshot's device → host copy is asynchronous
(SRLoRAController.importance_async) and its decoding runs on the recorder's writer thread (EventRecorder.emit's build).
"""
from __future__ import annotations

import time
from typing import Callable, List, Tuple

import torch

from .client import EventRecorder
from .controller import SRLoRAController
from .snapshot import Snapshot

MIN_INTERVAL_S = 0.1  # the protocol's ≤ 10 metrics messages and ≤ 10 importance snapshots per second


def emit_snapshot(rec: EventRecorder, snap: Snapshot) -> None:
    """An importance message whose layers are decoded on the recorder's writer thread, not the training thread."""
    rec.emit({"type": "importance", "step": snap.step}, build=lambda: {"layers": snap.layers()})


class Telemetry:
    def __init__(self, rec: EventRecorder, ctl: SRLoRAController, batch_size: int, lr: Callable[[], float],
                 settings: dict, snapshots: bool = True, min_interval_s: float = MIN_INTERVAL_S,
                 clock: Callable[[], float] = time.perf_counter):
        self.rec, self.ctl, self.batch_size, self.lr = rec, ctl, batch_size, lr
        self.settings = settings  # live: importanceEvery may change by command
        self.snapshots, self.min_interval_s, self.clock = snapshots, min_interval_s, clock
        self.losses: List[Tuple[int, torch.Tensor]] = []
        self.last_flush, self.last_importance = clock(), -min_interval_s  # the first snapshot at once

    def after_step(self, loss: torch.Tensor) -> None:
        self.losses.append((self.ctl.step, loss.detach()))
        now = self.clock()
        if now - self.last_flush >= self.min_interval_s:
            self.flush()
        if (self.snapshots and self.ctl.step % self.settings["importanceEvery"] == 0
                and now - self.last_importance >= self.min_interval_s):
            self.last_importance = now
            snap = self.ctl.importance_async()  # on a GPU: the previous snapshot, copied out while this one was queued
            if snap is not None:
                emit_snapshot(self.rec, snap)

    def flush(self) -> None:
        """Emits the rows held back (one device → host copy for all their losses); a NaN loss stops the run."""
        now = self.clock()
        if self.losses:
            values = torch.stack([l for _, l in self.losses]).float().tolist()
            eps = self.batch_size * len(self.losses) / max(1e-9, now - self.last_flush)
            rows = []
            for (step, _), v in zip(self.losses, values):
                if v != v:
                    raise RuntimeError(f"loss is NaN at step {step}")
                rows.append({"step": step, "loss": v, "lr": self.lr(), "examplesPerSec": eps})
            self.losses = []
            self.rec.emit({"type": "metrics", "rows": rows})
        self.last_flush = now
