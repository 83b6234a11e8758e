"""`model: {kind: "huggingface", path: DIR}`: a local Hugging Face model folder, loaded offline (HF_HUB_OFFLINE=1,
local_files_only: never a download), with its tokenizer and a sequence-classification head for the task's labels.
The head's new weights (and any other weight the folder lacks) train in full, as PEFT's `modules_to_save`; the
adapted layers default to the attention and feed-forward projections (targets.default_targets).

export_hf writes `<run>/export/hf/` with save_pretrained (config, tokenizer, merged weights): a folder that
`AutoModelForSequenceClassification.from_pretrained` loads with no srlora_torch, computing what the trained model does.
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

# PEFT's names for a sequence-classification head (peft_model.PeftModelForSequenceClassification).
HEAD_NAMES = ("classifier", "score")


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _transformers():
    try:
        import transformers
    except ImportError as e:
        raise ValueError(f"model.kind \"huggingface\" needs the transformers package in this Python ({e})") from None
    transformers.logging.set_verbosity_error()  # "newly initialized: classifier" is expected: that head is trained
    return transformers


def check_folder(path: str) -> None:
    if not os.path.isdir(path):
        raise ValueError(f"model.path: {path} is not a folder (a local Hugging Face model folder: config.json, weights, tokenizer)")
    if not os.path.exists(os.path.join(path, "config.json")):
        raise ValueError(f"model.path: {path} has no config.json (not a Hugging Face model folder)")


def load_classifier(path: str, labels: Sequence[str]) -> Tuple[nn.Module, object, List[str]]:
    """(model, tokenizer, modules to train in full): AutoModelForSequenceClassification with len(labels) outputs."""
    _offline()
    check_folder(path)
    tf = _transformers()
    id2label = {i: name for i, name in enumerate(labels)}
    try:
        tokenizer = tf.AutoTokenizer.from_pretrained(path, local_files_only=True)
        model, info = tf.AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=len(labels), id2label=id2label, label2id={v: k for k, v in id2label.items()},
            local_files_only=True, output_loading_info=True, dtype=torch.float32)  # a half-precision folder trains in float32 (bf16: autocast)
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"model.path: {path}: cannot load it as a sequence classifier: {str(e).splitlines()[0][:300]}") from None
    from .compiled import fused_sdpa
    fused_sdpa(model)  # SDPA keeps its fused kernels under torch.compile (the compiled step): same results
    return model, tokenizer, new_modules(model, info.get("missing_keys", ()))


def new_modules(model: nn.Module, missing_keys) -> List[str]:
    """The modules whose weights the folder did not have (freshly initialised: they must train), plus PEFT's
    classifier head names present in the model — the run's modules_to_save."""
    names = set(dict(model.named_modules()))
    out: List[str] = []
    for key in sorted(missing_keys):
        mod = key.rpartition(".")[0]
        if mod in names and mod not in out:
            out.append(mod)
    for n in HEAD_NAMES:
        if n in names and not any(n == o or n.startswith(o + ".") for o in out):
            out.append(n)
    return out


def trainable_modules(model: nn.Module, modules_to_save: Sequence[str]) -> List[nn.Parameter]:
    """Makes the named modules' parameters trainable (after apply_srlora froze everything); returns them."""
    params: List[nn.Parameter] = []
    for name in modules_to_save:
        for p in model.get_submodule(name).parameters():
            p.requires_grad_(True)
            params.append(p)
    return params


def load_base_weights(path: str, labels: Sequence[str], names: Sequence[str]) -> Dict[str, torch.Tensor]:
    """W0 (`<name>.weight`) of the named layers, from the folder itself (the export's ΔW)."""
    model, _, _ = load_classifier(path, labels)
    mods = dict(model.named_modules())
    return {f"{n}.weight": mods[n].weight.detach() for n in names}


@torch.no_grad()
def export_hf(out_dir: str, model: nn.Module, tokenizer: object, merged: Dict[str, torch.Tensor]) -> str:
    """`out_dir/hf/`: the same architecture with the merged weights, saved with save_pretrained, and the tokenizer."""
    tf = _transformers()
    hf_dir = os.path.join(out_dir, "hf")
    plain = tf.AutoModelForSequenceClassification.from_config(model.config)
    missing, unexpected = plain.load_state_dict({k: v.detach().cpu() for k, v in merged.items()}, strict=False)
    # tied weights (e.g. an LM head sharing the embeddings) may be absent under one of their names; anything else is a bug
    tied = set(getattr(plain, "_tied_weights_keys", None) or [])
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise RuntimeError(f"the merged weights do not fit {type(plain).__name__}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    tmp = hf_dir + f".tmp-{os.getpid()}"
    plain.save_pretrained(tmp, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
    if os.path.isdir(hf_dir):
        import shutil
        shutil.rmtree(hf_dir)
    os.replace(tmp, hf_dir)
    return hf_dir


def is_hf(model: nn.Module, tokenizer: Optional[object] = None) -> bool:
    return hasattr(model, "save_pretrained") and hasattr(model, "config")
