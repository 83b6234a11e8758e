"""Hugging Face Trainer integration: importance at `on_pre_optimizer_step` (the gradients are there and the weights
are not yet updated), recomposition and steering commands at `on_step_end`.

    layers = apply_srlora(model, ["query", "value"], r=8, alpha=16)
    trainer = Trainer(model=model, args=args, train_dataset=ds, callbacks=[SRLoRACallback(layers, r=8)])
"""
from __future__ import annotations

from typing import Dict, Optional

from transformers import TrainerCallback

from .controller import SRLoRAController
from .layer import SRLoRALinear


class SRLoRACallback(TrainerCallback):
    def __init__(self, layers: Dict[str, SRLoRALinear], r: int, r_target: Optional[int] = None, fusion_ratio: float = 0.5,
                 fusion_threshold: Optional[float] = None, min_slot_age: Optional[int] = None):
        self.layers, self.kw = layers, dict(r=r, r_target=r_target, fusion_ratio=fusion_ratio, fusion_threshold=fusion_threshold, min_slot_age=min_slot_age)
        self.controller: Optional[SRLoRAController] = None

    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        self.controller = SRLoRAController(self.layers, optimizer, state.max_steps, **self.kw)

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.controller.after_backward()

    def on_step_end(self, args, state, control, optimizer=None, **kwargs):
        if optimizer is not None and self.controller.optimizer is None:
            self.controller.optimizer = optimizer
        self.controller.after_step()
