"""What a training step reports (docs/protocol.md): metrics rows and importance snapshots, each at most 10 per second,
with as little work as possible on the training thread — the bench times exactly this class.

Each loss is read when it is added (one scalar: a non-finite loss must stop the run at its own step) — or, with `defer`
(a step replayed from a CUDA graph), one step later, so the host never waits for the step it has just queued; a snapshot's device → host copy is asynchronous
(SRLoRAController.importance_async) and its decoding runs on the recorder's writer thread (EventRecorder.emit's build).
"""
from __future__ import annotations

import math
import time
from typing import Callable, List, Optional, Tuple, Union

import torch

from .client import EventRecorder
from .controller import SRLoRAController
from .snapshot import Snapshot

MIN_INTERVAL_S = 0.1  # the protocol's ≤ 10 metrics messages and ≤ 10 importance snapshots per second


class NonFiniteLoss(RuntimeError):
    """A loss that is NaN or ±inf: the run fails (every row before it has been emitted) with the reason str(),
    "loss is NaN at step N" (or inf, -inf), and the state's step N − 1 (the steps completed)."""

    def __init__(self, step: int, value: float):
        super().__init__(f"loss is {'NaN' if value != value else ('inf' if value > 0 else '-inf')} at step {step}")
        self.step = step


def emit_snapshot(rec: EventRecorder, snap: Snapshot) -> None:
    """An importance message whose layers are decoded on the recorder's writer thread, not the training thread."""
    rec.emit({"type": "importance", "step": snap.step}, build=lambda: {"layers": snap.layers()})


class Telemetry:
    def __init__(self, rec: EventRecorder, ctl: SRLoRAController, batch_size: int, lr: Callable[[], float],
                 settings: dict, snapshots: bool = True, min_interval_s: float = MIN_INTERVAL_S,
                 clock: Callable[[], float] = time.perf_counter,
                 device_lr: Callable[[], Optional[torch.Tensor]] = lambda: None):
        """lr(): the learning rate for a metrics row; device_lr(): the same as a device tensor when it is one
        (compiled.device_lr), read with each deferred loss instead of by lr() — which would wait for the GPU."""
        self.rec, self.ctl, self.batch_size, self.lr, self.device_lr = rec, ctl, batch_size, lr, device_lr
        self.settings = settings  # live: importanceEvery may change by command
        self.snapshots, self.min_interval_s, self.clock = snapshots, min_interval_s, clock
        # (step, loss, its gradients were not finite, its learning rate when read with the loss, else None)
        self.losses: List[Tuple[int, float, bool, Optional[float]]] = []
        # defer (train.py, a step replayed from a CUDA graph): a loss is read one step late, so the host never waits
        # for the step it has just queued; held here as [loss, skipped] device tensors until settle() reads them.
        self.defer = False
        self.held: List[Tuple[int, torch.Tensor, Optional["torch.cuda.Event"]]] = []  # (step, [loss, skipped(, lr)], its copy's event)
        self.bad: Optional[NonFiniteLoss] = None  # a non-finite loss seen: the run fails at the next after_step/flush
        self.last_flush, self.last_importance = clock(), -min_interval_s  # the first snapshot at once

    def after_step(self, loss: Union[torch.Tensor, float, None], skipped: Optional[torch.Tensor] = None) -> None:
        """A step ended: its loss (a tensor or a float; None when the loop reports losses separately, as the Hugging
        Face callback does), then metrics and snapshots when due. skipped (defer only): the step's device flag "its
        gradients were not finite" (CompiledStep.found_inf), read with the loss. Raises NonFiniteLoss (after emitting
        every row before it) when a loss so far was not finite; deferred, a loss is known one step late (and at once
        before a snapshot of its step or a flush that is asked to settle)."""
        if loss is not None:
            self.add_loss(self.ctl.step, loss, skipped)
        if self.held:
            self.settle(keep_last=True)
        if self.bad is not None:
            self.flush()
        now = self.clock()
        if now - self.last_flush >= self.min_interval_s:
            self.flush(settle=False)
        if (self.snapshots and self.ctl.step % self.settings["importanceEvery"] == 0
                and now - self.last_importance >= self.min_interval_s):
            self.last_importance = now
            snap = self.ctl.importance_async()  # on a GPU: the previous snapshot, copied out while this one was queued
            if snap is not None:
                # No snapshot of a step whose loss is not yet known to be finite. On a GPU the snapshot is an earlier
                # one, whose losses are read by now: no wait (reading the newest loss here drained the GPU before
                # every snapshot); on the CPU it is of this step: its loss is read first.
                if self.held and snap.step >= self.held[0][0]:
                    self.settle()
                    if self.bad is not None:
                        self.flush()
                emit_snapshot(self.rec, snap)

    def add_loss(self, step: int, loss: Union[torch.Tensor, float], skipped: Optional[torch.Tensor] = None) -> None:
        """A loss for the next metrics message (steps must increase). It is read at once (one scalar copy): a
        non-finite loss must end the run at its own step, before a later recomposition or checkpoint; the rows
        before it still go out, then the next after_step or flush raises NonFiniteLoss. With defer and a tensor
        loss it is held instead (settle reads it). Never raises itself (the Hugging Face callback calls it from on_log)."""
        if self.bad is not None:
            return
        if self.defer and isinstance(loss, torch.Tensor):
            flag = torch.zeros_like(loss, dtype=torch.float32) if skipped is None else skipped.to(torch.float32)
            parts = [loss.detach().float().reshape(()), flag.reshape(())]
            lr = self.device_lr()
            if lr is not None and lr.device == loss.device:  # the step's learning rate, in the same copy
                parts.append(lr.detach().float().reshape(()))
            pair = torch.stack(parts)  # a copy of this step's values: the next replay may overwrite loss, flag and lr
            if pair.device.type == "cuda":
                # Queued now, behind this step and before the next is: a read later waits for this step only. (A plain
                # read issued after the next step is queued waits for that one too — stream order — and so kept the
                # GPU without a queued step at every read: 5 % of a compiled RoBERTa-base step on an H200.)
                host = torch.empty(2, dtype=torch.float32, pin_memory=True)
                host.copy_(pair, non_blocking=True)
                done = torch.cuda.Event()
                done.record()
                self.held.append((step, host, done))
            else:
                self.held.append((step, pair, None))
            return
        v = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
        self._add(step, v, self.ctl.last_skipped_step == step)

    def _add(self, step: int, v: float, skipped: bool, lr: Optional[float] = None) -> None:
        if not math.isfinite(v):
            self.bad = NonFiniteLoss(step, v)
            return
        self.losses.append((step, v, skipped, lr))

    def settle(self, keep_last: bool = False) -> None:
        """Reads the held (deferred) losses — all, or all but the newest — in step order; one device → host copy
        each, of a step the GPU has normally finished already. A skipped step is counted in the controller as
        after_backward counts it. Stops at a non-finite loss (self.bad); never raises."""
        n = len(self.held) - (1 if keep_last else 0)
        if n <= 0:
            return
        items, self.held = self.held[:n], self.held[n:]
        for step, t, done in items:
            if self.bad is not None:
                break
            if done is not None:
                done.synchronize()  # this step's copy only (releases the GIL while it waits)
            v, skipped, *lr = t.tolist()
            if skipped and math.isfinite(v):
                self.ctl.skipped_steps += 1
                self.ctl.last_skipped_step = step
            self._add(step, v, bool(skipped), lr[0] if lr else None)
        if self.bad is not None:
            self.held = []

    def flush(self, settle: bool = True) -> None:
        """Emits the rows held back (with settle: the deferred losses read first); then raises NonFiniteLoss if a
        loss after them was not finite."""
        if settle and self.held:
            self.settle()
        now = self.clock()
        if self.losses:
            eps = self.batch_size * len(self.losses) / max(1e-9, now - self.last_flush)
            # each row's own learning rate when it was read with its loss; else one lr() per message
            lr = self.lr() if any(own is None for *_, own in self.losses) else None
            rows = [{"step": step, "loss": v, "lr": lr if own is None else own, "examplesPerSec": eps, **({"nonFiniteGrad": True} if skipped else {})}
                    for step, v, skipped, own in self.losses]
            self.losses = []
            self.rec.emit({"type": "metrics", "rows": rows})
        self.last_flush = now
        if self.bad is not None:
            raise self.bad
