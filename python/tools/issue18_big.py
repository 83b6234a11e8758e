"""Issue 18, the large batch: where the compiled step's GPU time goes at batch 128 × 128 and what each candidate
change buys, measured as the bench measures it (blocks of 20 consecutive graph replays on inputs already on the GPU,
median of 5). Writes JSON to argv[1] after each variant; ~1 minute per variant on an H200.

    cd python && python3 tools/issue18_big.py out.json [variant ...]

Variants: cur (as shipped), split (the adapter's split forward x·Wᵀ + s·(x·Aᵀ)·Bᵀ instead of merged_forward.py's),
cdt (cur + Inductor's coordinate-descent tuning of its Triton kernels), peft (PEFT LoRA compiled with reduce-overhead,
for context). TFLOP/s count the base model's FLOPs (bench.step_flops), as the bench does.
"""
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # python/, from any directory

import torch

from srlora_torch import bench
from srlora_torch.bench import R, SEQ, TARGETS, batch, loss_fn, roberta, step_flops
from srlora_torch.compiled import CompiledStep
from srlora_torch.controller import SRLoRAController, apply_srlora

BIG = 128
OUT = sys.argv[1]
VARIANTS = sys.argv[2:] or ["cur", "split", "cdt"]
gen = torch.Generator().manual_seed(0)
res = {"batch": BIG, "seq": SEQ, "ceilingTflops": round(bench.bf16_ceiling(), 1), "variants": {}}


def block_ms(step, inputs, k=20, rounds=5):
    ts = []
    for _ in range(rounds):
        torch.cuda.synchronize()
        t = time.perf_counter()
        for i in range(k):
            step(*inputs[i % len(inputs)])
        torch.cuda.synchronize()
        ts.append((time.perf_counter() - t) * 1000 / k)
    return round(statistics.median(ts), 3)


def save():
    with open(OUT, "w") as f:
        json.dump(res, f, indent=1)


FLOPS = step_flops(roberta(0), BIG)  # the base model's (an adapted layer is no nn.Linear: counted after, it vanished)
for v in VARIANTS:
    torch._dynamo.reset()
    t0 = time.perf_counter()
    try:
        if v == "peft":
            import peft
            pm = peft.get_peft_model(roberta(0), peft.LoraConfig(r=R, lora_alpha=2 * R, target_modules=TARGETS, lora_dropout=0.0)).cuda()
            popt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=1e-4, fused=True)
            pfn = torch.compile(loss_fn(pm), mode="reduce-overhead")

            def step(x, y):
                loss = pfn(x, y)
                loss.backward()
                popt.step()
                popt.zero_grad(set_to_none=False)
        else:
            torch._inductor.config.coordinate_descent_tuning = v == "cdt"
            m = roberta(0).cuda()
            layers = apply_srlora(m, TARGETS, r=R, alpha=2 * R, r_target=4 * R, method="srlora")
            for lay in layers.values():
                lay.merged_forward = False if v == "split" else "auto"
            opt = torch.optim.AdamW([p for l in layers.values() for p in (l.A, l.B)], lr=1e-4)
            ctl = SRLoRAController(layers, opt, total_steps=10 ** 6, r=R, r_target=4 * R, min_slot_age=1)
            cstep = CompiledStep(loss_fn(m), opt, ctl, mode="auto")

            def step(x, y):
                cstep(x, y)
                ctl.after_step()
        inputs = [tuple(t.cuda() for t in batch(gen, BIG)) for _ in range(4)]
        for i in range(3):
            step(*inputs[i % 4])
        torch.cuda.synchronize()
        warm = time.perf_counter() - t0
        ms = block_ms(step, inputs)
        prof = bench.profiled_kernels(lambda: step(*inputs[0]), n=3, top=40, warmup=1)
        kms, top = prof["kernelMsPerStep"], prof["top"]
        tf = FLOPS / ms / 1e9
        res["variants"][v] = {"msPerStep": ms, "achievedTflops": round(tf, 1), "fractionOfCeiling": round(tf / res["ceilingTflops"], 4),
                              "warmupS": round(warm, 1), "kernelMsPerStep": kms, "top": top}
        print(v, ms, round(tf / res["ceilingTflops"], 4), "kernels", kms, flush=True)
    except Exception as e:  # one failed variant must not lose the others
        res["variants"][v] = {"error": f"{type(e).__name__}: {str(e)[:500]}"}
        print(v, "failed", e, flush=True)
    save()
    for name in ("m", "pm", "cstep", "pfn", "opt", "popt", "ctl", "layers"):
        globals().pop(name, None)
    torch.cuda.empty_cache()
