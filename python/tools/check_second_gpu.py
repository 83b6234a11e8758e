"""On a machine with two GPUs: a model on the second GPU, the first one current — asynchronous snapshots (graph,
copy, event on the layers' GPU) equal the synchronous ones, and a recomposition preserves the output there."""
import torch

from srlora_torch.controller import SRLoRAController, apply_srlora
from srlora_torch.models import TRANSFORMER_PRESETS, EncoderClassifier, synthetic_batch

assert torch.cuda.device_count() >= 2, "needs two GPUs"
dev = torch.device("cuda:1")
g = torch.Generator().manual_seed(0)
shape = TRANSFORMER_PRESETS["tiny"]
model = EncoderClassifier(**shape, generator=g).to(dev)
layers = apply_srlora(model, ["attn.q", "attn.v", "ffn.fc1"], r=4, alpha=8, r_target=12)
opt = torch.optim.AdamW([p for l in layers.values() for p in (l.A, l.B)], lr=1e-3)
ctl = SRLoRAController(layers, opt, total_steps=100, r=4, r_target=12, min_slot_age=1)
torch.cuda.set_device(0)
for _ in range(3):
    x, y = synthetic_batch(16, shape, g, dev)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    ctl.after_backward()
    opt.step()
    opt.zero_grad()
    ctl.after_step()
assert ctl.importance_async() is None
torch.cuda.synchronize(dev)
snap = ctl.importance_async()
got = {l["name"]: l for l in snap.layers()}
for s in ctl.importance():
    assert got[s["name"]]["S"] == s["S"] and got[s["name"]]["age"] == s["age"], s["name"]
x, _ = synthetic_batch(8, shape, g, dev)
with torch.no_grad():
    before = model(x)
    rec = ctl.recompose("forced")
    after = model(x)
err = ((after - before).norm() / before.norm()).item()
assert err < 1e-5 and all(e.slots for e in rec.layers), err
print(f"second GPU: async snapshot = synchronous ({len(got)} layers); recomposition output change {err:.1e}; current device {torch.cuda.current_device()}")
