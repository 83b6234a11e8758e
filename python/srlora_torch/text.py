"""The `text` task's data: your own labelled text as CSV (a header row; quoted cells may hold commas and line breaks)
or JSONL (one object per line), read as the tabular task reads files — every problem names the file, the line and
the column (or field) — with a UTF-8 byte-order mark and Windows line ends accepted. Labels are integers ≥ 0 or
strings (sorted, then numbered); without an eval file the same seeded 20 % is held out as in the tabular task.
Metrics: accuracy and F1 (binary: of class 1; more classes: the macro average).
"""
from __future__ import annotations

import csv
import io
import json
from typing import Dict, List, Optional, Sequence, Tuple

from .tabular import held_out

Example = Tuple[str, object]  # (text, raw label)

_CSV_FIELD_LIMIT = 16 << 20  # one mail may be long; a runaway quote is still caught (it eats the rest of the file)


def read_text_file(path: str, text_field: str = "text", label_field: str = "label") -> List[Example]:
    """The (text, label) rows of a CSV or JSONL file (by extension: .jsonl / .json lines, else CSV)."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:  # -sig: a byte-order mark is not part of the first field
            content = f.read()
    except UnicodeDecodeError as e:
        line = content_line(path, e.start)
        raise ValueError(f"{path}:{line}: not UTF-8 text (byte {e.start})") from None
    rows = _read_jsonl(path, content, text_field, label_field) if path.lower().endswith((".jsonl", ".ndjson")) \
        else _read_csv(path, content, text_field, label_field)
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows


def content_line(path: str, byte_offset: int) -> int:
    with open(path, "rb") as f:
        return f.read(byte_offset).count(b"\n") + 1


def _check_label(path: str, where: str, label: object) -> object:
    if isinstance(label, bool) or not (isinstance(label, int) and label >= 0 or isinstance(label, str) and label.strip()):
        raise ValueError(f"{path}:{where}: the label must be an integer ≥ 0 or a non-empty string, got {json.dumps(label)[:60]}")
    return label.strip() if isinstance(label, str) else label


def _read_jsonl(path: str, content: str, text_field: str, label_field: str) -> List[Example]:
    rows: List[Example] = []
    for i, line in enumerate(content.splitlines(), 1):  # splitlines: \r\n too
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{i}:{e.colno}: not JSON ({e.msg})") from None
        if not isinstance(r, dict):
            raise ValueError(f"{path}:{i}:1: expected a JSON object with \"{text_field}\" and \"{label_field}\"")
        text = r.get(text_field)
        if not isinstance(text, str):
            raise ValueError(f"{path}:{i}: field \"{text_field}\" must be a string" + ("" if text_field in r else f" (fields: {', '.join(list(r)[:10])})"))
        if label_field not in r:
            raise ValueError(f"{path}:{i}: no field \"{label_field}\" (fields: {', '.join(list(r)[:10])})")
        rows.append((text, _check_label(path, f"{i}: field \"{label_field}\"", r[label_field])))
    return rows


def _read_csv(path: str, content: str, text_field: str, label_field: str) -> List[Example]:
    csv.field_size_limit(max(csv.field_size_limit(), _CSV_FIELD_LIMIT))
    reader = csv.reader(io.StringIO(content, newline=""), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise ValueError(f"{path}: empty file (expected a header row)") from None
    except csv.Error as e:
        raise ValueError(f"{path}:1: {e}") from None
    header = [h.strip() for h in header]
    for field in (text_field, label_field):
        if field not in header:
            raise ValueError(f"{path}:1: no \"{field}\" column in the header ({', '.join(header)[:200]})")
    ti, li = header.index(text_field), header.index(label_field)
    rows: List[Example] = []
    start = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise ValueError(f"{path}:{start}: {e}") from None
        if cells and any(c.strip() for c in cells):
            if len(cells) != len(header):
                raise ValueError(f"{path}:{start}: {len(cells)} cells, the header has {len(header)}")
            label: object = cells[li].strip()
            if isinstance(label, str) and label.isdigit():
                label = int(label)
            rows.append((cells[ti], _check_label(path, f"{start}: column \"{label_field}\"", label)))
        start = reader.line_num + 1
    return rows


def label_ids(*sets: Sequence[Example], path: str = "") -> Tuple[List[str], Dict[object, int]]:
    """(names, raw label → id): integer labels are their own ids (names "0", "1", …); string labels are sorted."""
    raw = {lab for s in sets for _, lab in s}
    kinds = {type(x) for x in raw}
    if len(kinds) > 1:
        raise ValueError(f"{path}: the labels mix numbers and strings ({', '.join(sorted(map(str, raw))[:6])})")
    if kinds == {int}:
        n = max(raw) + 1
        return [str(i) for i in range(n)], {i: i for i in range(n)}
    names = sorted(raw)  # type: ignore[type-var]
    return names, {k: i for i, k in enumerate(names)}


def text_data(task: dict, seed: int) -> Tuple[List[Example], List[Example]]:
    """(train, eval) rows for a text task config: its eval file, else the seeded held-out 20 %; each cut to
    `maxExamples` when set (a quick subset)."""
    tf, lf = task.get("textField", "text"), task.get("labelField", "label")
    train = read_text_file(task["train"], tf, lf)
    if task.get("eval"):
        ev = read_text_file(task["eval"], tf, lf)
    else:
        if len(train) < 2:
            raise ValueError(f"{task['train']}: {len(train)} row; a held-out eval split needs at least 2 (or give task.eval)")
        tr_idx, ev_idx = held_out(len(train), seed)
        train, ev = [train[i] for i in tr_idx], [train[i] for i in ev_idx]
    cap: Optional[int] = task.get("maxExamples")
    if cap:
        train, ev = train[:cap], ev[:cap]
    return train, ev


def accuracy_f1(pred: Sequence[int], gold: Sequence[int], classes: int) -> Dict[str, float]:
    """accuracy, and F1: of class 1 for two classes, else the macro average over the classes present in gold or pred."""
    n = len(gold)
    acc = sum(int(p == g) for p, g in zip(pred, gold)) / n if n else 0.0

    def f1(c: int) -> float:
        tp = sum(1 for p, g in zip(pred, gold) if p == c and g == c)
        fp = sum(1 for p, g in zip(pred, gold) if p == c and g != c)
        fn = sum(1 for p, g in zip(pred, gold) if p != c and g == c)
        return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0

    if classes == 2:
        return {"accuracy": acc, "f1": f1(1)}
    present = sorted(set(gold) | set(pred))
    return {"accuracy": acc, "f1": sum(f1(c) for c in present) / len(present) if present else 0.0}
