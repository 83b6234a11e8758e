"""The `text` task on a `huggingface` model: your labelled text (text.py) tokenised by the model folder's tokenizer
(truncated to task.maxLength tokens, padded per batch), cross-entropy on the sequence-classification logits, and an
evaluation with loss, accuracy and F1. Same interface as tasks.Task: model, default_targets, gen, loss(), evaluate(),
plus extra_params (the head, trained in full) and export_hf()."""
from __future__ import annotations

import os
from typing import Dict, List

import torch
from torch import nn

from . import hfmodel
from .text import accuracy_f1, label_ids, text_data
from .targets import default_targets

EVAL_BATCH = 64


class TextTask:
    def __init__(self, cfg: dict, device: torch.device, shard: tuple = (0, 1)):
        self.cfg, self.device = cfg, device
        self.rank, self.world = shard  # data-parallel: every rank draws the global batch, trains on its slice
        t, m = cfg["task"], cfg.get("model") or {}
        if m.get("kind") != "huggingface":
            raise ValueError(f"task.kind \"text\" needs model.kind \"huggingface\" (a model folder with a tokenizer), got {m.get('kind')!r}")
        train, ev = text_data(t, cfg["seed"])
        self.labels, ids = label_ids(train, ev, path=t["train"])
        if len(self.labels) < 2:
            raise ValueError(f"{t['train']}: one label ({self.labels[0]}); classification needs at least two")
        self.model, self.tokenizer, self.modules_to_save = hfmodel.load_classifier(m["path"], self.labels)
        self.default_targets = default_targets(self.model, exclude=self.modules_to_save)
        max_len = self.max_len = int(t.get("maxLength", 128))
        self.train_enc, self.train_y = self._encode(train, ids, max_len)
        self.eval_enc, self.eval_y = self._encode(ev, ids, max_len)
        self.model.to(device)
        self.train_model = self.model  # what the training loss runs (a DistributedDataParallel wrapper under torchrun)
        self.gen = torch.Generator().manual_seed(cfg["seed"] + 1)
        self.extra_params: List[nn.Parameter] = []

    def _encode(self, rows, ids, max_len):
        enc = self.tokenizer([text for text, _ in rows], truncation=True, max_length=max_len)
        return enc, torch.tensor([ids[lab] for _, lab in rows], dtype=torch.long)

    def after_adapters(self) -> None:
        """Called once SRLoRA is applied (which froze every weight): the head trains in full (modules_to_save)."""
        self.extra_params = hfmodel.trainable_modules(self.model, self.modules_to_save)

    def _batch(self, enc, idx) -> Dict[str, torch.Tensor]:
        feats = [{k: enc[k][i] for k in enc.keys()} for i in idx]
        b = self.tokenizer.pad(feats, return_tensors="pt")
        return {k: v.to(self.device) for k, v in b.items()}

    def batch(self) -> tuple:
        """The next training batch for the compiled step (compiled.CompiledStep): (tensors of the tokenizer's keys...,
        labels), padded to task.maxLength so every batch has one shape (a new shape would compile and capture again)."""
        n = self.cfg["batchSize"]
        i = torch.randint(0, len(self.train_y), (n * self.world,), generator=self.gen).tolist()[self.rank * n:(self.rank + 1) * n]
        feats = [{k: self.train_enc[k][j] for k in self.train_enc.keys()} for j in i]
        b = self.tokenizer.pad(feats, padding="max_length", max_length=self.max_len, return_tensors="pt")
        self._keys = list(b.keys())
        return (*(b[k].to(self.device) for k in self._keys), self.train_y[i].to(self.device))

    def loss_of(self, *batch: torch.Tensor) -> torch.Tensor:
        """The loss of one batch() (no host reads; autocast's weight cache off, as a CUDA graph needs)."""
        *tensors, y = batch
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bool(self.cfg.get("bf16")), cache_enabled=False):
            logits = self.train_model(**dict(zip(self._keys, tensors))).logits
        return nn.functional.cross_entropy(logits.float(), y)

    def _logits(self, batch, model=None) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bool(self.cfg.get("bf16"))):
            return (model or self.model)(**batch).logits.float()

    def loss(self) -> torch.Tensor:
        self.model.train()
        n = self.cfg["batchSize"]
        i = torch.randint(0, len(self.train_y), (n * self.world,), generator=self.gen).tolist()[self.rank * n:(self.rank + 1) * n]
        return nn.functional.cross_entropy(self._logits(self._batch(self.train_enc, i), self.train_model), self.train_y[i].to(self.device))

    @torch.no_grad()
    def predict(self, enc, n: int) -> torch.Tensor:
        """Logits for the first n encoded rows (eval mode, in batches)."""
        self.model.eval()
        out = [self._logits(self._batch(enc, range(a, min(n, a + EVAL_BATCH)))) for a in range(0, n, EVAL_BATCH)]
        self.model.train()
        return torch.cat(out)

    @torch.no_grad()
    def evaluate(self) -> dict:
        logits = self.predict(self.eval_enc, len(self.eval_y))
        y = self.eval_y.to(logits.device)
        pred = logits.argmax(1)
        return {"loss": float(nn.functional.cross_entropy(logits, y)),
                "metrics": accuracy_f1(pred.tolist(), y.tolist(), len(self.labels))}

    def base_weights(self, names) -> Dict[str, torch.Tensor]:
        return hfmodel.load_base_weights(self.cfg["model"]["path"], self.labels, names)

    def export_hf(self, out_dir: str, merged: Dict[str, torch.Tensor]) -> str:
        return hfmodel.export_hf(out_dir, self.model, self.tokenizer, merged)


def resolve_paths(cfg: dict, base_dir: str) -> None:
    """A text task's files and a huggingface model folder, relative to the config file's folder (in place)."""
    t, m = cfg.get("task") or {}, cfg.get("model") or {}
    at = lambda p: p if os.path.isabs(p) else os.path.join(base_dir, p)  # noqa: E731
    if t.get("kind") == "text":
        for key in ("train", "eval"):
            if t.get(key):
                t[key] = at(t[key])
    if m.get("kind") == "huggingface" and m.get("path"):
        m["path"] = at(os.path.expanduser(m["path"]))
