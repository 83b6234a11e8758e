"""Telemetry's scores: 8 significant digits (short JSON), within float32 precision of the exact scores the rule uses."""
import random

import torch

from srlora_torch.snapshot import TELEMETRY_DIGITS, round_significant
from test_controller import build, train


def significant_digits(x: float) -> int:
    return len(repr(x).split("e")[0].replace("-", "").replace(".", "").strip("0"))


def test_rounding_gives_short_decimals_close_to_the_value():
    rng = random.Random(0)
    xs = [rng.uniform(1, 10) * 10 ** rng.randint(-15, 6) * rng.choice([-1, 1]) for _ in range(20000)]  # 1e-15 … 1e7
    got = round_significant(torch.tensor(xs, dtype=torch.float64), 8).tolist()
    assert max(significant_digits(g) for g in got) <= 8
    assert all(abs(g - x) <= 5e-8 * abs(x) for g, x in zip(got, xs))
    differ = [(x, g) for g, x in zip(got, xs) if float(f"{x:.7e}") != g]  # Python's own 8-digit rounding
    assert len(differ) < 20, differ[:3]  # only where x·10^k lands on a tie at the 9th digit
    special = round_significant(torch.tensor([0.0, 7.0, 123.0, 99999999.0, float("nan")], dtype=torch.float64), 8).tolist()
    assert special[:4] == [0.0, 7.0, 123.0, 99999999.0] and special[4] != special[4]


def test_snapshot_scores_are_the_exact_scores_to_8_digits():
    model, layers, opt, ctl, shape, g = build()
    train(model, opt, ctl, shape, g, 4)
    names = list(layers)
    exact, ages = ctl._host_view(names)
    sent = {l["name"]: l for l in ctl.importance()}
    assert TELEMETRY_DIGITS == 8  # the docs (protocol.md, ALGORITHM.md) say 8
    for n, S, age in zip(names, exact, ages):
        assert sent[n]["age"] == age
        assert all(abs(a - e) <= 5e-8 * abs(e) and significant_digits(a) <= TELEMETRY_DIGITS for a, e in zip(sent[n]["S"], S))
        assert any(significant_digits(e) > TELEMETRY_DIGITS for e in S)  # the exact ones are longer: the rounding did something
