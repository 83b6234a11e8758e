"""Hugging Face Trainer integration: importance at `on_pre_optimizer_step` (the gradients are there and the weights
are not yet updated), recomposition and steering commands at `on_step_end`.

    layers = apply_srlora(model, ["query", "value"], r=8, alpha=16)
    trainer = Trainer(model=model, args=args, train_dataset=ds, callbacks=[SRLoRACallback(layers, r=8)])

With a run folder — `run_dir=`, or SRLORA_RUN_DIR when SRLoRA Studio launched the script — the run streams to the
extension's dashboard (the Trainer's logged losses, importance snapshots, recompositions) and takes its commands at
step ends: pause (the Trainer waits), τ, γ, learning rate, recompose, checkpoint (into the run folder), stop (the
Trainer stops). `srlora_torch.export.merged_state_dict(model, layers)` gives the plain model to save at the end.

`trainer.train(resume_from_checkpoint=...)` continues SRLoRA where it was: every Trainer checkpoint also holds
`srlora_callback.pt` (the controller's step and rule, every adapted layer's tensors — factors, recomposed frozen
weight, SVD, directions, ages, importance EMAs — and its direction pointer), restored at on_train_begin; the run
folder's log continues (one hello, then `rewind` to the checkpoint's step) and no singular direction is used twice.

Under `torchrun` / `accelerate launch` (the Trainer's DistributedDataParallel) the same lockstep rules as
`python -m srlora_torch.train` hold (distributed.py): rank 0 alone writes the run folder and talks to the hub, every
command is applied after the same step on every rank, each recomposition's selection comes from rank 0 and its result
is compared across ranks. FSDP and DeepSpeed ZeRO-3 are refused at on_train_begin.
"""
from __future__ import annotations

import os
from typing import Dict, Optional

import torch
from transformers import TrainerCallback

from .controller import SRLoRAController
from .distributed import Lockstep, refuse_sharding
from .layer import SRLoRALinear
from .session import Session, device_label

STATE_FILE = "srlora_callback.pt"
STATE_FORMAT = "srlora-callback 1"


class SRLoRACallback(TrainerCallback):
    def __init__(self, layers: Dict[str, SRLoRALinear], r: int, r_target: Optional[int] = None, fusion_ratio: float = 0.5,
                 fusion_threshold: Optional[float] = None, min_slot_age: Optional[int] = None, run_dir: Optional[str] = None,
                 name: Optional[str] = None, importance_every: int = 10):
        self.layers, self.kw = layers, dict(r=r, r_target=r_target, fusion_ratio=fusion_ratio, fusion_threshold=fusion_threshold, min_slot_age=min_slot_age)
        self.run_dir, self.name, self.importance_every = run_dir, name, importance_every
        self.controller: Optional[SRLoRAController] = None
        self.session: Optional[Session] = None

    # ---- resume_from_checkpoint: the callback's whole state travels with every Trainer checkpoint
    def state_dict(self) -> dict:
        ctl = self.controller
        return {"format": STATE_FORMAT, "step": ctl.step, "rule": {"fusionThreshold": ctl.fusion_threshold, "fusionRatio": ctl.fusion_ratio},
                "minSlotAge": ctl.min_slot_age, "skippedSteps": getattr(ctl, "skipped_steps", 0),
                "layers": {n: {"tensors": {k: v.detach().cpu().clone() for k, v in l.state_dict().items()}, "p": l.p, "directions": list(l.dir_host)}
                           for n, l in self.layers.items()}}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        ctl = self.controller
        missing = sorted(set(self.layers) - set(state["layers"]))
        if missing:
            raise ValueError(f"the checkpoint's SRLoRA state has no layer {', '.join(missing[:5])}: was it saved with other targets?")
        for n, l in self.layers.items():
            saved = state["layers"][n]
            for k, v in l.state_dict().items():  # in place: the optimiser keeps holding the same A and B
                v.copy_(saved["tensors"][k].to(v.device, v.dtype))
            l.p, l.dir_host = saved["p"], list(saved["directions"])
        ctl.step = state["step"]
        ctl.set(fusion_threshold=state["rule"]["fusionThreshold"], fusion_ratio=state["rule"]["fusionRatio"])
        ctl.min_slot_age = state["minSlotAge"]
        if hasattr(ctl, "skipped_steps"):
            ctl.skipped_steps = state.get("skippedSteps", 0)

    def on_save(self, args, state, control, **kwargs):
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        if self.controller is not None and os.path.isdir(folder) and args.should_save:
            torch.save(self.state_dict(), os.path.join(folder, STATE_FILE))

    def on_train_begin(self, args, state, control, optimizer=None, model=None, **kwargs):
        refuse_sharding(args, model)
        lockstep = Lockstep.attach()  # under torchrun / accelerate launch: one rank of the Trainer's DDP
        self.controller = ctl = SRLoRAController(self.layers, optimizer, state.max_steps, **self.kw)
        resumed_from = None
        if state.global_step > 0:  # trainer.train(resume_from_checkpoint=...): its state is loaded before this call
            resumed_from = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
            f = os.path.join(resumed_from, STATE_FILE)
            if not os.path.exists(f):
                raise RuntimeError(f"{resumed_from} has no {STATE_FILE}: SRLoRA cannot continue from it (saved without SRLoRACallback?)")
            self.load_state_dict(torch.load(f, map_location="cpu", weights_only=False))
        run_dir = self.run_dir or os.environ.get("SRLORA_RUN_DIR")
        if not run_dir:
            if lockstep is not None:  # no run folder: still rank 0's selections, compared across ranks
                lockstep.bind(ctl)
                lockstep.check_identical(self.layers, "the start")
            return
        main = lockstep is None or lockstep.is_main

        def save_checkpoint(folder: str) -> None:
            torch.save({"model": model.state_dict(), "optimizer": ctl.optimizer.state_dict() if ctl.optimizer else None, "step": ctl.step,
                        "p": {n: l.p for n, l in self.layers.items()}}, os.path.join(folder, "state.pt"))

        first = next(iter(self.layers.values()))
        batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)
        self.session = Session(ctl, optimizer, run_dir, total_steps=state.max_steps, batch_size=batch, name=self.name,
                               config={"trainer": "transformers", "r": self.kw["r"], "fusionRatio": self.kw["fusion_ratio"],
                                       "fusionThreshold": self.kw["fusion_threshold"], "learningRate": args.learning_rate},
                               device=device_label(first.A.device), importance_every=self.importance_every,
                               save_checkpoint=save_checkpoint if model is not None and main else None, lockstep=lockstep)
        self.session.start(resumed=resumed_from is not None, checkpoint=resumed_from)

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
