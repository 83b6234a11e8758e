"""The steering protocol (docs/protocol.md) for the PyTorch trainer: envelopes, strict JSON in and out, and
validation against the same generated JSON Schema the TypeScript side is built from (protocol.schema.json, shipped in
this package), plus the checks a schema cannot express (arrays that must line up, increasing steps) — so both sides
accept and reject the same test/vectors/protocol files.

Validation needs no optional package: `check` interprets the draft-07 keywords our generated schemas use (the
trainer's link, its commands and its config are checked the same way with or without jsonschema installed; a test
holds its verdicts equal to jsonschema's on every protocol vector)."""
from __future__ import annotations

import difflib
import json
import math
import os
import re
from typing import Any, List, Optional, Tuple

PROTOCOL_MAJOR, PROTOCOL_MINOR = 1, 3
_SCHEMA = json.load(open(os.path.join(os.path.dirname(__file__), "protocol.schema.json"), encoding="utf-8"))
TRAINER_TYPES = _SCHEMA["x-trainer-to-hub"]
HUB_TYPES = _SCHEMA["x-hub-to-trainer"]


# ---- strict JSON (RFC 8259): no NaN, Infinity or -Infinity in either direction
def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def dumps(obj: Any, **kw) -> str:
    """json.dumps that raises ValueError on a non-finite number instead of writing NaN/Infinity (not JSON)."""
    return json.dumps(obj, allow_nan=False, **({"separators": (",", ":")} if "indent" not in kw else {}), **kw)


def loads(text: str) -> Any:
    """json.loads that refuses NaN, Infinity and -Infinity (Python accepts them by default)."""
    return json.loads(text, parse_constant=_no_constant)


# ---- JSON Schema (the draft-07 subset our generated schemas use)
def show(value: Any, limit: int = 60) -> str:
    """A value quoted for an error message, cut to `limit` characters (a message never echoes a huge value)."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} characters)"


_patterns: dict = {}


def _matches(pattern: str, text: str) -> bool:
    """ECMAScript semantics for our patterns: `$` is the end of the text (Python's also matches before a final \\n)."""
    rx = _patterns.get(pattern)
    if rx is None:
        rx = _patterns[pattern] = re.compile(re.sub(r"(?<!\\)\$$", r"\\Z", pattern))
    return rx.search(text) is not None


def _type_ok(v: Any, t: str) -> bool:
    if t == "integer":
        return isinstance(v, int) and not isinstance(v, bool) or isinstance(v, float) and math.isfinite(v) and v.is_integer()
    if t == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    return isinstance(v, {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}[t])


def _got(v: Any) -> str:
    return "null" if v is None else f"{_type_name(v)} {show(v)}"


def _type_name(v: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(v), "a number")


def resolve(schema: dict, root: dict) -> dict:
    """`schema` with its local "$ref" ("#/$defs/Name", followed until none is left) replaced by what it points to in
    `root`. Raises KeyError for a pointer to nothing (a schema bug: the generated schemas have none)."""
    while "$ref" in schema:
        target = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        schema = target
    return schema


def _tags(branch: dict, root: dict) -> dict:
    """{field: const} of a union branch's const-valued properties (its tags, e.g. kind)."""
    return {k: p["const"] for k, p in resolve(branch, root).get("properties", {}).items() if isinstance(p, dict) and "const" in p}


def _tags_match(value: dict, branch: dict, root: dict) -> bool:
    tags = _tags(branch, root)
    return bool(tags) and all(k in value and value[k] == v for k, v in tags.items())


def _common_tag(branches: list, root: dict):
    """(field, [values]) when every branch of a union is told apart by a const on the same field (e.g. kind)."""
    tags = [_tags(b, root) for b in branches]
    common = set.intersection(*(set(t) for t in tags)) if tags else set()
    if len(common) != 1:
        return None
    name = common.pop()
    return name, [t[name] for t in tags]


Error = Tuple[List[Any], str]  # (path to the field, what is wrong)


def check(value: Any, schema: dict, root: Optional[dict] = None, path: Optional[list] = None) -> Optional[Error]:
    """The first way `value` breaks `schema`, as (path, message), or None. Unknown fields are reported first (with a
    did-you-mean), then missing ones, then bad values, depth first."""
    root = root if root is not None else schema
    path = path or []
    if "$ref" in schema:
        return check(value, resolve(schema, root), root, path)
    t = schema.get("type")
    if t is not None:
        ts = t if isinstance(t, list) else [t]
        if not any(_type_ok(value, x) for x in ts):
            return path, f"expected {' or '.join(ts)}, got {_got(value)}"
    if "const" in schema and not (value == schema["const"] and type(value) is type(schema["const"]) or
                                  _type_ok(value, "number") and _type_ok(schema["const"], "number") and value == schema["const"]):
        return path, f"expected {show(schema['const'])}, got {show(value)}"
    if "enum" in schema and value not in schema["enum"]:
        return path, f"expected {' | '.join(show(e) for e in schema['enum'])}, got {show(value)}"
    for key in ("anyOf", "oneOf"):
        if key in schema:
            errs = [check(value, b, root, path) for b in schema[key]]
            ok = sum(e is None for e in errs)
            if ok == 0:
                consts = [b.get("const") for b in schema[key] if "const" in b]
                if len(consts) == len(schema[key]):
                    return path, f"expected {' | '.join(show(c) for c in consts)}, got {show(value)}"
                # A tagged union (branches told apart by a const field such as kind): the branch whose tags match says
                # what is wrong. Otherwise the branch that got furthest (deepest error, or not about the type).
                if isinstance(value, dict):
                    tagged = [e for e, b in zip(errs, schema[key]) if _tags_match(value, b, root)]
                    if tagged:
                        return max(tagged, key=lambda e: len(e[0]))
                    tag = _common_tag(schema[key], root)
                    if tag is not None:  # no branch has this tag value: name the tag and every allowed value
                        name, allowed = tag
                        return path + [name], (f"expected {' | '.join(show(a) for a in allowed)}, got {show(value[name])}"
                                               if name in value else "required")
                typed = [e for e, b in zip(errs, schema[key]) if not e[1].startswith("expected ") or len(e[0]) > len(path)]
                if typed:
                    return max(typed, key=lambda e: len(e[0]))
                kinds = sorted({x for b in schema[key] for x in ([b["type"]] if isinstance(b.get("type"), str) else b.get("type", []))})
                return path, f"expected {' or '.join(kinds) or 'another value'}, got {_got(value)}"
            if key == "oneOf" and ok > 1:
                return path, "matches more than one allowed form"
    for b in schema.get("allOf", []):
        e = check(value, b, root, path)
        if e:
            return e
    if _type_ok(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            return path, f"must be ≥ {schema['minimum']}, got {show(value)}"
        if "maximum" in schema and value > schema["maximum"]:
            return path, f"must be ≤ {schema['maximum']}, got {show(value)}"
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            return path, f"must be > {schema['exclusiveMinimum']}, got {show(value)}"
        if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
            return path, f"must be < {schema['exclusiveMaximum']}, got {show(value)}"
    if isinstance(value, str):
        n = len(value.encode("utf-16-le")) // 2  # JavaScript's length, as the TypeScript side counts
        if "minLength" in schema and n < schema["minLength"]:
            return path, f"must have at least {schema['minLength']} characters, got {show(value)}"
        if "maxLength" in schema and n > schema["maxLength"]:
            return path, f"must have at most {schema['maxLength']} characters, got {n}"
        if "pattern" in schema and not _matches(schema["pattern"], value):
            return path, f"{schema.get('errorMessage') or 'must match ' + schema['pattern']}, got {show(value)}"
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            return path, f"must have at least {schema['minItems']} items, got {len(value)}"
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            return path, f"must have at most {schema['maxItems']} items, got {len(value)}"
        items = schema.get("items")
        if isinstance(items, dict):
            for i, v in enumerate(value):
                e = check(v, items, root, path + [i])
                if e:
                    return e
        elif isinstance(items, list):
            for i, v in enumerate(value):
                sub = items[i] if i < len(items) else schema.get("additionalItems", True)
                if sub is False:
                    return path, f"must have at most {len(items)} items, got {len(value)}"
                e = check(v, sub, root, path + [i]) if isinstance(sub, dict) else None
                if e:
                    return e
    if isinstance(value, dict):
        props, pats = schema.get("properties", {}), schema.get("patternProperties", {})
        extra = schema.get("additionalProperties", True)
        for k in value:
            if k in props or any(_matches(p, k) for p in pats):
                continue
            if extra is False:
                near = difflib.get_close_matches(k, list(props), n=1, cutoff=0.6)
                return path + [k], f"unknown field{f' (did you mean {near[0]}?)' if near else ''}"
            if isinstance(extra, dict):
                e = check(value[k], extra, root, path + [k])
                if e:
                    return e
        for k in schema.get("required", []):
            if k not in value:
                return path + [k], "required"
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            return path, f"must have at least {schema['minProperties']} fields"
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            return path, f"must have at most {schema['maxProperties']} fields"
        for k, v in value.items():
            for sub in ([props[k]] if k in props else []) + [s for p, s in pats.items() if _matches(p, k)]:
                e = check(v, sub, root, path + [k])
                if e:
                    return e
    return None


def pointer(path: List[Any]) -> str:
    """A JSON pointer (RFC 6901) to the field."""
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in path) if path else "/"


def _semantic(msg: dict) -> Optional[str]:
    t = msg["type"]
    if t == "importance":
        for l in msg["layers"]:
            n = len(l["S"])
            if not (len(l["sHat"]) == len(l["age"]) == len(l["direction"]) == len(l.get("stepBoost", l["S"])) == n):
                return f"importance /layers/{l['name']}: S, sHat, age, direction and stepBoost must have the same length"
    elif t == "recomposition":
        for l in msg["layers"]:
            n = len(l["slots"])
            if not (len(l["scores"]) == len(l["oldDirections"]) == len(l["newDirections"]) == len(l.get("ages", l["slots"])) == n):
                return f"recomposition /layers/{l['name']}: slots, scores, oldDirections, newDirections and ages must have the same length"
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
    e = check(msg, {"$ref": f"#/$defs/{t}"}, _SCHEMA)
    if e:
        return f"{t} {pointer(e[0])}: {e[1]}"
    return _semantic(msg) if t in TRAINER_TYPES else None


def validate_command(body: Any) -> Optional[str]:
    kinds = [b["properties"]["kind"]["const"] for b in _SCHEMA["$defs"]["CommandBody"]["anyOf"]]
    if not isinstance(body, dict) or body.get("kind") not in kinds:
        return f"/kind: expected one of {', '.join(kinds)}"
    msg = {"v": 1, "type": "command", "runId": "r", "seq": 1, "time": 0, "id": "c", "command": body}
    return validate(msg)
