"""Importance snapshots: every layer's pair scores, normalised scores and slot ages as one device tensor, and their
decoding into the protocol's importance entries.

Layers of one shape are scored together (stacked), so 72 layers are ~40 kernels, not hundreds; on a GPU those are
captured once as a CUDA graph and replayed as one launch, since a training step is bound by the host launching
kernels and a snapshot should not add to it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from .layer import SRLoRALinear

_STATE = ("ema_IA", "ema_UA", "ema_IB", "ema_UB", "age")  # what a snapshot reads


@torch.no_grad()
def grouped_scores(layers: Dict[str, SRLoRALinear], names: Sequence[str]) -> Tuple[List[str], torch.Tensor]:
    """Per layer, in the returned order: r scores S_k, r normalised scores ŝ_k = S_k / mean(S) (0 when the mean is
    not positive) and r ages, as one float64 device tensor."""
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
    return [n for g in groups.values() for n in g], torch.cat(parts)


class CapturedScores:
    """grouped_scores of all layers as a replayable CUDA graph. The graph reads the tensors it was captured with, so
    it is captured again whenever any of them is no longer the layer's (model.to(), a replaced buffer)."""

    def __init__(self, layers: Dict[str, SRLoRALinear]):
        self.layers = layers
        self.key: Optional[tuple] = None

    def _state_key(self) -> tuple:
        # _buffers directly: Module.__getattr__ would cost more than the graph saves
        return tuple(0 if t is None else t.data_ptr() for l in self.layers.values() for t in map(l._buffers.get, _STATE))

    def __call__(self) -> Tuple[List[str], torch.Tensor]:
        key = self._state_key()
        if key != self.key:
            names = list(self.layers)
            side = torch.cuda.Stream()  # warm-up off the default stream, as capture requires
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                grouped_scores(self.layers, names)
            torch.cuda.current_stream().wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.order, self.out = grouped_scores(self.layers, names)
            self.key = key
        self.graph.replay()
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

    def layers(self) -> List[dict]:
        flat, out, i = self.flat.tolist(), [], 0
        for n, r, d, p, rt in zip(self.names, self.r, self.directions, self.p, self.r_target):
            out.append({"name": n, "S": flat[i: i + r], "sHat": flat[i + r: i + 2 * r], "age": [int(a) for a in flat[i + 2 * r: i + 3 * r]],
                        "direction": d, "p": p, "rTarget": rt})
            i += 3 * r
        return out
