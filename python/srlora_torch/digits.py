"""The extension's built-in task in PyTorch, so a run config made for the built-in trainer runs here too: the digits
of media/data/mnist-10k.u8.gz with the same 8,000 / 2,000 split (the same seeded shuffle as src/trainer/rng.ts), the
same transforms, and the same base models (media/models/{mlp,vit}.safetensors, loaded by name into the same
architectures as src/trainer/models/*.ts).
"""
from __future__ import annotations

import functools
import gzip
import math
import os
import struct
from typing import List, Tuple

import numpy as np
import torch
from torch import nn

from .safetensors_io import read_safetensors

DIGITS_FILE = os.path.join("media", "data", "mnist-10k.u8.gz")
SPLIT_SEED, EVAL_SIZE = 20251128, 2000
TARGETS = {"mlp": ["fc0", "fc1", "fc2"], "vit": ["attn.q", "attn.k", "attn.v", "attn.o", "ffn.fc1", "ffn.fc2"]}


def asset_root() -> str:
    """SRLoRA Studio's folder holding media/: SRLORA_ASSETS (the extension sets it), else this checkout's."""
    for root in (os.environ.get("SRLORA_ASSETS"), os.path.join(os.path.dirname(__file__), "..", "..")):
        if root and os.path.exists(os.path.join(root, DIGITS_FILE)):
            return os.path.abspath(root)
    raise FileNotFoundError(f"the digits task needs SRLoRA Studio's {DIGITS_FILE}: set SRLORA_ASSETS to the extension's folder")


class Rng:
    """src/trainer/rng.ts, bit for bit: SplitMix32-style mixing over a 32-bit counter."""

    def __init__(self, state: int):
        self.state = state & 0xFFFFFFFF

    def next(self) -> float:
        self.state = (self.state + 0x9E3779B9) & 0xFFFFFFFF
        z = self.state
        z = ((z ^ (z >> 16)) * 0x85EBCA6B) & 0xFFFFFFFF
        z = ((z ^ (z >> 13)) * 0xC2B2AE35) & 0xFFFFFFFF
        z ^= z >> 16
        return z / 4294967296

    def uniform_list(self, lo: float, hi: float, n: int) -> List[float]:
        """n draws of rng.ts uniform(lo, hi) = lo + (hi − lo)·next(), in float64 as JavaScript computes them."""
        return [lo + (hi - lo) * self.next() for _ in range(n)]

    def shuffle(self, a: List[int]) -> None:
        for i in range(len(a) - 1, 0, -1):
            j = int(self.next() * (i + 1))
            a[i], a[j] = a[j], a[i]


class Batcher:
    """src/trainer/data/batches.ts, bit for bit: a seeded permutation of the training set walked batch by batch, a fresh
    shuffle (same generator) at each epoch's end. Its state is one int64 tensor (generator, epoch, position, order), so
    train.py's checkpoints keep it as they kept a torch generator's."""

    def __init__(self, n: int, batch_size: int, seed: int):
        if batch_size < 1:
            raise ValueError("batchSize must be ≥ 1")
        self.batch_size, self.rng, self.order, self.pos, self.epoch = batch_size, Rng(seed), list(range(n)), 0, 0
        self.rng.shuffle(self.order)

    def next_indices(self) -> List[int]:
        out = []
        for _ in range(self.batch_size):
            if self.pos >= len(self.order):
                self.pos, self.epoch = 0, self.epoch + 1
                self.rng.shuffle(self.order)
            out.append(self.order[self.pos])
            self.pos += 1
        return out

    def get_state(self) -> torch.Tensor:
        return torch.tensor([self.rng.state, self.epoch, self.pos, *self.order], dtype=torch.int64)

    def set_state(self, t: torch.Tensor) -> None:
        v = t.tolist()
        if len(v) - 3 != len(self.order):
            raise ValueError("checkpoint data position does not match this dataset")
        self.rng, self.epoch, self.pos, self.order = Rng(v[0]), v[1], v[2], v[3:]


TRANSFORMS = ("upright", "rot90", "rot15-30")
MILD_SEED = 20251129


def _rotate(px: np.ndarray, degrees: np.ndarray) -> np.ndarray:
    """Each 28×28 image turned about its centre by its own angle (counter-clockwise, bilinear, zeros outside)."""
    n = px.shape[0]
    t = np.deg2rad(degrees)[:, None, None]
    rr, cc = np.meshgrid(np.arange(28) - 13.5, np.arange(28) - 13.5, indexing="ij")
    # the source of output pixel (r, c): the inverse rotation of its offset from the centre
    sr = np.cos(t) * rr[None] - np.sin(t) * cc[None] + 13.5
    sc = np.sin(t) * rr[None] + np.cos(t) * cc[None] + 13.5
    r0, c0 = np.floor(sr).astype(int), np.floor(sc).astype(int)
    fr, fc = sr - r0, sc - c0
    img = np.pad(px.astype(np.float32), ((0, 0), (1, 1), (1, 1)))  # index −1 and 28 read zeros
    idx = np.arange(n)[:, None, None]
    def at(r, c):
        return img[idx, np.clip(r, -1, 28) + 1, np.clip(c, -1, 28) + 1]
    out = (at(r0, c0) * (1 - fr) * (1 - fc) + at(r0, c0 + 1) * (1 - fr) * fc + at(r0 + 1, c0) * fr * (1 - fc) + at(r0 + 1, c0 + 1) * fr * fc)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=4)  # bench:quality builds many runs per process; callers only index the result
def load_digits(transform: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """All 10,000 digits as (n × 784 floats in [0, 1], labels); rot90 turns each counter-clockwise; rot15-30 (this
    trainer only: a milder shift for bench:quality) turns each by its own fixed angle, ±(15°…30°), sign and size from
    a seeded generator (the same angles every run)."""
    if transform not in TRANSFORMS:
        raise ValueError(f"task.transform: expected {' | '.join(TRANSFORMS)}, got {transform!r}")
    path = os.path.join(asset_root(), DIGITS_FILE)
    buf = gzip.decompress(open(path, "rb").read())
    if buf[:4] != b"SRMN":
        raise ValueError(f"{path}: not a digits file")
    n, dim = struct.unpack_from("<II", buf, 4)
    px = np.frombuffer(buf, dtype=np.uint8, count=n * dim, offset=12).reshape(n, 28, 28)
    if transform == "rot90":
        px = np.rot90(px, 1, axes=(1, 2))  # new[r][c] = old[c][27 − r]
    elif transform == "rot15-30":
        g = Rng(MILD_SEED)
        px = _rotate(px, np.array([(15 + 15 * g.next()) * (1 if g.next() < 0.5 else -1) for _ in range(n)]))
    labels = np.frombuffer(buf, dtype=np.uint8, count=n, offset=12 + n * dim)
    return torch.from_numpy(px.reshape(n, dim).astype(np.float32) / 255), torch.from_numpy(labels.astype(np.int64))


def split(n: int) -> Tuple[List[int], List[int]]:
    """(train, eval) indices: the built-in trainer's fixed permutation."""
    idx = list(range(n))
    Rng(SPLIT_SEED).shuffle(idx)
    return idx[EVAL_SIZE:], idx[:EVAL_SIZE]


class MLP(nn.Module):
    """784 → 256 → 256 → 10 with ReLU (sizes from the weights), layers fc0, fc1, … as in src/trainer/models/mlp.ts."""

    def __init__(self, dims: List[int]):
        super().__init__()
        self.n = len(dims) - 1
        for i in range(self.n):
            setattr(self, f"fc{i}", nn.Linear(dims[i], dims[i + 1]))

    def forward(self, x):
        for i in range(self.n):
            x = getattr(self, f"fc{i}")(x)
            if i < self.n - 1:
                x = torch.relu(x)
        return x


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_dim: int):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(dim, eps=1e-5), nn.LayerNorm(dim, eps=1e-5)
        self.attn = nn.Module()
        for p in "qkvo":
            setattr(self.attn, p, nn.Linear(dim, dim))
        self.ffn = nn.Module()
        self.ffn.fc1, self.ffn.fc2 = nn.Linear(dim, mlp_dim), nn.Linear(mlp_dim, dim)

    def forward(self, h):
        B, T, D = h.shape
        a = self.ln1(h)
        q, k, v = (getattr(self.attn, p)(a).view(B, T, self.heads, D // self.heads).transpose(1, 2) for p in "qkv")
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D // self.heads), dim=-1)
        h = h + self.attn.o((att @ v).transpose(1, 2).reshape(B, T, D))
        return h + self.ffn.fc2(nn.functional.gelu(self.ffn.fc1(self.ln2(h)), approximate="tanh"))


class TinyViT(nn.Module):
    """src/trainer/models/vit.ts: 7×7 patches of a 28×28 digit, a class token, learned positions, pre-norm blocks."""

    def __init__(self, dim: int = 32, depth: int = 2, heads: int = 2, mlp_dim: int = 64, patch: int = 7):
        super().__init__()
        self.patch, grid = patch, 28 // patch
        self.patch_embed = nn.Linear(patch * patch, dim)
        self.cls = nn.Parameter(torch.zeros(dim))
        self.pos = nn.Parameter(torch.zeros(grid * grid + 1, dim))
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_dim) for _ in range(depth))
        self.ln_f = nn.LayerNorm(dim, eps=1e-5)
        self.head = nn.Linear(dim, 10)

    def forward(self, x):
        B, g, p = x.shape[0], 28 // self.patch, self.patch
        patches = x.view(B, g, p, g, p).permute(0, 1, 3, 2, 4).reshape(B, g * g, p * p)
        h = torch.cat([self.cls.expand(B, 1, -1), self.patch_embed(patches)], 1) + self.pos
        for b in self.blocks:
            h = b(h)
        return self.head(self.ln_f(h)[:, 0])


def base_model(kind: str, weights_file: str = "") -> nn.Module:
    """The pretrained base model of `kind`, from weights_file or the built-in one; every tensor must match."""
    if kind not in ("mlp", "vit"):
        raise ValueError(f"model.kind: expected mlp | vit, got {kind!r}")
    path = weights_file or os.path.join(asset_root(), "media", "models", f"{kind}.safetensors")
    if not os.path.exists(path):
        raise FileNotFoundError(f"model.weights: {path} not found")
    w = read_safetensors(path)
    if kind == "mlp":
        dims, i = [], 0
        while f"fc{i}.weight" in w:
            out, inp = w[f"fc{i}.weight"].shape
            dims = dims or [inp]
            dims.append(out)
            i += 1
        if not dims:
            raise ValueError(f"{path} is not an mlp base model: it has no fc0.weight (hidden × features)")
        model: nn.Module = MLP(dims)
    else:
        model = TinyViT()
    try:
        model.load_state_dict(w, strict=True)
    except RuntimeError as e:  # missing, unexpected or mis-shaped tensors: the first lines say which
        detail = " ".join(str(e).split())
        raise ValueError(f"{path} is not a {kind} base model: {detail[:300]}{'…' if len(detail) > 300 else ''}") from None
    return model
