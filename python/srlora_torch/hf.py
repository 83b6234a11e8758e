"""Hugging Face Trainer integration: importance at `on_pre_optimizer_step` (the gradients are there and the weights
are not yet updated), recomposition and steering commands at `on_step_end`.

    layers = apply_srlora(model, ["query", "value"], r=8, alpha=16)
    trainer = Trainer(model=model, args=args, train_dataset=ds, callbacks=[SRLoRACallback(layers, r=8)])

With a run folder — `run_dir=`, or SRLORA_RUN_DIR when SRLoRA Studio launched the script — the run streams to the
extension's dashboard (the Trainer's logged losses, importance snapshots, recompositions) and takes its commands at
step ends: pause (the Trainer waits), τ, γ, learning rate, recompose, checkpoint (into the run folder), stop (the
Trainer stops). `srlora_torch.export.merged_state_dict(model, layers)` gives the plain model to save at the end.
"""
from __future__ import annotations

import os
from typing import Dict, Optional

import torch
from transformers import TrainerCallback

from .controller import SRLoRAController
from .layer import SRLoRALinear
from .session import Session, device_label


class SRLoRACallback(TrainerCallback):
    def __init__(self, layers: Dict[str, SRLoRALinear], r: int, r_target: Optional[int] = None, fusion_ratio: float = 0.5,
                 fusion_threshold: Optional[float] = None, min_slot_age: Optional[int] = None, run_dir: Optional[str] = None,
                 name: Optional[str] = None, importance_every: int = 10):
        self.layers, self.kw = layers, dict(r=r, r_target=r_target, fusion_ratio=fusion_ratio, fusion_threshold=fusion_threshold, min_slot_age=min_slot_age)
        self.run_dir, self.name, self.importance_every = run_dir, name, importance_every
        self.controller: Optional[SRLoRAController] = None
        self.session: Optional[Session] = None

    def on_train_begin(self, args, state, control, optimizer=None, model=None, **kwargs):
        self.controller = ctl = SRLoRAController(self.layers, optimizer, state.max_steps, **self.kw)
        run_dir = self.run_dir or os.environ.get("SRLORA_RUN_DIR")
        if not run_dir:
            return

        def save_checkpoint(folder: str) -> None:
            torch.save({"model": model.state_dict(), "optimizer": ctl.optimizer.state_dict() if ctl.optimizer else None, "step": ctl.step,
                        "p": {n: l.p for n, l in self.layers.items()}}, os.path.join(folder, "state.pt"))

        first = next(iter(self.layers.values()))
        batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)
        self.session = Session(ctl, optimizer, run_dir, total_steps=state.max_steps, batch_size=batch, name=self.name,
                               config={"trainer": "transformers", "r": self.kw["r"], "fusionRatio": self.kw["fusion_ratio"],
                                       "fusionThreshold": self.kw["fusion_threshold"], "learningRate": args.learning_rate},
                               device=device_label(first.A.device), importance_every=self.importance_every,
                               save_checkpoint=save_checkpoint if model is not None else None)
        self.session.start()

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.controller.after_backward()

    def on_step_end(self, args, state, control, optimizer=None, **kwargs):
        if optimizer is not None and self.controller.optimizer is None:
            self.controller.optimizer = optimizer
            if self.session:
                self.session.opt = optimizer
        self.controller.after_step()
        if self.session:
            self.session.after_step(None)  # losses come through on_log
            if self.session.stop_reason:
                control.should_training_stop = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.session and logs and "loss" in logs:
            self.session.telemetry.add_loss(state.global_step, float(logs["loss"]))

    def on_train_end(self, args, state, control, **kwargs):
        if self.session:
            self.session.finish()
            self.session = None
