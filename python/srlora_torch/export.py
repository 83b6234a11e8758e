"""python -m srlora_torch.export RUN_DIR [--checkpoint DIR]

A run's export (SRLORA.md §6), the same files the extension's built-in trainer writes into `<run>/export/`:
- `merged.safetensors`: the whole model as a plain state_dict, every adapted layer merged (W + s·B·A as `<name>.weight`,
  with its bias) — loadable into the original architecture with no srlora_torch;
- `delta.safetensors`: ΔW = merged − W0 per adapted layer;
- `directions.json`: per layer, every recomposition (step, trigger, slots, old → new directions), the final direction
  of each slot and the pointer p; `from` names the checkpoint when written from one;
- `config.json`: the run config.
An adapter-only (PEFT-style) export would be wrong for SRLoRA: the frozen weight itself changes at every fusion.
The trainer writes it when a run ends; this command writes it from a checkpoint (the latest unless named).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from typing import Callable, Dict, Optional

import torch
from torch import nn

from .layer import SRLoRALinear
from .safetensors_io import save_safetensors

EXPORT_DIR = "export"


@torch.no_grad()
def merged_state_dict(model: nn.Module, layers: Dict[str, SRLoRALinear]) -> Dict[str, torch.Tensor]:
    """The model's state_dict as the original architecture has it: each SRLoRALinear becomes `<name>.weight` (its
    effective weight W + s·B·A) and `<name>.bias`; its factors, SVD and statistics are left out."""
    out = {k: v for k, v in model.state_dict().items() if k.rpartition(".")[0] not in layers}
    for name, l in layers.items():
        out[f"{name}.weight"] = l.effective_weight()
        if l.bias is not None:
            out[f"{name}.bias"] = l.bias
    return out


def direction_history(events_file: str, layers: Dict[str, SRLoRALinear], up_to_step: Optional[int] = None) -> list:
    history: Dict[str, list] = {}
    if os.path.exists(events_file):
        with open(events_file, encoding="utf-8") as f:
            for line in f:
                e = json.loads(line) if line.strip() else {}
                if e.get("type") != "recomposition" or (up_to_step is not None and e["step"] > up_to_step):
                    continue
                for l in e["layers"]:
                    if l["slots"]:
                        history.setdefault(l["name"], []).append({k: l[k] for k in ("slots", "oldDirections", "newDirections")}
                                                                 | {"step": e["step"], "trigger": e["trigger"]})
    return [{"layer": n, "r": l.r, "rTarget": l.r_target, "p": l.p, "final": list(l.dir_host), "recompositions": history.get(n, [])}
            for n, l in layers.items()]


def export_run(run_dir: str, model: nn.Module, layers: Dict[str, SRLoRALinear], base_weights: Dict[str, torch.Tensor],
               method: str, source: Optional[dict] = None, export_hf: Optional[Callable[[str, Dict[str, torch.Tensor]], str]] = None) -> str:
    """Writes `<run_dir>/export/`. base_weights: `<name>.weight` → W0 of each adapted layer (the pretrained weights).
    export_hf(out, merged): a Hugging Face model's task also writes `<out>/hf/` (save_pretrained: config, tokenizer,
    merged weights)."""
    out = os.path.join(run_dir, EXPORT_DIR)
    os.makedirs(out, exist_ok=True)
    meta = {"method": method, "format": "srlora-studio export 1"}
    merged = merged_state_dict(model, layers)
    save_safetensors(os.path.join(out, "merged.safetensors"), merged, meta)
    delta = {f"{n}.weight": merged[f"{n}.weight"].float().cpu() - base_weights[f"{n}.weight"].float().cpu() for n in layers}
    save_safetensors(os.path.join(out, "delta.safetensors"), delta, meta)
    doc = {**({"from": source} if source else {}),
           "layers": direction_history(os.path.join(run_dir, "events.jsonl"), layers, source["step"] if source else None)}
    tmp = os.path.join(out, f".directions.json.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)
    os.replace(tmp, os.path.join(out, "directions.json"))
    if export_hf is not None:
        export_hf(out, merged)
    cfg = os.path.join(run_dir, "config.json")
    if os.path.exists(cfg):
        shutil.copyfile(cfg, os.path.join(out, "config.json"))
    return out


def latest_checkpoint(run_dir: str) -> Optional[str]:
    """The newest complete, verified checkpoint (checkpoint.py); newer ones that are not are skipped with a line why."""
    from .checkpoint import newest_verified
    found = newest_verified(run_dir, on_log=lambda s: print(s, file=sys.stderr))
    return found[0] if found else None


def main(argv=None) -> int:
    from .tasks import base_weights, build_model, restore  # the trainer's own model building: the model the run trained

    ap = argparse.ArgumentParser(prog="python -m srlora_torch.export")
    ap.add_argument("run_dir")
    ap.add_argument("--checkpoint")
    a = ap.parse_args(argv)
    run_dir = os.path.abspath(a.run_dir)
    cfg_file = os.path.join(run_dir, "config.json")
    if not os.path.exists(cfg_file):
        raise SystemExit(f"{run_dir} is not a run folder (no config.json)")
    ckpt = os.path.abspath(a.checkpoint) if a.checkpoint else latest_checkpoint(run_dir)
    if not ckpt or not os.path.exists(os.path.join(ckpt, "state.pt")):
        raise SystemExit(f"{run_dir} has no checkpoint to export from" if not ckpt else f"{ckpt} is not a checkpoint (no state.pt)")
    with open(cfg_file, encoding="utf-8") as f:
        cfg = json.load(f)
    task, layers, _ = build_model(cfg, torch.device("cpu"))
    state = torch.load(os.path.join(ckpt, "state.pt"), map_location="cpu")
    restore(task, layers, state)
    out = export_run(run_dir, task.model, layers, base_weights(cfg), cfg["method"], {"checkpoint": os.path.relpath(ckpt, run_dir), "step": state["step"]},
                     export_hf=getattr(task, "export_hf", None))
    print(f"exported step {state['step']} of {run_dir} → {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
