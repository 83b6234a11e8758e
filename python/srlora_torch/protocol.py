"""The steering protocol (docs/protocol.md) for the PyTorch trainer: envelopes, and validation against the same
generated JSON Schema the TypeScript side is built from (protocol.schema.json, shipped in this package), plus the
checks a schema cannot express (arrays that must line up, increasing steps) — so both sides accept and reject the
same test/vectors/protocol files."""
from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional

PROTOCOL_MAJOR, PROTOCOL_MINOR = 1, 0
_SCHEMA = json.load(open(os.path.join(os.path.dirname(__file__), "protocol.schema.json"), encoding="utf-8"))
TRAINER_TYPES = _SCHEMA["x-trainer-to-hub"]
HUB_TYPES = _SCHEMA["x-hub-to-trainer"]
_validators: Dict[str, Any] = {}


def _validator(kind: str):
    v = _validators.get(kind)
    if v is None:
        from jsonschema import Draft7Validator  # imported lazily: only validation needs it
        v = Draft7Validator({"$defs": _SCHEMA["$defs"], "$ref": f"#/$defs/{kind}"})
        _validators[kind] = v
    return v


def _semantic(msg: dict) -> Optional[str]:
    t = msg["type"]
    if t == "importance":
        for l in msg["layers"]:
            n = len(l["S"])
            if not (len(l["sHat"]) == len(l["age"]) == len(l["direction"]) == n):
                return f"importance /layers/{l['name']}: S, sHat, age and direction must have the same length"
    elif t == "recomposition":
        for l in msg["layers"]:
            n = len(l["slots"])
            if not (len(l["scores"]) == len(l["oldDirections"]) == len(l["newDirections"]) == n):
                return f"recomposition /layers/{l['name']}: slots, scores, oldDirections and newDirections must have the same length"
    elif t == "metrics":
        steps = [r["step"] for r in msg["rows"]]
        if any(b <= a for a, b in zip(steps, steps[1:])):
            return "metrics /rows: steps must increase"
    return None


def validate(msg: Any) -> Optional[str]:
    """None when `msg` is a valid trainer ↔ hub message; else the reason, naming the field."""
    if not isinstance(msg, dict):
        return "a message must be a JSON object"
    if msg.get("v") != PROTOCOL_MAJOR:
        return f"/v: expected protocol major version {PROTOCOL_MAJOR}, got {msg.get('v')!r}"
    t = msg.get("type")
    if t not in TRAINER_TYPES and t not in HUB_TYPES:
        return f"/type: unknown message type {t!r}"
    errors = sorted(_validator(t).iter_errors(msg), key=lambda e: len(list(e.absolute_path)), reverse=True)
    if errors:
        e = errors[0]
        return f"{t} /{'/'.join(str(p) for p in e.absolute_path)}: {e.message}"
    return _semantic(msg) if t in TRAINER_TYPES else None


def validate_command(body: Any) -> Optional[str]:
    kinds = [b["properties"]["kind"]["const"] for b in _SCHEMA["$defs"]["CommandBody"]["anyOf"]]
    if not isinstance(body, dict) or body.get("kind") not in kinds:
        return f"/kind: expected one of {', '.join(kinds)}"
    msg = {"v": 1, "type": "command", "runId": "r", "seq": 1, "time": 0, "id": "c", "command": body}
    return validate(msg)
