"""A user's own data, read as the built-in trainer reads it (src/trainer/data/tabular.ts): CSV (a header row, numeric
feature columns, one label column) or JSONL ({"features": [...], "label": k} per line); every problem is reported
with its line number. Without an eval file, the same seeded 20 % is held out.
"""
from __future__ import annotations

import json
import math
from typing import List, Optional, Tuple

import torch

from .digits import Rng


def load_tabular(path: str, label_column: str = "label") -> Tuple[torch.Tensor, torch.Tensor]:
    """(n × features float32, labels int64)."""
    with open(path, encoding="utf-8-sig") as f:  # a byte-order mark is not data; splitlines() takes \r\n too
        lines = f.read().splitlines()
    rows: List[List[float]] = []
    labels: List[int] = []
    if path.endswith(".jsonl"):
        for i, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except ValueError:
                raise ValueError(f"{path}:{i}: not JSON") from None
            feats = r.get("features") if isinstance(r, dict) else None
            if not isinstance(feats, list) or not all(_finite_number(x) for x in feats):
                raise ValueError(f'{path}:{i}: "features" must be an array of finite numbers')
            label = r.get("label")
            if not isinstance(label, int) or isinstance(label, bool) or label < 0:
                raise ValueError(f'{path}:{i}: "label" must be an integer ≥ 0')
            rows.append([float(x) for x in feats])
            labels.append(label)
    else:
        header = [h.strip() for h in lines[0].split(",")] if lines else []
        if label_column not in header:
            raise ValueError(f'{path}: no "{label_column}" column in the header ({", ".join(header)})')
        li = header.index(label_column)
        for i, line in enumerate(lines[1:], 2):
            if not line.strip():
                continue
            cells = line.split(",")
            if len(cells) != len(header):
                raise ValueError(f"{path}:{i}: {len(cells)} cells, header has {len(header)}")
            nums = []
            for name, cell in zip(header, cells):
                v = _number(cell)
                if v is None:
                    raise ValueError(f"{path}:{i}: column \"{name}\" is not a number: {json.dumps(cell)}")
                nums.append(v)
            if nums[li] != int(nums[li]) or nums[li] < 0:
                raise ValueError(f"{path}:{i}: label must be an integer ≥ 0")
            labels.append(int(nums[li]))
            rows.append(nums[:li] + nums[li + 1:])
    if not rows:
        raise ValueError(f"{path}: no rows")
    dim = len(rows[0])
    for i, r in enumerate(rows, 1):
        if len(r) != dim:
            raise ValueError(f"{path}: row {i} has {len(r)} features, the first has {dim}")
    return torch.tensor(rows, dtype=torch.float32), torch.tensor(labels, dtype=torch.int64)


def held_out(n: int, seed: int) -> Tuple[List[int], List[int]]:
    """(train, eval) indices when there is no eval file: a seeded 20 %, as the built-in trainer holds out."""
    idx = list(range(n))
    Rng(seed + 7).shuffle(idx)
    cut = max(1, n // 5)
    return idx[cut:], idx[:cut]


def _finite_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _number(cell: str) -> Optional[float]:
    """A cell as a finite number; an empty cell is not one."""
    try:
        v = float(cell)
    except ValueError:
        return None
    return v if cell.strip() and math.isfinite(v) else None
