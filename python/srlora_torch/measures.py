"""What the trainers measure for the dashboard beyond loss and importance (docs/ALGORITHM.md, "What the trainers
measure"): the effective rank of each layer's accumulated update ΔW from its factors (deltaRank, with every eval) and
the per-slot step boost from the optimiser's moments (importance snapshots). src/trainer/engine/measures.ts computes
the same numbers; test/vectors/measures.json holds both to them.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import torch

# Singular values at or below this fraction of ‖P‖_F·‖Q‖_F are float64 rounding of the factored product, not ΔW.
RANK_TOLERANCE = 1e-10


def effective_rank(sigma: Sequence[float]) -> float:
    """exp(−Σ pᵢ ln pᵢ), pᵢ = σᵢ / Σσ (Roy & Vetterli 2007); 0 when every σ is 0."""
    total = sum(sigma)
    if not total > 0:
        return 0.0
    h = 0.0
    for s in sigma:
        p = s / total
        if p > 0:
            h -= p * math.log(p)
    return math.exp(h)


def _gram_factor(F: torch.Tensor) -> torch.Tensor:
    """A k-column X with XᵀX = FᵀF: F itself unless taller than wide, else diag(σ)·Vᵀ of F's thin SVD."""
    if F.shape[0] <= F.shape[1]:
        return F
    _, S, Vh = torch.linalg.svd(F, full_matrices=False)
    return S.unsqueeze(1) * Vh


def factored_rank(P: torch.Tensor, Q: torch.Tensor) -> Dict[str, float]:
    """effectiveRank and ‖·‖_F of P Qᵀ (P: out × k, Q: in × k; computed in float64 without forming it), over the
    singular values above RANK_TOLERANCE·‖P‖_F·‖Q‖_F."""
    P, Q = P.to(torch.float64), Q.to(torch.float64)
    if P.shape[1] == 0:
        return {"effectiveRank": 0.0, "norm": 0.0}
    sigma = torch.linalg.svdvals(_gram_factor(P) @ _gram_factor(Q).T).clamp_min(0)
    tol = RANK_TOLERANCE * float(P.norm()) * float(Q.norm())
    kept = [float(s) for s in sigma.cpu().tolist() if s > tol]
    return {"effectiveRank": effective_rank(kept), "norm": math.sqrt(sum(s * s for s in kept))}


@torch.no_grad()
def layer_delta_rank(layer) -> Dict[str, float]:
    """ΔW = W + s·BA − W0 of one SRLoRALinear from the factors of every pair it held (docs/ALGORITHM.md):
    s·(B A + B_fused A_fused − B₀ A₀), B₀ A₀ the float32 initial factors of directions 0..p−1 (LoRA: none)."""
    s = layer.s
    Ps, Qs = [s * layer.B.detach().double()], [layer.A.detach().double().T]
    if getattr(layer, "fused_A", None) is not None:
        Ps.append(s * layer.fused_B.double())
        Qs.append(layer.fused_A.double().T)
    if layer.U is not None:
        b0, a0 = layer._factors(list(range(layer.p)))
        b0, a0 = b0.to(layer.B.dtype).double(), a0.to(layer.A.dtype).double()  # the float32 values the slots started from
        Ps.append(-s * b0)
        Qs.append(a0.T)
    return factored_rank(torch.cat(Ps, 1), torch.cat(Qs, 1))


def delta_rank(layers: Dict[str, object]) -> List[dict]:
    """Per layer (in the dict's order): {name, effectiveRank, norm} — the deltaRank message's layers."""
    return [{"name": n, **layer_delta_rank(l)} for n, l in layers.items()]


@torch.no_grad()
def step_boost_tensor(layer, optimizer: Optional[torch.optim.Optimizer]) -> Optional[torch.Tensor]:
    """Per slot (a float64 tensor on the layer's device, no host synchronisation): uₖ = ‖m̂ / (√v̂ + ε)‖₂ over slot k's
    row of A and column of B (each slot's own bias correction under SlotAdam), divided by the mean over the layer's
    slots; all 0 before the first update. None when the optimiser keeps no Adam moments (SGD, or none given)."""
    if optimizer is None:
        return None
    group = next((g for g in optimizer.param_groups if any(p is layer.A for p in g["params"])), None)
    if group is None or "betas" not in group:
        return None
    b1, b2 = group["betas"]
    eps = group["eps"]
    dev = layer.A.device
    sq = torch.zeros(layer.r, dtype=torch.float64, device=dev)
    for p, axis in ((layer.A, 0), (layer.B, 1)):
        st = optimizer.state.get(p, {})
        if "exp_avg" not in st:
            continue
        t = torch.as_tensor(st["slot_step"] if "slot_step" in st else st["step"]).to(dev, torch.float64)
        bc1 = torch.where(t > 0, 1 - b1 ** t, torch.ones_like(t))
        bc2 = torch.where(t > 0, 1 - b2 ** t, torch.ones_like(t))
        m, v = st["exp_avg"].double(), st["exp_avg_sq"].double()
        u = torch.where(t > 0, (m / bc1) / ((v / bc2).sqrt() + eps), torch.zeros_like(m))
        sq += (u * u).sum(1 - axis)
    u = sq.sqrt()
    mean = u.mean()
    return torch.where(mean > 0, u / mean.clamp_min(1e-300), torch.zeros_like(u))


def step_boost(layer, optimizer: Optional[torch.optim.Optimizer]) -> Optional[List[float]]:
    """step_boost_tensor as a list (a host read)."""
    t = step_boost_tensor(layer, optimizer)
    return None if t is None else t.tolist()
