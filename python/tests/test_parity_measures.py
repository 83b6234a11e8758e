"""The dashboard's measures (docs/ALGORITHM.md, "What the trainers measure"): the shared vector both trainers are held
to (test/vectors/measures.json, also checked by test/measures.test.ts), and deltaRank against ΔW = W + s·BA − W0 formed
directly after training with recompositions."""
import json
import math
import os

import pytest
import torch
from torch import nn

from srlora_torch.controller import SRLoRAController, apply_srlora
from srlora_torch.measures import delta_rank, effective_rank, factored_rank, step_boost

VEC = json.load(open(os.path.join(os.path.dirname(__file__), "..", "..", "test", "vectors", "measures.json"), encoding="utf-8"))


def close(a, b, what):
    assert abs(a - b) <= 1e-9 * max(1.0, abs(b)), f"{what}: {a} vs {b}"


def test_effective_rank_vector():
    for c in VEC["effectiveRank"]:
        close(effective_rank(c["sigma"]), c["effectiveRank"], c["sigma"])


@pytest.mark.parametrize("case", VEC["factored"], ids=lambda c: c["name"])
def test_factored_rank_vector(case):
    r = factored_rank(torch.tensor(case["P"], dtype=torch.float64), torch.tensor(case["Q"], dtype=torch.float64))
    close(r["effectiveRank"], case["effectiveRank"], "effectiveRank")
    close(r["norm"], case["norm"], "norm")


@pytest.mark.parametrize("case", VEC["stepBoost"], ids=lambda c: c["name"])
def test_step_boost_vector(case):
    r, inp, out = case["r"], case["in"], case["out"]
    layer = apply_srlora(nn.Sequential(nn.Linear(inp, out)), ["0"], r, 2 * r, method="lora")["0"]
    opt = torch.optim.Adam([layer.A, layer.B], lr=1e-3, betas=(case["beta1"], case["beta2"]), eps=case["eps"])
    steps = case["slotSteps"]
    for p, m, v, shape in ((layer.A, case["mA"], case["vA"], (r, 1)), (layer.B, case["mB"], case["vB"], (1, r))):
        st = {"step": torch.tensor(float(max(steps))), "exp_avg": torch.tensor(m, dtype=torch.float32),
              "exp_avg_sq": torch.tensor(v, dtype=torch.float32)}
        if len(set(steps)) > 1:  # per-slot counts, as SlotAdam keeps them (reinitOptimizer restart)
            st["slot_step"] = torch.tensor(steps, dtype=torch.float64).view(shape)
        opt.state[p] = st
    got = step_boost(layer, opt)
    for k, x in enumerate(case["stepBoost"]):  # the vector's moments are float64; here they are float32 as in training
        assert abs(got[k] - x) <= 1e-6 * max(1.0, abs(x)), f"slot {k}: {got[k]} vs {x}"


@pytest.mark.parametrize("method", ["lora", "pissa", "srlora"])
def test_delta_rank_equals_the_direct_form(method):
    """deltaRank from the factors of every pair a layer held = the effective rank of W + s·BA − W0 formed directly;
    srlora's grows past r over its recompositions, and the fused pairs' factors travel in the state dict."""
    g = torch.Generator().manual_seed(5)
    model = nn.Sequential(nn.Linear(12, 10, bias=False))
    W0 = model[0].weight.detach().clone()
    T = W0 + 0.3 * torch.randn(W0.shape, generator=g)
    layers = apply_srlora(model, ["0"], 2, 4, r_target=8, method=method, seed=1)
    opt = torch.optim.Adam([p for l in layers.values() for p in (l.A, l.B)], lr=1e-2)
    ctl = SRLoRAController(layers, opt, 30, 2, 8)
    recompositions = 0
    for _ in range(30):
        loss = 0.5 * ((layers["0"].effective_weight() - T) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        ctl.after_backward()
        opt.step()
        recompositions += ctl.after_step() is not None
    sigma = torch.linalg.svdvals((layers["0"].effective_weight().detach() - W0).double())
    big = sigma[sigma > 1e-5 * sigma[0]].tolist()  # W's float32 rounding is a floor of ~1e-7·‖W0‖ under the direct form
    direct = effective_rank(big)
    got = delta_rank(layers)[0]
    assert abs(got["effectiveRank"] - direct) < 1e-3 * direct, f"{method}: {got['effectiveRank']} vs {direct}"
    assert abs(got["norm"] - float(sigma.norm())) < 1e-5 * got["norm"]
    if method == "srlora":
        assert recompositions >= 5 and got["effectiveRank"] > 2.5
        state = model.state_dict()
        assert "0.fused_A" in state and float(state["0.fused_A"].abs().sum()) > 0


def test_cross_entropy_gradient_has_no_cancellation():
    """The digits/tabular loss's gradient for a confidently classified example: the true class's entry is −Σ_{j≠y} p_j,
    accurate to float32 rounding, where softmax − onehot in float32 is pure rounding (issue 16: that noise, normalised
    by Adam, made the trainers part). Fails with nn.functional.cross_entropy's gradient."""
    from srlora_torch.tasks import accurate_cross_entropy
    z = torch.tensor([[20.0, 0.0, 1.0, -3.0], [0.5, 0.2, -0.1, 0.0]], requires_grad=True)
    y = torch.tensor([0, 2])
    accurate_cross_entropy(z, y).backward()
    z64 = z.detach().double().requires_grad_(True)
    nn.functional.cross_entropy(z64, y).backward()
    rel = ((z.grad.double() - z64.grad).abs() / z64.grad.abs()).max().item()
    assert rel < 1e-5, f"worst relative error of the gradient {rel:.1e}"
