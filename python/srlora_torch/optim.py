"""SlotAdam: Adam / AdamW whose bias correction is counted per slot, for reinitOptimizer "restart".

torch.optim.Adam keeps one step count per tensor, so after a recomposition the re-initialised slots' zeroed moments
are divided by the global (1 − β^t) ≈ 1: the first updates of those slots are ~1/(1 − β1) larger than a fresh Adam's
(the "zero-moments" behaviour, a per-slot step-size boost). "restart" wants them to start as a fresh Adam would, so
each slot (row of A, column of B) keeps its own step count — src/trainer/engine/optimizer.ts does the same.
The arithmetic follows the built-in trainer's: p −= lr · (m / (1 − β1^k)) / (sqrt(v / (1 − β2^k)) + eps).
"""
from __future__ import annotations

from typing import Dict, Iterable, Tuple

import torch


class SlotAdam(torch.optim.Optimizer):
    """Adam (weight_decay as L2, torch.optim.Adam's) or AdamW (decoupled) over the layers' A and B, with per-slot step
    counts in state[p]["slot_step"] ((r, 1) for A, (1, r) for B). State keys exp_avg / exp_avg_sq / step as torch's,
    so recompose.py's moment reset works unchanged."""

    def __init__(self, layers: Iterable, lr: float, betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, decoupled: bool = False, extra: Iterable[torch.Tensor] = ()):
        """extra: other trainable tensors (a task's head): one step count each, as torch's Adam."""
        layers = list(layers)
        self._axis: Dict[int, int] = {}
        params = []
        for l in layers:
            self._axis[id(l.A)], self._axis[id(l.B)] = 0, 1
            params += [l.A, l.B]
        params += list(extra)
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        self.decoupled = decoupled

    def _slot_shape(self, p: torch.Tensor):
        if id(p) not in self._axis:
            return (1,) * max(1, p.dim())
        r = p.shape[self._axis[id(p)]]
        return (r, 1) if self._axis[id(p)] == 0 else (1, r)

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                st = self.state[p]
                if not st:
                    st["step"] = torch.tensor(0.0)
                    st["exp_avg"] = torch.zeros_like(p)
                    st["exp_avg_sq"] = torch.zeros_like(p)
                    st["slot_step"] = torch.zeros(self._slot_shape(p), dtype=torch.float64, device=p.device)
                st["step"] += 1
                st["slot_step"] += 1
                if wd and not self.decoupled:
                    g = g.add(p, alpha=wd)
                st["exp_avg"].mul_(b1).add_(g, alpha=1 - b1)
                st["exp_avg_sq"].mul_(b2).addcmul_(g, g, value=1 - b2)
                bc1 = (1 - b1 ** st["slot_step"]).to(p.dtype)
                bc2 = (1 - b2 ** st["slot_step"]).to(p.dtype)
                if wd and self.decoupled:
                    p.mul_(1 - lr * wd)
                p.addcdiv_(st["exp_avg"] / bc1, (st["exp_avg_sq"] / bc2).sqrt_().add_(eps), value=-lr)
        return loss

    @torch.no_grad()
    def restart_slots(self, p: torch.Tensor, slots) -> None:
        """The given slots of p start their bias correction again (their moments are zeroed by the recomposition)."""
        st = self.state.get(p)
        if not st or not len(slots):
            return
        idx = torch.as_tensor(list(slots), dtype=torch.long, device=p.device)
        st["slot_step"].index_fill_(self._axis[id(p)], idx, 0)
