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


def select_slots(scores: Sequence[float], age: Sequence[int], p: int, r_target: int,
                 fusion_threshold: Optional[float], fusion_ratio: float, min_slot_age: int) -> tuple[list[int], bool]:
    """Selected slots (S ascending, slot index breaking ties, cut to the directions left) and whether exhausted."""
    left = r_target - p
    if left <= 0:
        return [], True
    r = len(scores)
    eligible = sorted((k for k in range(r) if age[k] >= min_slot_age), key=lambda k: (scores[k], k))
    if fusion_threshold is None:
        chosen = eligible[: math.ceil(fusion_ratio * r)]
    else:
        s_hat = normalize_scores(scores)
        chosen = [k for k in eligible if s_hat[k] < fusion_threshold]
    return chosen[:left], False
