"""What the trainers measure for the dashboard beyond loss and importance (docs/ALGORITHM.md, "What the trainers
measure"): the effective rank of each layer's accumulated update ΔW from its factors (deltaRank, with every eval) and
the per-slot step boost from the optimiser's moments (importance snapshots). src/trainer/engine/measures.ts computes
the same numbers; test/vectors/measures.json holds both to them.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from .snapshot import round_significant

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


@torch.no_grad()
def delta_rank(layers: Dict[str, object]) -> List[dict]:
    """Per layer (in the dict's order): {name, effectiveRank, norm} — the deltaRank message's layers; layer_delta_rank
    of each, computed for layers of one shape together (stacked factors, batched QR and singular values) and read to
    the host once: with every eval the per-layer form ran ~3 SVDs and 3 host reads per layer (~200 synchronisations
    for RoBERTa-base's 72 layers). The initial factors of a layer's first p directions are taken for every direction
    and the rest masked to zero (a zero column pair changes no singular value)."""
    groups: Dict[tuple, List[str]] = {}
    for n, l in layers.items():
        fused = getattr(l, "fused_A", None) is not None
        groups.setdefault((tuple(l.A.shape), tuple(l.B.shape), fused, l.U is not None and l.U.shape[1], l.A.device), []).append(n)
    parts, sizes = [], []
    for (_, _, fused, width, dev), ns in groups.items():
        ls = [layers[n] for n in ns]
        s = torch.tensor([float(l.s) for l in ls], dtype=torch.float64).to(dev, non_blocking=True).view(-1, 1, 1)
        Ps = [s * torch.stack([l.B for l in ls]).double()]  # (no_grad: no detach needed)
        Qs = [torch.stack([l.A for l in ls]).double().transpose(1, 2)]
        if fused:
            Ps.append(s * torch.stack([l.fused_B for l in ls]).double())
            Qs.append(torch.stack([l.fused_A for l in ls]).double().transpose(1, 2))
        if width:
            dt = ls[0].B.dtype
            scale = torch.sqrt(torch.stack([l.S for l in ls]) / s.view(-1, 1))  # (G, width)
            keep = torch.tensor([[j < l.p for j in range(width)] for l in ls], dtype=torch.float64).to(dev, non_blocking=True)
            b0 = (torch.stack([l.U for l in ls]) * scale.unsqueeze(1)).to(dt).double()  # the float32 values the slots started from
            a0 = (torch.stack([l.V for l in ls]) * scale.unsqueeze(1)).to(ls[0].A.dtype).double()
            Ps.append(-s * b0 * keep.unsqueeze(1))
            Qs.append(a0 * keep.unsqueeze(1))
        P, Q = torch.cat(Ps, 2), torch.cat(Qs, 2)
        RP, RQ = torch.linalg.qr(P, mode="r")[1], torch.linalg.qr(Q, mode="r")[1]  # RᵀR = PᵀP: P Qᵀ's singular values
        sigma = torch.linalg.svdvals(RP @ RQ.transpose(1, 2)).clamp_min(0)
        tol = RANK_TOLERANCE * torch.linalg.matrix_norm(P) * torch.linalg.matrix_norm(Q)
        parts.append(torch.cat([tol.unsqueeze(1), sigma], 1).flatten())
        sizes.append((ns, sigma.shape[1]))
    flat = torch.cat(parts).cpu().tolist() if parts else []
    out, i = {}, 0
    for ns, m in sizes:
        for n in ns:
            tol, sig = flat[i], flat[i + 1: i + 1 + m]
            i += 1 + m
            kept = [x for x in sig if x > tol]
            out[n] = {"effectiveRank": effective_rank(kept), "norm": math.sqrt(sum(x * x for x in kept))}
    return [{"name": n, **out[n]} for n in layers]


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


def _adam_groups(optimizer) -> Dict[int, dict]:
    """id(parameter) → its param group, for groups with Adam's betas."""
    return {id(p): g for g in optimizer.param_groups if "betas" in g for p in g["params"]}


def _stacked_counts(sts: List[dict], dev: torch.device) -> Optional[torch.Tensor]:
    """The step counts of G states as one float64 device tensor broadcastable over the stacked moments (G, r, 1) /
    (G, 1, r) per slot (SlotAdam's slot_step) or (G, 1, 1); None when the states differ in kind. A count on the CPU
    (torch's non-capturable Adam) is read there (no device sync) and sent in one asynchronous copy."""
    if all("slot_step" in st for st in sts):
        return torch.stack([st["slot_step"] for st in sts]).to(dev, torch.float64)
    if any("slot_step" in st for st in sts):
        return None
    steps = [st["step"] for st in sts]
    if all(torch.is_tensor(s) and s.device == dev for s in steps):
        return torch.stack(steps).to(torch.float64).view(-1, 1, 1)
    if any(torch.is_tensor(s) and s.device.type != "cpu" for s in steps):
        return None
    host = torch.tensor([float(s) for s in steps], dtype=torch.float64)
    return host.to(dev, non_blocking=True).view(-1, 1, 1)


@torch.no_grad()
def grouped_step_boost(layers: Sequence, optimizer: Optional[torch.optim.Optimizer],
                       digits: Optional[int] = None) -> Tuple[Optional[torch.Tensor], List[bool]]:
    """step_boost_tensor of every layer (in the given order) as ONE float64 device tensor of their concatenated slots,
    and per layer whether it has one (False: not under an Adam group, or no optimiser: its slots are then absent from
    the tensor). Consecutive layers of one shape and kind of optimiser state are stacked, so 72 layers are a few dozen
    kernels, not ~2,000 (what snapshots cost on the training thread when each layer ran its own); no host
    synchronisation; rounded to `digits` significant digits if given (snapshot.round_significant, as the scores).
    (None, all False) when nothing has a boost."""
    if optimizer is None:
        return None, [False] * len(layers)
    groups = _adam_groups(optimizer)
    has = [id(l.A) in groups for l in layers]
    parts: List[torch.Tensor] = []
    i = 0
    while i < len(layers):
        if not has[i]:
            i += 1
            continue
        l0 = layers[i]
        g0 = groups[id(l0.A)]
        j = i + 1
        while (j < len(layers) and has[j] and layers[j].A.shape == l0.A.shape and layers[j].B.shape == l0.B.shape
               and groups[id(layers[j].A)] is g0):
            j += 1
        parts.append(_run_boost(layers[i:j], optimizer, g0))
        i = j
    if not parts:
        return None, has
    flat = torch.cat(parts)
    if digits is not None:
        flat = round_significant(flat, digits)
    return flat, has


def _run_boost(ls: Sequence, optimizer, group: dict) -> torch.Tensor:
    """Layers of one shape under one Adam group: their boosts, flattened (G·r)."""
    (b1, b2), eps = group["betas"], group["eps"]
    dev, r = ls[0].A.device, ls[0].r
    sq = torch.zeros(len(ls), r, dtype=torch.float64, device=dev)
    for attr, reduce in (("A", 2), ("B", 1)):
        sts = [optimizer.state.get(getattr(l, attr), {}) for l in ls]
        if not any("exp_avg" in st for st in sts):
            continue
        t = _stacked_counts(sts, dev) if all("exp_avg" in st for st in sts) else None
        if t is None:  # mixed states (rare): each layer alone
            return torch.cat([step_boost_tensor(l, optimizer) for l in ls])
        bc1 = torch.where(t > 0, 1 - b1 ** t, torch.ones_like(t))
        bc2 = torch.where(t > 0, 1 - b2 ** t, torch.ones_like(t))
        m = torch.stack([st["exp_avg"] for st in sts]).double()
        v = torch.stack([st["exp_avg_sq"] for st in sts]).double()
        u = torch.where(t > 0, (m / bc1) / ((v / bc2).sqrt() + eps), torch.zeros_like(m))
        sq += (u * u).sum(reduce)
    u = sq.sqrt()
    mean = u.mean(1, keepdim=True)
    return torch.where(mean > 0, u / mean.clamp_min(1e-300), torch.zeros_like(u)).flatten()
