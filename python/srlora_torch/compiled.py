"""The training step close to the hardware: forward, backward, SRLoRA's importance update and the optimiser step run
as ONE replayed CUDA graph (config `compile`: "auto" | "off" | "max").

An eager step of a RoBERTa-base-sized model is bound by the host launching ~2,000 kernels (docs/PERFORMANCE.md: ~13
ms of GPU work behind ~60 ms of wall time). Here the model's loss is compiled by torch.compile (Inductor fuses the
elementwise work; its own CUDA graphs are off) and the whole step — zero the gradients, forward, backward, the finite
check, the importance EMAs and ages, fused AdamW — is captured once with torch.cuda.graph and replayed: one launch a
step. What lives outside the graph stays valid because it changes tensors in place, keeping their storage:

- recompositions (recompose.py copies the new W, A, B, directions, ages, EMAs and the zeroed moments into the
  existing tensors), moment resets, τ and γ (host-side values read only at a recomposition);
- the learning rate is a 0-dim device tensor read by the fused AdamW kernel: `set_lr` fills it; a param group's "lr"
  replaced by a number (as a steering command does) is noticed at the next step and copied into the tensor;
- the batch is copied into static input tensors.

Anything that would invalidate the graph — a batch of a new shape or dtype, a changed weight decay / betas / eps, a
parameter's storage replaced — re-captures explicitly at the next step and says why through `log`. A step whose
gradients are not all finite changes nothing (as GradScaler skips): the graph computes the flag on the device, fused
AdamW takes it as `found_inf`, the importance EMAs and ages are masked with it; `skipped()` reads it.

Under torchrun (data parallel) the step is two graphs with ONE eager all-reduce (average) of the flat gradient buffer
between them — forward + backward; then the finite check, importance and AdamW — and no DDP wrapper (`reduce`).

"auto": compile and capture on CUDA, plain eager on the CPU. "max": Inductor's max-autotune (longer warm-up) on CUDA;
on the CPU, torch.compile without a graph (for tests). "off": the eager step.
"""
from __future__ import annotations

import struct
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from .controller import ema_operands

MODES = ("auto", "off", "max")


def resolve_mode(mode: str, device: torch.device) -> str:
    """The step this device runs for config `compile`: "off" (eager), "auto" or "max". Raises ValueError on a value
    not in MODES."""
    if mode not in MODES:
        raise ValueError(f"compile: expected auto | off | max, got {str(mode)[:40]!r}")
    if mode == "off" or (mode == "auto" and torch.device(device).type != "cuda"):
        return "off"
    return mode


_F32 = struct.Struct("f")


def float32_value(x: float) -> float:
    """The shortest decimal that is the same float32 as x: a learning rate held as a float32 tensor (the compiled
    step's) reads back as 0.003000000026077032 for 0.003; rows and the dashboard show 0.003, the value it holds.
    Called for every deferred metrics row: plain struct packing, no tensors (~1 µs)."""
    f = _F32.unpack(_F32.pack(x))[0]
    for digits in range(6, 10):
        v = float(f"{x:.{digits}g}")
        if _F32.unpack(_F32.pack(v))[0] == f:
            return v
    return x


def get_lr(opt: Optional[torch.optim.Optimizer]) -> float:
    """The first param group's learning rate as a float (a tensor lr is read back: one device → host copy, its
    float32 value written as its shortest decimal)."""
    if opt is None:
        return 0.0
    lr = opt.param_groups[0]["lr"]
    return float32_value(lr.item()) if torch.is_tensor(lr) else float(lr)


def device_lr(opt: Optional[torch.optim.Optimizer]) -> Optional[torch.Tensor]:
    """The first param group's learning rate when it is a tensor (the compiled step's, read by the fused AdamW kernel
    on the device), else None. Telemetry reads it with each deferred loss — one copy for both, a step late — since a
    read of its own (get_lr's .item()) waits for every queued step: a drained GPU at each metrics message."""
    if opt is None:
        return None
    lr = opt.param_groups[0]["lr"]
    return lr if torch.is_tensor(lr) else None


def set_lr(opt: torch.optim.Optimizer, value: float) -> None:
    """Sets every param group's learning rate, in place when it is a tensor (a captured step reads that storage)."""
    for g in opt.param_groups:
        if torch.is_tensor(g["lr"]):
            g["lr"].fill_(float(value))
        else:
            g["lr"] = float(value)


FUSED_SDPA = "srlora_sdpa"


def _fused_sdpa_mask(*args, **kw):
    """transformers' sdpa_mask with the two things that push SDPA off its fused GPU kernels under torch.compile or a
    CUDA graph capture removed (docs/PERFORMANCE.md, "Compiled, graph-captured step"):
    - with no padding mask, full attention needs no mask at all. transformers skips it only when it can look at the
      mask's values, i.e. not while tracing: under torch.compile (or a CUDA graph capture) it materialises an
      all-True (B, 1, T, T) mask. Here the skip is decided from what is known while tracing too (no padding mask
      given, no local window): the same result eager gets, so flash / cuDNN attention stay usable;
    - a materialised mask whose last dimension has stride 0 (expanded) is refused by every fused GPU kernel
      (sdp_utils: "GPU backends require attn_mask's last dimension to have stride 1"), which leaves SDPA's math
      path (float32 matmuls, softmax and dropout as separate kernels): made contiguous (B·T·T bytes)."""
    from transformers.masking_utils import sdpa_mask
    size, kv_len = kw.get("local_size"), kw.get("kv_length")
    if kw.get("allow_is_bidirectional_skip") and kw.get("attention_mask") is None and (size is None or (kv_len is not None and kv_len < size)):
        return None
    mask = sdpa_mask(*args, **kw)
    if torch.is_tensor(mask) and mask.dim() > 0 and mask.stride(-1) != 1:
        mask = mask.contiguous()
    return mask


def fused_sdpa(model) -> bool:
    """Switches a Hugging Face model that runs attention through SDPA (attn_implementation "sdpa") to "srlora_sdpa":
    transformers' own SDPA attention with _fused_sdpa_mask, so that under torch.compile attention stays on the fused
    (flash / cuDNN / memory-efficient) kernels as it does in eager mode; same results (masks equal in value).
    Returns whether the model was switched (False: not a transformers model, or another attention implementation)."""
    cfg = getattr(model, "config", None)
    if cfg is None or getattr(cfg, "_attn_implementation", None) not in ("sdpa", FUSED_SDPA):
        return False
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    AttentionInterface.register(FUSED_SDPA, sdpa_attention_forward)
    AttentionMaskInterface.register(FUSED_SDPA, _fused_sdpa_mask)
    if cfg._attn_implementation != FUSED_SDPA:
        model.set_attn_implementation(FUSED_SDPA)
    return model.config._attn_implementation == FUSED_SDPA


@torch.no_grad()
def masked_importance_update(layers, ok: torch.Tensor) -> None:
    """SRLoRAController.after_backward's update (Ī ← β1·Ī + (1−β1)·|w·g|, Ū ← β2·Ū + (1−β2)·|w·g − Ī|, age += 1),
    written as Ī ← Ī + ok·(1−β1)·(|w·g| − Ī) so that a device flag `ok` (0-dim float, 1 = finite gradients) can skip
    it without a host read; the gradients must already be finite (nan_to_num'd) where ok is 0."""
    ws, gs, Is, Us = ema_operands(layers)
    first = next(iter(layers.values()), None)
    if ws:
        b1, b2 = first.beta1, first.beta2
        inst = torch._foreach_mul(ws, gs)
        torch._foreach_abs_(inst)
        inst = [t if t.dtype == torch.float32 else t.float() for t in inst]
        d = torch._foreach_sub(inst, Is)
        torch._foreach_mul_(d, ok * (1 - b1))
        torch._foreach_add_(Is, d)
        diff = torch._foreach_sub(inst, Is)
        torch._foreach_abs_(diff)
        torch._foreach_sub_(diff, Us)
        torch._foreach_mul_(diff, ok * (1 - b2))
        torch._foreach_add_(Us, diff)
    by_len: Dict[tuple, List[torch.Tensor]] = {}
    for l in layers.values():
        by_len.setdefault((l.age.shape, l.age.dtype), []).append(l.age)
    for (shape, dt), ages in by_len.items():  # a tensor operand (not a 0-dim "scalar" one, which is read on the host)
        step = ok.to(dt).expand(shape).contiguous()
        torch._foreach_add_(ages, [step] * len(ages))


class CompiledStep:
    """step(*batch) → this step's loss (a fresh 0-dim device tensor): one whole training step, compiled and (on CUDA)
    replayed from one CUDA graph. Replaces the loop's `loss = …; loss.backward(); ctl.after_backward(); opt.step();
    opt.zero_grad()`; the caller still calls ctl.after_step() (recompositions, commands) after it.

    loss_fn(*batch) computes the loss from the batch's tensors (autocast inside it must pass cache_enabled=False).
    optimizer: torch.optim.Adam or AdamW; it is switched, in place, to the fused kernel (capturable, lr a device
    tensor). ctl: the SRLoRAController whose importance and ages the step updates (None: plain LoRA/PEFT).
    mode: "auto" (torch.compile, default Inductor), "max" (max-autotune-no-cudagraphs) or "capture" (no
    torch.compile: the eager kernels, captured). capture: replay a CUDA graph (default: on CUDA). warmup_steps: real
    steps run eagerly (compiling) before the capture. log(text): where re-captures are said. backend: torch.compile's
    (a test or `bench --toy` on the CPU may take "aot_eager", which skips Inductor's code generation).
    reduce(flats): data parallelism (torchrun, distributed.Lockstep.average_): called after backward with the flat
    gradient buffers (one per dtype; every trained parameter's .grad is a view of one), it must leave in them the
    average over every rank, in place. It runs eagerly between two replayed graphs (forward + backward; then the
    finite check, importance and AdamW): one all-reduce per buffer and step instead of DDP's bucketed hooks, so the
    finite check, the importance EMAs and the update see the global batch's gradients, identical on every rank.
    Raises ValueError for an optimiser the graph cannot hold (SGD, a non-Adam class)."""

    def __init__(self, loss_fn: Callable[..., torch.Tensor], optimizer: torch.optim.Optimizer, ctl=None, *,
                 mode: str = "auto", capture: Optional[bool] = None, warmup_steps: int = 2,
                 log: Callable[[str], None] = lambda text: None, backend: str = "inductor",
                 reduce: Optional[Callable[[List[torch.Tensor]], None]] = None):
        why = self.unsupported(optimizer)
        if why:
            raise ValueError(why)
        if mode not in ("auto", "max", "capture"):
            raise ValueError(f"mode: expected auto | max | capture, got {mode!r}")
        self.opt, self.ctl, self.mode, self.log, self.reduce = optimizer, ctl, mode, log, reduce
        self.params: List[torch.Tensor] = [p for g in optimizer.param_groups for p in g["params"] if p.requires_grad]
        if not self.params:
            raise ValueError("the optimizer holds no trainable parameter")
        self.device = self.params[0].device
        self.capture = (self.device.type == "cuda") if capture is None else capture
        self.warmup_steps = max(1, warmup_steps) if self.capture else 0
        if mode == "capture":
            self.fn = loss_fn
        else:
            self.fn = torch.compile(loss_fn, dynamic=False, backend=backend,
                                    **({"mode": "max-autotune-no-cudagraphs"} if mode == "max" and backend == "inductor" else {}))
        # the fused kernel: one launch for every parameter, capturable, lr a device tensor
        self._lrs: List[torch.Tensor] = []
        for g in optimizer.param_groups:
            g["fused"], g["foreach"], g["capturable"] = True, False, self.capture
            lr = g["lr"]
            g["lr"] = lr if torch.is_tensor(lr) else torch.tensor(float(lr), dtype=torch.float32, device=self.device)
            self._lrs.append(g["lr"])
        optimizer.defaults.update(fused=True, foreach=False, capturable=self.capture)
        for p in self.params:  # moments loaded from a checkpoint keep their step on the CPU; the fused kernel wants it here
            st = optimizer.state.get(p)
            if st and torch.is_tensor(st.get("step")) and st["step"].device != p.device:
                st["step"] = st["step"].to(p.device, torch.float32)
        self.found_inf = torch.zeros((), dtype=torch.float32, device=self.device)
        # the step's gradient norm (the rows' grad_norm scalar): written inside the graph, read with the deferred loss
        self.grad_norm = torch.zeros((), dtype=torch.float32, device=self.device)
        optimizer.found_inf = self.found_inf  # Adam.step hands it to the fused kernel, which then skips the update
        # Gradients live in one flat buffer per dtype, assigned before the first backward: backward accumulates into
        # them in place (the graph's addresses), the finite check and nan_to_num are one kernel each.
        self.flats: List[torch.Tensor] = []
        by_dtype: Dict[torch.dtype, List[torch.Tensor]] = {}
        for p in self.params:
            by_dtype.setdefault(p.dtype, []).append(p)
        for dt, ps in by_dtype.items():
            flat = torch.zeros(sum(p.numel() for p in ps), dtype=dt, device=self.device)
            at = 0
            for p in ps:  # in the parameter's own layout (a transposed A stays transposed): the fused kernel walks both alike
                p.grad = flat[at: at + p.numel()].as_strided(p.shape, torch.empty_like(p, device="meta").stride())
                at += p.numel()
            self.flats.append(flat)
        self.static: Optional[List[torch.Tensor]] = None
        self.graph: Optional["torch.cuda.CUDAGraph"] = None
        self.graph_update: Optional["torch.cuda.CUDAGraph"] = None  # with reduce: the second graph (after the all-reduce)
        self.static_loss: Optional[torch.Tensor] = None
        self.warm = 0
        self.captures = 0
        self._hyper = self._hyperparameters()
        self._grads = [p.grad for p in self.params]
        self.warmup_s: Optional[float] = None  # first call → graph ready (compile + warm-up steps + capture)
        self._t_first: Optional[float] = None

    @staticmethod
    def unsupported(optimizer: torch.optim.Optimizer) -> Optional[str]:
        """Why this optimiser (or this torch) cannot run as a compiled step, or None when it can."""
        if not isinstance(optimizer, torch.optim.Adam):
            return f"the compiled step needs optimizer adam or adamw (fused AdamW), not {type(optimizer).__name__}"
        if not hasattr(torch, "compile") or not hasattr(torch, "_fused_adamw_"):
            return f"the compiled step needs torch ≥ 2.4 (torch.compile, fused AdamW), this is {torch.__version__}"
        return None

    def _hyperparameters(self) -> tuple:
        return tuple((g["weight_decay"], tuple(map(float, g["betas"])), g["eps"], g["amsgrad"], g.get("maximize", False))
                     for g in self.opt.param_groups)

    def invalidate(self, reason: str) -> None:
        """Drops the captured graph: the next step warms up and captures again (and logs `reason`)."""
        if self.graph is not None:
            self.log(f"compile: re-capturing the training step: {reason}")
        self.graph, self.graph_update, self.static_loss, self.warm = None, None, None, 0

    def _check(self, batch: Sequence[torch.Tensor]) -> None:
        for g, lr in zip(self.opt.param_groups, self._lrs):
            if g["lr"] is not lr:  # replaced by a number (a steering command): into the tensor the graph reads
                lr.fill_(float(g["lr"].item() if torch.is_tensor(g["lr"]) else g["lr"]))
                g["lr"] = lr
        hyper = self._hyperparameters()
        if hyper != self._hyper:
            self._hyper = hyper
            self.invalidate("optimizer hyperparameters changed")
        if any(p.grad is not g for p, g in zip(self.params, self._grads)):  # someone's zero_grad(set_to_none=True)
            for p, g in zip(self.params, self._grads):
                p.grad = g
        if self.static is None or len(batch) != len(self.static) or any(
                b.shape != s.shape or b.dtype != s.dtype or b.device != s.device for b, s in zip(batch, self.static)):
            if self.static is not None:
                self.invalidate(f"batch shapes changed to {[tuple(b.shape) for b in batch]}")
            self.static = [b.detach().clone() for b in batch]
        else:
            for s, b in zip(self.static, batch):
                s.copy_(b, non_blocking=True)

    def _forward_backward(self) -> torch.Tensor:
        for f in self.flats:
            f.zero_()
        loss = self.fn(*self.static)
        loss.backward()
        return loss.detach()

    def _update(self) -> None:
        """The finite check, the importance EMAs and ages, AdamW: from the (all-reduced) gradients in self.flats."""
        with torch.no_grad():
            finite = torch.isfinite(self.flats[0]).all()
            for f in self.flats[1:]:
                finite = finite & torch.isfinite(f).all()
            self.found_inf.copy_(~finite)
            # one norm per flat buffer (float32 accumulation), before nan_to_num: not finite when the check fails
            norms = [torch.linalg.vector_norm(f, dtype=torch.float32) for f in self.flats]
            self.grad_norm.copy_(norms[0] if len(norms) == 1 else torch.linalg.vector_norm(torch.stack(norms)))
            for f in self.flats:
                torch.nan_to_num_(f, nan=0.0, posinf=0.0, neginf=0.0)
            if self.ctl is not None:
                masked_importance_update(self.ctl.layers, finite.float())
        self.opt.step()

    def _body(self) -> torch.Tensor:
        loss = self._forward_backward()
        if self.reduce is not None:
            self.reduce(self.flats)
        self._update()
        return loss

    def __call__(self, *batch: torch.Tensor) -> torch.Tensor:
        if self._t_first is None:
            self._t_first = time.perf_counter()
        self._check(batch)
        if not self.capture:
            return self._body().clone()
        if self.graph is None and self.warm < self.warmup_steps:
            side = torch.cuda.Stream(self.device)  # warm-up off the default stream, as capture requires
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                loss = self._body().clone()
            torch.cuda.current_stream(self.device).wait_stream(side)
            self.warm += 1
            return loss
        if self.graph is None:
            try:
                self._capture()
            except Exception as e:  # noqa: BLE001 - nothing ran during the capture: this step runs without a graph
                self.log(f"compile: capturing the step failed, it runs without a CUDA graph from now on ({type(e).__name__}: {str(e)[:300]})")
                self.capture, self.graph, self.graph_update = False, None, None
                torch.cuda.synchronize(self.device)
                return self._body().clone()
        self.graph.replay()
        if self.graph_update is not None:  # data parallel: the gradients averaged over the ranks, between the graphs
            self.reduce(self.flats)
            self.graph_update.replay()
        if self.warmup_s is None:
            torch.cuda.synchronize(self.device)
            self.warmup_s = time.perf_counter() - self._t_first
        return self.static_loss.clone()

    def _capture(self) -> None:
        t0 = time.perf_counter()
        torch.cuda.synchronize(self.device)
        graph = torch.cuda.CUDAGraph()
        if self.reduce is None:
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                self.static_loss = self._body()
            update = None
        else:  # the collective stays out of the graphs: issued eagerly between their replays (NCCL, its own stream)
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                self.static_loss = self._forward_backward()
            update = torch.cuda.CUDAGraph()
            with torch.cuda.graph(update, capture_error_mode="thread_local"):
                self._update()
        self.graph, self.graph_update = graph, update
        self.captures += 1
        self.log(f"compile: the training step captured as {'one CUDA graph' if update is None else 'two CUDA graphs around the gradient all-reduce'} "
                 f"({self.mode}, capture {self.captures}, {(time.perf_counter() - t0) * 1000:.0f} ms)")

    def skipped(self) -> bool:
        """Whether the last step's gradients were not all finite (its update, importance and ages skipped); one
        device → host read."""
        return bool(self.found_inf.item())
