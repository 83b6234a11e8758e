"""The adapted layer's forward with the adapter merged into the weight for the step: y = x·(W + s·B·A)ᵀ + b.

Why: under bf16 autocast with many tokens per step (tokens ≫ r), the split form y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ writes a
tokens × out tensor for the adapter's output, then adds it to y, and its backward writes a tokens × in tensor
(dy·B·A) and adds it to dx: four full-size memory passes per layer in each direction, for r = 8 columns of work.
Merged, the adapter costs one out × r × in product and the cast autocast makes of W anyway (fused with it), and the
backward one dx GEMM with the merged weight. The factors' gradients are the split form's, computed from dy and x:
    dA = s·(dy·B)ᵀ·x   (r × in),   dB = s·dyᵀ·(x·Aᵀ)   (out × r),   dx = dy·(W + s·B·A).
On an H200 (RoBERTa-base shape, batch 128 × 128, compiled and graph-captured) this is the difference measured by
tools/issue18_big.py (variants cur and split); see docs/PERFORMANCE.md.

Precision: used only where autocast already rounds both W and the factors to half precision before the product
(`use_merged`), so the forward differs from the split form by one rounding of W + s·B·A instead of two of W and of
B, A — the same order as the split form's own. Without autocast (float32 runs, the golden vectors) the split form
runs unchanged.
"""
from __future__ import annotations

import torch
from torch import nn

# tokens per step from which merging pays: below it the out × in merged weight costs more than the full-size passes
# it saves (out × in versus tokens × (out + in) elements, with margin for the extra product)
MIN_TOKENS = 1024


def use_merged(x: torch.Tensor, A: torch.Tensor) -> bool:
    """True when autocast (bf16/fp16) is on for x's device and x has at least MIN_TOKENS rows of A's width."""
    dev = x.device.type
    if not torch.is_autocast_enabled(dev) or torch.get_autocast_dtype(dev) not in (torch.bfloat16, torch.float16):
        return False
    return x.numel() // max(1, A.shape[1]) >= MIN_TOKENS


class MergedLoRALinear(torch.autograd.Function):
    """y = x·(W + s·B·A)ᵀ + b in autocast's dtype; gradients for x, A and B only (W and b are frozen buffers).

    Shapes: x (..., in), W (out, in), b (out,) or None, A (r, in), B (out, r); s a Python float; cdt the compute
    dtype (autocast's, where use_merged(x, A) holds). Returns (..., out) in cdt; dx in x's dtype."""

    @staticmethod
    def forward(ctx, x, W, bias, A, B, s: float, cdt: torch.dtype):
        ctx.x_dtype = x.dtype
        with torch.autocast(x.device.type, enabled=False):
            # the merged weight in float32, then the one cast autocast would have made of W
            Wc = (W.to(A.dtype) + s * (B @ A)).to(cdt)
            xc = x.to(cdt)
            y = nn.functional.linear(xc, Wc, None if bias is None else bias.to(cdt))
            v = nn.functional.linear(xc, A.to(cdt))  # tokens × r, for dB
        ctx.s = s
        ctx.save_for_backward(xc, Wc, B, v)
        ctx.a_dtype = A.dtype
        return y

    @staticmethod
    def backward(ctx, dy):
        xc, Wc, B, v = ctx.saved_tensors
        s = ctx.s
        with torch.autocast(dy.device.type, enabled=False):
            dy = dy.to(Wc.dtype)
            dx = (dy @ Wc).to(ctx.x_dtype) if ctx.needs_input_grad[0] else None
            d2, x2, v2 = dy.reshape(-1, dy.shape[-1]), xc.reshape(-1, xc.shape[-1]), v.reshape(-1, v.shape[-1])
            u = d2 @ B.to(d2.dtype)  # tokens × r
            dA = (u.t() @ x2).to(ctx.a_dtype) * s
            dB = (d2.t() @ v2).to(ctx.a_dtype) * s
        return dx, None, None, dA, dB, None, None
