import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "python"))
VECTORS = os.path.join(ROOT, "test", "vectors")

import json  # noqa: E402

import pytest  # noqa: E402


def _refuse(name):
    raise ValueError(f"not JSON: {name}")


@pytest.fixture(autouse=True)
def every_events_jsonl_is_strict_json(request):
    """After each test: every events.jsonl it left under its tmp_path parses line by line with a strict JSON parser
    (RFC 8259: no NaN/Infinity), except a torn last line that a test made on purpose (no newline)."""
    root = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    if root is None:
        return
    for base, _, names in os.walk(root):
        if "events.jsonl" in names:
            with open(os.path.join(base, "events.jsonl"), "rb") as f:
                for i, raw in enumerate(f, 1):
                    if raw.endswith(b"\n"):
                        json.loads(raw.decode("utf-8"), parse_constant=_refuse)  # raises: the test fails, naming the line
