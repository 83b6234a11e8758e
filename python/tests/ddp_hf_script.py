"""A Hugging Face Trainer run with the SRLoRA callback, launched by torchrun or accelerate (tests/test_ddp.py).

argv: OUTPUT_DIR MAX_STEPS [SAVE_STEPS [RESUME_FROM]] — SAVE_STEPS 0: no Trainer checkpoints; RESUME_FROM: a checkpoint
folder of OUTPUT_DIR to continue from (trainer.train(resume_from_checkpoint=...))."""
import sys

import torch
import transformers

from srlora_torch.controller import apply_srlora
from srlora_torch.hf import SRLoRACallback

out, max_steps = sys.argv[1], int(sys.argv[2])
save_steps = int(sys.argv[3]) if len(sys.argv) > 3 else 0
resume = sys.argv[4] if len(sys.argv) > 4 else None
if resume:
    # transformers 5.17's Trainer loads the optimizer with map_location=args.device, which under CPU (gloo) DDP is
    # "cpu:0": torch.load cannot restore to that ("don't know how to restore data location … cpu:0"); on GPUs it is
    # cuda:N and loads. A CPU-only fault of the Trainer, not of the callback: mapped to "cpu" for this CPU test.
    _load = torch.load

    def _cpu_load(*a, map_location=None, **k):
        if str(map_location).startswith("cpu:"):
            map_location = "cpu"
        return _load(*a, map_location=map_location, **k)
    torch.load = _cpu_load
cfg = transformers.RobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=2)
torch.manual_seed(0)
model = transformers.RobertaForSequenceClassification(cfg)
layers = apply_srlora(model, ["query", "value"], r=4, alpha=8, r_target=12)
g = torch.Generator().manual_seed(1)
data = [{"input_ids": torch.randint(3, 100, (16,), generator=g), "labels": torch.tensor(i % 2)} for i in range(512)]
cb = SRLoRACallback(layers, r=4, r_target=12, min_slot_age=1)
args = transformers.TrainingArguments(output_dir=out, max_steps=max_steps, per_device_train_batch_size=4, learning_rate=1e-3,
                                      report_to=[], logging_strategy="steps", logging_steps=1,
                                      save_strategy="steps" if save_steps else "no", save_steps=save_steps or 500, use_cpu=True, seed=0,
                                      data_seed=0, ddp_backend="gloo", disable_tqdm=True)
transformers.Trainer(model=model, args=args, train_dataset=data, callbacks=[cb]).train(resume_from_checkpoint=resume)
