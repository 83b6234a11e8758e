"""fusionSelect and reinitOptimizer against the shared vectors (test/vectors/selection.json; test/selection.test.ts reads
them too): both trainers select the same slots and treat the fused slots' Adam state the same way."""
import json
import os

import pytest
import torch

from srlora_torch.optim import SlotAdam
from srlora_torch.recompose import _zero_selected
from srlora_torch.rule import select_slots, selection_key

V = json.load(open(os.path.join(os.path.dirname(__file__), "..", "..", "test", "vectors", "selection.json"), encoding="utf-8"))


@pytest.mark.parametrize("case", V["selection"], ids=lambda c: c["name"])
def test_selection_vectors(case):
    l, r = case["layer"], case["rule"]
    slots, ex = select_slots(l["scores"], l["age"], l["p"], l["rTarget"], r["fusionThreshold"], r["fusionRatio"], r["minSlotAge"],
                             r["fusionSelect"], l.get("randomKey"))
    assert {"slots": slots, "exhausted": ex} == case["expected"]


def test_selection_keys():
    for k in V["selectionKeys"]:
        assert selection_key(k["seed"], k["step"], k["layerIndex"]) == k["key"]


class _Layer:
    def __init__(self, init):
        self.A = torch.nn.Parameter(torch.tensor(init, dtype=torch.float32))
        self.B = torch.nn.Parameter(torch.zeros(1, len(init)))


@pytest.mark.parametrize("mode", ["zero-moments", "restart", "keep"])
def test_reinit_optimizer_vectors(mode):
    """zero-moments and keep: torch's Adam with recompose.py's moment reset (what train.py uses); restart: SlotAdam."""
    o = V["reinitOptimizer"]
    layer = _Layer(o["init"])
    opt = SlotAdam([layer], lr=o["lr"]) if mode == "restart" else torch.optim.Adam([layer.A], lr=o["lr"])
    mask = torch.zeros(len(o["init"]), 1, dtype=torch.bool)
    mask[o["reinitSlots"]] = True
    for i, g in enumerate(o["grads"]):
        layer.A.grad = torch.tensor(g, dtype=torch.float32)
        opt.step()
        if i + 1 == o["reinitAfterStep"]:
            with torch.no_grad():
                for k in o["reinitSlots"]:
                    layer.A[k] = torch.tensor(o["reinit"])
            if mode != "keep":
                _zero_selected([opt.state[layer.A]["exp_avg"], opt.state[layer.A]["exp_avg_sq"]], torch.stack([mask, mask]))
            if mode == "restart":
                opt.restart_slots(layer.A, o["reinitSlots"])
    torch.testing.assert_close(layer.A.detach().double(), torch.tensor(o["expected"][mode], dtype=torch.float64), rtol=1e-5, atol=1e-6)


def test_slot_adam_without_restart_is_adam():
    torch.manual_seed(0)
    a, b = _Layer([[0.1, 0.2], [0.3, -0.4]]), _Layer([[0.1, 0.2], [0.3, -0.4]])
    ours, ref = SlotAdam([a], lr=0.01), torch.optim.Adam([b.A], lr=0.01)
    for _ in range(20):
        g = torch.randn(2, 2)
        a.A.grad, b.A.grad = g.clone(), g.clone()
        ours.step()
        ref.step()
    torch.testing.assert_close(a.A, b.A, rtol=1e-6, atol=1e-7)
