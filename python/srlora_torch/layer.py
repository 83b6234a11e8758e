"""SRLoRALinear: an nn.Linear with a frozen (recomposed) weight and trainable A (r × in), B (out × r).
(The per-step importance update of all layers is one fused pass in SRLoRAController.after_backward; recomposition,
batched over layers of one shape, is recompose.py.)

forward: y = x Wᵀ + s · (x Aᵀ) Bᵀ + b, s = alpha / r. Methods: lora (A ~ Kaiming-uniform, B = 0), pissa (SVD init),
srlora (SVD init + recomposition). Importance EMAs (AdaLoRA), ages and the direction bookkeeping live on the device:
the per-step update is a handful of elementwise kernels with no host synchronisation.
"""
from __future__ import annotations

import math
import time
from typing import Optional, Tuple

import torch
from torch import nn

from .merged_forward import MergedLoRALinear, use_merged


def _sign_convention(U: torch.Tensor, V: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Flip each pair so the largest-|·| entry of u is positive (first such entry on a tie)."""
    idx = U.abs().argmax(dim=0)  # torch returns the first maximal index
    signs = torch.sign(U.gather(0, idx.unsqueeze(0))).squeeze(0)
    signs[signs == 0] = 1
    return U * signs, V * signs


def top_svd(W: torch.Tensor, k: int, exact_max_dim: int = 1024) -> dict:
    """Top-k SVD of W (out × in) in float64 (exact) or by torch.svd_lowrank for large layers, with its residual."""
    t0 = time.perf_counter()
    W64 = W.detach().to(torch.float64)
    if min(W.shape) <= exact_max_dim:
        U, S, Vh = torch.linalg.svd(W64, full_matrices=False)
        U, S, V, method = U[:, :k], S[:k], Vh[:k].T, "exact"
    else:
        U, S, V = torch.svd_lowrank(W64, q=min(min(W.shape), k + max(10, k // 2)), niter=6)
        U, S, V, method = U[:, :k], S[:k], V[:, :k], "randomized"
    U, V = _sign_convention(U, V)
    residual = ((W64 @ V - U * S).norm(dim=0) / S.clamp_min(1e-30)).max().item()
    return {"U": U, "S": S, "V": V, "method": method, "residual": residual, "ms": (time.perf_counter() - t0) * 1000}


class SRLoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, r: int, alpha: float, r_target: int, method: str = "srlora",
                 beta1: float = 0.85, beta2: float = 0.85, track_importance: Optional[bool] = None,
                 generator: Optional[torch.Generator] = None, exact_svd_max_dim: int = 1024):
        super().__init__()
        out_f, in_f = base.weight.shape
        if method not in ("lora", "pissa", "srlora"):
            raise ValueError(f"method must be lora, pissa or srlora, got {method!r}")
        if r > min(out_f, in_f) and method != "lora":
            raise ValueError(f"r={r} exceeds min(out, in)={min(out_f, in_f)}, the directions {method} can initialise from")
        self.method, self.r, self.s = method, r, alpha / r
        # merged_forward.py: "auto" = merged under torch.compile with half-precision autocast and enough tokens;
        # True = also eagerly; False = always the split form (PEFT's)
        self.merged_forward = "auto"
        self.in_features, self.out_features = in_f, out_f
        self.beta1, self.beta2 = beta1, beta2
        self.r_target = max(r, min(r_target, min(out_f, in_f))) if method == "srlora" else r
        W0 = base.weight.detach()
        # The frozen weight keeps the base dtype; the trainable factors (and so their optimiser state and the importance
        # EMAs) are float32 with a bf16/fp16 base, as PEFT keeps them: bf16 factors at lr 2e-5 lose most updates to
        # rounding, and a GradScaler refuses to unscale fp16 gradients.
        dev, wdt = W0.device, W0.dtype
        dt = torch.float64 if wdt == torch.float64 else torch.float32
        self.register_buffer("bias", base.bias.detach().clone() if base.bias is not None else None)
        self.svd_info = None
        if method == "lora":
            bound = 1 / math.sqrt(in_f)
            if hasattr(generator, "uniform_list"):  # digits.Rng: src/trainer/engine/layer.ts's draws, value for value
                A = torch.tensor(generator.uniform_list(-bound, bound, r * in_f), dtype=torch.float64).view(r, in_f).to(torch.float32)
            else:
                A = (torch.rand(r, in_f, generator=generator, device="cpu", dtype=torch.float32) * 2 - 1) * bound
            self.A = nn.Parameter(A.to(dev, dt))
            self.B = nn.Parameter(torch.zeros(out_f, r, device=dev, dtype=dt))
            self.register_buffer("W", W0.clone())  # base dtype
            self.register_buffer("U", None)
            self.register_buffer("S", None)
            self.register_buffer("V", None)
            directions = torch.full((r,), -1, dtype=torch.long)
        else:
            svd = top_svd(W0, self.r_target, exact_svd_max_dim)
            self.svd_info = {k: svd[k] for k in ("method", "residual", "ms")}
            self.register_buffer("U", svd["U"].to(dev))  # float64: new directions are exact
            self.register_buffer("S", svd["S"].to(dev))
            self.register_buffer("V", svd["V"].to(dev))
            b, a = self._factors(list(range(r)))
            W = W0.to(torch.float64) - self.s * (b @ a)
            self.register_buffer("W", W.to(wdt))
            # contiguous, as every other tensor of the layer: a transposed A (V's columns as rows) put the importance
            # update's multi-tensor kernels (A beside its contiguous EMAs) on their per-tensor path, ~1,600 launches
            # a step for RoBERTa-base instead of a dozen (1.5 ms of a 11.4 ms compiled step on an H200)
            self.A = nn.Parameter(a.to(dt).contiguous())
            self.B = nn.Parameter(b.to(dt).contiguous())
            directions = torch.arange(r)
        self.register_buffer("directions", directions.to(dev))
        self.dir_host = directions.tolist()  # host mirror: the bookkeeping never needs a device read
        self.register_buffer("age", torch.zeros(r, dtype=torch.long, device=dev))
        self.p = r
        track = (method == "srlora") if track_importance is None else track_importance
        for name, shape in (("IA", (r, in_f)), ("UA", (r, in_f)), ("IB", (out_f, r)), ("UB", (out_f, r))):
            self.register_buffer(f"ema_{name}", torch.zeros(shape, device=dev, dtype=torch.float32) if track else None)
        # srlora: each fused pair's factors when it fused, at its direction's index (zeros until then): what ΔW's
        # effective rank needs (measures.py), in checkpoints with the rest of the state
        srl = method == "srlora"
        self.register_buffer("fused_A", torch.zeros(self.r_target, in_f, device=dev, dtype=dt) if srl else None)
        self.register_buffer("fused_B", torch.zeros(out_f, self.r_target, device=dev, dtype=dt) if srl else None)

    def _factors(self, dirs) -> Tuple[torch.Tensor, torch.Tensor]:
        """B columns U[:,j]·sqrt(S[j]/s) and A rows sqrt(S[j]/s)·V[:,j]ᵀ for directions j (float64)."""
        j = dirs if isinstance(dirs, torch.Tensor) else torch.as_tensor(list(dirs), device=self.U.device, dtype=torch.long)
        scale = torch.sqrt(self.S[j] / self.s)
        return self.U[:, j] * scale, (self.V[:, j] * scale).T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if use_merged(x, self.W, self.merged_forward):
            return MergedLoRALinear.apply(x, self.W, self.bias, self.A, self.B, self.s,
                                          torch.get_autocast_dtype(x.device.type))
        y = nn.functional.linear(x, self.W, self.bias)
        # Under autocast the adapter's matmuls run in the autocast dtype whatever x is: casting x to the factors'
        # dtype first (a float32 copy of every adapted layer's input, which autocast then casts back, exactly) was
        # pure memory traffic — the result is the same bit for bit.
        if self.A.dtype == x.dtype or torch.is_autocast_enabled(x.device.type):
            return y + self.s * nn.functional.linear(nn.functional.linear(x, self.A), self.B)
        # a half-precision input without autocast: the adapter path in the factors' dtype, added in the output's
        # (PEFT's LoRA Linear.forward does the same casts)
        return y + (self.s * nn.functional.linear(nn.functional.linear(x.to(self.A.dtype), self.A), self.B)).to(y.dtype)

    def effective_weight(self) -> torch.Tensor:
        """W + s·B·A in the base weight's dtype (the merged layer a plain nn.Linear of the base model holds)."""
        return (self.W.to(self.A.dtype) + self.s * (self.B @ self.A)).to(self.W.dtype)

    @torch.no_grad()
    def pair_scores(self) -> torch.Tensor:
        """S_k = mean_i e(B[i,k]) + mean_j e(A[k,j]), e = Ī·Ū (on the device)."""
        if self.ema_IA is None:
            return torch.zeros(self.r, device=self.A.device)
        return (self.ema_IB * self.ema_UB).mean(0) + (self.ema_IA * self.ema_UA).mean(1)
