"""SRLORA.md §3.1-3.4 (fuse, reinitialise, subtract; reset ages, EMAs and optimiser moments) for many layers at once.

Layers of one shape are stacked and recomposed by the same few batched kernels, each layer's selection given as a
slot mask: a RoBERTa-base model's 72 layers are three groups instead of ~40 launches per layer (launches bound a
recomposition on a GPU). Unselected slots are masked to exact zeros, so the result is the per-layer formula's.
W changes by one rank-2r batched update in its own precision (at least float32); the new directions come from the
float64 SVD; the norms (‖ΔW‖ of the fusion, the preservation error) are float64, from r × r Gram matrices and one
float64 pass for the error's numerator, and come back as device tensors, read by the caller with every other layer's.
"""
from __future__ import annotations

import operator

from typing import Dict, List, Optional, Sequence, Tuple

import torch

from .layer import SRLoRALinear

# Float64 bytes of one stacked (layers × out × in) tensor per chunk: a recomposition holds ~5 of them at once, so large
# models (4096² layers) are recomposed a few layers at a time instead of asking for tens of GiB.
CHUNK_BYTES = 256 * 2 ** 20
_EMPTY: dict = {}


def _copy_all(dst: Sequence[torch.Tensor], src: Sequence[torch.Tensor]) -> None:
    if hasattr(torch, "_foreach_copy_"):  # one multi-tensor launch (torch ≥ 2.1)
        torch._foreach_copy_(list(dst), list(src))
    else:
        for d, s in zip(dst, src):
            d.copy_(s)


def plan(layers: Dict[str, SRLoRALinear], selections: Sequence[Tuple[str, List[int]]],
         keep_empty: bool = False) -> List[Tuple[List[str], List[List[int]]]]:
    """Chunks of same-shape layers (with at least one slot each, or every one with keep_empty), in first-appearance
    order. Raises RuntimeError (before anything changes) for a layer that is not srlora or has too few directions."""
    groups: Dict[tuple, List[Tuple[str, List[int]]]] = {}
    for name, slots in selections:
        l = layers[name]
        if l.U is None:
            raise RuntimeError(f"recomposition needs method srlora ({name} is {l.method})")
        if l.p + len(slots) > l.r_target:
            raise RuntimeError(f"{name}: {len(slots)} slots but only {l.r_target - l.p} directions left")
        if slots or keep_empty:
            key = (tuple(l.A.shape), tuple(l.B.shape), tuple(l.U.shape), l.W.dtype, l.A.dtype, l.A.device, l.s)
            groups.setdefault(key, []).append((name, list(slots)))
    chunks = []
    for members in groups.values():
        l = layers[members[0][0]]
        per = max(1, CHUNK_BYTES // (l.out_features * l.in_features * 8))
        for i in range(0, len(members), per):
            part = members[i: i + per]
            chunks.append(([n for n, _ in part], [s for _, s in part]))
    return chunks


def index_rows(layers: Sequence[SRLoRALinear], slots: Sequence[List[int]]) -> List[int]:
    """Host half of a chunk: its new directions (L × r: slot slots[i] gets direction p + i) then its slot mask (L × r)."""
    J, M = [], []
    for l, sel in zip(layers, slots):
        j, m = [0] * l.r, [0] * l.r
        for i, k in enumerate(sel):
            j[k], m[k] = l.p + i, 1
        J += j
        M += m
    return J + M


@torch.no_grad()
def recompose_group(layers: Sequence[SRLoRALinear], slots: Sequence[List[int]], JM: Optional[torch.Tensor] = None,
                    optimizer: Optional[torch.optim.Optimizer] = None) -> List[dict]:
    """Recomposes one chunk of same-shape layers (a plan() chunk). JM (2 × L × r, long, on the device) is index_rows
    already copied there: the caller copies every chunk's in one transfer. With an optimizer, the selected slots'
    Adam/AdamW moments are zeroed (rows of A, columns of B; the step count stays)."""
    if JM is None:
        JM = torch.as_tensor(index_rows(layers, slots), dtype=torch.long).to(layers[0].A.device)
    return _bookkeeping(layers, slots, _device_work(layers, JM, optimizer))


def _device_work(layers: Sequence[SRLoRALinear], JM: torch.Tensor, optimizer: Optional[torch.optim.Optimizer]) -> torch.Tensor:
    """recompose_group's device half: every tensor changed in place, the (L, 2) norms returned; no host read, so it can
    be captured in a CUDA graph (the selection lives only in JM)."""
    L, first = len(layers), layers[0]
    r, s = first.r, first.s
    JM = JM.view(2, L, r)
    J, M = JM[0], JM[1].bool()
    rows, cols = M.unsqueeze(2), M.unsqueeze(1)  # the selected slots of A-shaped (L, r, 1) and B-shaped (L, 1, r) tensors
    f64 = torch.float64
    A = torch.stack([l.A.detach() for l in layers])  # (L, r, in), the factors' dtype
    B = torch.stack([l.B.detach() for l in layers])  # (L, out, r)
    W = torch.stack([l.W for l in layers])  # (L, out, in), the base dtype
    U, V, S = (torch.stack([getattr(l, n) for l in layers]) for n in ("U", "V", "S"))  # float64 SVD factors
    scale = (S.gather(1, J) / s).sqrt().unsqueeze(1)  # (L, 1, r)
    b = U.gather(2, J.unsqueeze(1).expand(L, U.shape[1], r)) * scale  # new B columns (L, out, r), float64
    a = (V.gather(2, J.unsqueeze(1).expand(L, V.shape[1], r)) * scale).transpose(1, 2)  # new A rows (L, r, in)
    B_new = torch.where(cols, b.to(B.dtype), B)  # the factors as they will be stored
    A_new = torch.where(rows, a.to(A.dtype), A)
    # §3.1-3.3 as one rank-2r update of W: W + s·(B[:,K]A[K] − b_K a_K) = W + s·P Q with P = [B_K | −b_K] (the
    # unselected columns zero) and Q = [A; A_new]. The products use the factors as stored, so the effective weight's
    # change is only the rounding of W. W is updated in its own precision (at least float32: one full-size pass;
    # the spec's cases pass in float32), the directions come from the float64 SVD.
    wdt = torch.promote_types(W.dtype, torch.float32)
    P = torch.cat([B.masked_fill(~cols, 0), -B_new.masked_fill(~cols, 0)], 2)  # (L, out, 2r)
    Q = torch.cat([A, A_new], 1)  # (L, 2r, in)
    W_new = torch.baddbmm(W.to(wdt), P.to(wdt), Q.to(wdt), alpha=s).to(W.dtype)
    # The norms without full-size float64 products: ‖X Y‖²_F = Σ (XᵀX) ∘ (Y Yᵀ) over r × r (or 2r × 2r) Gram
    # matrices. Preservation error (§3.3) = ‖(W_new + s·B_new A_new) − (W + s·B A)‖ / ‖W + s·B A‖; its numerator,
    # the rounding of W_new, is one float64 pass: (W_new − W) − s·P Q.
    P64, Q64 = P.to(f64), Q.to(f64)
    Pk, Qk = P64[..., :r], Q64[:, :r]
    fused_sq = ((Pk.transpose(1, 2) @ Pk) * (Qk @ Qk.transpose(1, 2))).sum((1, 2))  # ‖B_K A_K‖²
    diff = W_new.to(f64, copy=True).sub_(W).baddbmm_(P64, Q64, alpha=-s)
    A64, B64 = A.to(f64), B.to(f64)
    cross = (torch.bmm(B.to(wdt).transpose(1, 2), W.to(wdt)).to(f64) * A64).sum((1, 2))  # ⟨W, B A⟩ (a denominator: float32 is plenty)
    before_sq = torch.linalg.vector_norm(W.flatten(1), dim=1, dtype=f64) ** 2 + 2 * s * cross + \
        s * s * ((B64.transpose(1, 2) @ B64) * (A64 @ A64.transpose(1, 2))).sum((1, 2))
    err = diff.flatten(1).norm(dim=1) / before_sq.clamp_min(0).sqrt()
    norms = torch.stack([s * fused_sq.clamp_min(0).sqrt(), err], 1)  # (L, 2): delta norm, preservation error
    if first.fused_A is not None:  # the fused pairs' factors at their (old) directions: ΔW's effective rank needs them
        D = torch.stack([l.directions for l in layers])  # (L, r): each slot's direction before this recomposition
        FB, FA = torch.stack([l.fused_B for l in layers]), torch.stack([l.fused_A for l in layers])
        iB, iA = D.unsqueeze(1).expand(L, FB.shape[1], r), D.unsqueeze(2).expand(L, r, FA.shape[2])
        FB.scatter_(2, iB, torch.where(cols, B.to(FB.dtype), FB.gather(2, iB)))  # unselected: written back unchanged
        FA.scatter_(1, iA, torch.where(rows, A.to(FA.dtype), FA.gather(1, iA)))
        _copy_all([l.fused_B for l in layers], FB.unbind(0))
        _copy_all([l.fused_A for l in layers], FA.unbind(0))
    _copy_all([l.W for l in layers], W_new.unbind(0))
    _copy_all([l.B.data for l in layers], B_new.unbind(0))
    _copy_all([l.A.data for l in layers], A_new.unbind(0))
    _copy_all([l.directions for l in layers], torch.where(M, J, torch.stack([l.directions for l in layers])).unbind(0))
    _copy_all([l.age for l in layers], torch.stack([l.age for l in layers]).masked_fill(M, 0).unbind(0))
    if first.ema_IA is not None:  # §3.4: the new pairs start with no importance history
        for sel, names in ((rows, ("ema_IA", "ema_UA")), (cols, ("ema_IB", "ema_UB"))):
            for n in names:
                _zero_selected([getattr(l, n) for l in layers], sel)
    if optimizer is not None:
        for sel, params in ((rows, [l.A for l in layers]), (cols, [l.B for l in layers])):
            for key in ("exp_avg", "exp_avg_sq"):
                _zero_selected([optimizer.state[p][key] for p in params if key in optimizer.state.get(p, {})], sel,
                               [i for i, p in enumerate(params) if key in optimizer.state.get(p, {})])
    return norms


def _bookkeeping(layers: Sequence[SRLoRALinear], slots: Sequence[List[int]], norms: torch.Tensor) -> List[dict]:
    out = []
    for l, sel, row in zip(layers, slots, norms.unbind(0)):
        old = [l.dir_host[k] for k in sel]
        new = [l.p + i for i in range(len(sel))]
        for k, d in zip(sel, new):
            l.dir_host[k] = d
        l.p += len(sel)
        out.append({"old": old, "new": new, "norms": row})
    return out


def _zero_selected(ts: List[torch.Tensor], sel: torch.Tensor, which: Optional[List[int]] = None) -> None:
    """Zeroes the selected slots of each tensor (layer i's mask is sel[i]). `which` names the layers the tensors belong
    to when some have none (an optimiser before its first step keeps no moments)."""
    if not ts:
        return
    if which is None or len(which) == len(sel):
        _copy_all(ts, torch.stack(ts).masked_fill(sel, 0).unbind(0))
    else:  # indexing sel with a list would be a host → device copy; a view per layer is not
        for i, t in zip(which, ts):
            t.masked_fill_(sel[i], 0)


class Rows:
    """A recomposition's per-layer [‖ΔW‖, preservation error] rows (an (L, 2) float64 tensor), read when first asked
    for. On CUDA the copy to pinned host memory is queued behind the recomposition's kernels and only a read waits for
    it: the training thread goes on to queue the next step (the recomposition event is built on the recorder's writer
    thread), so a recomposition costs the run its kernels, not also a host round trip. rows[i] → [delta, error]."""

    def __init__(self, t: torch.Tensor):
        self._list: Optional[list] = None
        self.event = None
        if t.device.type == "cuda":
            self.host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
            self.host.copy_(t, non_blocking=True)  # (a graph's output: copied before the next replay overwrites it)
            self.event = torch.cuda.Event()
            self.event.record()
        else:
            self.host = t

    def __getitem__(self, i: int) -> list:
        if self._list is None:
            if self.event is not None:
                self.event.synchronize()  # (releases the GIL while it waits)
            self._list = self.host.tolist()
        return self._list[i]

    def __len__(self) -> int:
        return self.host.shape[0]


class Recomposer:
    """Recompositions of a fixed set of layers (a controller's): recompose(selections, optimizer) → ({name: (old
    directions, new directions, row)}, Rows: [‖ΔW‖, preservation error] per row, read when first asked for).

    On the CPU, the plan's chunks (layers with slots) one after another. On CUDA (or fixed=True) every layer takes
    part in every recomposition — a layer without slots has an all-zero slot mask, an exact no-op — so the device work
    is one fixed program whose only input is the index/mask buffer: from the second recomposition on, it is captured
    as one CUDA graph and replayed (a recomposition was bound by ~400 kernel launches). The graph stays valid while the
    tensors it touches keep their storage (recompositions change them in place); a new storage (a checkpoint loaded
    into the optimiser, a model moved) runs that recomposition without a graph and captures again at the next."""

    def __init__(self, layers: Dict[str, SRLoRALinear], fixed: Optional[bool] = None, capture: Optional[bool] = None,
                 log=lambda text: None):
        self.layers = layers
        dev = next(iter(layers.values())).A.device
        self.capture = dev.type == "cuda" if capture is None else capture
        self.fixed = self.capture or bool(fixed)
        self.log = log
        self.graph = None
        self.key = None
        self.seen = None  # the key of the last eager run: a graph is captured when the next run has the same
        self.captures = 0
        self._idx = None
        self._norms = None

    _BUFFERS = operator.itemgetter("W", "U", "V", "S", "directions", "age", "ema_IA", "ema_UA", "ema_IB", "ema_UB")
    _FACTORS = operator.itemgetter("A", "B")

    def _key(self, chunks, optimizer) -> tuple:
        """What the captured graph depends on: the chunks' layer names and every tensor's storage (data_ptr; a tensor
        replaced — model.to(), an optimiser state loaded from a checkpoint — has another). C-level getters over the
        modules' dicts: Module.__getattr__ and per-tensor tuples for ~1,300 tensors were 1.2 ms of a recomposition
        (H200, RoBERTa-base), now ~0.2 ms."""
        state = optimizer.state if optimizer is not None else None
        ptrs = []
        for ns, _ in chunks:
            for n in ns:
                l = self.layers[n]
                buf = l._buffers
                ptrs += [0 if t is None else t.data_ptr() for t in self._BUFFERS(buf)]
                fa, fb = buf.get("fused_A"), buf.get("fused_B")
                ptrs += [0 if fa is None else fa.data_ptr(), 0 if fb is None else fb.data_ptr()]
                for p in self._FACTORS(l._parameters):
                    ptrs.append(p.data_ptr())
                    if state is not None:
                        st = state.get(p, _EMPTY)
                        m, v = st.get("exp_avg"), st.get("exp_avg_sq")
                        ptrs += [0 if m is None else m.data_ptr(), 0 if v is None else v.data_ptr()]
        return (id(optimizer), tuple(tuple(ns) for ns, _ in chunks), tuple(ptrs))

    def _program(self, chunks, idx, optimizer) -> torch.Tensor:
        norms, at = [], 0
        for ns, _ in chunks:
            group = [self.layers[n] for n in ns]
            size = 2 * len(group) * group[0].r
            norms.append(_device_work(group, idx[at: at + size], optimizer))
            at += size
        return torch.cat(norms).to(torch.float64)

    @torch.no_grad()
    def recompose(self, selections: Sequence[Tuple[str, List[int]]], optimizer: Optional[torch.optim.Optimizer] = None):
        chunks = plan(self.layers, selections)  # checks every layer first (raises before anything changes)
        if not chunks:
            return {}, []
        chosen = dict(selections)
        if self.fixed:
            chunks = [(ns, [list(chosen.get(n, [])) for n in ns]) for ns, _ in plan(self.layers, [(n, []) for n in self.layers], keep_empty=True)]
        rows = [v for ns, sl in chunks for v in index_rows([self.layers[n] for n in ns], sl)]
        host = torch.as_tensor(rows, dtype=torch.long)
        dev = next(iter(self.layers.values())).A.device
        norms = None
        if self.capture:
            key = self._key(chunks, optimizer)
            if self.graph is not None and key != self.key:
                self.graph, self._idx, self._norms = None, None, None
            if self.graph is None and key == self.seen:
                try:
                    self._idx = host.to(dev)
                    torch.cuda.synchronize(dev)
                    graph = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(graph, capture_error_mode="thread_local"):  # other threads (telemetry) may use CUDA
                        self._norms = self._program(chunks, self._idx, optimizer)
                    self.graph, self.key = graph, key
                    self.captures += 1
                    self.log(f"recomposition captured as one CUDA graph (capture {self.captures})")
                except Exception as e:  # noqa: BLE001 - nothing ran during the capture: recompose without a graph
                    self.capture, self.graph = False, None
                    self.log(f"recomposition: capturing a CUDA graph failed, it runs without one ({type(e).__name__}: {str(e)[:300]})")
                    torch.cuda.synchronize(dev)
            if self.graph is not None:
                self._idx.copy_(host)  # the graph's input: this recomposition's directions and slot masks
                self.graph.replay()
                norms = self._norms
            else:
                self.seen = key
        if norms is None:
            norms = self._program(chunks, host.to(dev), optimizer)
        done, n_rows = {}, 0
        for ns, sl in chunks:
            group = [self.layers[n] for n in ns]
            for n, res in zip(ns, _bookkeeping(group, sl, norms[n_rows: n_rows + len(ns)])):
                if chosen.get(n):
                    done[n] = (res["old"], res["new"], n_rows)
                n_rows += 1
        return done, Rows(norms)
