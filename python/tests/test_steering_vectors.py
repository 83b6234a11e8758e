"""test/vectors/steering (format: its README): every case run through the PyTorch trainer — the run train.py builds
from the case's config, its Session, commands delivered at the control point after their step as the hub link
delivers them, signals sent to this process — and checked against the expected acks, states, rows, recompositions
and checkpoints. The built-in trainer runs the same files (test/steering.test.ts)."""
import json
import os
import signal

import pytest
import torch

from conftest import VECTORS
from srlora_torch.protocol import validate
from srlora_torch.train import DEFAULTS, build_run
from test_session import strict

CASES = os.path.join(VECTORS, "steering")
FAULT = {"inf": float("inf"), "-inf": float("-inf"), "nan": float("nan")}


def cases():
    return sorted(f for f in os.listdir(CASES) if f.endswith(".json"))


def run_case(case, run_dir):
    cfg = {**DEFAULTS, **case["config"], "device": "cpu"}
    cfg.pop("backend", None)
    run = build_run(cfg, str(run_dir), torch.device("cpu"), env={})
    task, opt, ctl, session = run.task, run.opt, run.ctl, run.session
    faults = case.get("faults", [])
    session.start()
    error = None
    try:
        while ctl.step < cfg["steps"] and not session.stop_reason:
            n = ctl.step + 1
            loss = task.loss()
            for f in faults:
                if f["step"] == n and "loss" in f:
                    loss = loss + FAULT[f["loss"]]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            for f in faults:
                if f["step"] == n and "grad" in f:
                    for p in (p for g in opt.param_groups for p in g["params"] if p.grad is not None):
                        p.grad.add_(FAULT[f["grad"]])
            ctl.after_backward()
            opt.step()
            ctl.after_step()
            for line in case["script"]:  # delivered at the control point after step n, in file order
                if line["afterStep"] == n:
                    if "signal" in line:
                        os.kill(os.getpid(), getattr(signal, line["signal"]))
                    else:
                        session.on_command(line["id"], line["command"])
            session.after_step(loss)
    except Exception as e:  # noqa: BLE001 - as train.py: the run's failure
        error = e
    session.finish(error)
    return [strict(l) for l in open(run_dir / "events.jsonl")]


@pytest.mark.parametrize("name", cases())
def test_steering_vector(name, tmp_path):
    case = json.load(open(os.path.join(CASES, name)))
    exp = case["expected"]
    msgs = run_case(case, tmp_path / "run")
    assert [m for m in msgs if validate(m)] == [], [validate(m) for m in msgs if validate(m)][:3]
    assert [m["seq"] for m in msgs] == list(range(1, len(msgs) + 1))
    if "hello" in exp:
        assert msgs[0]["srlora"] == exp["hello"]["srlora"]
    if "acks" in exp:
        final = [m for m in msgs if m["type"] == "ack" and m["status"] != "received"]
        assert [(a["commandId"], a["status"]) for a in final] == [(e["id"], e["status"]) for e in exp["acks"]]
        for a, e in zip(final, exp["acks"]):
            assert a["step"] == (e.get("step") if e["status"] == "applied" else None), (a, e)
            for part in e.get("reason", []):
                assert part in a.get("reason", ""), (a, e)
            if "settings" in e:
                assert a["settings"] == e["settings"], (a, e)
        delivered = [l["id"] for l in case["script"] if "id" in l and any(x["commandId"] == l["id"] for x in final)]
        received = [m["commandId"] for m in msgs if m["type"] == "ack" and m["status"] == "received"]
        assert sorted(received) == sorted(delivered)
    states = [m for m in msgs if m["type"] == "state"]
    if "states" in exp:
        assert [s["state"] for s in states] == exp["states"]
    if "final" in exp:
        last = msgs[-1]
        assert last["type"] == "state" and last["state"] == exp["final"]["state"] and last["step"] == exp["final"]["step"], last
        for part in exp["final"].get("reason", []):
            assert part in last.get("reason", ""), last
    rows = [r for m in msgs if m["type"] == "metrics" for r in m["rows"]]
    if "lastRowStep" in exp:
        assert [r["step"] for r in rows] == list(range(1, exp["lastRowStep"] + 1))
    if "nonFiniteGradSteps" in exp:
        assert [r["step"] for r in rows if r.get("nonFiniteGrad")] == exp["nonFiniteGradSteps"]
        # issue 15 (test/vectors/scalars.json): a finite grad_norm on every row whose gradients were finite, none on the others
        assert [r["step"] for r in rows if "grad_norm" not in r.get("scalars", {})] == exp["nonFiniteGradSteps"]
    if "recompositions" in exp:
        got = [m for m in msgs if m["type"] == "recomposition"]
        assert len(got) == len(exp["recompositions"]), [(m["step"], m["trigger"]) for m in got]
        for m, e in zip(got, exp["recompositions"]):
            assert (m["step"], m["trigger"], m["rule"]) == (e["step"], e["trigger"], e["rule"]), (m["step"], e)
            assert [l["name"] for l in m["layers"]] == e["layers"]
            if "commandId" in e:
                assert m.get("commandId") == e["commandId"]
            if "slotCounts" in e:
                assert [len(l["slots"]) for l in m["layers"]] == e["slotCounts"], (m["step"], e)
    if "checkpoints" in exp:
        assert [m["step"] for m in msgs if m["type"] == "checkpoint"] == exp["checkpoints"]
