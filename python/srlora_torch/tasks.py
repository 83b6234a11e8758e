"""The built-in tasks of the PyTorch trainer — each a model built from the config, its batches, its loss and its
evaluation — and building / restoring a run's model: `python -m srlora_torch.train` and `.export` share them.
"""
from __future__ import annotations

from typing import Dict

import torch
from torch import nn

from . import digits, hfmodel, tabular
from .targets import default_targets, select_targets
from .texttask import TextTask
from .controller import apply_srlora, matches_target
from .layer import SRLoRALinear
from .models import TRANSFORMER_PRESETS, EncoderClassifier, synthetic_batch


def labelled_data(cfg: dict):
    """(train, eval) as ((features, labels), (features, labels)) for the built-in trainer's tasks, split as it splits."""
    t = cfg["task"]
    if t["kind"] == "digits":
        x, y = digits.load_digits(t["transform"])
        train, ev = digits.split(len(y))
        return (x[train], y[train]), (x[ev], y[ev])
    x, y = tabular.load_tabular(t["train"], t["labelColumn"])
    if t.get("eval"):
        return (x, y), tabular.load_tabular(t["eval"], t["labelColumn"])
    train, ev = tabular.held_out(len(y), cfg["seed"])
    return (x[train], y[train]), (x[ev], y[ev])


class Task:
    """Builds the model and yields batches and the loss for the configured built-in task."""

    def __init__(self, cfg: dict, device: torch.device, shard: tuple = (0, 1)):
        """shard (rank, world size): data-parallel ranks each draw the same global batch (world × batchSize, so the data
        position is one state, checkpointed once) and train on their own slice of it."""
        self.cfg, self.device = cfg, device
        self.rank, self.world = shard
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
            (tx, ty), (ex, ey) = labelled_data(cfg)
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
        self.train_model = self.model  # what the training loss runs (a DistributedDataParallel wrapper under torchrun)
        # digits / tabular: the built-in trainer's sampler (a seeded permutation per epoch, digits.Batcher), so the same
        # config and seed give the same batches in both trainers; otherwise a torch generator.
        self.gen = (digits.Batcher(len(self.train_y), cfg["batchSize"] * self.world, cfg["seed"] + 1) if t["kind"] in ("digits", "tabular")
                    else torch.Generator().manual_seed(cfg["seed"] + 1))

    def batch(self) -> tuple:
        """The next training batch as a tuple of tensors on the device (() for the matrix task, which has no data)."""
        if self.cfg["task"]["kind"] == "matrix":
            return ()
        if self.cfg["task"]["kind"] in ("digits", "tabular"):
            i = torch.as_tensor(self._mine(self.gen.next_indices()), dtype=torch.long).to(self.device)
            return self.train_x[i], self.train_y[i]
        return tuple(self._mine(t) for t in synthetic_batch(self.cfg["batchSize"] * self.world, self.shape, self.gen, self.device))

    def _mine(self, batch):
        """This rank's slice of the global batch (all of it on one process)."""
        n = self.cfg["batchSize"]
        return batch if self.world == 1 else batch[self.rank * n:(self.rank + 1) * n]

    def loss_of(self, *batch: torch.Tensor) -> torch.Tensor:
        """The training loss of one batch (what compiled.CompiledStep compiles and captures: no host reads; autocast's
        weight cache off, as a CUDA graph needs)."""
        if self.cfg["task"]["kind"] == "matrix":
            layer = self.model.layer0
            return 0.5 * ((layer.effective_weight() - self.target) ** 2).mean()
        x, y = batch
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bool(self.cfg["bf16"]), cache_enabled=False):
            logits = self.train_model(x)
        return accurate_cross_entropy(logits.float(), y)

    def loss(self) -> torch.Tensor:
        return self.loss_of(*self.batch())

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


class _AccurateCrossEntropy(torch.autograd.Function):
    """Mean softmax cross-entropy whose gradient is softmax − onehot computed without cancellation: the true class's
    entry as −Σ_{j≠y} p_j rather than p_y − 1, which in float32 is rounding noise for a confidently classified example
    (p_y = 1 − 1e-8 rounds to 1 or 1 − 6e-8); Adam's per-element normalisation turns that noise, on weights only such
    examples reach, into full-size steps that differ between implementations (issue 16's per-step parity). The same
    as src/trainer/models/model.ts crossEntropy."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(logits, y)
        return nn.functional.cross_entropy(logits, y)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        z, y = ctx.saved_tensors
        e = torch.exp(z - z.max(1, keepdim=True).values)
        onehot = nn.functional.one_hot(y, z.shape[1]).to(z.dtype)
        others = 1 - onehot
        S = e.sum(1, keepdim=True)
        rest = (e * others).sum(1, keepdim=True)  # Σ_{j≠y} e_j: no cancellation
        delta = (e / S) * others - onehot * (rest / S)
        return delta * (grad / z.shape[0]), None


def accurate_cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """nn.functional.cross_entropy (mean) with the cancellation-free gradient of _AccurateCrossEntropy."""
    return _AccurateCrossEntropy.apply(logits, y)


def build_model(cfg: dict, device: torch.device, shard: tuple = (0, 1)):
    """The task (its model built from the seed, or loaded from a Hugging Face folder for `text`) with SRLoRA applied to
    its targets: (task, layers, rTarget). task.extra_params: what else trains in full (a new classifier head)."""
    task = TextTask(cfg, device, shard) if cfg["task"]["kind"] == "text" else Task(cfg, device, shard)
    r_target = cfg["rTarget"] or 4 * cfg["r"]
    layers = apply_srlora(task.model, cfg.get("targets") or task.default_targets, cfg["r"], cfg["alpha"], r_target, cfg["method"],
                          cfg["beta1"], cfg["beta2"], cfg["seed"])
    if isinstance(task, TextTask):
        task.after_adapters()
    return task, layers, r_target


def base_weights(cfg: dict) -> Dict[str, torch.Tensor]:
    """W0 of the adapted layers, for the export's ΔW: the task's model is rebuilt from its seed (on the CPU) rather than
    kept through the run (a Hugging Face model: reloaded from its folder)."""
    if cfg["task"]["kind"] == "text":
        model, _, _ = hfmodel.load_classifier(cfg["model"]["path"], ["0", "1"])  # the head is not adapted: any size
        targets = cfg.get("targets") or default_targets(model, exclude=hfmodel.new_modules(model, ()))
        return {f"{n}.weight": model.get_submodule(n).weight.detach() for n in select_targets(model, targets)}
    task = Task(cfg, torch.device("cpu"))
    targets = cfg.get("targets") or task.default_targets
    return {f"{n}.weight": m.weight.detach() for n, m in task.model.named_modules() if isinstance(m, nn.Linear) and matches_target(n, targets)}


def restore(task: Task, layers: Dict[str, SRLoRALinear], state: dict) -> None:
    """A checkpoint's model into a freshly built one, with the host-side bookkeeping of every layer."""
    task.model.load_state_dict(state["model"])
    for n, l in layers.items():
        l.p = state["p"][n]
        l.dir_host = l.directions.tolist()
