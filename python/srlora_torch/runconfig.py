"""Reading and validating a run config (*.srlora.json: JSON with comments) before any work, against the one schema
generated from src/trainer/config/runConfig.ts (run-config.schema.json in this package; no field is restated here).

Every error is one line naming the file and the field (a JSON pointer), with quoted values cut short (protocol.show);
what is read is bounded (MAX_CONFIG_BYTES), so a 1 GiB file of NUL bytes is one short message. The shared table
test/vectors/config/invalid.json holds both trainers to it.

JSONC: comments (// and /* */) and trailing commas, as the built-in trainer's jsonc-parser reads them. They are blanked
out in place (same offsets), so a JSON error's line and column point into the user's file. (PyPI's JSONC readers
either accept more — json5: NaN, single quotes, unquoted keys — or remove text, which moves every error position.)
"""
from __future__ import annotations

import json
import math
import re
import os
import stat
from typing import Any, Dict, List, Optional, Tuple

from .protocol import _common_tag, _tags_match, check, pointer, resolve, show

MAX_CONFIG_BYTES = 1 << 20
SCHEMA = json.load(open(os.path.join(os.path.dirname(__file__), "run-config.schema.json"), encoding="utf-8"))


class ConfigError(SystemExit):
    """A bad config: SystemExit(message) prints the one line on stderr and exits 1, without a traceback. `source` and
    `errors` (each "/pointer: what is wrong"), when it is about fields: a caller that knows which flag set which field
    relabels them (train.load_config)."""

    def __init__(self, message: str, source: Optional[str] = None, errors: Optional[List[str]] = None):
        super().__init__(message)
        self.source, self.errors = source, errors


def read_text(path: str, what: str = "config") -> str:
    """The file's text, or ConfigError naming it: missing, a directory, not a regular file, over MAX_CONFIG_BYTES, not
    UTF-8 (a leading byte-order mark is dropped)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such {what} file") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the {what} file: {e.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{path}: is a directory, not a {what} file")
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{path}: not a regular file")
    if st.st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: {st.st_size} bytes; a {what} file is at most {MAX_CONFIG_BYTES} bytes")
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the {what} file: {e.strerror}") from None
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise ConfigError(f"{path}: not a text file (NUL byte at offset {nul})")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start})") from None


def strip_jsonc(text: str) -> Tuple[str, Optional[Tuple[int, str]]]:
    """JSON text with the comments and trailing commas of `text` replaced by spaces (newlines kept, so offsets hold),
    and (offset, message) for an unterminated block comment, or None."""
    out = list(text)
    i, n = 0, len(text)
    last_comma: Optional[int] = None  # a comma outside strings, not yet followed by a value
    while i < n:
        c = text[i]
        if c == '"':
            last_comma = None
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
        elif c == "/" and i + 1 < n and text[i + 1] == "/":
            while i < n and text[i] != "\n":
                out[i] = " "
                i += 1
        elif c == "/" and i + 1 < n and text[i + 1] == "*":
            end = text.find("*/", i + 2)
            if end < 0:
                return "".join(out), (i, "unterminated /* comment")
            for k in range(i, end + 2):
                if out[k] != "\n":
                    out[k] = " "
            i = end + 2
        elif c == ",":
            last_comma = i
            i += 1
        elif c in "}]":
            if last_comma is not None:
                out[last_comma] = " "  # a trailing comma, as jsonc-parser's allowTrailingComma
            last_comma = None
            i += 1
        else:
            if not c.isspace():
                last_comma = None
            i += 1
    return "".join(out), None


def _line_col(text: str, offset: int) -> Tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _finite_float(s: str) -> float:
    v = float(s)
    if not math.isfinite(v):
        raise ValueError(f"the number {show(s, 30)} is out of range")
    return v


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def parse_file(path: str) -> Any:
    """The JSONC file's value (strict: no NaN/Infinity, no out-of-range numbers), or ConfigError with file:line:column."""
    text = read_text(path)
    clean, bad = strip_jsonc(text)
    if bad:
        line, col = _line_col(text, bad[0])
        raise ConfigError(f"{path}:{line}:{col}: {bad[1]}")
    try:
        return json.loads(clean, parse_float=_finite_float, parse_constant=_refuse_constant)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}:{e.lineno}:{e.colno}: not valid JSON: {e.msg}") from None
    except ValueError as e:
        raise ConfigError(f"{path}: not valid JSON: {e}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid JSON: nested too deeply") from None


def _resolve(schema: dict) -> dict:  # the config schema's refs
    return resolve(schema, SCHEMA)


def fill_defaults(value: Any, schema: dict) -> Any:
    """`value` with the schema's defaults for absent object fields, into nested objects; of a union, the branch the
    value fits once filled (a task's kind picks its branch)."""
    schema = _resolve(schema)
    if "anyOf" in schema and isinstance(value, dict):
        for b in schema["anyOf"]:
            filled = fill_defaults(value, b)
            if check(filled, _resolve(b), SCHEMA) is None:
                return filled
        return value
    if isinstance(value, dict) and "properties" in schema:
        out = dict(value)
        for k, sub in schema["properties"].items():
            if k not in out and "default" in sub:
                out[k] = json.loads(json.dumps(sub["default"]))
            if k in out:
                out[k] = fill_defaults(out[k], sub)
        return out
    return value


# At most this many errors are listed in one message (the rest are counted), as the built-in trainer (runConfig.ts).
MAX_LISTED_ERRORS = 6
# Schema keywords check_all walks itself; an object schema with any other keyword is checked by protocol.check.
_WALKED = {"type", "properties", "additionalProperties", "required", "default", "description", "title", "$schema"}


def _distance(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions), for did-you-mean."""
    d = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        prev, d[0] = d[0], i
        for j in range(1, len(b) + 1):
            cur = d[j]
            d[j] = min(d[j] + 1, d[j - 1] + 1, prev + (a[i - 1] != b[j - 1]))
            prev = cur
    return d[len(b)]


def _unknown(name: str, known: List[str]) -> str:
    """'unknown field (did you mean "kind"?)' with the closest field of its own object, by runConfig.ts's rule."""
    if len(name) > 2 and known:
        best = min(known, key=lambda k: _distance(name.lower(), k.lower()))  # min keeps the first of equals, as a stable sort
        if _distance(name.lower(), best.lower()) <= max(2, len(name) // 3):
            return f'unknown field (did you mean "{best}"?)'
    return "unknown field"


def check_all(value: Any, schema: dict, path: Optional[list] = None) -> List[Tuple[List[Any], str]]:
    """Every error of `value` against `schema` as (path, message): into objects field by field (unknown fields with a
    did-you-mean from their own object, missing ones, then each field's first error); a union by the branch its tag
    (kind) picks, or, untagged, by the branch that fits it best; anything else as protocol.check's first error."""
    path = path or []
    schema = _resolve(schema)
    if isinstance(value, dict):
        branches = schema.get("anyOf") or schema.get("oneOf")
        if branches and set(schema) <= _WALKED | {"anyOf", "oneOf"}:
            tagged = [b for b in branches if _tags_match(value, b, SCHEMA)]
            if len(tagged) == 1:
                return check_all(value, tagged[0], path)
            if not tagged and _common_tag(branches, SCHEMA) is None:
                tries = [check_all(fill_defaults(value, b), b, path) for b in branches]
                return min(tries, key=len)
        elif schema.get("type") == "object" and "properties" in schema and set(schema) <= _WALKED:
            props, errors = schema["properties"], []
            if schema.get("additionalProperties") is False:
                errors += [(path + [k], _unknown(k, list(props))) for k in value if k not in props]
            errors += [(path + [k], "required") for k in schema.get("required", []) if k not in value]
            for k, v in value.items():
                if k in props:
                    errors += check_all(v, props[k], path + [k])
            return errors
    err = check(value, schema, SCHEMA, path)
    return [err] if err else []


def config_error_message(source: str, errors: List[str], flags: Optional[Dict[str, str]] = None) -> str:
    """One line for all of a config's errors (each "/pointer: …"): "SOURCE: /a: …" for one, "SOURCE: N errors: /a: …;
    /b: …" for several. `flags` maps a pointer ("/steps") to the flag the user typed for it ("--steps"): an error at or
    under it names the flag instead ("--steps: …"), the others their source and pointer ("FILE: /a: …"), so the line
    names what the user typed. src/trainer/config/runConfig.ts configErrorMessage (test/vectors/flags/errors.json)."""
    flags = flags or {}

    def by_flag(e: str) -> Optional[str]:
        m = re.match(r"(/[^\s:]*)", e)
        best = max((p for p in flags if m and (m.group(1) == p or m.group(1).startswith(p + "/"))), key=len, default=None)
        rest = "" if best is None else e[len(best):]
        return None if best is None else flags[best] + (f": {rest}" if rest.startswith("/") else rest)

    relabelled = [by_flag(e) for e in errors]
    any_flag = any(r is not None for r in relabelled)
    items = [r if r is not None else f"{source}: {e}" for r, e in zip(relabelled, errors)] if any_flag else list(errors)
    head = "" if any_flag else f"{source}: "
    if len(items) == 1:
        return f"{head}{items[0]}"
    more = f"; and {len(items) - MAX_LISTED_ERRORS} more" if len(items) > MAX_LISTED_ERRORS else ""
    return f"{head}{len(items)} errors: {'; '.join(items[:MAX_LISTED_ERRORS])}{more}"


def _kebab(name: str) -> str:
    return re.sub(r"[A-Z]", lambda m: "-" + m.group(0).lower(), name)


def config_flags() -> Dict[str, str]:
    """Every config-field flag, from the one schema (run-config.schema.json): the flag as typed -> the field's JSON
    pointer. Each field as --kebab-case and --camelCase (--eval-every, --evalEvery); the task and model as a whole (a
    JSON object) and each field of their kinds (--task.transform, --model.path). The built-in trainer takes the same
    set (src/trainer/config/runConfig.ts configFlags); test/vectors/flags/flags.json holds both to it."""
    out: Dict[str, str] = {}
    for key, node in SCHEMA["properties"].items():
        if key == "$schema":
            continue
        for spelling in (_kebab(key), key):
            out.setdefault(f"--{spelling}", f"/{key}")
        for branch in _resolve(node).get("anyOf", []) if key in ("task", "model") else []:
            for sub in _resolve(branch).get("properties", {}):
                for spelling in (_kebab(sub), sub):
                    out.setdefault(f"--{key}.{spelling}", f"/{key}/{sub}")
    return out


def edit_distance(a: str, b: str) -> int:
    """Insertions, deletions, substitutions and adjacent transpositions, as src/cli/usage.ts editDistance."""
    d = [[i if j == 0 else j if i == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


def did_you_mean(word: str, known: List[str]) -> Optional[str]:
    """The closest of `known` (the first of equals) when it is close enough to be a typo: ≤ 2 edits, or ≤ a third of
    its length (src/cli/usage.ts didYouMean)."""
    best, best_d = None, None
    for k in known:
        d = edit_distance(word.lower(), k.lower())
        if best_d is None or d < best_d:
            best, best_d = k, d
    return best if best is not None and best_d <= max(2, len(word) // 3) else None


def unknown_flag(flag: str, known: List[str]) -> str:
    """'unknown flag --eval-evry: neither a train option nor a config field (did you mean --eval-every?)', the built-in
    trainer's words (src/cli/main.ts; test/vectors/flags/flags.json `unknown`)."""
    guess = did_you_mean(flag, known)
    return f"unknown flag {flag[:80]}: neither a train option nor a config field{f' (did you mean {guess}?)' if guess else ''}"


def flag_value(pointer_: str, raw: str) -> Any:
    """A config-field flag's value: JSON when it is JSON (no NaN or Infinity), else the text; --fusion-threshold takes
    `off` (or null: the paper's rule) or a number ≥ 0 and refuses anything else naming the range, as the built-in
    trainer (src/cli/trainCommand.ts fusionThresholdFlag)."""
    from .protocol import loads
    if pointer_ == "/fusionThreshold":
        if raw in ("off", "null"):
            return None
        try:
            n = float(raw)
        except ValueError:
            n = float("nan")
        if not raw.strip() or not math.isfinite(n) or n < 0:
            raise ConfigError(f"--fusion-threshold: {json.dumps(raw[:40], ensure_ascii=False)} is not a number ≥ 0 or off (off: the paper's rule, "
                              "the least important ceil(fusionRatio·r) pairs fuse)")
    try:
        return loads(raw)
    except ValueError:
        return raw


def with_overrides(user: Dict[str, Any], overrides: List[Tuple[str, Any]]) -> Dict[str, Any]:
    """`user` with each (pointer, value) set into it (a copy; missing objects on the way made; a task or model flag over
    the default task or model; --task.kind of another kind starts that object afresh), as src/trainer/config/
    runConfig.ts applyOverrides."""
    out = json.loads(json.dumps(user))
    for ptr, value in overrides:
        parts = ptr.strip("/").split("/")
        default = SCHEMA["properties"].get(parts[0], {}).get("default")
        if len(parts) > 1 and parts[0] not in out and isinstance(default, dict):
            out[parts[0]] = json.loads(json.dumps(default))  # --task.transform over the default task (digits), as over a file's
        obj = out
        for p in parts[:-1]:
            if not isinstance(obj.get(p), dict):
                obj[p] = {}
            obj = obj[p]
        if parts[-1] == "kind" and len(parts) == 2 and obj.get("kind") != value:
            obj.clear()  # another kind: the old kind's fields (the default digits' transform) are not this one's
        obj[parts[-1]] = value
    return out


def _config_error(source: str, errors: List[str]) -> ConfigError:
    """The ConfigError of config_error_message(source, errors), keeping them for a caller to relabel by flag."""
    return ConfigError(config_error_message(source, errors), source, errors)


def validate(user: Any, source: str) -> Dict[str, Any]:
    """The config with every default filled, or ConfigError naming every problem on one line ("SOURCE: /pointer: what
    is wrong", or "SOURCE: N errors: /a: …; /b: …"): unknown fields first (with a did-you-mean from their own object,
    nested too), then missing and bad values; then what the schema cannot express."""
    if not isinstance(user, dict):
        raise ConfigError(f"{source}: a run config must be a JSON object")
    cfg = fill_defaults(user, SCHEMA)
    found = check_all(cfg, SCHEMA)
    if found:
        # An unknown field first: the most likely cause of the others (a typo leaves the intended field at its default).
        found.sort(key=lambda e: not e[1].startswith("unknown field"))
        raise _config_error(source, [f"{pointer(p)[:120]}: {m}" for p, m in found])
    if cfg.get("rTarget") is not None and cfg["rTarget"] < cfg["r"]:  # the built-in trainer's words (runConfig.ts)
        raise _config_error(source, [f"/rTarget: {cfg['rTarget']} is below r={cfg['r']}; rTarget counts every direction a layer may use, "
                                     "so it must be ≥ r (or null for 4·r)"])
    return cfg


def check_files(cfg: Dict[str, Any], source: str) -> None:
    """The files the config names, checked before any work: each must exist, and be a file (a folder for a Hugging
    Face model's path). Paths are already absolute (relative ones resolved against the config's folder)."""
    wanted: List[Tuple[str, str, bool]] = []  # (pointer, path, must be a directory)
    task, model = cfg.get("task") or {}, cfg.get("model") or {}
    for key in ("train", "eval"):
        if isinstance(task.get(key), str):
            wanted.append((f"/task/{key}", task[key], False))
    if isinstance(model.get("weights"), str):
        wanted.append(("/model/weights", model["weights"], False))
    if model.get("kind") == "huggingface" and isinstance(model.get("path"), str):
        wanted.append(("/model/path", model["path"], True))
    for ptr, path, is_dir in wanted:
        if not os.path.exists(path):
            raise ConfigError(f"{source}: {ptr}: {show(path, 200)}: no such {'folder' if is_dir else 'file'}")
        if os.path.isdir(path) != is_dir:
            raise ConfigError(f"{source}: {ptr}: {show(path, 200)}: {'not a folder' if is_dir else 'is a directory, not a file'}")
