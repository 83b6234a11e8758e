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
