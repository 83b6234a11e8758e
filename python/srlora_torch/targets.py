"""Which layers an adapter goes on, as PEFT's `target_modules` reads it, and the layers that cannot take one.

- A string is ONE regular expression matched against the whole module name (`re.fullmatch`), as PEFT does; a list
  matches a name exactly or as a dotted suffix ("value" matches "encoder.layer.0.attention.self.value"), plus the
  built-in trainer's `*` glob in a list item (`blocks.*.attn.q`).
- Only an `nn.Linear` that its parent calls can be adapted. Refused before anything changes, with the reason:
  a matched module that is not an nn.Linear (GPT-2's `Conv1D` stores its weight transposed; an Embedding; a whole
  block), `nn.MultiheadAttention.out_proj` (the attention reads its weight directly and never calls it), and a layer
  whose weight is shared with another module (tied input/output embeddings and heads: adapting one would silently
  untie them, and the export could not reproduce the trained model).
- default_targets(model): the attention AND feed-forward projections of a Hugging Face model — every nn.Linear inside
  its repeated blocks (PEFT's "all-linear" restricted to the blocks: not the head, not the pooler), named by their
  suffix after the block index, so the list reads like a PEFT config (["attention.self.query", …, "output.dense"]).
"""
from __future__ import annotations

import re
from typing import Dict, List, Sequence, Union

from torch import nn

Targets = Union[str, Sequence[str]]


def matches_target(name: str, targets: Targets) -> bool:
    """PEFT's rule (tuners_utils.check_target_module_exists): a string is a regex over the whole name; a list item
    matches the name exactly or as a dotted suffix; `*` in a list item globs (the built-in trainer's extension)."""
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    for p in targets:
        if "*" in p:
            if re.fullmatch(r"(?:.*\.)?" + ".*".join(map(re.escape, p.split("*"))), name):
                return True
        elif name == p or name.endswith("." + p):
            return True
    return False


def check_targets(targets: Targets) -> None:
    """The shapes a config's `targets` may take (as the built-in trainer validates them): a non-empty list of non-empty
    strings, or one string that compiles as a regular expression."""
    if isinstance(targets, str):
        try:
            re.compile(targets)
        except re.error as e:
            raise ValueError(f"targets: {targets[:80]!r} is not a regular expression ({e})") from None
        return
    if not isinstance(targets, (list, tuple)) or not targets or not all(isinstance(t, str) and t for t in targets):
        raise ValueError(f"targets: expected a non-empty list of layer name patterns (or one regular expression), got {str(targets)[:80]}")


def _shared_weights(model: nn.Module) -> Dict[int, List[str]]:
    """id(parameter) → every name it is reachable under (more than one: shared / tied)."""
    names: Dict[int, List[str]] = {}
    for n, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), []).append(n)
    return names


def select_targets(model: nn.Module, targets: Targets) -> List[str]:
    """The names of the modules to adapt, in model order; ValueError naming each refused module and why, or saying
    that nothing matched (with the model's linear layers, to pick from)."""
    check_targets(targets)
    modules = dict(model.named_modules())
    matched = [n for n in modules if n and matches_target(n, targets)]
    shared = _shared_weights(model)
    problems: List[str] = []
    for n in matched:
        m = modules[n]
        parent = modules[n.rpartition(".")[0]] if "." in n else model
        kind = type(m).__name__
        if isinstance(parent, nn.MultiheadAttention):
            problems.append(f"{n}: nn.MultiheadAttention reads {n.rpartition('.')[2]}.weight itself and never calls the "
                            f"layer, so an adapter on it would never run; adapt a model whose attention calls its projections")
        elif kind == "Conv1D" and hasattr(m, "nf"):
            problems.append(f"{n}: transformers' Conv1D (GPT-2 style) stores its weight as (in, out) and is not an nn.Linear; "
                            f"SRLoRA adapts nn.Linear layers only")
        elif not isinstance(m, nn.Linear):
            problems.append(f"{n}: a {kind}, not an nn.Linear; SRLoRA adapts nn.Linear layers only"
                            + (" (the pattern matches a whole block: name its projections)" if list(m.children()) else ""))
        elif len(shared.get(id(m.weight), [])) > 1:
            others = [s for s in shared[id(m.weight)] if s != f"{n}.weight"]
            problems.append(f"{n}: its weight is shared with {', '.join(others)} (tied weights); adapting one would untie them")
    if problems:
        raise ValueError("targets " + _show(targets) + " include layers that cannot be adapted:\n  " + "\n  ".join(problems))
    if not matched:
        linears = [n for n, m in modules.items() if isinstance(m, nn.Linear)]
        some = ", ".join(linears[:12]) + (f", … ({len(linears)} in all)" if len(linears) > 12 else "")
        raise ValueError(f"targets {_show(targets)} match no layer of the model (its nn.Linear layers: {some or 'none'})")
    return matched


def _show(targets: Targets) -> str:
    return repr(targets[:80]) if isinstance(targets, str) else str(list(targets))[:200]


_BLOCK_INDEX = re.compile(r"(?:^|\.)\d+\.")


def default_targets(model: nn.Module, exclude: Sequence[str] = ()) -> List[str]:
    """The attention and feed-forward projections: every nn.Linear inside a repeated block (a name with a `.N.` index),
    as the suffixes after the index, in model order; modules under `exclude` (the new head) are left out. A model with
    no numbered blocks: every nn.Linear not excluded."""
    shared = _shared_weights(model)
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and len(shared.get(id(m.weight), [])) == 1
               and not any(n == e or n.startswith(e + ".") for e in exclude)
               and not isinstance(model.get_submodule(n.rpartition(".")[0]) if "." in n else model, nn.MultiheadAttention)]
    in_blocks = [n for n in linears if _BLOCK_INDEX.search(n)]
    if not in_blocks:
        return linears
    out: List[str] = []
    for n in in_blocks:
        suffix = n[list(_BLOCK_INDEX.finditer(n))[-1].end():]
        if suffix not in out:
            out.append(suffix)
    return out
