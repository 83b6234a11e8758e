"""The Hugging Face Trainer with `torch_compile=True` and SRLoRACallback (issue 18): the Trainer compiles the model
(accelerate's dynamo plugin, Inductor) and SRLoRA's recompositions change the frozen weights, factors and EMAs in place
between compiled steps. On the CPU (correctness; the GPU's speed is the bench's): the compiled run's logged losses are
the eager run's (dropout off, so both draw no random numbers), recompositions happen on the same schedule with the same
slots, and the compiled graph holds no break."""
import pytest
import torch

transformers = pytest.importorskip("transformers")

from srlora_torch.controller import apply_srlora  # noqa: E402
from srlora_torch.hf import SRLoRACallback  # noqa: E402


def _run(tmp_path, compiled: bool):
    cfg = transformers.RobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                     num_labels=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, attn_implementation="sdpa")
    torch.manual_seed(0)
    model = transformers.RobertaForSequenceClassification(cfg)
    layers = apply_srlora(model, ["query", "value", "intermediate.dense"], r=4, alpha=8, r_target=12)
    g = torch.Generator().manual_seed(1)
    data = [{"input_ids": torch.randint(3, 100, (16,), generator=g), "labels": torch.tensor(i % 2)} for i in range(64)]
    cb = SRLoRACallback(layers, r=4, r_target=12, min_slot_age=1)
    events = []
    args = transformers.TrainingArguments(output_dir=str(tmp_path / ("c" if compiled else "e")), max_steps=24, per_device_train_batch_size=8,
                                          learning_rate=3e-3, report_to=[], logging_strategy="steps", logging_steps=1, save_strategy="no",
                                          use_cpu=True, seed=0, data_seed=0, torch_compile=compiled)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data, callbacks=[cb])
    begin = cb.on_train_begin

    def on_begin(*a, **k):
        begin(*a, **k)
        cb.controller.on_recomposition = events.append
    cb.on_train_begin = on_begin
    torch._dynamo.reset()
    from torch._dynamo.utils import counters
    counters.clear()
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return losses, events, cb, trainer, sum(counters["graph_break"].values()), counters["stats"]["unique_graphs"]


def test_trainer_torch_compile_gives_the_eager_losses_through_recompositions(tmp_path):
    eager, ev_e, cb_e, _, _, _ = _run(tmp_path, False)
    comp, ev_c, cb_c, trainer, breaks, graphs = _run(tmp_path, True)
    assert graphs > 0, "the Trainer compiled the model"
    assert breaks == 0, f"{breaks} graph breaks"
    steps = cb_e.controller.schedule.steps
    assert steps and [e.step for e in ev_c] == [e.step for e in ev_e] == steps
    assert [[l.slots for l in e.layers] for e in ev_c] == [[l.slots for l in e.layers] for e in ev_e]
    assert all(l.preservation_error < 1e-5 for e in ev_c for l in e.layers)
    assert len(comp) == len(eager) == 24
    # the losses after each recomposition too: the compiled graph reads the recomposed tensors, not stale copies
    torch.testing.assert_close(torch.tensor(comp), torch.tensor(eager), rtol=1e-4, atol=1e-5)
    assert comp[-1] != comp[steps[0]]  # it trained
