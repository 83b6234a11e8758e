"""What a training step reports (docs/protocol.md): metrics rows and importance snapshots, each at most 10 per second,
with as little work as possible on the training thread — the bench times exactly this class.

Each loss is read when it is added (one scalar: a non-finite loss must stop the run at its own step) — or, with `defer`
(a step replayed from a CUDA graph), one step later, so the host never waits for the step it has just queued; a snapshot's device → host copy is asynchronous
(SRLoRAController.importance_async) and its decoding runs on the recorder's writer thread (EventRecorder.emit's build).
"""
from __future__ import annotations

import math
import os
import time
from typing import Callable, Dict, List, Optional, Tuple, Union

import torch

from .client import EventRecorder
from .compiled import float32_value
from .controller import SRLoRAController
from .snapshot import Snapshot

MIN_INTERVAL_S = 0.1  # the protocol's ≤ 10 metrics messages and ≤ 10 importance snapshots per second

# The named scalars (docs/protocol.md "Named scalars"; one list for both trainers: src/protocol/scalars.ts, held equal
# to test/vectors/scalars.json by both test suites). The unit is the name's suffix.
GRAD_NORM = "grad_norm"  # every row whose gradients were finite
SCALARS = {
    GRAD_NORM: "",
    "process/rss_MiB": "MiB", "process/cpu_pct": "%",  # a CPU run: once per metrics message
    "gpu/allocated_MiB": "MiB", "gpu/reserved_MiB": "MiB", "gpu/peak_MiB": "MiB",  # a CUDA run: once per message
    "gpu/util_pct": "%",  # a CUDA run where NVML answers
}
# What a chart of each is headed with (the dashboard shows the name beside it); the same table's `title`.
SCALAR_TITLES = {
    GRAD_NORM: "Gradient norm",
    "process/rss_MiB": "Process memory (resident)", "process/cpu_pct": "Process CPU",
    "gpu/allocated_MiB": "GPU memory allocated", "gpu/reserved_MiB": "GPU memory reserved", "gpu/peak_MiB": "GPU memory peak",
    "gpu/util_pct": "GPU utilisation",
}
_MIB = 1024.0 * 1024.0


class SystemScalars:
    """The system readings of one metrics message (never per step): on a CUDA device the caching allocator's counters
    (host-side: no device sync) and NVML's utilisation where it answers; else the process's resident memory and its CPU
    time since the previous reading, in % of one core (as the built-in trainer)."""

    def __init__(self, device: Optional[torch.device] = None, clock: Callable[[], float] = time.perf_counter,
                 cpu: Callable[[], float] = time.process_time, rss: Optional[Callable[[], Optional[float]]] = None):
        self.device, self.clock, self.cpu = device, clock, cpu
        self.rss = rss or self._own_rss
        self._proc = None  # psutil.Process() of this process: this instance's, made at its first reading (again after a fork)
        self.nvml = True  # until NVML fails once (no pynvml, no driver): not asked again
        self._nvml_handle = None
        self.last_cpu, self.last_t = cpu(), clock()

    def sample(self) -> Dict[str, float]:
        """{name: finite value} for this moment (a reading that fails or is not finite is left out)."""
        out: Dict[str, float] = {}
        dev = self.device
        if dev is not None and dev.type == "cuda":
            out["gpu/allocated_MiB"] = torch.cuda.memory_allocated(dev) / _MIB
            out["gpu/reserved_MiB"] = torch.cuda.memory_reserved(dev) / _MIB
            out["gpu/peak_MiB"] = torch.cuda.max_memory_allocated(dev) / _MIB
            if self.nvml:
                try:
                    if self._nvml_handle is None:  # nvmlInit once (torch.cuda.utilization inits on every call)
                        self._nvml_handle = torch.cuda._get_pynvml_handler(dev)  # CUDA_VISIBLE_DEVICES mapped to NVML's index
                    import pynvml  # type: ignore
                    out["gpu/util_pct"] = float(pynvml.nvmlDeviceGetUtilizationRates(self._nvml_handle).gpu)
                except Exception:  # noqa: BLE001 - no nvidia-ml-py / NVML here: the other readings still go out
                    self.nvml = False
        else:
            rss = self.rss()
            if rss is not None:
                out["process/rss_MiB"] = rss / _MIB
            c, t = self.cpu(), self.clock()
            if t > self.last_t:
                out["process/cpu_pct"] = max(0.0, (c - self.last_cpu) / (t - self.last_t) * 100.0)
            self.last_cpu, self.last_t = c, t
        return {k: v for k, v in out.items() if math.isfinite(v)}

    def _own_rss(self) -> Optional[float]:
        """This process's resident memory in bytes (psutil when installed, else /proc/self/statm), or None."""
        try:
            import psutil  # type: ignore
            if self._proc is None or self._proc.pid != os.getpid():
                self._proc = psutil.Process()
            return float(self._proc.memory_info().rss)
        except Exception:  # noqa: BLE001
            pass
        try:
            with open("/proc/self/statm") as f:
                return float(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return None


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
                 device_lr: Callable[[], Optional[torch.Tensor]] = lambda: None,
                 system: Optional[SystemScalars] = None):
        """lr(): the learning rate for a metrics row; device_lr(): the same as a device tensor when it is one
        (compiled.device_lr), read with each deferred loss instead of by lr() — which would wait for the GPU.
        system: the readings each metrics message carries on its last row (default: this process's, CPU-style)."""
        self.rec, self.ctl, self.batch_size, self.lr, self.device_lr = rec, ctl, batch_size, lr, device_lr
        self.settings = settings  # live: importanceEvery may change by command
        self.snapshots, self.min_interval_s, self.clock = snapshots, min_interval_s, clock
        # (step, loss, its gradients were not finite, its learning rate when read with the loss, else None)
        self.losses: List[Tuple[int, float, bool, Optional[float]]] = []
        self.grad_norms: Dict[int, float] = {}  # step → its finite gradient norm (grad_norm), for the rows in losses
        self.system = system if system is not None else SystemScalars()
        # defer (train.py, a step replayed from a CUDA graph): a loss is read one step late, so the host never waits
        # for the step it has just queued; held here as [loss, skipped] device tensors until settle() reads them.
        self.defer = False
        # (step, [loss, skipped(, lr)(, grad norm)], its copy's event, whether it holds lr, whether it holds a grad norm)
        self.held: List[Tuple[int, torch.Tensor, Optional["torch.cuda.Event"], bool, bool]] = []
        self.bad: Optional[NonFiniteLoss] = None  # a non-finite loss seen: the run fails at the next after_step/flush
        self.last_flush, self.last_importance = clock(), -min_interval_s  # the first snapshot at once
        self.snapshot_step = -1  # the step of the last snapshot emitted (set by emit_snapshot only)

    def after_step(self, loss: Union[torch.Tensor, float, None], skipped: Optional[torch.Tensor] = None,
                   grad_norm: Optional[torch.Tensor] = None) -> None:
        """A step ended: its loss (a tensor or a float; None when the loop reports losses separately, as the Hugging
        Face callback does), then metrics and snapshots when due. skipped (defer only): the step's device flag "its
        gradients were not finite" (CompiledStep.found_inf), read with the loss. Raises NonFiniteLoss (after emitting
        every row before it) when a loss so far was not finite; deferred, a loss is known one step late (and at once
        before a snapshot of its step or a flush that is asked to settle). grad_norm: the step's gradient norm as a
        device tensor (CompiledStep.grad_norm), read with the loss; without it the controller's (read where its
        finite check reads the gradients: SRLoRAController.last_grad_norm)."""
        if loss is not None:
            self.add_loss(self.ctl.step, loss, skipped, grad_norm)
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
                self.emit_snapshot(snap)

    def emit_snapshot(self, snap: Snapshot) -> None:
        """Emits an importance snapshot (decoded on the writer thread) and records its step as the latest out — the
        one owner of snapshot_step (a pause emits one only when this step has none yet)."""
        emit_snapshot(self.rec, snap)
        self.snapshot_step = snap.step

    def add_loss(self, step: int, loss: Union[torch.Tensor, float], skipped: Optional[torch.Tensor] = None,
                 grad_norm: Optional[torch.Tensor] = None) -> None:
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
            has_lr = lr is not None and lr.device == loss.device
            if has_lr:  # the step's learning rate, in the same copy
                parts.append(lr.detach().float().reshape(()))
            has_gn = grad_norm is not None and grad_norm.device == loss.device
            if has_gn:  # the step's gradient norm (computed inside the graph), in the same copy
                parts.append(grad_norm.detach().float().reshape(()))
            pair = torch.stack(parts)  # a copy of this step's values: the next replay may overwrite loss, flag, lr and norm
            if pair.device.type == "cuda":
                # Queued now, behind this step and before the next is: a read later waits for this step only. (A plain
                # read issued after the next step is queued waits for that one too — stream order — and so kept the
                # GPU without a queued step at every read: 5 % of a compiled RoBERTa-base step on an H200.)
                host = torch.empty(len(parts), dtype=torch.float32, pin_memory=True)
                host.copy_(pair, non_blocking=True)
                done = torch.cuda.Event()
                done.record()
                self.held.append((step, host, done, has_lr, has_gn))
            else:
                self.held.append((step, pair, None, has_lr, has_gn))
            return
        if isinstance(loss, torch.Tensor) and grad_norm is not None and grad_norm.device == loss.device:
            v, gn = torch.stack([loss.detach().float().reshape(()), grad_norm.detach().float().reshape(())]).tolist()  # one read
        else:
            v = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
            own = getattr(self.ctl, "last_grad_norm", None)  # (step, norm) read by the controller's finite check
            gn = own[1] if own is not None and own[0] == step else None
        skipped_now = self.ctl.last_skipped_step == step
        self._add(step, v, skipped_now, gn=None if skipped_now else gn)

    def _add(self, step: int, v: float, skipped: bool, lr: Optional[float] = None, gn: Optional[float] = None) -> None:
        if not math.isfinite(v):
            self.bad = NonFiniteLoss(step, v)
            return
        self.losses.append((step, v, skipped, lr))
        if gn is not None and not skipped and math.isfinite(gn):
            self.grad_norms[step] = gn

    def settle(self, keep_last: bool = False) -> None:
        """Reads the held (deferred) losses — all, or all but the newest — in step order; one device → host copy
        each, of a step the GPU has normally finished already. A skipped step is counted in the controller as
        after_backward counts it. Stops at a non-finite loss (self.bad); never raises."""
        n = len(self.held) - (1 if keep_last else 0)
        if n <= 0:
            return
        items, self.held = self.held[:n], self.held[n:]
        for step, t, done, has_lr, has_gn in items:
            if self.bad is not None:
                break
            if done is not None:
                done.synchronize()  # this step's copy only (releases the GIL while it waits)
            v, skipped, *rest = t.tolist()
            if skipped and math.isfinite(v):
                self.ctl.skipped_steps += 1
                self.ctl.last_skipped_step = step
            self._add(step, v, bool(skipped), float32_value(rest[0]) if has_lr else None, rest[-1] if has_gn else None)
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
            rows = [{"step": step, "loss": v, "lr": lr if own is None else own, "examplesPerSec": eps, **({"nonFiniteGrad": True} if skipped else {}),
                     **({"scalars": {GRAD_NORM: self.grad_norms[step]}} if step in self.grad_norms else {})}
                    for step, v, skipped, own in self.losses]
            # the system readings once per message, on its last row (a few host calls, not one per step)
            rows[-1]["scalars"] = {**rows[-1].get("scalars", {}), **self.system.sample()}
            self.losses, self.grad_norms = [], {}
            self.rec.emit({"type": "metrics", "rows": rows})
        self.last_flush = now
        if self.bad is not None:
            raise self.bad
