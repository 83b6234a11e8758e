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
import tempfile
import time
from typing import Dict, Optional

import torch
from torch import nn

from .client import CommandQueue, EventRecorder, HubLink
from .controller import SRLoRAController, apply_srlora, matches_target
from .export import export_run
from .models import TRANSFORMER_PRESETS, EncoderClassifier, synthetic_batch
from .protocol import PROTOCOL_MAJOR, PROTOCOL_MINOR, validate_command
from .telemetry import Telemetry

DEFAULTS = dict(
    name=None, task={"kind": "transformer", "preset": "tiny"}, method="srlora", targets=None, r=4, alpha=8.0, rTarget=None,
    fusionThreshold=None, fusionRatio=0.5, beta1=0.85, beta2=0.85, minSlotAge=None, resetOptimizerMoments=True,
    optimizer="adamw", learningRate=1e-3, weightDecay=0.0, batchSize=32, steps=1000, seed=0, evalEvery=100,
    importanceEvery=10, checkpointEvery=0, device="auto", bf16=False,
)
IGNORED = {"$schema", "model", "backend"}  # TypeScript-trainer fields that do not apply here


def log(text: str) -> None:
    """stderr may be gone: a trainer detached from a closed window keeps training (and logging to events.jsonl)."""
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


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
    if cfg["task"].get("kind") not in ("transformer", "matrix"):
        raise SystemExit(f"task.kind: expected transformer | matrix for the PyTorch trainer, got {cfg['task'].get('kind')!r}")
    return cfg


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def device_label(device: torch.device) -> str:
    return f"CUDA · {torch.cuda.get_device_name(device)}" if device.type == "cuda" else "CPU"


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
        x, y = synthetic_batch(self.cfg["batchSize"], self.shape, self.gen, self.device)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bool(self.cfg["bf16"])):
            logits = self.model(x)
        return nn.functional.cross_entropy(logits.float(), y)

    @torch.no_grad()
    def evaluate(self) -> dict:
        if self.cfg["task"]["kind"] == "matrix":
            return {"loss": float(self.loss()), "metrics": {}}
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m srlora_torch.train")
    ap.add_argument("--config")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--device")
    ap.add_argument("--method")
    ap.add_argument("--runs-dir", default="runs")
    a = ap.parse_args(argv)
    cfg = load_config(a.config, {"steps": a.steps, "device": a.device, "method": a.method})
    device = pick_device(cfg["device"])
    torch.manual_seed(cfg["seed"])
    run_dir = os.environ.get("SRLORA_RUN_DIR") or os.path.join(a.runs_dir, time.strftime("%Y%m%d-%H%M%S") + f"-{cfg['method']}-torch")
    run_id = re.sub(r"[^A-Za-z0-9._:-]", "-", os.path.basename(os.path.normpath(run_dir))).lstrip("-._:") or "run"
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2)

    task, layers, r_target = build_model(cfg, device)
    params = [p for l in layers.values() for p in (l.A, l.B)]
    opt_cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[cfg["optimizer"]]
    opt = opt_cls(params, lr=cfg["learningRate"], **({"weight_decay": cfg["weightDecay"]} if cfg["optimizer"] != "sgd" else {}))
    ctl = SRLoRAController(layers, opt, cfg["steps"], cfg["r"], r_target, cfg["fusionRatio"], cfg["fusionThreshold"],
                           cfg["minSlotAge"], cfg["resetOptimizerMoments"])
    rec = EventRecorder(run_id, run_dir)
    settings = {"importanceEvery": cfg["importanceEvery"], "evalEvery": cfg["evalEvery"]}
    rec.emit({"type": "hello", "protocol": {"major": PROTOCOL_MAJOR, "minor": PROTOCOL_MINOR}, "name": cfg["name"] or run_id,
              "method": cfg["method"], "backend": {"name": "pytorch", "device": device_label(device)}, "totalSteps": cfg["steps"],
              "config": {**cfg, "torch": torch.__version__}, "layers": [
                  {"name": n, "shape": [l.out_features, l.in_features], "r": l.r, "rTarget": l.r_target} for n, l in layers.items()]})
    commands = CommandQueue()

    def on_command(cid: str, body: dict) -> None:
        rec.emit({"type": "ack", "commandId": cid, "status": "received", "step": None})
        commands.put(cid, body)

    link = None
    if os.environ.get("SRLORA_HUB_URL"):
        link = HubLink(rec, os.environ["SRLORA_HUB_URL"], os.environ.get("SRLORA_TOKEN", ""), run_dir, on_command,
                       on_log=log)
        link.start()
    stop_reason = {"why": None}
    signal.signal(signal.SIGTERM, lambda *_: stop_reason.update(why="received SIGTERM"))
    signal.signal(signal.SIGINT, lambda *_: stop_reason.update(why="received SIGINT"))

    def state(s: str, reason: Optional[str] = None) -> None:
        rec.emit({"type": "state", "state": s, "step": ctl.step, **({"reason": reason} if reason else {})})

    def current_settings() -> dict:
        return {"fusionThreshold": ctl.fusion_threshold, "fusionRatio": ctl.fusion_ratio, "learningRate": opt.param_groups[0]["lr"], **settings}

    def on_recomposition(r) -> None:
        rec.emit({"type": "recomposition", "step": r.step, "trigger": r.trigger, **({"commandId": r.command_id} if getattr(r, "command_id", None) else {}),
                  "rule": r.rule, "outputChange": None, "layers": [
                      {"name": e.layer, "slots": e.slots, "scores": e.scores, "oldDirections": e.old_directions, "newDirections": e.new_directions,
                       "exhausted": e.exhausted, "deltaNorm": e.delta_norm, "preservationError": e.preservation_error, "p": e.p} for e in r.layers]})

    ctl.on_recomposition = on_recomposition

    def checkpoint() -> str:
        rel = os.path.join("checkpoints", f"step-{ctl.step}")
        final = os.path.join(run_dir, rel)
        if not os.path.exists(final):
            os.makedirs(os.path.join(run_dir, "checkpoints"), exist_ok=True)
            tmp = tempfile.mkdtemp(dir=os.path.join(run_dir, "checkpoints"), prefix=".tmp-")
            torch.save({"model": task.model.state_dict(), "optimizer": opt.state_dict(), "step": ctl.step,
                        "p": {n: l.p for n, l in layers.items()}}, os.path.join(tmp, "state.pt"))
            os.rename(tmp, final)  # write, then rename: never a half checkpoint
        rec.emit({"type": "checkpoint", "step": ctl.step, "path": rel})
        return rel

    paused = {"on": False}

    def apply(cid: str, body: dict) -> None:
        def ack(status, reason=None, with_settings=False):
            rec.emit({"type": "ack", "commandId": cid, "status": status, "step": ctl.step if status == "applied" else None,
                      **({"reason": reason} if reason else {}), **({"settings": current_settings()} if with_settings else {})})
        err = validate_command(body)
        if err:
            return ack("rejected", err)
        k = body["kind"]
        if k == "pause":
            if paused["on"]:
                return ack("rejected", "the run is already paused")
            paused["on"] = True
            ack("applied")
            return state("paused")
        if k == "resume":
            if not paused["on"]:
                return ack("rejected", "the run is not paused")
            paused["on"] = False
            ack("applied")
            return state("running")
        if k == "set":
            if cfg["method"] != "srlora" and ("fusionThreshold" in body or "fusionRatio" in body):
                return ack("rejected", f"fusionThreshold and fusionRatio need method srlora; this run is {cfg['method']}")
            ctl.set(**({"fusion_threshold": body["fusionThreshold"]} if "fusionThreshold" in body else {}), fusion_ratio=body.get("fusionRatio"))
            if "learningRate" in body:
                for g in opt.param_groups:
                    g["lr"] = body["learningRate"]
            for key in ("importanceEvery", "evalEvery"):
                if key in body:
                    settings[key] = body[key]
            return ack("applied", with_settings=True)
        if k == "recompose":
            if cfg["method"] != "srlora":
                return ack("rejected", f"recomposition needs method srlora; this run is {cfg['method']}")
            unknown = [n for n in body.get("layers", []) if n not in layers]
            if unknown:
                return ack("rejected", f"not adapted: {', '.join(unknown)}")

            def tagged(r):
                r.command_id = cid
                on_recomposition(r)
            ctl.on_recomposition = tagged
            try:
                ctl.recompose("forced", body.get("layers"))
            finally:
                ctl.on_recomposition = on_recomposition
            return ack("applied")
        if k == "checkpoint":
            checkpoint()
            return ack("applied")
        if k == "stop":
            stop_reason["why"] = "stopped by the user"
            return ack("applied")

    state("running")
    outcome, reason = "finished", None
    telemetry = Telemetry(rec, ctl, cfg["batchSize"], lambda: opt.param_groups[0]["lr"], settings, snapshots=cfg["method"] == "srlora")
    try:
        while ctl.step < cfg["steps"] and not stop_reason["why"]:
            loss = task.loss()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            ctl.after_backward()
            opt.step()
            for cid, body in commands.drain():
                ctl.pending.append(lambda cid=cid, body=body: apply(cid, body))
            ctl.after_step()
            telemetry.after_step(loss)
            if ctl.step % settings["evalEvery"] == 0 or ctl.step == cfg["steps"]:
                telemetry.flush()
                rec.emit({"type": "eval", "step": ctl.step, **task.evaluate()})
            if cfg["checkpointEvery"] and ctl.step % cfg["checkpointEvery"] == 0:
                checkpoint()
            while paused["on"] and not stop_reason["why"]:  # paused: block on the queue, no spinning
                telemetry.flush()
                item = commands.wait(timeout=0.5)
                if item:
                    apply(*item)
        telemetry.flush()
        if stop_reason["why"]:
            state("stopping", stop_reason["why"])
            reason = stop_reason["why"]
        checkpoint()
        rec.drain()  # the export's direction history reads events.jsonl
        export_run(run_dir, task.model, layers, base_weights(cfg), cfg["method"])
    except Exception as e:  # noqa: BLE001 - reported as the run's failure
        outcome, reason = "failed", f"{type(e).__name__}: {e}"
        log(reason)
    state(outcome, reason)
    if link:
        link.flush(3.0)
        link.close()
    rec.close()
    return 0 if outcome == "finished" else 1


if __name__ == "__main__":
    sys.exit(main())
