"""python -m srlora_torch.train --config FILE [--steps N] [--runs-dir DIR] [--device auto|cpu|cuda]

A steerable SRLoRA run the extension can launch through `srlora.trainer.command` (env contract of docs/protocol.md:
SRLORA_HUB_URL, SRLORA_TOKEN, SRLORA_RUN_DIR), with the TypeScript trainer's config field names where they apply.
Built-in tasks: `matrix` (the matrix regression of the conformance vectors) and `transformer` (sequence
classification on an encoder built from a config: `tiny` for CPU, `roberta-base` shapes for a GPU; no downloads).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import time
from typing import Dict, Optional

import torch
from torch import nn

from . import digits, tabular
from .controller import SRLoRAController, apply_srlora, matches_target
from .layer import SRLoRALinear
from .export import export_run, latest_checkpoint
from .models import TRANSFORMER_PRESETS, EncoderClassifier, synthetic_batch
from .session import Session, device_label

# One source for the run config's fields and defaults, shared with the built-in trainer: the schema generated from
# src/trainer/config (npm run gen:schema writes this copy; a test keeps it equal). Then this trainer's own fields.
_SCHEMA = json.load(open(os.path.join(os.path.dirname(__file__), "run-config.schema.json"), encoding="utf-8"))
DEFAULTS = {**{k: v.get("default") for k, v in _SCHEMA["properties"].items() if k not in ("$schema", "backend")}, "device": "auto", "bf16": False}
IGNORED = {"$schema", "backend"}  # built-in-trainer fields that do not apply here
TASKS = ("transformer", "matrix", "digits", "tabular")


def load_config(path: Optional[str], overrides: Dict[str, object]) -> dict:
    cfg = dict(DEFAULTS)
    if path:
        text = open(path, encoding="utf-8").read()
        text = re.sub(r'("(?:\\.|[^"\\])*")|//[^\n]*', lambda m: m.group(1) or "", text)  # JSON with // comments
        text = re.sub(r",(\s*[}\]])", r"\1", text)
        user = json.loads(text)
        unknown = sorted(set(user) - set(DEFAULTS) - IGNORED)
        if unknown:
            raise SystemExit(f"{path}: unknown fields {', '.join(unknown)} (allowed: {', '.join(sorted(DEFAULTS))})")
        cfg.update({k: v for k, v in user.items() if k not in IGNORED})
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    if cfg["method"] not in ("lora", "pissa", "srlora"):
        raise SystemExit(f"method: expected lora | pissa | srlora, got {cfg['method']!r}")
    if cfg["task"].get("kind") not in TASKS:
        raise SystemExit(f"task.kind: expected {' | '.join(TASKS)} for the PyTorch trainer, got {cfg['task'].get('kind')!r}")
    if cfg["task"]["kind"] in ("digits", "tabular"):  # the built-in trainer's tasks, with its defaults and paths
        cfg["task"] = {"transform": "rot90", **cfg["task"]} if cfg["task"]["kind"] == "digits" else {"labelColumn": "label", **cfg["task"]}
        cfg["model"] = {"kind": "vit", **(cfg["model"] or {})}
        at = os.path.dirname(os.path.abspath(path)) if path else os.getcwd()  # relative to the config file
        for obj, key in ((cfg["model"], "weights"), (cfg["task"], "train"), (cfg["task"], "eval")):
            if obj.get(key):
                obj[key] = os.path.join(at, obj[key])
    return cfg


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Task:
    """Builds the model and yields batches and the loss for the configured built-in task."""

    def __init__(self, cfg: dict, device: torch.device):
        self.cfg, self.device = cfg, device
        g = torch.Generator().manual_seed(cfg["seed"])
        t = cfg["task"]
        if t["kind"] == "matrix":
            out, inp = t.get("out", 64), t.get("in", 48)
            self.model = nn.Sequential()
            self.model.add_module("layer0", nn.Linear(inp, out, bias=False))
            W0 = torch.randn(out, inp, generator=g) / inp ** 0.5
            self.model.layer0.weight.data = W0
            self.target = (W0 + 0.1 * torch.randn(out, inp, generator=g) / inp ** 0.5).to(device)
            self.default_targets = ["layer0"]
        elif t["kind"] in ("digits", "tabular"):
            m = cfg["model"]
            self.model = digits.base_model(m["kind"], m.get("weights") or "")
            if t["kind"] == "digits":
                x, y = digits.load_digits(t["transform"])
                train, ev = digits.split(len(y))
                (tx, ty), (ex, ey) = (x[train], y[train]), (x[ev], y[ev])
            else:
                tx, ty = tabular.load_tabular(t["train"], t["labelColumn"])
                if t.get("eval"):
                    ex, ey = tabular.load_tabular(t["eval"], t["labelColumn"])
                else:
                    train, ev = tabular.held_out(len(ty), cfg["seed"])
                    (tx, ty), (ex, ey) = (tx[train], ty[train]), (tx[ev], ty[ev])
            first, last = next(self.model.parameters()), list(self.model.modules())[-1]
            takes, classes = (784 if m["kind"] == "vit" else first.shape[1]), last.out_features
            has = int(max(ty.max(), ey.max())) + 1
            if tx.shape[1] != takes or ex.shape[1] != takes or has > classes:
                raise SystemExit(f"the {m['kind']} model takes {takes} features and {classes} classes; the data has {tx.shape[1]} features and {has} classes")
            self.train_x, self.train_y = tx.to(device), ty.to(device)
            self.eval_x, self.eval_y = ex.to(device), ey.to(device)
            self.default_targets = digits.TARGETS[m["kind"]] if m["kind"] == "vit" else [n for n, _ in self.model.named_children()]
        else:
            preset = dict(TRANSFORMER_PRESETS[t.get("preset", "tiny")])
            self.shape = preset
            self.model = EncoderClassifier(**preset, generator=g)
            self.default_targets = ["attn.q", "attn.k", "attn.v", "attn.o", "ffn.fc1", "ffn.fc2"]
        self.model.to(device)
        self.gen = torch.Generator().manual_seed(cfg["seed"] + 1)

    def loss(self) -> torch.Tensor:
        if self.cfg["task"]["kind"] == "matrix":
            layer = self.model.layer0
            return 0.5 * ((layer.effective_weight() - self.target) ** 2).mean()
        if self.cfg["task"]["kind"] in ("digits", "tabular"):
            i = torch.randint(0, len(self.train_y), (self.cfg["batchSize"],), generator=self.gen).to(self.device)
            x, y = self.train_x[i], self.train_y[i]
        else:
            x, y = synthetic_batch(self.cfg["batchSize"], self.shape, self.gen, self.device)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bool(self.cfg["bf16"])):
            logits = self.model(x)
        return nn.functional.cross_entropy(logits.float(), y)

    @torch.no_grad()
    def evaluate(self) -> dict:
        if self.cfg["task"]["kind"] == "matrix":
            return {"loss": float(self.loss()), "metrics": {}}
        if self.cfg["task"]["kind"] in ("digits", "tabular"):  # the built-in trainer's eval set
            x, y = self.eval_x, self.eval_y
        else:
            g = torch.Generator().manual_seed(12345)  # a fixed held-out set
            x, y = synthetic_batch(256, self.shape, g, self.device)
        logits = self.model(x).float()
        return {"loss": float(nn.functional.cross_entropy(logits, y)), "metrics": {"accuracy": float((logits.argmax(1) == y).float().mean())}}


def build_model(cfg: dict, device: torch.device):
    """The task (its model built from the seed) with SRLoRA applied to its targets: (task, layers, rTarget)."""
    task = Task(cfg, device)
    r_target = cfg["rTarget"] or 4 * cfg["r"]
    layers = apply_srlora(task.model, cfg["targets"] or task.default_targets, cfg["r"], cfg["alpha"], r_target, cfg["method"],
                          cfg["beta1"], cfg["beta2"], cfg["seed"])
    return task, layers, r_target


def base_weights(cfg: dict) -> Dict[str, torch.Tensor]:
    """W0 of the adapted layers, for the export's ΔW: the task's model is rebuilt from its seed (on the CPU) rather than
    kept through the run."""
    task = Task(cfg, torch.device("cpu"))
    targets = cfg["targets"] or task.default_targets
    return {f"{n}.weight": m.weight.detach() for n, m in task.model.named_modules() if isinstance(m, nn.Linear) and matches_target(n, targets)}


def restore(task: Task, layers: Dict[str, SRLoRALinear], state: dict) -> None:
    """A checkpoint's model into a freshly built one, with the host-side bookkeeping of every layer."""
    task.model.load_state_dict(state["model"])
    for n, l in layers.items():
        l.p = state["p"][n]
        l.dir_host = l.directions.tolist()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m srlora_torch.train")
    ap.add_argument("--config")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--device")
    ap.add_argument("--method")
    ap.add_argument("--runs-dir", default="runs")
    ap.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its latest checkpoint, as configured")
    a = ap.parse_args(argv)
    if a.resume:
        if a.config or a.steps or a.method:
            raise SystemExit("--resume continues the run as configured; --config, --steps and --method are not allowed with it")
        run_dir = a.resume
        cfg_file = os.path.join(run_dir, "config.json")
        if not os.path.exists(cfg_file):
            raise SystemExit(f"{run_dir} is not a run folder (no config.json)")
        cfg = load_config(cfg_file, {"device": a.device})
        ckpt = latest_checkpoint(run_dir)
        if ckpt is None:
            raise SystemExit(f"{run_dir} has no checkpoint to resume from")
    else:
        cfg = load_config(a.config, {"steps": a.steps, "device": a.device, "method": a.method})
        run_dir = os.environ.get("SRLORA_RUN_DIR") or os.path.join(a.runs_dir, time.strftime("%Y%m%d-%H%M%S") + f"-{cfg['method']}-torch")
        os.makedirs(run_dir, exist_ok=True)
        with open(os.path.join(run_dir, "config.json"), "w", encoding="utf-8") as f:
            json.dump(cfg, f, indent=2)
    device = pick_device(cfg["device"])
    torch.manual_seed(cfg["seed"])

    task, layers, r_target = build_model(cfg, device)
    params = [p for l in layers.values() for p in (l.A, l.B)]
    opt_cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[cfg["optimizer"]]
    opt = opt_cls(params, lr=cfg["learningRate"], **({"weight_decay": cfg["weightDecay"]} if cfg["optimizer"] != "sgd" else {}))
    ctl = SRLoRAController(layers, opt, cfg["steps"], cfg["r"], r_target, cfg["fusionRatio"], cfg["fusionThreshold"],
                           cfg["minSlotAge"], cfg["resetOptimizerMoments"])

    def save_checkpoint(folder: str) -> None:
        """Everything a resume needs to continue as if never stopped: the model (factors, frozen weights, EMAs, ages,
        directions), the optimiser, the data position, the rule and settings in force."""
        torch.save({"model": task.model.state_dict(), "optimizer": opt.state_dict(), "step": ctl.step,
                    "p": {n: l.p for n, l in layers.items()}, "data": task.gen.get_state(), "settings": dict(session.settings),
                    "rule": {"fusionThreshold": ctl.fusion_threshold, "fusionRatio": ctl.fusion_ratio}}, os.path.join(folder, "state.pt"))

    session = Session(ctl, opt, run_dir, total_steps=cfg["steps"], batch_size=cfg["batchSize"], name=cfg["name"], config=cfg,
                      device=device_label(device), importance_every=cfg["importanceEvery"], eval_every=cfg["evalEvery"],
                      checkpoint_every=cfg["checkpointEvery"], evaluate=task.evaluate, save_checkpoint=save_checkpoint,
                      on_finish=lambda: export_run(run_dir, task.model, layers, base_weights(cfg), cfg["method"]))
    if a.resume:
        state = torch.load(os.path.join(ckpt, "state.pt"), map_location=device)
        restore(task, layers, state)
        opt.load_state_dict(state["optimizer"])
        ctl.step = state["step"]
        task.gen.set_state(state["data"].cpu())
        session.settings.update(state["settings"])
        ctl.set(fusion_threshold=state["rule"]["fusionThreshold"], fusion_ratio=state["rule"]["fusionRatio"])
    signal.signal(signal.SIGTERM, lambda *_: setattr(session, "stop_reason", "received SIGTERM"))
    signal.signal(signal.SIGINT, lambda *_: setattr(session, "stop_reason", "received SIGINT"))
    session.start(resumed=bool(a.resume))
    error = None
    try:
        while ctl.step < cfg["steps"] and not session.stop_reason:
            loss = task.loss()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            ctl.after_backward()
            opt.step()
            ctl.after_step()
            session.after_step(loss)
    except Exception as e:  # noqa: BLE001 - reported as the run's failure
        error = e
    return 0 if session.finish(error) == "finished" else 1


if __name__ == "__main__":
    sys.exit(main())
