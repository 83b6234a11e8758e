"""Profiles one full recomposition of a RoBERTa-base-shaped model (72 layers) on the GPU: where its time goes."""
import time

import torch
from torch.profiler import ProfilerActivity, profile

from srlora_torch.bench import R, TARGETS, roberta
from srlora_torch.controller import SRLoRAController, apply_srlora

m = roberta(0).cuda()
layers = apply_srlora(m, TARGETS, r=R, alpha=2 * R, r_target=8 * R)
opt = torch.optim.AdamW([p for l in layers.values() for p in (l.A, l.B)], lr=1e-4)
ctl = SRLoRAController(layers, opt, total_steps=10 ** 6, r=R, r_target=8 * R, min_slot_age=1)
for _ in range(2):
    for l in layers.values():
        l.age.fill_(10 ** 6)
    torch.cuda.synchronize()
    t = time.perf_counter()
    ctl.recompose("forced")
    torch.cuda.synchronize()
    print(f"recompose: {(time.perf_counter() - t) * 1000:.1f} ms")
for l in layers.values():
    l.age.fill_(10 ** 6)
with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
    ctl.recompose("forced")
    torch.cuda.synchronize()
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=14, max_name_column_width=40))
print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=8, max_name_column_width=40))
