"""Where the GPU time of a batch-128 × 128 RoBERTa-base step goes (PEFT eager, SRLoRA eager, SRLoRA compiled and
graph-captured), and where a full recomposition's time goes next to the compiled step. Writes JSON to argv[1].

    cd python && PYTHONPATH=. python3 tools/profile_compiled.py out.json
"""
import json
import statistics
import sys
import time

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from srlora_torch import bench as B
from srlora_torch.bench import R, TARGETS, batch, loss_fn, roberta
from srlora_torch.compiled import CompiledStep
from srlora_torch.controller import SRLoRAController, apply_srlora

BIG = 128
out = {"batch": BIG, "seq": 128}
gen = torch.Generator().manual_seed(0)


def kernels(fn, n=5, top=12):
    return B.profiled_kernels(fn, n=n, top=top, warmup=2)


def wall(fn, n=10):
    ts = []
    for _ in range(n):
        torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        ts.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(ts), 3)


import peft  # noqa: E402

pm = peft.get_peft_model(roberta(0), peft.LoraConfig(r=R, lora_alpha=2 * R, target_modules=TARGETS, lora_dropout=0.0)).cuda()
popt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=1e-4)
m = roberta(0).cuda()
layers = apply_srlora(m, TARGETS, r=R, alpha=2 * R, r_target=4 * R)
opt = torch.optim.AdamW([p for l in layers.values() for p in (l.A, l.B)], lr=1e-4)
ctl = SRLoRAController(layers, opt, total_steps=10 ** 6, r=R, r_target=4 * R, min_slot_age=1)


def eager(model, o, srl):
    def step():
        x, y = batch(gen, BIG)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = nn.functional.cross_entropy(model(input_ids=x).logits.float(), y)
        loss.backward()
        if srl:
            ctl.after_backward()
        o.step()
        o.zero_grad(set_to_none=True)
        if srl:
            ctl.after_step()
    return step


out["peftEager"] = {"ms": wall(eager(pm, popt, False)), **kernels(eager(pm, popt, False))}
print("peft eager", out["peftEager"]["ms"], flush=True)
out["srloraEager"] = {"ms": wall(eager(m, opt, True)), **kernels(eager(m, opt, True))}
print("srlora eager", out["srloraEager"]["ms"], flush=True)
t = time.perf_counter()
cstep = CompiledStep(loss_fn(m), opt, ctl, mode="auto", log=print)


def compiled():
    cstep(*batch(gen, BIG))
    ctl.after_step()


for _ in range(3):
    compiled()
torch.cuda.synchronize()
out["srloraCompiled"] = {"warmupS": round(time.perf_counter() - t, 1), "ms": wall(compiled), **kernels(compiled)}
print("srlora compiled", out["srloraCompiled"]["ms"], flush=True)
json.dump(out, open(sys.argv[1], "w"), indent=1)

# a full recomposition next to the compiled step: wall, GPU kernels, launches and allocator calls
rec = []
for _ in range(3):
    for l in layers.values():
        l.age.fill_(10 ** 6)
    torch.cuda.synchronize()
    t = time.perf_counter()
    ctl.recompose("forced")
    torch.cuda.synchronize()
    rec.append((time.perf_counter() - t) * 1000)
for l in layers.values():
    l.age.fill_(10 ** 6)
with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
    ctl.recompose("forced")
    torch.cuda.synchronize()
ka = prof.key_averages()
api = {e.key: [e.count, round(e.cpu_time_total / 1000, 3)] for e in ka if e.key.startswith("cuda") or e.key.startswith("Memcpy")}
out["recomposition"] = {"wallMs": [round(x, 2) for x in rec], "kernelMs": round(sum(e.self_device_time_total for e in ka) / 1000, 3),
                        "cudaApi [count, cpu ms]": api,
                        "topCpu": [[e.key[:60], e.count, round(e.self_cpu_time_total / 1000, 3)] for e in sorted(ka, key=lambda e: -e.self_cpu_time_total)[:12]]}
compiled()
out["compiledAfterRecompositionCaptures"] = cstep.captures
json.dump(out, open(sys.argv[1], "w"), indent=1)
print(json.dumps(out, indent=1))
