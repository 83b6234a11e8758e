"""apply_srlora (PEFT-style target_modules) and the SRLoRA controller: the schedule, the rule, recompositions and the
optimiser moment reset, driven by two calls per step in a hand-written loop:

    loss.backward()
    srl.after_backward()      # importance (w and g before the update) and ages
    optimizer.step(); optimizer.zero_grad()
    srl.after_step()          # scheduled recomposition, then the commands that arrived (forced, set τ/γ, …)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .digits import Rng
from .layer import SRLoRALinear
from .measures import grouped_step_boost
from .targets import Targets, matches_target, select_targets  # noqa: F401 - matches_target: re-exported
from .recompose import Recomposer
from .rule import FUSION_SELECT, REINIT_OPTIMIZER, Schedule, compute_schedule, default_min_slot_age, select_slots, selection_key
from .optim import SlotAdam
from .snapshot import TELEMETRY_DIGITS, CapturedScores, Snapshot, grouped_scores

DEFAULTS = dict(beta1=0.85, beta2=0.85, fusion_ratio=0.5, fusion_threshold=None, r_target_per_rank=4, reset_optimizer_moments=True,
                reinit_optimizer="zero-moments", fusion_select="least-important")


def apply_srlora(model: nn.Module, target_modules: Targets, r: int, alpha: float, r_target: Optional[int] = None,
                 method: str = "srlora", beta1: float = 0.85, beta2: float = 0.85, seed: int = 0) -> Dict[str, SRLoRALinear]:
    """Replaces the matching nn.Linear modules by SRLoRALinear (in place); freezes every other parameter.
    target_modules as PEFT reads it (targets.py): a string is one regex, a list matches names or dotted suffixes; a
    match that cannot be adapted (not an nn.Linear, MultiheadAttention.out_proj, tied weights) is refused first."""
    r_target = r_target or DEFAULTS["r_target_per_rank"] * r
    gen = Rng(seed)  # LoRA's A: the built-in trainer's generator, one per run, drawn in layer order (same numbers)
    names = select_targets(model, target_modules)  # raises before anything changes
    for p in model.parameters():
        p.requires_grad_(False)
    layers: Dict[str, SRLoRALinear] = {}
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        layer = SRLoRALinear(getattr(parent, child), r, alpha, r_target, method, beta1, beta2, generator=gen)
        setattr(parent, child, layer)
        layers[name] = layer
    return layers


@dataclass
class LayerEvent:
    layer: str
    slots: List[int]
    scores: List[float]
    old_directions: List[int]
    new_directions: List[int]
    exhausted: bool
    # the recomposition's [‖ΔW‖, preservation error] rows (recompose.Rows: read from the device when first asked for,
    # so the training thread never waits for a recomposition's kernels) and this layer's row; None: nothing fused
    values: Any
    row: Optional[int]
    p: int
    ages: List[int] = field(default_factory=list)  # each selected slot's age when it fused, aligned with slots

    @property
    def delta_norm(self) -> float:
        """s·‖B_K A_K‖_F of the fused pairs (0 when nothing fused). A first read waits for the recomposition's kernels."""
        return 0.0 if self.row is None else float(self.values[self.row][0])

    @property
    def preservation_error(self) -> float:
        """‖ΔW_eff‖ / ‖W_eff‖ of the recomposition (§3.3; 0 when nothing fused); read as delta_norm."""
        return 0.0 if self.row is None else float(self.values[self.row][1])


@dataclass
class Recomposition:
    step: int
    trigger: str
    rule: dict
    layers: List[LayerEvent] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)  # layers left out: their scores were not finite



def ema_operands(layers) -> tuple:
    """The importance update's operands, as four aligned lists over every factor with a gradient: weights, gradients,
    Ī and Ū EMAs (A then B of each layer). Shared by the eager update here and the graph-captured one (compiled.py)."""
    ws, gs, Is, Us = [], [], [], []
    for layer in layers.values():
        if layer.ema_IA is None:
            continue
        for w, I, U in ((layer.A, layer.ema_IA, layer.ema_UA), (layer.B, layer.ema_IB, layer.ema_UB)):
            if w.grad is not None:
                ws.append(w.detach())
                gs.append(w.grad.detach())
                Is.append(I)
                Us.append(U)
    return ws, gs, Is, Us

class SRLoRAController:
    def __init__(self, layers: Dict[str, SRLoRALinear], optimizer: Optional[torch.optim.Optimizer], total_steps: int,
                 r: int, r_target: Optional[int] = None, fusion_ratio: float = 0.5, fusion_threshold: Optional[float] = None,
                 min_slot_age: Optional[int] = None, reset_optimizer_moments: bool = True,
                 reinit_optimizer: Optional[str] = None, fusion_select: str = "least-important", seed: int = 0):
        """reinit_optimizer (None: "zero-moments", or "keep" when reset_optimizer_moments is False, the legacy switch):
        "zero-moments" zeroes the fused slots' Adam moments under the global step count; "restart" also restarts their
        bias correction (needs a SlotAdam optimiser, optim.py); "keep" leaves them. fusion_select: which eligible pairs
        fuse (rule.py); "random" draws from selection_key(seed, step, layer index)."""
        reinit_optimizer = reinit_optimizer or ("zero-moments" if reset_optimizer_moments else "keep")
        if reinit_optimizer not in REINIT_OPTIMIZER:
            raise ValueError(f"reinitOptimizer: expected {' | '.join(REINIT_OPTIMIZER)}, got {reinit_optimizer!r}")
        if fusion_select not in FUSION_SELECT:
            raise ValueError(f"fusionSelect: expected {' | '.join(FUSION_SELECT)}, got {fusion_select!r}")
        if reinit_optimizer == "restart" and optimizer is not None and not isinstance(optimizer, SlotAdam):
            raise ValueError("reinitOptimizer restart needs a SlotAdam optimiser (srlora_torch.optim): torch's Adam counts one step per tensor")
        self.reinit_optimizer, self.fusion_select, self.seed = reinit_optimizer, fusion_select, seed
        self.layers = layers
        self.optimizer = optimizer
        self.step = 0
        method = next(iter(layers.values())).method
        self.method = method
        r_target = r_target or DEFAULTS["r_target_per_rank"] * r
        self.schedule = compute_schedule(r, r_target, fusion_ratio, total_steps) if method == "srlora" else Schedule(0, 0, 0, [])
        self.fusion_ratio = fusion_ratio
        self.fusion_threshold = fusion_threshold
        self.min_slot_age = min_slot_age if min_slot_age is not None else default_min_slot_age(self.schedule, total_steps)
        self.reset_optimizer_moments = reinit_optimizer != "keep"
        self._scheduled = set(self.schedule.steps)
        self.pending: List[Callable[[], None]] = []
        # Called with every recomposition, scheduled or forced, in the order they happen: the user's callback, then
        # the listeners (a Session streams through one, so setting on_recomposition never cuts the stream).
        self.on_recomposition: Optional[Callable[[Recomposition], None]] = None
        self.listeners: List[Callable[[Recomposition], None]] = []
        self._captured: Optional[CapturedScores] = None  # importance_async's scoring graph (CUDA only)
        self._exact: Optional[CapturedScores] = None  # the exact scores of every layer, for a recomposition (CUDA only)
        self._recomposer: Optional[Recomposer] = None
        self._pending_snapshot: Optional[Snapshot] = None  # importance_async's, its copy queued
        # Steps whose gradients were not finite (their update and importance skipped, as AMP's GradScaler skips):
        # the count, and whether the step being finished is one (read by Telemetry for the row's nonFiniteGrad).
        self.skipped_steps = 0
        self.last_skipped_step: Optional[int] = None
        self._skip_this_step = False
        # (step, L2 norm of every trained gradient) from the last finite check (gradients_finite): Telemetry's
        # grad_norm for an eager step, read in the check's own host read; None when not finite or not checked.
        self.last_grad_norm: Optional[Tuple[int, float]] = None
        # Data parallelism (distributed.py): makes every rank use rank 0's value (the selection of a recomposition).
        self.agree: Optional[Callable[[object], object]] = None

    # ---- the two calls of a training step
    def _trained_params(self) -> List[torch.Tensor]:
        ps = [p for l in self.layers.values() for p in (l.A, l.B)]
        if self.optimizer is not None:
            seen = {id(p) for p in ps}
            ps += [p for g in self.optimizer.param_groups for p in g["params"] if id(p) not in seen]
        return ps

    @torch.no_grad()
    def gradients_finite(self) -> bool:
        """Whether every gradient the optimiser (and the adapters) hold is finite: one reduction over all of them and
        one host read (the check GradScaler makes before it lets an optimiser step)."""
        gs = [p.grad for p in self._trained_params() if p.grad is not None]
        self.last_grad_norm = None
        if not gs:
            return True
        norms = torch.stack([n.float().to(gs[0].device) for n in torch._foreach_norm(gs)])
        # the gradient norm (the rows' grad_norm scalar) in the same host read as the check
        finite, total = torch.stack([norms.isfinite().all().float(), torch.linalg.vector_norm(norms)]).tolist()
        if finite:
            self.last_grad_norm = (self.step + 1, total)  # the step being finished (after_step counts it)
        return bool(finite)

    @torch.no_grad()
    def after_backward(self) -> bool:
        """Importance from this step's gradients (before the optimiser changes w), then every slot's age += 1 —
        for all layers at once with multi-tensor (_foreach) kernels.

        A step whose gradients are not all finite updates nothing: its gradients are dropped (p.grad = None, so the
        optimiser's step() that follows skips every parameter, moments and weight decay included) and the importance
        EMAs stay as they were; the step still counts (ages, the schedule) and is counted in skipped_steps (its
        metrics row says nonFiniteGrad) — as test/vectors/steering pins down for both trainers.
        Returns False for such a step."""
        if not self.gradients_finite():
            for p in self._trained_params():
                p.grad = None
            self._skip_this_step = True
            torch._foreach_add_([l.age for l in self.layers.values()], 1)  # the step still counts (its row, schedule, ages)
            return False
        ws, gs, Is, Us = ema_operands(self.layers)
        if ws:
            any_layer = next(iter(self.layers.values()))
            b1, b2 = any_layer.beta1, any_layer.beta2
            inst = torch._foreach_mul(ws, gs)
            torch._foreach_abs_(inst)
            torch._foreach_mul_(Is, b1)
            torch._foreach_add_(Is, inst, alpha=1 - b1)
            diff = torch._foreach_sub(inst, Is)
            torch._foreach_abs_(diff)
            torch._foreach_mul_(Us, b2)
            torch._foreach_add_(Us, diff, alpha=1 - b2)
        torch._foreach_add_([l.age for l in self.layers.values()], 1)
        return True

    def after_step(self) -> Optional[Recomposition]:
        """Count the step, run a scheduled recomposition, then the commands that arrived (in arrival order)."""
        self.step += 1
        if self._skip_this_step:
            self._skip_this_step = False
            self.skipped_steps += 1
            self.last_skipped_step = self.step
        rec = self.recompose("schedule") if self.step in self._scheduled else None
        while self.pending:
            self.pending.pop(0)()
        return rec

    # ---- the rule
    def rule_in_force(self) -> dict:
        if self.fusion_threshold is None:
            return {"kind": "ratio", "fusionRatio": self.fusion_ratio}
        return {"kind": "threshold", "fusionThreshold": self.fusion_threshold}

    def set(self, fusion_threshold=..., fusion_ratio=None) -> None:
        """Live change of τ (None = off) and/or γ; takes effect at the next recomposition."""
        if fusion_ratio is not None:
            if not 0 < fusion_ratio <= 1:
                raise ValueError(f"fusionRatio must be in (0, 1], got {fusion_ratio}")
            self.fusion_ratio = fusion_ratio
        if fusion_threshold is not ...:
            if fusion_threshold is not None and not fusion_threshold >= 0:
                raise ValueError(f"fusionThreshold must be ≥ 0 or null, got {fusion_threshold}")
            self.fusion_threshold = fusion_threshold

    def recompose(self, trigger: str, layer_names: Optional[Sequence[str]] = None) -> Recomposition:
        if self.method != "srlora":
            raise RuntimeError(f"recomposition needs method srlora (this run is {self.method})")
        names = list(layer_names) if layer_names else list(self.layers)
        unknown = [n for n in names if n not in self.layers]
        if unknown:
            raise KeyError(f"not adapted: {', '.join(unknown)}")
        rec = Recomposition(self.step, trigger, self.rule_in_force())
        scores, ages = self._host_view(names)  # one device → host copy for every layer's inputs
        # A layer whose scores are not all finite is not recomposed (a selection on NaN is arbitrary, and the event
        # could not be written as JSON); it is reported in `skipped` instead.
        bad = {n for n, S in zip(names, scores) if not all(math.isfinite(v) for v in S)}
        if bad:
            rec.skipped = sorted(bad)
            keep = [i for i, n in enumerate(names) if n not in bad]
            names, scores, ages = [names[i] for i in keep], [scores[i] for i in keep], [ages[i] for i in keep]
        index = {n: i for i, n in enumerate(self.layers)}
        selections = [select_slots(S, age, self.layers[n].p, self.layers[n].r_target, self.fusion_threshold, self.fusion_ratio,
                                   self.min_slot_age, self.fusion_select, selection_key(self.seed, self.step, index[n]))
                      for n, S, age in zip(names, scores, ages)]
        if self.agree is not None:  # data-parallel: rank 0's selection on every rank (identical inputs, checked after)
            rec.skipped, names, scores, ages, selections = self.agree((rec.skipped, names, scores, ages, selections))
        # recompose.Recomposer: the layers' device work batched by shape (on CUDA replayed as one CUDA graph), one host →
        # device copy of every new direction and slot mask, one device → host copy of every layer's norms.
        optimizer = self.optimizer if self.reset_optimizer_moments else None
        if self._recomposer is None:
            self._recomposer = Recomposer(self.layers)
        done, values = self._recomposer.recompose([(n, slots) for n, (slots, _) in zip(names, selections)], optimizer)
        if self.reinit_optimizer == "restart" and isinstance(self.optimizer, SlotAdam):
            for n, (slots, _) in zip(names, selections):
                self.optimizer.restart_slots(self.layers[n].A, slots)
                self.optimizer.restart_slots(self.layers[n].B, slots)
        for name, S, age, (slots, exhausted) in zip(names, scores, ages, selections):
            old, new, i = done.get(name, ([], [], None))
            rec.layers.append(LayerEvent(name, slots, [S[k] for k in slots], old, new, exhausted, values, i, self.layers[name].p,
                                         [int(age[k]) for k in slots]))
        for fn in ([self.on_recomposition] if self.on_recomposition else []) + self.listeners:
            fn(rec)
        return rec

    def _host_view(self, names: Sequence[str]):
        """Exact pair scores and ages of the named layers (in that order), in one device → host copy."""
        if len(names) == len(self.layers) and next(iter(self.layers.values())).A.device.type == "cuda":
            if self._exact is None:  # every layer (a scheduled recomposition): one graph launch, not ~40 kernels
                self._exact = CapturedScores(self.layers, digits=None)
            with torch.cuda.device(next(iter(self.layers.values())).A.device):
                snap = self._snapshot(*self._exact())
        else:
            snap = self._snapshot(*grouped_scores(self.layers, names))
        by_name = {l["name"]: l for l in snap.layers()}
        return [by_name[n]["S"] for n in names], [by_name[n]["age"] for n in names]

    def importance_async(self) -> Optional[Snapshot]:
        """Telemetry off the critical path: starts copying a snapshot into pinned host memory without waiting, and returns
        the previous snapshot once its copy has landed (None until then). Its layers() — the Python decoding — is meant
        for the recorder's writer thread (EventRecorder.emit's build). On the CPU: a snapshot of now."""
        if next(iter(self.layers.values())).A.device.type != "cuda":
            return self.snapshot()
        done, pending = None, self._pending_snapshot
        if pending is not None and pending.ready.query():
            done, pending = pending, None
        self._pending_snapshot = pending if pending is not None else self._launch_snapshot()
        return done

    def snapshot(self) -> Snapshot:
        """A snapshot of now, on every device (importance_async on CUDA returns the previous one). On CUDA its copy is
        queued like importance_async's (one graph replay, no wait here) and its layers() waits for that copy, so a
        recomposition's snapshot costs the training thread no device sync; an asynchronous snapshot still pending is
        dropped (it shows the state before). For the snapshot right after a recomposition."""
        if next(iter(self.layers.values())).A.device.type != "cuda":
            return self._snapshot(*self._with_boost(*grouped_scores(self.layers, list(self.layers), TELEMETRY_DIGITS)))
        self._pending_snapshot = None
        return self._launch_snapshot()

    def _launch_snapshot(self) -> Snapshot:
        """CUDA: the captured scores-and-boost graph replayed, its output copied to pinned memory behind it; the
        Snapshot's `ready` event says when the copy has landed."""
        first = next(iter(self.layers.values()))
        if self._captured is None:
            self._captured = CapturedScores(self.layers)
        with torch.cuda.device(first.A.device):  # the layers' GPU, whichever is current
            order, flat = self._captured(self.optimizer)  # one graph launch; its output is overwritten by the next, after this copy
            boost, has = self._captured.boost, self._captured.has
            n = flat.numel()
            host = torch.empty(n + (0 if boost is None else boost.numel()), dtype=flat.dtype, pin_memory=True)
            host[:n].copy_(flat, non_blocking=True)
            if boost is not None:
                host[n:].copy_(boost, non_blocking=True)
            snap = self._snapshot(order, host, has)
            snap.ready = torch.cuda.Event()
            snap.ready.record()
        return snap

    def _with_boost(self, order: List[str], flat: torch.Tensor) -> Tuple[List[str], torch.Tensor, List[bool]]:
        """grouped_scores' (order, flat) with every layer's step boost appended to flat (measures.grouped_step_boost),
        and per layer whether it has one."""
        boost, has = grouped_step_boost([self.layers[n] for n in order], self.optimizer, TELEMETRY_DIGITS)
        return order, (flat if boost is None else torch.cat([flat, boost])), has

    def _snapshot(self, order: List[str], flat: torch.Tensor, boost: Optional[List[bool]] = None) -> Snapshot:
        """boost: per layer whether flat carries its step boost after the scores (_with_boost)."""
        ls = [self.layers[n] for n in order]
        return Snapshot(self.step, order, flat, [l.r for l in ls], [list(l.dir_host) for l in ls], [l.p for l in ls],
                        [l.r_target for l in ls], list(self.layers), boost)

    def importance(self) -> List[dict]:
        """Per layer S, ŝ, age, direction, p, rTarget as telemetry sends them — one host copy for all layers, in the
        controller's layer order."""
        return self._snapshot(*self._with_boost(*grouped_scores(self.layers, list(self.layers), TELEMETRY_DIGITS))).layers()
