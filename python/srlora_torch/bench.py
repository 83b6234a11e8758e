"""python -m srlora_torch.bench [--out FILE] [--steps N]

SRLoRA vs PEFT LoRA on a RoBERTa-base-shaped classifier built from a config (transformers, random init, no
downloads): same r, same target modules (attention query/key/value/output and the FFN), bf16 autocast, sequence 128,
batch 32. Reports step time of each and the ratio, one full recomposition, the SVD precompute, telemetry on ÷ off,
peak memory, and the step's achieved TFLOP/s against this GPU's measured bf16 matmul ceiling.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import torch
from torch import nn

from .client import EventRecorder
from .controller import SRLoRAController, apply_srlora
from .telemetry import MIN_INTERVAL_S, Telemetry
from .train import DEFAULTS as TRAIN_DEFAULTS

TARGETS = ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"]
SEQ, BATCH, R = 128, 32, 8


def roberta(seed: int):
    from transformers import RobertaConfig, RobertaForSequenceClassification
    torch.manual_seed(seed)
    cfg = RobertaConfig(vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                        max_position_embeddings=514, num_labels=2, attn_implementation="sdpa")
    return RobertaForSequenceClassification(cfg)


def sync() -> None:
    torch.cuda.synchronize()


def bf16_ceiling() -> float:
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync()
    t = time.perf_counter()
    n = 20
    for _ in range(n):
        a @ b
    sync()
    return 2 * 8192 ** 3 * n / (time.perf_counter() - t) / 1e12


def step_flops(model: nn.Module) -> float:
    """Forward FLOPs of one batch (linear layers 2·in·out per token, attention 4·T²·d per layer) × 2 (forward and
    the activation-gradient backward; frozen base weights get no weight gradient)."""
    tokens = BATCH * SEQ
    lin = sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, nn.Linear))
    attn = 12 * 4 * SEQ * SEQ * 768 * BATCH
    return 2 * (2 * lin * tokens + attn)


def batch(gen: torch.Generator):
    x = torch.randint(0, 50265, (BATCH, SEQ), generator=gen).cuda()
    y = torch.randint(0, 2, (BATCH,), generator=gen).cuda()
    return x, y


def timed_steps(model, opt, gen, steps, before_opt=None, after_opt=None, warmup=5):
    """Median ms of `steps` steps; after_opt gets the step's loss (a device tensor)."""
    times = []
    for i in range(steps + warmup):
        x, y = batch(gen)
        sync()
        t = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = nn.functional.cross_entropy(model(input_ids=x).logits.float(), y)
        loss.backward()
        if before_opt:
            before_opt()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if after_opt:
            after_opt(loss)
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--out", default="bench/results/gpu-h200.json")
    a = ap.parse_args(argv)
    assert torch.cuda.is_available(), "the GPU benchmark needs CUDA"
    gen = torch.Generator().manual_seed(0)
    ceiling = bf16_ceiling()
    out = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "seq": SEQ, "batch": BATCH, "r": R,
           "targets": TARGETS, "bf16MatmulCeilingTflops": round(ceiling, 1), "steps": a.steps}

    # PEFT LoRA (the reference) and SRLoRA on the same model, both resident; timed in alternating rounds (the better
    # median of each kept) so warm-up and clock drift do not favour either.
    import peft
    pm = peft.get_peft_model(roberta(0), peft.LoraConfig(r=R, lora_alpha=2 * R, target_modules=TARGETS, lora_dropout=0.0)).cuda()
    popt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=1e-4)
    m = roberta(0).cuda()
    sync()
    t = time.perf_counter()
    layers = apply_srlora(m, TARGETS, r=R, alpha=2 * R, r_target=4 * R, method="srlora")
    sync()
    svd_ms = (time.perf_counter() - t) * 1000
    opt = torch.optim.AdamW([p for l in layers.values() for p in (l.A, l.B)], lr=1e-4)
    ctl = SRLoRAController(layers, opt, total_steps=10 ** 6, r=R, r_target=4 * R, min_slot_age=1)

    def after_off(loss):  # the SRLoRA step without telemetry
        ctl.after_step()
    # Interleaved single steps (PEFT, SRLoRA, PEFT, …): both see the same host and clock conditions.
    timed_steps(pm, popt, gen, 5)
    timed_steps(m, opt, gen, 5, ctl.after_backward, after_off)
    lora_t, sr_t = [], []
    for _ in range(a.steps * 3):
        lora_t.append(timed_steps(pm, popt, gen, 1, warmup=0))
        sr_t.append(timed_steps(m, opt, gen, 1, ctl.after_backward, after_off, warmup=0))
    lora_ms, sr_ms = statistics.median(lora_t), statistics.median(sr_t)
    torch.cuda.reset_peak_memory_stats()
    timed_steps(pm, popt, gen, 5)
    out["peft"] = {"version": peft.__version__, "msPerStep": round(lora_ms, 3), "peakMemGiB (both models resident)": round(torch.cuda.max_memory_allocated() / 2 ** 30, 2),
                   "trainableParams": sum(p.numel() for p in pm.parameters() if p.requires_grad)}
    flops = step_flops(pm)
    torch.cuda.reset_peak_memory_stats()
    timed_steps(m, opt, gen, 5, ctl.after_backward, after_off)
    peak = torch.cuda.max_memory_allocated() / 2 ** 30
    # Telemetry as the trainer sends it by default (telemetry.py: metrics rows ≤ 10/s, an importance snapshot every
    # importanceEvery = 10 steps and ≤ 10/s, all written to events.jsonl), snapshots as often as the protocol allows
    # (importanceEvery = 1, ≤ 10/s), a worst case (both every step), and metrics alone — each interleaved with steps
    # without telemetry. Each step waits for the writer thread to finish what it emitted (an upper bound: in a run
    # that work overlaps the next step, and otherwise it spilled into whichever variant ran next).
    rec = EventRecorder("bench", tempfile.mkdtemp())
    rec.emit({"type": "hello", "protocol": {"major": 1, "minor": 0}, "method": "srlora", "backend": {"name": "pytorch", "device": out["device"]},
              "totalSteps": 10 ** 6, "config": {}, "layers": [{"name": n, "shape": [l.out_features, l.in_features], "r": l.r, "rTarget": l.r_target} for n, l in layers.items()]})
    every = {"trainerDefault": TRAIN_DEFAULTS["importanceEvery"], "maxRate": 1, "everyStep": 1, "metricsOnly": 1}
    own_s = {k: 0.0 for k in every}  # each variant's clock counts only its own steps: interleaving does not stretch its intervals
    variants = {k: Telemetry(rec, ctl, BATCH, lambda: 1e-4, {"importanceEvery": every[k]}, snapshots=k != "metricsOnly",
                             min_interval_s=0.0 if k == "everyStep" else MIN_INTERVAL_S, clock=lambda k=k: own_s[k]) for k in every}
    hook_s = {k: 0.0 for k in variants}

    def with_telemetry(name):
        def after(loss):
            ctl.after_step()
            t0 = time.perf_counter()
            variants[name].after_step(loss)
            rec.drain()  # the writer thread's JSON and file work is charged to the step that caused it, in full
            hook_s[name] += time.perf_counter() - t0
        return after

    times = {k: [] for k in ["off", *variants]}
    for _ in range(a.steps * 6):
        times["off"].append(timed_steps(m, opt, gen, 1, ctl.after_backward, after_off, warmup=0))
        for k in variants:
            times[k].append(timed_steps(m, opt, gen, 1, ctl.after_backward, with_telemetry(k), warmup=0))
            own_s[k] += times[k][-1] / 1000
    rec.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    out["telemetry"] = {k: {"msPerStep": round(med[k], 3), "onOverOff": round(med["off"] / med[k], 4),
                            "telemetryMsPerStep (training thread + writer thread, drained)": round(hook_s[k] * 1000 / len(times[k]), 3)} for k in variants}
    out["telemetry"]["offMsPerStep"] = round(med["off"], 3)
    # GPU kernel time per step (profiler): the work each variant gives the GPU, apart from host dispatch; measured
    # after every wall-clock timing, so the profiler's own overhead cannot touch them.
    from torch.profiler import ProfilerActivity, profile
    gpu_ms = {}
    for name, args in (("peft", (pm, popt, gen, 10)), ("srlora", (m, opt, gen, 10, ctl.after_backward, after_off))):
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            timed_steps(*args, warmup=0)
        gpu_ms[name] = round(sum(e.self_device_time_total for e in prof.key_averages()) / 1000 / 10, 3)
    out["gpuKernelMsPerStep"] = gpu_ms
    # full recompositions (every slot eligible): the first pays one-time CUDA/cuBLAS float64 set-up; then steady state
    times = []
    for _ in range(3):
        for l in layers.values():
            l.age.fill_(10 ** 6)
        sync()
        t = time.perf_counter()
        res = ctl.recompose("forced")
        sync()
        times.append((time.perf_counter() - t) * 1000)
    first_recompose_ms, recompose_ms = times[0], statistics.median(times[1:])
    out["srlora"] = {
        "msPerStep": round(sr_ms, 3), "peakMemGiB (both models resident)": round(peak, 2), "svdPrecomputeMs": round(svd_ms, 1),
        "svdMethods": sorted({l.svd_info["method"] for l in layers.values()}), "svdMaxResidual": max(l.svd_info["residual"] for l in layers.values()),
        "fullRecompositionMs": round(recompose_ms, 2), "firstRecompositionMs": round(first_recompose_ms, 2), "recomposedLayers": len(res.layers),
        "maxPreservationError": max(e.preservation_error for e in res.layers),
        "trainableParams": sum(l.A.numel() + l.B.numel() for l in layers.values()),
    }
    out["srloraOverPeft"] = round(sr_ms / lora_ms, 4)
    out["telemetryOnOverOff"] = out["telemetry"]["trainerDefault"]["onOverOff"]  # throughput ratio: steps/s on ÷ steps/s off
    out["recompositionOverStep"] = round(recompose_ms / sr_ms, 3)
    out["flopsPerStep"] = flops
    out["achievedTflops"] = {"peft": round(flops / lora_ms / 1e9, 1), "srlora": round(flops / sr_ms / 1e9, 1)}
    out["fractionOfCeiling"] = {k: round(v / ceiling, 3) for k, v in out["achievedTflops"].items()}
    print(json.dumps(out, indent=2))
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
