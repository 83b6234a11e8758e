"""What a training step reports (docs/protocol.md): metrics rows and importance snapshots, each at most 10 per second,
with as little work as possible on the training thread — the bench times exactly this class.

Losses stay on the device until a flush reads them all in one copy; a snapshot's device → host copy is asynchronous
(SRLoRAController.importance_async) and its decoding runs on the recorder's writer thread (EventRecorder.emit's build).
"""
from __future__ import annotations

import math
import time
from typing import Callable, List, Tuple, Union

import torch

from .client import EventRecorder
from .controller import SRLoRAController
from .snapshot import Snapshot

MIN_INTERVAL_S = 0.1  # the protocol's ≤ 10 metrics messages and ≤ 10 importance snapshots per second


class NonFiniteLoss(RuntimeError):
    """A loss that is NaN or ±inf: the run fails (every row before it has been emitted). str() is the state's reason,
    "loss is NaN at step N" (or inf, -inf)."""

    def __init__(self, step: int, value: float):
        super().__init__(f"loss is {'NaN' if value != value else ('inf' if value > 0 else '-inf')} at step {step}")
        self.step = step


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
        self.losses: List[Tuple[int, Union[torch.Tensor, float], bool]] = []  # (step, loss, its gradients were not finite)
        self.last_flush, self.last_importance = clock(), -min_interval_s  # the first snapshot at once

    def after_step(self, loss: Union[torch.Tensor, float, None]) -> None:
        """A step ended: its loss (a device tensor, read back at the next flush; a float; or None when the loop reports
        losses separately, as the Hugging Face callback does), then metrics and snapshots when due."""
        if loss is not None:
            self.add_loss(self.ctl.step, loss)
        now = self.clock()
        if now - self.last_flush >= self.min_interval_s:
            self.flush()
        if (self.snapshots and self.ctl.step % self.settings["importanceEvery"] == 0
                and now - self.last_importance >= self.min_interval_s):
            self.last_importance = now
            snap = self.ctl.importance_async()  # on a GPU: the previous snapshot, copied out while this one was queued
            if snap is not None:
                emit_snapshot(self.rec, snap)

    def add_loss(self, step: int, loss: Union[torch.Tensor, float]) -> None:
        """A loss for the next metrics message (steps must increase)."""
        self.losses.append((step, loss.detach() if isinstance(loss, torch.Tensor) else float(loss), self.ctl.last_skipped_step == step))

    def flush(self) -> None:
        """Emits the rows held back (one device → host copy for all their losses). A non-finite loss raises
        NonFiniteLoss after the rows before it have been emitted; the rows after it are dropped."""
        now = self.clock()
        if self.losses:
            on_device = [l for _, l, _ in self.losses if isinstance(l, torch.Tensor)]
            read = iter(torch.stack(on_device).float().tolist() if on_device else [])  # one copy for all of them
            values = [next(read) if isinstance(l, torch.Tensor) else l for _, l, _ in self.losses]
            eps = self.batch_size * len(self.losses) / max(1e-9, now - self.last_flush)
            rows, bad = [], None
            for (step, _, skipped), v in zip(self.losses, values):
                if not math.isfinite(v):
                    bad = NonFiniteLoss(step, v)
                    break
                rows.append({"step": step, "loss": v, "lr": self.lr(), "examplesPerSec": eps, **({"nonFiniteGrad": True} if skipped else {})})
            self.losses = []
            if rows:
                self.rec.emit({"type": "metrics", "rows": rows})
            if bad is not None:
                self.last_flush = now
                raise bad
        self.last_flush = now
