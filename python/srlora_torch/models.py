"""A transformer encoder classifier built from a config (no downloads): `tiny` for CPU tests, `roberta-base` shapes
(12 layers, d = 768, 12 heads, FFN 3072) for GPU runs. Module names follow the TypeScript ViT (blocks.N.attn.q|k|v|o,
blocks.N.ffn.fc1|fc2), so the same target patterns work on both trainers."""
from __future__ import annotations

import math
from typing import Dict

import torch
from torch import nn

TRANSFORMER_PRESETS: Dict[str, Dict[str, int]] = {
    "tiny": dict(vocab=64, seq=32, dim=32, depth=2, heads=2, ffn=64, classes=4),
    "roberta-base": dict(vocab=50265, seq=128, dim=768, depth=12, heads=12, ffn=3072, classes=2),
}


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        h = lambda t: t.view(B, T, self.heads, D // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = h(self.q(x)), h(self.k(x)), h(self.v(x))
        if hasattr(nn.functional, "scaled_dot_product_attention"):  # torch ≥ 2.0: the fused kernel
            y = nn.functional.scaled_dot_product_attention(q, k, v)
        else:  # Debian's torch 1.13
            y = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), -1) @ v
        return self.o(y.transpose(1, 2).reshape(B, T, D))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, ffn: int):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.ffn = nn.Sequential()
        self.ffn.add_module("fc1", nn.Linear(dim, ffn))
        self.ffn.add_module("act", nn.GELU())
        self.ffn.add_module("fc2", nn.Linear(ffn, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.ffn(self.ln2(x))


class EncoderClassifier(nn.Module):
    def __init__(self, vocab: int, seq: int, dim: int, depth: int, heads: int, ffn: int, classes: int, generator=None):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.zeros(seq, dim))
        self.blocks = nn.ModuleList(Block(dim, heads, ffn) for _ in range(depth))
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)
        if generator is not None:  # a seeded, reproducible "pretrained" model: every parameter from the generator
            with torch.no_grad():
                for m in self.modules():
                    if isinstance(m, (nn.Linear, nn.Embedding)):
                        m.weight.copy_(torch.randn(m.weight.shape, generator=generator) / math.sqrt(m.weight.shape[-1]))
                    if isinstance(m, nn.Linear) and m.bias is not None:
                        m.bias.copy_(torch.randn(m.bias.shape, generator=generator) * 0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.pos[: tokens.shape[1]]
        for b in self.blocks:
            x = b(x)
        return self.head(self.ln(x).mean(1))


def synthetic_batch(batch: int, shape: Dict[str, int], generator: torch.Generator, device: torch.device):
    """Token sequences whose label is which of `classes` token groups occurs most: learnable by attention."""
    x = torch.randint(0, shape["vocab"], (batch, shape["seq"]), generator=generator)
    groups = x % shape["classes"]
    counts = torch.stack([(groups == c).sum(1) for c in range(shape["classes"])], 1)
    return x.to(device), counts.argmax(1).to(device)
