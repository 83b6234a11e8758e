"""The Hugging Face callback drives the controller inside a real Trainer (where transformers is installed: the GPU
machine; Debian has no python3-transformers, so CI runs the plain-loop API tests instead)."""
import pytest
import torch

transformers = pytest.importorskip("transformers")

from srlora_torch.controller import apply_srlora  # noqa: E402
from srlora_torch.hf import SRLoRACallback  # noqa: E402


def test_trainer_with_the_callback_recomposes_on_schedule(tmp_path):
    cfg = transformers.RobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=2)
    torch.manual_seed(0)
    model = transformers.RobertaForSequenceClassification(cfg)
    layers = apply_srlora(model, ["query", "value"], r=4, alpha=8, r_target=8)
    data = [{"input_ids": torch.randint(3, 100, (16,)), "labels": torch.tensor(i % 2)} for i in range(64)]
    cb = SRLoRACallback(layers, r=4, r_target=8, run_dir=str(tmp_path / "run"))
    events = []
    args = transformers.TrainingArguments(output_dir=str(tmp_path), max_steps=30, per_device_train_batch_size=8, learning_rate=1e-3,
                                          report_to=[], logging_strategy="steps", logging_steps=5, save_strategy="no", use_cpu=not torch.cuda.is_available())
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data, callbacks=[cb])
    cb_begin = cb.on_train_begin

    def begin(*a, **k):
        cb_begin(*a, **k)
        cb.controller.on_recomposition = events.append  # the session streams through its own listener
    cb.on_train_begin = begin
    trainer.train()
    assert cb.controller.step == 30
    assert [e.step for e in events] == cb.controller.schedule.steps and events
    assert all(l.p == 8 for l in layers.values())
    # The run folder the extension would show: the Trainer's logged losses, the recompositions, a finished state.
    import json
    msgs = [json.loads(l) for l in open(tmp_path / "run" / "events.jsonl")]
    assert [m["seq"] for m in msgs] == list(range(1, len(msgs) + 1)) and msgs[0]["type"] == "hello"
    assert [row["step"] for m in msgs if m["type"] == "metrics" for row in m["rows"]] == [5, 10, 15, 20, 25, 30]
    assert [m["step"] for m in msgs if m["type"] == "recomposition"] == cb.controller.schedule.steps
    assert msgs[-1]["type"] == "state" and msgs[-1]["state"] == "finished"


def _trainer(tmp_path, run_dir, max_steps=40):
    cfg = transformers.RobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=2)
    torch.manual_seed(0)
    model = transformers.RobertaForSequenceClassification(cfg)
    layers = apply_srlora(model, ["query", "value"], r=4, alpha=8, r_target=12)
    g = torch.Generator().manual_seed(1)
    data = [{"input_ids": torch.randint(3, 100, (16,), generator=g), "labels": torch.tensor(i % 2)} for i in range(64)]
    cb = SRLoRACallback(layers, r=4, r_target=12, run_dir=str(run_dir) if run_dir else None)
    args = transformers.TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=max_steps, per_device_train_batch_size=8, learning_rate=1e-3,
                                          report_to=[], logging_strategy="steps", logging_steps=4, save_strategy="steps", save_steps=12,
                                          use_cpu=True, seed=0, data_seed=0)
    return transformers.Trainer(model=model, args=args, train_dataset=data, callbacks=[cb]), cb, layers


def test_the_callback_survives_resume_from_checkpoint_in_the_middle(tmp_path):
    """Uninterrupted 40 steps (checkpoints at 12, 24, 36) against a second Trainer resumed from checkpoint-24: the
    callback's state comes back whole (before: it restarted from scratch — step 0, every direction reused), so the
    resumed run ends where the uninterrupted one did; the run log has one hello, a rewind to 24, and no direction twice."""
    import json
    run_dir = tmp_path / "run"
    full, cb_full, layers_full = _trainer(tmp_path, run_dir)
    full.train()
    assert (tmp_path / "out" / "checkpoint-24" / "srlora_callback.pt").exists()
    end = {n: (l.p, list(l.dir_host), l.effective_weight().detach().clone()) for n, l in layers_full.items()}
    resumed, cb, layers = _trainer(tmp_path, run_dir)
    resumed.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-24"))
    assert cb.controller.step == 40
    for n, l in layers.items():
        p, dirs, W = end[n]
        assert (l.p, list(l.dir_host)) == (p, dirs), n  # the pointer and the directions in use: as if never stopped
        torch.testing.assert_close(l.effective_weight().detach(), W, rtol=1e-4, atol=1e-5)
    msgs = [json.loads(line) for line in open(run_dir / "events.jsonl")]
    assert [m["type"] for m in msgs].count("hello") == 1
    rewinds = [m for m in msgs if m["type"] == "rewind"]
    assert [r["step"] for r in rewinds] == [24]
    # after the rewind, the recompositions of steps 32 (and none of 8–24 again) with fresh directions only
    after = msgs[msgs.index(rewinds[0]):]
    assert [m["step"] for m in after if m["type"] == "recomposition"] == [32]
    for name in layers:
        used = [d for m in msgs[:msgs.index(rewinds[0])] if m["type"] == "recomposition" and m["step"] <= 24
                for l in m["layers"] if l["name"] == name for d in l["newDirections"]]
        used += [d for m in after if m["type"] == "recomposition" for l in m["layers"] if l["name"] == name for d in l["newDirections"]]
        assert len(used) == len(set(used)), (name, used)
    assert msgs[-1]["type"] == "state" and msgs[-1]["state"] == "finished"
