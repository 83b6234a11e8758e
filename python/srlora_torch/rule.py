"""The pure parts of SRLORA.md §3-4 (schedule, eligibility, selection): the same rule as src/srlora/rule.ts."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence


@dataclass
class Schedule:
    per_switch: int
    switches: int
    interval: int
    steps: List[int]


def compute_schedule(r: int, r_target: int, fusion_ratio: float, total_steps: int) -> Schedule:
    """n = ceil(γ·r); N = floor((rTarget − r)/n); T = floor(totalSteps/(N+1)); recompositions after T, 2T, …, N·T."""
    per_switch = math.ceil(fusion_ratio * r)
    switches = max(0, (r_target - r) // per_switch)
    interval = total_steps // (switches + 1) if switches > 0 else 0
    steps = [(i + 1) * interval for i in range(switches)] if interval > 0 else []
    return Schedule(per_switch, switches, interval if steps else 0, steps)


def default_min_slot_age(schedule: Schedule, total_steps: int) -> int:
    return max(1, (schedule.interval or total_steps) // 10)


def normalize_scores(scores: Sequence[float]) -> List[float]:
    mean = sum(scores) / len(scores) if len(scores) else 0.0
    return [s / mean if mean > 0 else 0.0 for s in scores]


FUSION_SELECT = ("least-important", "random", "most-important", "oldest")
REINIT_OPTIMIZER = ("zero-moments", "restart", "keep")


def selection_key(seed: int, step: int, layer_index: int) -> int:
    """The uint32 seed of one random selection (src/srlora/rule.ts selectionKey: the same number)."""
    return ((seed & 0xFFFFFFFF) * 0x9E3779B1 + (step & 0xFFFFFFFF) * 0x85EBCA77 + layer_index) & 0xFFFFFFFF


def uniform_draws(seed: int, n: int) -> List[float]:
    """n uniforms in [0, 1) from a uint32 seed: the built-in trainer's SplitMix32-style generator (digits.Rng)."""
    state, out = seed & 0xFFFFFFFF, []
    for _ in range(n):
        state = (state + 0x9E3779B9) & 0xFFFFFFFF
        z = state
        z = ((z ^ (z >> 16)) * 0x85EBCA6B) & 0xFFFFFFFF
        z = ((z ^ (z >> 13)) * 0xC2B2AE35) & 0xFFFFFFFF
        z ^= z >> 16
        out.append(z / 4294967296)
    return out


def select_slots(scores: Sequence[float], age: Sequence[int], p: int, r_target: int,
                 fusion_threshold: Optional[float], fusion_ratio: float, min_slot_age: int,
                 fusion_select: str = "least-important", random_key: Optional[int] = None) -> tuple[list[int], bool]:
    """Selected slots (ordered by fusion_select — S ascending by default —, slot index breaking ties, cut to the
    directions left) and whether exhausted. fusion_select "random" orders by one draw per slot from random_key."""
    left = r_target - p
    if left <= 0:
        return [], True
    r = len(scores)
    ok = [k for k in range(r) if age[k] >= min_slot_age]
    if fusion_select == "least-important":
        eligible = sorted(ok, key=lambda k: (scores[k], k))
    elif fusion_select == "most-important":
        eligible = sorted(ok, key=lambda k: (-scores[k], k))
    elif fusion_select == "oldest":
        eligible = sorted(ok, key=lambda k: (-age[k], k))
    elif fusion_select == "random":
        if random_key is None:
            raise ValueError("select_slots: fusion_select random needs random_key")
        u = uniform_draws(random_key, r)
        eligible = sorted(ok, key=lambda k: (u[k], k))
    else:
        raise ValueError(f"fusionSelect: expected {' | '.join(FUSION_SELECT)}, got {fusion_select!r}")
    if fusion_threshold is None:
        chosen = eligible[: math.ceil(fusion_ratio * r)]
    else:
        s_hat = normalize_scores(scores)
        chosen = [k for k in eligible if s_hat[k] < fusion_threshold]
    return chosen[:left], False
