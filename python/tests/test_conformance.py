"""Every shared golden case passes through SRLoRALinear + SRLoRAController (CPU here; CUDA too where present)."""
import json
import os

import pytest
import torch

from conftest import VECTORS
from srlora_torch.conformance import compare, run_case

CASES = sorted(f for f in os.listdir(os.path.join(VECTORS, "srlora")) if f.endswith(".json"))
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", CASES)
def test_case(name, device):
    with open(os.path.join(VECTORS, "srlora", name)) as f:
        case = json.load(f)
    assert compare(case, run_case(case, device)) == []


def test_a_wrong_answer_is_caught():
    with open(os.path.join(VECTORS, "srlora", "case-00.json")) as f:
        case = json.load(f)
    got = run_case(case)
    got["losses"][2] *= 1.01
    got["events"][0]["slots"] = list(reversed(got["events"][0]["slots"]))
    errs = compare(case, got)
    assert any(e.startswith("losses") for e in errs) and any("slots" in e for e in errs)
