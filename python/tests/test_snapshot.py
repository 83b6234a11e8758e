"""Telemetry's scores: 8 significant digits (short JSON), within float32 precision of the exact scores the rule uses."""
import copy
import random

import pytest
import torch

from srlora_torch.snapshot import TELEMETRY_DIGITS, CapturedScores, round_significant
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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU (run on the lent H200: tools/issue18_device.py)")
def test_captured_snapshot_carries_the_step_boost_of_now_also_after_the_optimizer_state_is_replaced():
    """The snapshot graph computes the step boost too (CapturedScores with the optimiser): every replay gives the
    boost the eager computation gives at that step, and an optimiser state loaded from a checkpoint (new storage)
    is captured again, not read stale from the old tensors."""
    from srlora_torch.controller import SRLoRAController, apply_srlora
    from srlora_torch.measures import grouped_step_boost
    from srlora_torch.models import TRANSFORMER_PRESETS, EncoderClassifier, synthetic_batch
    g = torch.Generator().manual_seed(0)
    shape = TRANSFORMER_PRESETS["tiny"]
    model = EncoderClassifier(**shape, generator=g).cuda()
    layers = apply_srlora(model, ["attn.q", "attn.v", "ffn.fc1"], r=4, alpha=8, r_target=12, method="srlora")
    params = [p for l in layers.values() for p in (l.A, l.B)]
    opt = torch.optim.AdamW(params, lr=1e-3, fused=True, capturable=True)
    ctl = SRLoRAController(layers, opt, total_steps=100, r=4, r_target=12, min_slot_age=1)

    def step():
        x, y = synthetic_batch(16, shape, g, torch.device("cuda"))
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        ctl.after_backward()
        opt.step()
        ctl.after_step()
    captured = CapturedScores(layers)
    for i in range(6):
        step()
        if i == 3:  # a checkpoint's optimiser state: every moment a new tensor
            opt.load_state_dict(copy.deepcopy(opt.state_dict()))
        order, _ = captured(opt)
        want, has = grouped_step_boost([layers[n] for n in order], opt, TELEMETRY_DIGITS)
        assert captured.has == has and all(has)
        assert torch.equal(captured.boost, want), i
    assert captured.key[2] is not None  # the boost was inside the graph, not computed beside it
    # a recomposition's exact scores of every layer come from a graph too (the rule's input: not rounded)
    from srlora_torch.snapshot import grouped_scores
    names = list(layers)
    S, ages = ctl._host_view(names)
    eager = {l["name"]: l for l in ctl._snapshot(*grouped_scores(layers, names)).layers()}
    assert S == [eager[n]["S"] for n in names] and ages == [eager[n]["age"] for n in names]
    assert ctl._exact is not None and ctl._exact.key is not None
