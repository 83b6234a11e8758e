"""python -m srlora_torch.conformance CASE.json [--device cpu|cuda] [--dtype float32|float64] [--check]

Runs a golden case (shared VECTORS.md format: matrix regression) through SRLoRALinear and the controller and prints
the answer JSON; --check compares it with the case's `expected` as VECTORS.md says.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import List

import numpy as np
import torch
from torch import nn

from .controller import SRLoRAController
from .layer import SRLoRALinear
from .rule import normalize_scores


def run_case(case: dict, device: str = "cpu", dtype: torch.dtype = torch.float32) -> dict:
    cfg = case["config"]
    layers = {}
    targets = []
    for spec in case["layers"]:
        W0 = torch.tensor(spec["W0"], dtype=torch.float64)
        base = nn.Linear(W0.shape[1], W0.shape[0], bias=False)
        base.weight.data = W0.to(dtype)
        base.to(device)
        layers[spec["name"]] = SRLoRALinear(base, cfg["r"], cfg["alpha"], cfg["rTarget"], "srlora", cfg["beta1"], cfg["beta2"])
        targets.append(torch.tensor(spec["T"], dtype=dtype, device=device))
    params = [p for l in layers.values() for p in (l.A, l.B)]
    o = cfg["optimizer"]
    opt = (torch.optim.SGD(params, lr=o["lr"]) if o["type"] == "sgd"
           else torch.optim.Adam(params, lr=o["lr"], betas=(o["beta1"], o["beta2"]), eps=o["eps"]))
    ctl = SRLoRAController(layers, opt, cfg["totalSteps"], cfg["r"], cfg["rTarget"], cfg["fusionRatio"], cfg["fusionThreshold"],
                           cfg.get("minSlotAge"))
    events: List[dict] = []

    def record(rec):  # every recomposition, scheduled or forced, in order
        for e in rec.layers:
            events.append({"afterStep": rec.step, "trigger": rec.trigger, "layer": e.layer, "slots": e.slots,
                           "oldDirections": e.old_directions, "newDirections": e.new_directions, "scores": e.scores,
                           "exhausted": e.exhausted, "preservationError": e.preservation_error})

    ctl.on_recomposition = record

    losses = []
    commands = case.get("commands", [])
    for step in range(1, cfg["totalSteps"] + 1):
        loss = sum(0.5 * ((l.effective_weight() - t) ** 2).mean() for l, t in zip(layers.values(), targets))
        losses.append(float(loss.item()))
        opt.zero_grad()
        loss.backward()
        ctl.after_backward()
        opt.step()
        for cmd in commands:  # applied after this step's scheduled recomposition, in file order
            if cmd["afterStep"] == step:
                if cmd["type"] == "recompose":
                    ctl.pending.append(lambda c=cmd: ctl.recompose("forced", c.get("layers")))
                else:
                    kw = {"fusion_ratio": cmd.get("fusionRatio")}
                    if "fusionThreshold" in cmd:
                        kw["fusion_threshold"] = cmd["fusionThreshold"]
                    ctl.pending.append(lambda kw=kw: ctl.set(**kw))
        ctl.after_step()
    final = []
    for name, l in layers.items():
        S = l.pair_scores().double().tolist()
        final.append({
            "layer": name, "W": l.W.double().tolist(), "delta": (l.s * (l.B @ l.A)).double().tolist(),
            "A": l.A.double().tolist(), "B": l.B.double().tolist(), "p": l.p, "directions": l.directions.tolist(),
            "age": l.age.tolist(), "scores": S, "normalizedScores": normalize_scores(S),
        })
    return {"scheduledSteps": ctl.schedule.steps, "losses": losses, "events": events, "final": final}


def compare(case: dict, got: dict) -> List[str]:
    exp, tol = case["expected"], case.get("tolerance", {"rtol": 2e-3, "atol": 1e-5, "preservation": 1e-5})
    errs: List[str] = []

    def close(what, a, e):
        a, e = np.asarray(a, dtype=np.float64), np.asarray(e, dtype=np.float64)
        if a.shape != e.shape:
            errs.append(f"{what}: shape {a.shape} vs {e.shape}")
        elif e.size and not np.allclose(a, e, rtol=tol["rtol"], atol=tol["atol"] * np.abs(e).max()):
            errs.append(f"{what}: max |Δ| {np.abs(a - e).max():.3g}")

    if got["scheduledSteps"] != exp["scheduledSteps"]:
        errs.append(f"scheduledSteps {got['scheduledSteps']} vs {exp['scheduledSteps']}")
    close("losses", got["losses"], exp["losses"])
    if len(got["events"]) != len(exp["events"]):
        errs.append(f"events: {len(got['events'])} vs {len(exp['events'])}")
    for i, (g, e) in enumerate(zip(got["events"], exp["events"])):
        for k in ("afterStep", "trigger", "layer", "slots", "oldDirections", "newDirections", "exhausted"):
            if g[k] != e[k]:
                errs.append(f"events[{i}].{k}: {g[k]} vs {e[k]}")
        if e["scores"]:
            close(f"events[{i}].scores", g["scores"], e["scores"])
        if not g["preservationError"] <= tol["preservation"]:
            errs.append(f"events[{i}].preservationError {g['preservationError']}")
    for i, (g, e) in enumerate(zip(got["final"], exp["final"])):
        for k in ("layer", "p", "directions"):
            if g[k] != e[k]:
                errs.append(f"final[{i}].{k}: {g[k]} vs {e[k]}")
        for k in ("W", "delta", "scores"):
            close(f"final[{i}].{k}", g[k], e[k])
    return errs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m srlora_torch.conformance")
    ap.add_argument("case")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args(argv)
    with open(a.case) as f:
        case = json.load(f)
    got = run_case(case, a.device, getattr(torch, a.dtype))
    print(json.dumps(got))
    if not a.check:
        return 0
    errs = compare(case, got)
    for e in errs:
        print(f"mismatch: {e}", file=sys.stderr)
    print(f"{a.case}: {'FAIL' if errs else 'pass'}", file=sys.stderr)
    return 1 if errs else 0


if __name__ == "__main__":
    sys.exit(main())
