"""A Hugging Face Trainer run with the SRLoRA callback, launched by torchrun (tests/test_ddp.py)."""
import sys

import torch
import transformers

from srlora_torch.controller import apply_srlora
from srlora_torch.hf import SRLoRACallback

cfg = transformers.RobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=2)
torch.manual_seed(0)
model = transformers.RobertaForSequenceClassification(cfg)
layers = apply_srlora(model, ["query", "value"], r=4, alpha=8, r_target=12)
g = torch.Generator().manual_seed(1)
data = [{"input_ids": torch.randint(3, 100, (16,), generator=g), "labels": torch.tensor(i % 2)} for i in range(512)]
cb = SRLoRACallback(layers, r=4, r_target=12, min_slot_age=1)
args = transformers.TrainingArguments(output_dir=sys.argv[1], max_steps=int(sys.argv[2]), per_device_train_batch_size=4, learning_rate=1e-3,
                                      report_to=[], logging_strategy="steps", logging_steps=1, save_strategy="no", use_cpu=True, seed=0,
                                      ddp_backend="gloo", disable_tqdm=True)
transformers.Trainer(model=model, args=args, train_dataset=data, callbacks=[cb]).train()
