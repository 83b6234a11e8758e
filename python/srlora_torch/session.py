"""A steerable run for any training loop (docs/protocol.md): the run folder's events.jsonl, the hub link when the
extension launched this process (SRLORA_HUB_URL, SRLORA_TOKEN, SRLORA_RUN_DIR), steering commands applied at step
boundaries, and telemetry. `python -m srlora_torch.train` and the Hugging Face callback are built on it; so is a
hand-written loop:

    session = Session(srl, opt, run_dir, total_steps=10_000, batch_size=32)
    session.start()
    for batch in data:
        loss = model(**batch).loss
        loss.backward(); srl.after_backward(); opt.step(); opt.zero_grad(); srl.after_step()
        session.after_step(loss)       # commands (a pause blocks here until resumed), metrics, snapshots
        if session.stop_reason:
            break
    session.finish()
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
from typing import Callable, Dict, Optional

import torch

from .client import CommandQueue, EventRecorder, HubLink
from .controller import Recomposition, SRLoRAController
from .protocol import PROTOCOL_MAJOR, PROTOCOL_MINOR, validate_command
from .telemetry import Telemetry


def log(text: str) -> None:
    """stderr may be gone: a trainer detached from a closed window keeps training (and logging to events.jsonl)."""
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def device_label(device: torch.device) -> str:
    return f"CUDA · {torch.cuda.get_device_name(device)}" if device.type == "cuda" else "CPU"


def run_id_of(run_dir: str) -> str:
    return re.sub(r"[^A-Za-z0-9._:-]", "-", os.path.basename(os.path.normpath(run_dir))).lstrip("-._:") or "run"


def recomposition_message(r: Recomposition, command_id: Optional[str] = None) -> dict:
    return {"type": "recomposition", "step": r.step, "trigger": r.trigger, **({"commandId": command_id} if command_id else {}),
            "rule": r.rule, "outputChange": None, "layers": [
                {"name": e.layer, "slots": e.slots, "scores": e.scores, "oldDirections": e.old_directions, "newDirections": e.new_directions,
                 "exhausted": e.exhausted, "deltaNorm": e.delta_norm, "preservationError": e.preservation_error, "p": e.p} for e in r.layers]}


class Session:
    def __init__(self, ctl: SRLoRAController, optimizer: Optional[torch.optim.Optimizer], run_dir: str, *, total_steps: int,
                 batch_size: int, name: Optional[str] = None, config: Optional[dict] = None, device: str = "",
                 importance_every: int = 10, eval_every: int = 0, checkpoint_every: int = 0,
                 evaluate: Optional[Callable[[], dict]] = None, save_checkpoint: Optional[Callable[[str], None]] = None,
                 on_finish: Optional[Callable[[], None]] = None, env: Optional[Dict[str, str]] = None):
        """save_checkpoint(dir) writes a checkpoint into a new folder (written then renamed by the session); evaluate()
        returns {"loss", "metrics"}; on_finish() runs after the final checkpoint of a finished run (the export)."""
        self.ctl, self.opt, self.run_dir = ctl, optimizer, os.path.abspath(run_dir)
        self.run_id = run_id_of(run_dir)
        self.total_steps, self.name, self.config, self.device = total_steps, name, config or {}, device
        self.settings = {"importanceEvery": importance_every, "evalEvery": eval_every or total_steps}
        self.checkpoint_every, self.evaluate, self.save_checkpoint, self.on_finish = checkpoint_every, evaluate, save_checkpoint, on_finish
        self.env = os.environ if env is None else env
        self.rec = EventRecorder(self.run_id, self.run_dir)
        self.commands = CommandQueue()
        self.link: Optional[HubLink] = None
        self.paused = False
        self.stop_reason: Optional[str] = None
        self.telemetry = Telemetry(self.rec, ctl, batch_size, self.lr, self.settings, snapshots=ctl.method == "srlora")
        self._command_id: Optional[str] = None  # the recompose command being applied, if any
        ctl.listeners.append(lambda r: self.rec.emit(recomposition_message(r, self._command_id)))

    def lr(self) -> float:
        return self.opt.param_groups[0]["lr"] if self.opt is not None else 0.0  # a Trainer may hand over its optimizer late

    # ---- lifecycle
    def start(self, resumed: bool = False) -> None:
        """Announces the run (hello; a resumed run's events.jsonl has its hello and continues its seq), connects to
        the hub when the env says so, and reports it running."""
        layers = self.ctl.layers
        if not resumed:
            self.rec.emit({"type": "hello", "protocol": {"major": PROTOCOL_MAJOR, "minor": PROTOCOL_MINOR}, "name": self.name or self.run_id,
                           "method": self.ctl.method, "backend": {"name": "pytorch", "device": self.device or "unknown"}, "totalSteps": self.total_steps,
                           "config": {**self.config, "torch": torch.__version__}, "layers": [
                               {"name": n, "shape": [l.out_features, l.in_features], "r": l.r, "rTarget": l.r_target} for n, l in layers.items()]})
        if self.env.get("SRLORA_HUB_URL"):
            self.link = HubLink(self.rec, self.env["SRLORA_HUB_URL"], self.env.get("SRLORA_TOKEN", ""), self.run_dir, self.on_command, on_log=log)
            self.link.start()
        self.state("running", f"resumed at step {self.ctl.step}" if resumed else None)
        if self.evaluate and not resumed:  # the starting point, as the built-in trainer reports it
            self.rec.emit({"type": "eval", "step": self.ctl.step, **self.evaluate()})

    def after_step(self, loss: Optional[torch.Tensor] = None) -> None:
        """Call after SRLoRAController.after_step: the commands that arrived (after this step's scheduled recomposition,
        in arrival order), the metrics row (loss may stay on the device), snapshots, eval and checkpoints on their
        schedule; while paused, blocks here (on the command queue: no spinning) until resumed or stopped."""
        for cid, body in self.commands.drain():
            self.apply(cid, body)
        self.telemetry.after_step(loss)
        step = self.ctl.step
        if self.evaluate and (step % self.settings["evalEvery"] == 0 or step == self.total_steps):
            self.telemetry.flush()
            self.rec.emit({"type": "eval", "step": step, **self.evaluate()})
        if self.checkpoint_every and step % self.checkpoint_every == 0:
            self.checkpoint()
        while self.paused and not self.stop_reason:
            self.telemetry.flush()
            item = self.commands.wait(timeout=0.5)
            if item:
                self.apply(*item)

    def finish(self, error: Optional[BaseException] = None) -> str:
        """Ends the run: the final checkpoint and on_finish (unless it failed), then state finished or failed."""
        outcome, reason = "finished", None
        try:
            if error is not None:
                raise error
            self.telemetry.flush()
            if self.stop_reason:
                self.state("stopping", self.stop_reason)
                reason = self.stop_reason
            self.checkpoint()
            self.rec.drain()  # on_finish may read events.jsonl (the export's direction history)
            if self.on_finish:
                self.on_finish()
        except Exception as e:  # noqa: BLE001 - reported as the run's failure
            outcome, reason = "failed", f"{type(e).__name__}: {e}"
            log(reason)
        self.state(outcome, reason)
        if self.link:
            self.link.flush(3.0)
            self.link.close()
        self.rec.close()
        return outcome

    # ---- what the session emits
    def state(self, s: str, reason: Optional[str] = None) -> None:
        self.rec.emit({"type": "state", "state": s, "step": self.ctl.step, **({"reason": reason} if reason else {})})

    def checkpoint(self) -> Optional[str]:
        """Writes checkpoints/step-N through save_checkpoint (into a temporary folder, then renamed: never half a
        checkpoint) and announces it; without save_checkpoint there is nothing to write."""
        if self.save_checkpoint is None:
            return None
        rel = os.path.join("checkpoints", f"step-{self.ctl.step}")
        final = os.path.join(self.run_dir, rel)
        if not os.path.exists(final):
            os.makedirs(os.path.dirname(final), exist_ok=True)
            tmp = tempfile.mkdtemp(dir=os.path.dirname(final), prefix=".tmp-")
            self.save_checkpoint(tmp)
            os.rename(tmp, final)
        self.rec.emit({"type": "checkpoint", "step": self.ctl.step, "path": rel})
        return rel

    # ---- commands
    def on_command(self, cid: str, body: dict) -> None:
        """From the hub link's thread: acknowledged as received at once, applied at the next step boundary."""
        self.rec.emit({"type": "ack", "commandId": cid, "status": "received", "step": None})
        self.commands.put(cid, body)

    def current_settings(self) -> dict:
        return {"fusionThreshold": self.ctl.fusion_threshold, "fusionRatio": self.ctl.fusion_ratio, "learningRate": self.lr(), **self.settings}

    def apply(self, cid: str, body: dict) -> None:
        ctl, method = self.ctl, self.ctl.method

        def ack(status, reason=None, with_settings=False):
            self.rec.emit({"type": "ack", "commandId": cid, "status": status, "step": ctl.step if status == "applied" else None,
                           **({"reason": reason} if reason else {}), **({"settings": self.current_settings()} if with_settings else {})})
        err = validate_command(body)
        if err:
            return ack("rejected", err)
        k = body["kind"]
        if k in ("pause", "resume"):
            if self.paused == (k == "pause"):
                return ack("rejected", "the run is already paused" if self.paused else "the run is not paused")
            self.paused = k == "pause"
            ack("applied")
            return self.state("paused" if self.paused else "running")
        if k == "set":
            if method != "srlora" and ("fusionThreshold" in body or "fusionRatio" in body):
                return ack("rejected", f"fusionThreshold and fusionRatio need method srlora; this run is {method}")
            if "learningRate" in body and self.opt is None:
                return ack("rejected", "no optimizer yet to set the learning rate of")
            ctl.set(**({"fusion_threshold": body["fusionThreshold"]} if "fusionThreshold" in body else {}), fusion_ratio=body.get("fusionRatio"))
            if "learningRate" in body:
                for g in self.opt.param_groups:
                    g["lr"] = body["learningRate"]
            for key in ("importanceEvery", "evalEvery"):
                if key in body:
                    self.settings[key] = body[key]
            return ack("applied", with_settings=True)
        if k == "recompose":
            if method != "srlora":
                return ack("rejected", f"recomposition needs method srlora; this run is {method}")
            unknown = [n for n in body.get("layers", []) if n not in ctl.layers]
            if unknown:
                return ack("rejected", f"not adapted: {', '.join(unknown)}")
            self._command_id = cid
            try:
                ctl.recompose("forced", body.get("layers"))
            finally:
                self._command_id = None
            return ack("applied")
        if k == "checkpoint":
            if self.save_checkpoint is None:
                return ack("rejected", "this run has no checkpoint writer")
            self.checkpoint()
            return ack("applied")
        if k == "stop":
            self.stop_reason = "stopped by the user"
            return ack("applied")
