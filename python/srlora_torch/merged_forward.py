"""The adapted layer's forward with the adapter merged into the weight for the step: y = x·(W + s·B·A)ᵀ + b.

Why: under bf16 autocast with many tokens per step (tokens ≫ r), the split form y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ writes a
tokens × out tensor for the adapter's output, then adds it to y, and its backward writes a tokens × in tensor
(dy·B·A) and adds it to dx: four full-size memory passes per layer in each direction, for r = 8 columns of work.
Merged, the adapter costs one out × r × in product and the cast autocast makes of W anyway (fused with it), and the
backward one dx GEMM with the merged weight. The factors' gradients are the split form's, computed from dy and x:
    dA = s·(dy·B)ᵀ·x   (r × in),   dB = s·dyᵀ·(x·Aᵀ)   (out × r),   dx = dy·(W + s·B·A).
On an H200 (RoBERTa-base shape, batch 128 × 128, compiled and graph-captured) this is the difference measured by
tools/issue18_big.py (variants cur and split); see docs/PERFORMANCE.md. Used while torch.compile traces (the
compiled step, the HF Trainer's torch_compile) by default; eagerly the split form runs (use_merged).

Precision: used only where autocast already rounds both W and the factors to half precision before the product
(`use_merged`), so the forward differs from the split form by one rounding of W + s·B·A instead of two of W and of
B, A — the same order as the split form's own. Without autocast (float32 runs, the golden vectors) the split form
runs unchanged.
"""
from __future__ import annotations

import torch
from torch import nn

HALF = (torch.bfloat16, torch.float16)


def use_merged(x: torch.Tensor, W: torch.Tensor, policy) -> bool:
    """Whether an adapted layer runs merged: autocast (bf16/fp16) is on for x's device, x and W are not float64 (which
    autocast leaves alone), x has at least 2·in·out/(in + out) rows (where merging's out × in passes cost less than the
    split form's tokens × (in + out) ones, with a factor 2 of margin: an estimate of memory traffic, not a measured
    break-even; what is measured is RoBERTa-base's shapes at 4,096 and 16,384 tokens), and `policy` allows it: "auto" (the default) only while torch.compile traces — eagerly the autograd
    Function's Python costs more host time per layer than it saves on a host-bound step (bench run 10: SRLoRA eager ÷
    PEFT eager 1.077 merged vs 1.014 split in run 9) — True also eagerly, False never."""
    if policy is False or (policy == "auto" and not torch.compiler.is_compiling()):
        return False
    dev = x.device.type
    if not torch.is_autocast_enabled(dev) or torch.get_autocast_dtype(dev) not in HALF:
        return False
    if x.dtype == torch.float64 or W.dtype == torch.float64:
        return False
    out_f, in_f = W.shape
    return x.numel() // max(1, in_f) * (in_f + out_f) >= 2 * in_f * out_f


def _merged_weight(W, A, B, s, cdt):
    """(W + s·B·A) in float32 (or A's dtype), then cast once to the compute dtype cdt."""
    return (W.to(A.dtype) + s * (B @ A)).to(cdt)


class MergedLoRALinear(torch.autograd.Function):
    """y = x·(W + s·B·A)ᵀ + b in autocast's dtype; gradients for x, A and B only (W and b are frozen buffers).

    Shapes: x (..., in), W (out, in), b (out,) or None, A (r, in), B (out, r); s a Python float; cdt the compute
    dtype (autocast's, where use_merged holds). Returns (..., out) in cdt; dx in x's dtype.
    Memory: the merged weight is kept for backward only where W is not already in cdt — there autocast's own cast of
    W (a new cdt tensor the split form keeps too) is what it replaces; with a half-precision base it is recomputed in
    backward (one out × r × in product and one out × in pass), so it costs no memory the split form does not.
    Raises RuntimeError in a backward that builds a graph (create_graph=True: higher-order gradients, gradient
    penalties): its backward is not differentiable; set merged_forward = False on the adapted layers for those."""

    @staticmethod
    def forward(ctx, x, W, bias, A, B, s: float, cdt: torch.dtype):
        ctx.x_dtype = x.dtype
        with torch.autocast(x.device.type, enabled=False):
            Wc = _merged_weight(W, A, B, s, cdt)
            xc = x.to(cdt)
            y = nn.functional.linear(xc, Wc, None if bias is None else bias.to(cdt))
            v = nn.functional.linear(xc, A.to(cdt))  # tokens × r, for dB
        ctx.s, ctx.cdt, ctx.a_dtype = s, cdt, A.dtype
        ctx.keep = W.dtype != cdt
        ctx.save_for_backward(xc, Wc if ctx.keep else W, A, B, v)
        return y

    @staticmethod
    def backward(ctx, dy):
        if torch.is_grad_enabled():
            raise RuntimeError("SRLoRA's merged adapter forward has no higher-order gradients (create_graph=True); "
                               "set merged_forward = False on the adapted layers (srlora_torch.layer.SRLoRALinear) for them")
        xc, Wk, A, B, v = ctx.saved_tensors
        s = ctx.s
        with torch.autocast(dy.device.type, enabled=False):
            dy = dy.to(ctx.cdt)
            if ctx.needs_input_grad[0]:
                Wc = Wk if ctx.keep else _merged_weight(Wk, A, B, s, ctx.cdt)
                dx = (dy @ Wc).to(ctx.x_dtype)
            else:
                dx = None
            d2, x2, v2 = dy.reshape(-1, dy.shape[-1]), xc.reshape(-1, xc.shape[-1]), v.reshape(-1, v.shape[-1])
            u = d2 @ B.to(d2.dtype)  # tokens × r
            dA = (u.t() @ x2).to(ctx.a_dtype) * s
            dB = (d2.t() @ v2).to(ctx.a_dtype) * s
        return dx, None, None, dA, dB, None, None
