"""Importance snapshots: every layer's pair scores, normalised scores and slot ages as one device tensor, and their
decoding into the protocol's importance entries.

Layers of one shape are scored together (stacked), so 72 layers are ~40 kernels, not hundreds; on a GPU those are
captured once as a CUDA graph and replayed as one launch, since a training step is bound by the host launching
kernels and a snapshot should not add to it.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from .layer import SRLoRALinear

_STATE = ("ema_IA", "ema_UA", "ema_IB", "ema_UB", "age")  # what a snapshot reads
# Telemetry sends scores with 8 significant digits: they come from float32 EMAs (~7.2 digits), and the JSON of the
# full doubles' 17 digits was most of a snapshot's cost (measured: 0.96 ms of json.dumps for 72 layers, GIL held).
TELEMETRY_DIGITS = 8
_POW10: Dict[torch.device, torch.Tensor] = {}  # 10^0 … 10^22, exact in float64; made before any graph capture


def round_significant(x: torch.Tensor, digits: int) -> torch.Tensor:
    """x (float64) to `digits` significant digits: q = round(x·10^k), then q / 10^k with 10^k exact — the double nearest
    that decimal, so its repr is short. Below 1e-15 10^k takes two exact factors (a last-bit difference then, so a
    longer repr at worst). Integers below 10^digits (ages) stay exact; 0 and NaN stay."""
    table = _POW10.get(x.device)
    if table is None:
        table = _POW10[x.device] = torch.tensor([10.0 ** i for i in range(23)], dtype=torch.float64, device=x.device)
    k = (digits - 1 - torch.floor(torch.log10(x.abs()))).nan_to_num(0, 44, 0).clamp(-22, 44).long()  # 0 → +inf → 44
    up, up2 = table[k.clamp(0, 22)], table[(k - 22).clamp(min=0)]
    down = table[(-k).clamp(min=0)]
    return torch.where(k >= 0, torch.round(x * up * up2) / up / up2, torch.round(x / down) * down)


@torch.no_grad()
def grouped_scores(layers: Dict[str, SRLoRALinear], names: Sequence[str], digits: Optional[int] = None) -> Tuple[List[str], torch.Tensor]:
    """Per layer, in the returned order: r scores S_k, r normalised scores ŝ_k = S_k / mean(S) (0 when the mean is
    not positive) and r ages, as one float64 device tensor; scores rounded to `digits` significant digits if given."""
    groups: Dict[tuple, List[str]] = {}
    for n in names:
        l = layers[n]
        groups.setdefault((tuple(l.A.shape), tuple(l.B.shape), l.ema_IA is not None), []).append(n)
    parts = []
    for (_, _, tracked), g in groups.items():
        ls = [layers[n] for n in g]
        if tracked:
            S = ((torch.stack([l.ema_IB for l in ls]) * torch.stack([l.ema_UB for l in ls])).mean(1)
                 + (torch.stack([l.ema_IA for l in ls]) * torch.stack([l.ema_UA for l in ls])).mean(2)).double()
        else:
            S = torch.zeros(len(ls), ls[0].r, device=ls[0].A.device, dtype=torch.float64)
        mean = S.mean(1, keepdim=True)
        s_hat = torch.where(mean > 0, S / mean, torch.zeros_like(S))
        parts.append(torch.cat([S, s_hat, torch.stack([l.age for l in ls]).double()], 1).flatten())
    flat = torch.cat(parts)
    return [n for g in groups.values() for n in g], flat if digits is None else round_significant(flat, digits)


class CapturedScores:
    """grouped_scores of all layers (for telemetry: TELEMETRY_DIGITS; exact for a recomposition) and, given an Adam optimiser whose step counts
    live on the device (the fused, capturable one of the compiled step), measures.grouped_step_boost of the same
    layers — one replayable CUDA graph for both. Uncaptured, the boost alone was ~100 small operations, 5.7 ms of the
    training thread's time per snapshot on an H200 (9 snapshots a second: 5 % of a compiled run). The graph reads the
    tensors it was captured with, so it is captured again whenever any of them is no longer the layer's or the
    optimiser's (model.to(), a replaced buffer, an optimiser state loaded from a checkpoint) or a boost's constants
    (betas, eps) changed; with step counts on the host the boost is computed outside the graph, as before."""

    def __init__(self, layers: Dict[str, SRLoRALinear], digits: Optional[int] = TELEMETRY_DIGITS):
        self.layers, self.digits = layers, digits  # digits None: the exact scores (the rule's input at a recomposition)
        self.key: Optional[tuple] = None
        self._get = operator.itemgetter(*_STATE)
        self.boost: Optional[torch.Tensor] = None
        self.has: List[bool] = []

    def _state_key(self) -> tuple:
        # C-level getters over _buffers (Module.__getattr__ would cost more than the graph saves): ~0.1 ms for 72 layers
        return tuple(0 if t is None else t.data_ptr() for l in self.layers.values() for t in self._get(l._buffers))

    def _optimizer_key(self, optimizer) -> Optional[tuple]:
        """What the captured boost depends on, or None when it cannot be captured (no Adam state on the device yet)."""
        if optimizer is None:
            return None
        from .measures import _adam_groups
        groups = _adam_groups(optimizer)
        key = []
        for l in self.layers.values():
            for p in (l._parameters["A"], l._parameters["B"]):
                g = groups.get(id(p))
                st = optimizer.state.get(p)
                if g is None or not st:
                    key.append(None)
                    continue
                count = st.get("slot_step", st.get("step"))
                if not torch.is_tensor(count) or count.device != p.device or "exp_avg" not in st:
                    return None
                key.append((id(g), tuple(g["betas"]), g["eps"], count.data_ptr(), st["exp_avg"].data_ptr(), st["exp_avg_sq"].data_ptr()))
        return tuple(key)

    def __call__(self, optimizer=None) -> Tuple[List[str], torch.Tensor]:
        """(order, scores) as grouped_scores gives them; the boost of the same order is then in self.boost / self.has
        (measures.grouped_step_boost's pair), computed inside the graph when it can be, else here."""
        from .measures import grouped_step_boost  # (measures imports this module)
        opt_key = self._optimizer_key(optimizer)
        key = (self._state_key(), id(optimizer), opt_key)
        names = list(self.layers)

        def work():
            order, out = grouped_scores(self.layers, names, self.digits)
            boost, has = (None, []) if opt_key is None else grouped_step_boost([self.layers[n] for n in order], optimizer, TELEMETRY_DIGITS)
            return order, out, boost, has
        if key != self.key:
            side = torch.cuda.Stream()  # warm-up off the default stream, as capture requires
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                work()
            torch.cuda.current_stream().wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            # thread_local, as CompiledStep and the Recomposer capture: other threads of this process may use CUDA
            # meanwhile (the recorder's writer; under torchrun, NCCL's watchdog querying its events)
            with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
                self.order, self.out, self._boost, self._has = work()
            self.key = key
        self.graph.replay()
        if opt_key is not None:
            self.boost, self.has = self._boost, self._has
        else:
            self.boost, self.has = grouped_step_boost([self.layers[n] for n in self.order], optimizer, TELEMETRY_DIGITS)
        return self.order, self.out


@dataclass
class Snapshot:
    """A grouped_scores tensor (on the host, or landing there), with the host-side state of the same step; layers()
    decodes it into the protocol's importance entries."""
    step: int
    names: List[str]
    flat: torch.Tensor
    r: List[int]
    directions: List[List[int]]
    p: List[int]
    r_target: List[int]
    model_order: Optional[List[str]] = None  # the order to report layers in (the tensor's is by shape group)
    # Per layer whether flat carries its step boost (measures.grouped_step_boost), after the scores: r values each.
    boost: Optional[List[bool]] = None
    ready: Optional["torch.cuda.Event"] = None  # CUDA: recorded after flat's copy to the host was queued

    def layers(self) -> List[dict]:
        if self.ready is not None:
            self.ready.synchronize()  # the copy only (releases the GIL while it waits)
        flat, out, i = self.flat.tolist(), [], 0
        for n, r, d, p, rt in zip(self.names, self.r, self.directions, self.p, self.r_target):
            out.append({"name": n, "S": flat[i: i + r], "sHat": flat[i + r: i + 2 * r], "age": [int(a) for a in flat[i + 2 * r: i + 3 * r]],
                        "direction": d, "p": p, "rTarget": rt})
            i += 3 * r
        for entry, has, r in zip(out, self.boost or [], self.r):
            if has:
                entry["stepBoost"] = flat[i: i + r]
                i += r
        if self.model_order is not None:
            by_name = {l["name"]: l for l in out}
            out = [by_name[n] for n in self.model_order if n in by_name]
        return out
