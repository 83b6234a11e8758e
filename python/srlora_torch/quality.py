"""python -m srlora_torch.quality --out DIR [--preset full|ci] [--workers N]

bench:quality, honestly: every variant of the quality question (issue 16) on the digits task, many seeds, with 95 %
confidence intervals, as plain PyTorch runs of this trainer (its batches, LoRA init and SVD are the built-in trainer's:
test_parity.py holds the two to the same losses), many at once in worker processes (one thread each: the models are
tiny, a CPU core per run beats a GPU kernel launch per op).

Variants: lora r, pissa r, srlora with each reinitOptimizer (least-important selection) and each other fusionSelect
(zero-moments), lora at r = rTarget (same s = alpha/r), full fine-tuning (every weight, Adam) as a ceiling.
Models: the digits MLP and the tiny ViT. Tasks: rot90 (the demo) and rot15-30 (a milder shift, this trainer only).
Learning rates: a small sweep per method. The eval set (2,000 digits) is split in two fixed halves: the learning rate
is chosen on the first (mean over seeds), the reported accuracy is on the second — the choice never sees the numbers
it reports. Output: DIR/quality.json (mean, ci95 = t(0.975, n−1)·sd/√n, seeds per variant) and DIR/runs.jsonl.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import statistics
import sys
import time

import torch
from torch import nn

R, ALPHA = 4, 8
ADAPTER_LRS = [1e-3, 3e-3, 1e-2]
FULL_LRS = [1e-4, 3e-4, 1e-3]
VARIANTS = {  # name: config fields (method, r, alpha, reinitOptimizer, fusionSelect) or "full"
    "lora r=4": dict(method="lora"),
    "pissa r=4": dict(method="pissa"),
    "srlora zero-moments": dict(method="srlora", reinitOptimizer="zero-moments"),
    "srlora restart": dict(method="srlora", reinitOptimizer="restart"),
    "srlora keep": dict(method="srlora", reinitOptimizer="keep"),
    "srlora random": dict(method="srlora", fusionSelect="random"),
    "srlora most-important": dict(method="srlora", fusionSelect="most-important"),
    "srlora oldest": dict(method="srlora", fusionSelect="oldest"),
    "lora r=16 (rTarget)": dict(method="lora", r=4 * R, alpha=4 * ALPHA),
    "full fine-tuning": dict(method="full"),
}
PRESETS = {
    "full": dict(models=["mlp", "vit"], tasks=["rot90", "rot15-30"], seeds=5, steps=1500, variants=list(VARIANTS)),
    # a local smoke run on two CPU cores: every variant once, few steps (not evidence of anything)
    "ci": dict(models=["mlp", "vit"], tasks=["rot90", "rot15-30"], seeds=2, steps=60, variants=list(VARIANTS), lrs=1),
}
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def ci95(xs):
    n = len(xs)
    return T975[n - 1] * statistics.stdev(xs) / math.sqrt(n) if n > 1 else float("nan")


def run_one(job: dict) -> dict:
    from .tasks import build_model, Task
    from .train import DEFAULTS, eager_step, make_controller, make_optimizer
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    v = VARIANTS[job["variant"]]
    cfg = {**DEFAULTS, "task": {"kind": "digits", "transform": job["task"]}, "model": {"kind": job["model"]}, "r": R, "alpha": ALPHA,
           "rTarget": None, "steps": job["steps"], "seed": job["seed"], "learningRate": job["lr"], "device": "cpu", "bf16": False}
    cfg.update({k: val for k, val in v.items() if k != "method"})
    losses = []
    if v["method"] == "full":
        torch.manual_seed(job["seed"])
        task = Task({**cfg, "method": "lora"}, torch.device("cpu"))
        params = [p for p in task.model.parameters()]
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.Adam(params, lr=job["lr"])
        for _ in range(job["steps"]):
            loss = task.loss()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
    else:
        cfg["method"] = v["method"]
        task, layers, r_target = build_model(cfg, torch.device("cpu"))
        opt = make_optimizer(cfg, layers, list(getattr(task, "extra_params", [])))
        ctl = make_controller(cfg, layers, opt, r_target)
        for _ in range(job["steps"]):
            loss = eager_step(task, opt, ctl)
            ctl.after_step()
            losses.append(loss.item())
    with torch.no_grad():
        pred = task.model(task.eval_x).argmax(1) == task.eval_y
    half = len(pred) // 2
    return {**job, "valAccuracy": float(pred[:half].float().mean()), "testAccuracy": float(pred[half:].float().mean()),
            "finalTrainLoss": sum(losses[-50:]) / len(losses[-50:]), "finite": all(math.isfinite(x) for x in losses),
            "seconds": time.perf_counter() - t0}


def summarize(runs, spec) -> dict:
    out = {}
    for model in spec["models"]:
        for task in spec["tasks"]:
            table = {}
            for variant in spec["variants"]:
                by_lr = {}
                for r in runs:
                    if (r["model"], r["task"], r["variant"]) == (model, task, variant):
                        by_lr.setdefault(r["lr"], []).append(r)
                if not by_lr:
                    continue
                lrs = {lr: {"valMean": statistics.fmean(x["valAccuracy"] for x in rs), "mean": statistics.fmean(x["testAccuracy"] for x in rs),
                            "ci95": ci95([x["testAccuracy"] for x in rs]), "seeds": [x["testAccuracy"] for x in sorted(rs, key=lambda x: x["seed"])]}
                       for lr, rs in sorted(by_lr.items())}
                best = max(lrs, key=lambda lr: lrs[lr]["valMean"])
                table[variant] = {"bestLr": best, "mean": lrs[best]["mean"], "ci95": lrs[best]["ci95"], "seeds": lrs[best]["seeds"],
                                  "byLr": {repr(lr): x for lr, x in lrs.items()}}
            out.setdefault(model, {})[task] = table
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m srlora_torch.quality")
    ap.add_argument("--out", required=True)
    ap.add_argument("--preset", choices=list(PRESETS), default="full")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--seeds", type=int)
    ap.add_argument("--models")
    ap.add_argument("--deadline", type=float, default=0, help="seconds: stop there and summarise the runs done (0 = none)")
    ap.add_argument("--from-runs", help="summarise an existing runs.jsonl (a run cut short) instead of running")
    a = ap.parse_args(argv)
    spec = dict(PRESETS[a.preset])
    spec["steps"] = a.steps or spec["steps"]
    spec["seeds"] = a.seeds or spec["seeds"]
    if a.models:
        spec["models"] = a.models.split(",")
    nlr = spec.get("lrs", 3)
    jobs = [dict(model=m, task=t, variant=v, lr=lr, seed=s, steps=spec["steps"])
            for m in spec["models"] for t in spec["tasks"] for v in spec["variants"]
            for lr in ((FULL_LRS if v == "full fine-tuning" else ADAPTER_LRS)[1:1 + nlr] if nlr == 1 else (FULL_LRS if v == "full fine-tuning" else ADAPTER_LRS))
            for s in range(spec["seeds"])]
    # whole (model, task) blocks in order, the fast MLP first: a run cut short by a time limit leaves complete blocks
    order = {(m, t): i for i, (m, t) in enumerate((m, t) for m in spec["models"] for t in spec["tasks"])}
    jobs.sort(key=lambda j: order[(j["model"], j["task"])])
    os.makedirs(a.out, exist_ok=True)
    t0 = time.time()
    runs = []
    if a.from_runs:
        runs = [json.loads(line) for line in open(a.from_runs, encoding="utf-8") if line.strip()]
        spec["steps"] = runs[0]["steps"]
    else:
        _run_all(jobs, a, runs, t0)
    write_result(a, spec, runs, t0, len(jobs))
    return 0


def _run_all(jobs, a, runs, t0) -> None:
    with mp.get_context("fork").Pool(a.workers) as pool, open(os.path.join(a.out, "runs.jsonl"), "w") as f:
        for r in pool.imap_unordered(run_one, jobs):
            runs.append(r)
            f.write(json.dumps(r) + "\n")
            f.flush()
            if a.deadline and time.time() - t0 > a.deadline:
                print(f"deadline: stopping after {len(runs)}/{len(jobs)} runs", flush=True)
                break  # leaving the with-block terminates the pool
            if len(runs) % 50 == 0:
                print(f"{len(runs)}/{len(jobs)} runs, {time.time() - t0:.0f} s", flush=True)


def write_result(a, spec, runs, t0, planned) -> None:
    result = {"description": __doc__.split("\n\n")[1].replace("\n", " "), "preset": a.preset, "spec": {**spec, "r": R, "alpha": ALPHA,
              "adapterLrs": ADAPTER_LRS, "fullLrs": FULL_LRS, "lrChosenOn": "eval digits 0-999 (mean over seeds)", "reportedOn": "eval digits 1000-1999"},
              "torch": torch.__version__, "workers": a.workers, "runs": len(runs), "plannedRuns": planned, "wallSeconds": time.time() - t0,
              "nonFiniteRuns": sum(not r["finite"] for r in runs), "results": summarize(runs, spec)}
    with open(os.path.join(a.out, "quality.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(f"{len(runs)} runs in {time.time() - t0:.0f} s -> {a.out}/quality.json")


if __name__ == "__main__":
    sys.exit(main())
