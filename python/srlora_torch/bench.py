"""python -m srlora_torch.bench [--out FILE] [--steps N]

SRLoRA vs PEFT LoRA on a RoBERTa-base-shaped classifier built from a config (transformers, random init, no
downloads): same r, same target modules (attention query/key/value/output and the FFN), bf16 autocast, sequence 128,
batch 32. Reports step time of each and the ratio, eager and compiled (PEFT: torch.compile mode="reduce-overhead",
its CUDA graphs; SRLoRA: compiled.CompiledStep, the whole step one CUDA graph) with the compile warm-up, one full
recomposition, the SVD precompute, telemetry on ÷ off with the compiled step, peak memory, graph breaks, and achieved
TFLOP/s against this GPU's measured bf16 matmul ceiling — also at batch 128 × 128, where the GPU should be the limit.
The JSON is rewritten after each section, so a run cut short keeps what it measured.
"""
from __future__ import annotations

import argparse
import json
import os
import math
import statistics
import tempfile
import time
from types import SimpleNamespace

import torch
import torch._dynamo
from torch import nn

from .compiled import CompiledStep, fused_sdpa
from .controller import SRLoRAController, apply_srlora
from .session import Session
from .train import DEFAULTS as TRAIN_DEFAULTS, stepper

TARGETS = ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"]
SEQ, BATCH, R = 128, 32, 8
BIG = 128  # the large batch (× SEQ tokens)
DEV = "cuda"
BACKEND = "inductor"  # torch.compile's; --toy: "aot_eager" (Dynamo and AOTAutograd without Inductor's code generation)
# RoBERTa-base's shape; --toy: a tiny one on the CPU, to check the whole script end to end without a GPU
SHAPE = dict(vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, max_position_embeddings=514)


def toy() -> None:
    """Shrinks the bench to a CPU-sized model and batch (numbers meaningless, every section runs)."""
    global SEQ, BATCH, BIG, DEV, SHAPE, BACKEND
    SEQ, BATCH, BIG, DEV, BACKEND = 16, 4, 8, "cpu", "aot_eager"
    SHAPE = dict(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, max_position_embeddings=40)


def roberta(seed: int):
    from transformers import RobertaConfig, RobertaForSequenceClassification
    torch.manual_seed(seed)
    cfg = RobertaConfig(**SHAPE, num_labels=2, attn_implementation="sdpa")
    model = RobertaForSequenceClassification(cfg)
    fused_sdpa(model)  # attention stays on the fused kernels under torch.compile (compiled.fused_sdpa), for PEFT's model too
    return model


def recomposition_host_parts(ctl: SRLoRAController) -> dict:
    """Where a recomposition's wall time goes besides its device program (issue 18: 14.5 ms steady vs 4.4 ms of
    kernels in device run 1): the parts that change nothing, each timed alone — the scores' device → host read, the
    per-layer selection, the plan and the graph's validity key."""
    from .recompose import plan
    from .rule import select_slots, selection_key
    names = list(ctl.layers)
    scores, ages = ctl._host_view(names)
    index = {n: i for i, n in enumerate(ctl.layers)}
    parts = {
        "scoresRead (_host_view)": lambda: ctl._host_view(names),
        "selection (select_slots per layer)": lambda: [select_slots(S, age, ctl.layers[n].p, ctl.layers[n].r_target, ctl.fusion_threshold,
                                                                    ctl.fusion_ratio, ctl.min_slot_age, ctl.fusion_select,
                                                                    selection_key(ctl.seed, ctl.step, index[n])) for n, S, age in zip(names, scores, ages)],
        "plan (twice, as Recomposer does)": lambda: (plan(ctl.layers, [(n, [0] if ctl.layers[n].p < ctl.layers[n].r_target else []) for n in names]), plan(ctl.layers, [(n, []) for n in names], keep_empty=True)),
    }
    rc = ctl._recomposer
    if rc is not None:
        chunks = [(ns, []) for ns, _ in plan(ctl.layers, [(n, []) for n in names], keep_empty=True)]
        opt = ctl.optimizer if ctl.reset_optimizer_moments else None
        parts["graphKey (Recomposer._key)"] = lambda: rc._key(chunks, opt)
    res = {}
    for k, fn in parts.items():
        try:
            ts = []
            for _ in range(5):
                sync()
                t = time.perf_counter()
                fn()
                sync()
                ts.append((time.perf_counter() - t) * 1000)
            res[k] = round(statistics.median(ts), 3)
        except Exception as e:  # noqa: BLE001 - a diagnostic: say what failed, keep the bench going
            res[k] = f"{type(e).__name__}: {str(e)[:200]}"
    return res


def sync() -> None:
    if DEV == "cuda":
        torch.cuda.synchronize()


def bf16_ceiling() -> float:
    n = 8192 if DEV == "cuda" else 512
    a = torch.randn(n, n, device=DEV, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=DEV, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync()
    t = time.perf_counter()
    k = 20
    for _ in range(k):
        a @ b
    sync()
    return 2 * a.shape[0] ** 3 * k / (time.perf_counter() - t) / 1e12


def peak_reset() -> None:
    if DEV == "cuda":
        torch.cuda.reset_peak_memory_stats()


def peak_bytes() -> int:
    return torch.cuda.max_memory_allocated() if DEV == "cuda" else 0


def step_flops(model: nn.Module, batch_size: int = BATCH) -> float:
    """Forward FLOPs of one batch (linear layers 2·in·out per token, attention 4·T²·d per layer) × 2 (forward and
    the activation-gradient backward; frozen base weights get no weight gradient)."""
    tokens = batch_size * SEQ
    lin = sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, nn.Linear))
    attn = SHAPE["num_hidden_layers"] * 4 * SEQ * SEQ * SHAPE["hidden_size"] * batch_size
    return 2 * (2 * lin * tokens + attn)


def kernel_kind(name: str) -> str:
    """The kind of one profiled GPU kernel, by its name: triton (Inductor), gemm, attention, adam, memcpy/set, other."""
    n = name.lower()
    if "triton" in n:
        return "triton (inductor)"
    if any(k in n for k in ("gemm", "nvjet", "cutlass", "xmma", "wgmma", "cublas")) and "sdpa" not in n and "fmha" not in n:
        return "gemm"
    if any(k in n for k in ("sdpa", "fmha", "flash", "cudnn", "attention")):
        return "attention"
    if "adam" in n:
        return "adam"
    if "memcpy" in n or "memset" in n:
        return "memcpy/set"
    return "other"


# kernel names that say which SDPA path ran: fused (flash, cuDNN, memory-efficient) or the math path (float32 GEMMs,
# softmax and dropout kernels of its own)
ATTENTION_KERNELS = ("flash", "fmha", "sdpa", "attention", "cudnn", "softmax", "f32f32", "sgemm")


def profiled_kernels(fn, n: int = 5, top: int = 12, warmup: int = 0) -> dict:
    """The kernels of n calls of fn() under torch.profiler (CUDA activity on the GPU, CPU activity under --toy, where
    no event has device time: every figure 0), after `warmup` unprofiled calls and a sync, one sync at the end; the
    one profiler loop of the bench and the tools/ profilers. Per call: {"kernelMsPerStep": ms of kernel time,
    "launchesPerCall": kernel launches, "byKindMs": {kernel_kind: ms}, "top": [[name (110 chars), ms, launches], ...]
    for the `top` longest, "attention": {name (100 chars): [ms, launches]} of the ATTENTION_KERNELS}."""
    from torch.profiler import ProfilerActivity, profile
    for _ in range(warmup):
        fn()
    sync()
    with profile(activities=[ProfilerActivity.CUDA if DEV == "cuda" else ProfilerActivity.CPU]) as prof:
        for _ in range(n):
            fn()
        sync()
    # (name, ms per call, launches in all) of each kernel that took device time, longest first
    ev = sorted(((e.key, e.self_device_time_total / 1000 / n, e.count) for e in prof.key_averages() if e.self_device_time_total > 0),
                key=lambda k: -k[1])
    by_kind: dict = {}
    for key, ms, _ in ev:
        kind = kernel_kind(key)
        by_kind[kind] = by_kind.get(kind, 0) + ms
    return {"kernelMsPerStep": round(sum(ms for _, ms, _ in ev), 3),
            "launchesPerCall": sum(c for *_, c in ev) // n,
            "byKindMs": {k: round(v, 3) for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])},
            "top": [[key[:110], round(ms, 3), c // n] for key, ms, c in ev[:top]],
            "attention": {key[:100]: [round(ms, 3), c // n] for key, ms, c in ev if any(k in key.lower() for k in ATTENTION_KERNELS)}}


def batch(gen: torch.Generator, batch_size: int = BATCH):
    x = torch.randint(0, SHAPE["vocab_size"], (batch_size, SEQ), generator=gen).to(DEV)
    y = torch.randint(0, 2, (batch_size,), generator=gen).to(DEV)
    return x, y


def timed_steps(model, opt, gen, steps, before_opt=None, after_opt=None, warmup=5):
    """Median ms of `steps` steps; after_opt gets the step's loss (a device tensor)."""
    times = []
    for i in range(steps + warmup):
        x, y = batch(gen)
        sync()
        t = time.perf_counter()
        with torch.autocast(DEV, dtype=torch.bfloat16):
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


class _Cycle:
    """A task whose batch() hands out the same few batches in turn, already on the device (as a DataLoader with
    prefetch does), for train.stepper."""

    def __init__(self, batches):
        self.batches, self.i = batches, -1

    def batch(self):
        self.i = (self.i + 1) % len(self.batches)
        return self.batches[self.i]


def loss_fn(model):
    """The loss both variants compile: forward under bf16 autocast (weight cache off, as a CUDA graph needs), then
    cross-entropy in float32."""
    def f(x, y):
        with torch.autocast(DEV, dtype=torch.bfloat16, cache_enabled=False):
            logits = model(input_ids=x).logits
        return nn.functional.cross_entropy(logits.float(), y)
    return f


def hf_trainer_compiled(steps: int = 40) -> dict:
    """The Hugging Face Trainer with `torch_compile=True` and SRLoRACallback on the bench's model, batch BATCH × SEQ,
    bf16 (issue 18: SRLoRA must not break the Trainer's compiled path). Returns graph breaks and unique graphs
    (torch._dynamo's counters, reset before), the recompositions the callback made, the median ms of the steps after
    the first 10 (each synced at its end; the Trainer's own loop, optimiser eager), and whether every logged loss was
    finite."""
    import tempfile
    import transformers
    from torch._dynamo.utils import counters
    from .hf import SRLoRACallback
    m = roberta(0)
    layers = apply_srlora(m, TARGETS, r=R, alpha=2 * R, r_target=4 * R, method="srlora")
    g = torch.Generator().manual_seed(3)
    data = [{"input_ids": torch.randint(0, SHAPE["vocab_size"], (SEQ,), generator=g), "labels": torch.tensor(i % 2)}
            for i in range(BATCH * 4)]
    cb = SRLoRACallback(layers, r=R, r_target=4 * R, min_slot_age=1)
    recs, ends = [], []
    begin = cb.on_train_begin

    def on_begin(*a, **k):  # the controller exists from here: count its recompositions
        begin(*a, **k)
        cb.controller.on_recomposition = recs.append
    cb.on_train_begin = on_begin

    class Clock(transformers.TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            sync()
            ends.append(time.perf_counter())
    torch._dynamo.reset()
    counters.clear()
    with tempfile.TemporaryDirectory() as tmp:
        args = transformers.TrainingArguments(output_dir=tmp, max_steps=steps, per_device_train_batch_size=BATCH, learning_rate=1e-4,
                                              report_to=[], logging_steps=5, save_strategy="no", bf16=True, torch_compile=True,
                                              torch_compile_backend=BACKEND, use_cpu=DEV == "cpu", seed=0, data_seed=0, disable_tqdm=True)
        t = time.perf_counter()
        trainer = transformers.Trainer(model=m, args=args, train_dataset=data, callbacks=[cb, Clock()])
        trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    gaps = [(b - a) * 1000 for a, b in zip(ends[10:], ends[11:])]
    return {"steps": steps, "batch": BATCH, "graphBreaks": sum(counters["graph_break"].values()),
            "uniqueGraphs": counters["stats"]["unique_graphs"], "recompositions": len(recs),
            "msPerStep (median after step 10)": round(statistics.median(gaps), 3) if gaps else None,
            "wallSeconds (incl. compile)": round(time.perf_counter() - t, 1),
            "lossesFinite": bool(losses) and all(math.isfinite(x) for x in losses), "backend": BACKEND}


def timed(fn, n):
    """Median ms of n single synced calls of fn()."""
    times = []
    for _ in range(n):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def sdpa_diagnosis(batch_size: int) -> dict:
    """Which SDPA backend the bench's attention shapes get (bf16, dropout 0.1) with no mask, transformers' traced
    all-True mask (expanded: last-dimension stride 0) and a contiguous one; and whether SDPA with dropout can be
    captured in a CUDA graph on this machine (run last: a failed capture may leave the device unusable)."""
    from torch.nn.attention import SDPBackend
    names = {int(v.value): k for k, v in SDPBackend.__members__.items()}
    h, t = SHAPE["num_attention_heads"], SEQ
    q = torch.randn(batch_size, h, t, SHAPE["hidden_size"] // h, device=DEV, dtype=torch.bfloat16, requires_grad=True)
    masks = {"noMask": None, "expandedAllTrueMask": torch.ones(1, 1, t, 1, dtype=torch.bool, device=DEV).expand(batch_size, 1, t, t),
             "contiguousMask": torch.ones(batch_size, 1, t, t, dtype=torch.bool, device=DEV)}
    out = {}
    for name, mask in masks.items():
        try:
            out[name] = names.get(int(torch._fused_sdp_choice(q, q, q, mask, 0.1, False)), "?")
        except Exception as e:  # noqa: BLE001 - a diagnosis, not a measurement
            out[name] = f"{type(e).__name__}: {str(e)[:200]}"
    if DEV == "cuda":
        try:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                nn.functional.scaled_dot_product_attention(q, q, q, dropout_p=0.1).float().sum().backward()
            torch.cuda.current_stream().wait_stream(side)
            sync()
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                nn.functional.scaled_dot_product_attention(q, q, q, dropout_p=0.1).float().sum().backward()
            g.replay()
            sync()
            out["dropoutCapturedInCudaGraph"] = True
        except Exception as e:  # noqa: BLE001
            out["dropoutCapturedInCudaGraph"] = f"{type(e).__name__}: {str(e)[:300]}"
    return out


def graph_breaks() -> int:
    from torch._dynamo.utils import counters
    return sum(counters["graph_break"].values())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--out", default="bench/results/gpu-h200.json")
    ap.add_argument("--skip-large", action="store_true", help="leave out batch 128 × 128")
    ap.add_argument("--toy", action="store_true", help="a tiny model on the CPU: checks the script, measures nothing")
    a = ap.parse_args(argv)
    if a.toy:
        toy()
    else:
        assert torch.cuda.is_available(), "the GPU benchmark needs CUDA"
    t_start = time.perf_counter()
    gen = torch.Generator().manual_seed(0)
    ceiling = bf16_ceiling()
    out = {"device": torch.cuda.get_device_name(0) if DEV == "cuda" else f"cpu (--toy: {SHAPE})", "torch": torch.__version__, "seq": SEQ, "batch": BATCH, "r": R,
           "targets": TARGETS, "bf16MatmulCeilingTflops": round(ceiling, 1), "steps": a.steps,
           "srloraAdapterForward": "merged (merged_forward.py) while torch.compile traces, under bf16 autocast with enough tokens; eager: split"}

    def save(section):
        out["benchSeconds"] = round(time.perf_counter() - t_start, 1)
        os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
        with open(a.out, "w") as f:
            json.dump(out, f, indent=2)
        print(f"[bench {out['benchSeconds']:.0f} s] {section} done", flush=True)

    # PEFT LoRA (the reference) and SRLoRA on the same model, both resident; timed in alternating rounds (the better
    # median of each kept) so warm-up and clock drift do not favour either.
    import peft
    pm = peft.get_peft_model(roberta(0), peft.LoraConfig(r=R, lora_alpha=2 * R, target_modules=TARGETS, lora_dropout=0.0)).to(DEV)
    popt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=1e-4)
    m = roberta(0).to(DEV)
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
    peak_reset()
    timed_steps(pm, popt, gen, 5)
    out["peft"] = {"version": peft.__version__, "msPerStep": round(lora_ms, 3), "peakMemGiB (both models resident)": round(peak_bytes() / 2 ** 30, 2),
                   "trainableParams": sum(p.numel() for p in pm.parameters() if p.requires_grad)}
    flops = step_flops(pm)
    peak_reset()
    timed_steps(m, opt, gen, 5, ctl.after_backward, after_off)
    peak = peak_bytes() / 2 ** 30
    out["srlora"] = {"msPerStep": round(sr_ms, 3), "peakMemGiB (both models resident)": round(peak, 2), "svdPrecomputeMs": round(svd_ms, 1),
                     "svdMethods": sorted({l.svd_info["method"] for l in layers.values()}),
                     "svdMaxResidual": max(l.svd_info["residual"] for l in layers.values()),
                     "trainableParams": sum(l.A.numel() + l.B.numel() for l in layers.values())}
    out["srloraOverPeft"] = round(sr_ms / lora_ms, 4)
    out["flopsPerStep"] = flops
    # GPU kernel time per eager step (profiler): the work each variant gives the GPU, apart from host dispatch
    gpu_ms = {}
    attention = {}  # per variant: the attention kernels the GPU ran (fused SDPA, or the math path's pieces)
    launches = {}

    def kernel_ms(name, fn, n=10):
        try:
            prof = profiled_kernels(fn, n=n, top=0)
            gpu_ms[name], attention[name], launches[name] = prof["kernelMsPerStep"], prof["attention"], prof["launchesPerCall"]
        except Exception as e:  # noqa: BLE001 - a profiler that cannot see graph replays costs this one figure only
            gpu_ms[name] = f"not measured: {type(e).__name__}: {str(e)[:200]}"
    kernel_ms("peftEager", lambda: timed_steps(pm, popt, gen, 1, warmup=0))
    kernel_ms("srloraEager", lambda: timed_steps(m, opt, gen, 1, ctl.after_backward, after_off, warmup=0))
    out["gpuKernelMsPerStep"] = gpu_ms
    out["attentionKernels (ms, launches per step)"] = attention
    out["kernelLaunchesPerCall"] = launches
    save("eager")

    # ---- compiled. PEFT: torch.compile(mode="reduce-overhead") of the same loss (Inductor + its CUDA graph trees),
    # the optimiser eager, as the issue measured it. SRLoRA: CompiledStep (Inductor, then the whole step — zero grads,
    # forward, backward, finite check, importance, fused AdamW — captured as one CUDA graph).
    torch._dynamo.reset()
    breaks0 = graph_breaks()
    pfn = torch.compile(loss_fn(pm), mode="reduce-overhead", dynamic=False) if BACKEND == "inductor" else \
        torch.compile(loss_fn(pm), backend=BACKEND, dynamic=False)

    def peft_compiled_step():
        torch.compiler.cudagraph_mark_step_begin()
        x, y = batch(gen)
        loss = pfn(x, y)
        loss.backward()
        popt.step()
        popt.zero_grad(set_to_none=True)
        return loss
    sync()
    t = time.perf_counter()
    for _ in range(3):
        peft_compiled_step()
    sync()
    peft_warm_s = time.perf_counter() - t
    peft_breaks = graph_breaks() - breaks0
    save("peft compile")

    logs = []
    sync()
    t = time.perf_counter()
    sfn = loss_fn(m)
    cstep = CompiledStep(sfn, opt, ctl, mode="auto", log=logs.append, backend=BACKEND)

    def sr_compiled_step():
        loss = cstep(*batch(gen))
        ctl.after_step()
        return loss
    breaks0 = graph_breaks()
    for _ in range(3):  # 2 warm-up steps (compiling), then the capture and the first replay
        sr_compiled_step()
    sync()
    sr_warm_s = time.perf_counter() - t
    sr_breaks = graph_breaks() - breaks0
    save("srlora compile")
    pc_t, sc_t = [], []
    for _ in range(a.steps * 3):
        pc_t.append(timed(peft_compiled_step, 1))
        sc_t.append(timed(sr_compiled_step, 1))
    pc_ms, sc_ms = statistics.median(pc_t), statistics.median(sc_t)
    kernel_ms("peftCompiled", peft_compiled_step)
    kernel_ms("srloraCompiled", sr_compiled_step)
    out["compiled"] = {
        "peft": {"mode": "torch.compile reduce-overhead (CUDA graphs), optimizer eager", "msPerStep": round(pc_ms, 3),
                 "warmupSeconds (3 steps: compile + graph record)": round(peft_warm_s, 1), "graphBreaks": peft_breaks},
        "srlora": {"mode": "CompiledStep auto: torch.compile (Inductor) + the whole step as one CUDA graph", "msPerStep": round(sc_ms, 3),
                   "warmupSeconds (compile + 2 warm-up steps + capture + first replay)": round(sr_warm_s, 1),
                   "graphBreaks": sr_breaks, "captures": cstep.captures, "log": logs},
    }
    out["srloraCompiledOverPeftEager"] = round(sc_ms / lora_ms, 4)
    out["srloraCompiledOverPeftCompiled"] = round(sc_ms / pc_ms, 4)
    save("compiled timing")

    # Telemetry with the compiled step as train.py's loop runs it: train.stepper over a Session (the trainer's own
    # per-step path: deferred loss reads, metrics rows, snapshots, the folder check, the command queue; no hub), so a
    # change to the loop is measured here. The step is replayed and never waited for; its loss and skipped flag are
    # read one step late (Telemetry.defer). Measured as blocks of consecutive steps on inputs already on the GPU (one
    # sync per block, as a run has none per step), alternating with blocks of the bare step (no Session): on ÷ off of
    # the blocks' medians. Variants: the trainer's default (metrics rows ≤ 10/s, an importance snapshot every
    # importanceEvery = 10 steps and ≤ 10/s), snapshots at the protocol's maximum rate (every step, ≤ 10/s), metrics alone.
    inputs = [batch(gen) for _ in range(4)]
    block = 10 if a.toy else 100
    every = {"trainerDefault": TRAIN_DEFAULTS["importanceEvery"], "maxRate": 1, "metricsOnly": 1}
    sessions = {}
    for k, n in every.items():
        s = Session(ctl, opt, tempfile.mkdtemp(prefix=f"srlora-bench-{k}-"), total_steps=10 ** 9, batch_size=BATCH, name=f"bench-{k}",
                    device=DEV, env={}, importance_every=n, handle_signals=False)
        s.telemetry.snapshots = k != "metricsOnly"
        s.start()
        sessions[k] = (s, stepper(SimpleNamespace(task=_Cycle(inputs), ctl=ctl, session=s, opt=opt), cstep))
    variants = list(sessions)

    def off_block():
        for i in range(block):
            cstep(*inputs[i % 4])
            ctl.after_step()

    def on_block(k):
        session, step = sessions[k]

        def run():
            for _ in range(block):
                assert step(), f"bench telemetry ({k}): a loss was not finite"
            session.telemetry.flush()
        return run
    times = {k: [] for k in ["off", *variants]}
    for _ in range(max(3, a.steps // 5)):
        times["off"].append(timed(off_block, 1) / block)
        for k in variants:
            times[k].append(timed(on_block(k), 1) / block)
    for s, _ in sessions.values():  # their records end here; the recompositions below are not theirs
        ctl.listeners.remove(s._on_recomposition)
        s.finish()
    med = {k: statistics.median(v) for k, v in times.items()}
    out["telemetryCompiled"] = {k: {"msPerStep": round(med[k], 3), "onOverOff": round(med["off"] / med[k], 4)} for k in variants}
    out["telemetryCompiled"]["offMsPerStep"] = round(med["off"], 3)
    out["telemetryCompiled"]["how"] = (f"blocks of {block} consecutive compiled steps (inputs on the GPU, one sync per block), "
                                       f"{len(times['off'])} alternating rounds, medians; on: train.stepper over a Session, as train.py's loop runs (deferred loss reads, no hub)")
    out["telemetryOnOverOff"] = out["telemetryCompiled"]["trainerDefault"]["onOverOff"]  # steps/s on ÷ off, compiled step
    save("telemetry")

    # Full recompositions (every slot eligible) between compiled steps: the first pays one-time CUDA/cuBLAS float64
    # set-up; then steady state. The graph must stay valid: no re-capture, finite losses after.
    times = []
    for _ in range(4):  # on CUDA: the first runs eagerly, the second is captured as a CUDA graph, then replays
        for l in layers.values():
            l.age.fill_(10 ** 6)
        sync()
        t = time.perf_counter()
        res = ctl.recompose("forced")
        sync()
        times.append((time.perf_counter() - t) * 1000)
        after = torch.stack([sr_compiled_step() for _ in range(3)])
    first_recompose_ms, capture_ms, recompose_ms = times[0], times[1], statistics.median(times[2:])
    # What a recomposition adds to a run: blocks of consecutive steps with one full recomposition in the middle
    # against blocks without, alternating (the host never syncs inside a block, as in train.py's loop).
    half = 5 if a.toy else 20

    def steps_block(recompose):
        def run():
            for i in range(2 * half):
                cstep(*inputs[i % 4])
                ctl.after_step()
                if recompose and i == half - 1:
                    ctl.recompose("forced")
        return run
    plain_t, with_t = [], []
    for _ in range(5 if a.toy else 10):
        for l in layers.values():
            l.age.fill_(10 ** 6)
        plain_t.append(timed(steps_block(False), 1))
        for l in layers.values():
            l.age.fill_(10 ** 6)
        with_t.append(timed(steps_block(True), 1))
    cost_ms = statistics.median(with_t) - statistics.median(plain_t)
    step_in_block_ms = statistics.median(plain_t) / (2 * half)
    for l in layers.values():  # two more, profiled: GPU time and launches of one recomposition (every slot eligible)
        l.age.fill_(10 ** 6)
    kernel_ms("recomposition", lambda: ctl.recompose("forced"), n=2)
    rc = ctl._recomposer
    out["srlora"]["recompositionHostParts (ms, median of 5, each synced; read-only parts of one recomposition)"] = recomposition_host_parts(ctl)
    out["srlora"].update({"fullRecompositionMs": round(recompose_ms, 2), "firstRecompositionMs": round(first_recompose_ms, 2),
                          "secondRecompositionMs (captured as a CUDA graph, then replayed)": round(capture_ms, 2),
                          "recompositionGraphCaptures": rc.captures if rc else 0, "recompositionTimes": [round(t, 2) for t in times],
                          "recomposedLayers": len(res.layers), "maxPreservationError": max(e.preservation_error for e in res.layers),
                          "compiledStepAfterRecompositions": {"captures": cstep.captures, "lossesFinite": bool(torch.isfinite(after).all())}})
    out["recompositionOverStep"] = round(recompose_ms / sr_ms, 3)
    out["srlora"]["recompositionCostInRunMs (blocks of consecutive steps with one full recomposition − without, medians of 10)"] = round(cost_ms, 2)
    out["srlora"]["compiledStepInBlockMs"] = round(step_in_block_ms, 3)
    out["recompositionSyncedOverCompiledStep"] = round(recompose_ms / sc_ms, 3)  # the call and its kernels, synced on both sides
    out["recompositionOverCompiledStep"] = round(cost_ms / step_in_block_ms, 3)  # what it adds to a run ÷ a step of the same run
    out["achievedTflops"] = {"peftEager": round(flops / lora_ms / 1e9, 1), "srloraEager": round(flops / sr_ms / 1e9, 1),
                             "peftCompiled": round(flops / pc_ms / 1e9, 1), "srloraCompiled": round(flops / sc_ms / 1e9, 1)}
    out["fractionOfCeiling"] = {k: round(v / ceiling, 3) for k, v in out["achievedTflops"].items()}
    save("recomposition")

    if not a.skip_large:  # batch 128 × 128: the same SRLoRA model, its step compiled again for the new shapes
        big = BIG
        del pfn
        if DEV == "cuda":
            torch.cuda.empty_cache()
        bflops = step_flops(pm, big)
        ef = loss_fn(m)

        def sr_eager_big():  # the eager SRLoRA step (fused AdamW now: the optimiser was switched by CompiledStep)
            x, y = batch(gen, big)
            opt.zero_grad(set_to_none=False)  # CompiledStep's gradient buffers stay assigned
            loss = ef(x, y)
            loss.backward()
            ctl.after_backward()
            opt.step()
            ctl.after_step()
        for _ in range(3):
            sr_eager_big()
        se_ms = timed(sr_eager_big, a.steps)
        sync()
        t = time.perf_counter()
        bstep = CompiledStep(loss_fn(m), opt, ctl, mode="auto", log=logs.append, backend=BACKEND)

        def sr_compiled_big():
            loss = bstep(*batch(gen, big))
            ctl.after_step()
            return loss
        for _ in range(3):
            sr_compiled_big()
        sync()
        big_warm_s = time.perf_counter() - t
        sb_single_ms = timed(sr_compiled_big, a.steps)  # single synced steps, a batch made and copied in each
        big_inputs = [batch(gen, big) for _ in range(4)]  # as a DataLoader with prefetch hands them: already on the GPU

        def big_block():
            for i in range(20):
                bstep(*big_inputs[i % 4])
                ctl.after_step()
        sb_ms = statistics.median([timed(big_block, 1) / 20 for _ in range(5)])
        kernel_ms("srloraCompiledLargeBatch", sr_compiled_big, n=5)

        def peft_eager_big():
            x, y = batch(gen, big)
            with torch.autocast(DEV, dtype=torch.bfloat16):
                loss = nn.functional.cross_entropy(pm(input_ids=x).logits.float(), y)
            loss.backward()
            popt.step()
            popt.zero_grad(set_to_none=True)
        for _ in range(3):
            peft_eager_big()
        pb_ms = timed(peft_eager_big, a.steps)
        tf = {"peftEager": bflops / pb_ms / 1e9, "srloraEager": bflops / se_ms / 1e9, "srloraCompiled": bflops / sb_ms / 1e9}
        out["largeBatch"] = {"batch": big, "seq": SEQ, "flopsPerStep": bflops,
                             "msPerStep": {"peftEager": round(pb_ms, 3), "srloraEager": round(se_ms, 3), "srloraCompiled": round(sb_ms, 3),
                                           "srloraCompiledSingleSyncedSteps": round(sb_single_ms, 3)},
                             "how": "srloraCompiled: blocks of 20 consecutive steps on inputs already on the GPU, median of 5; eager: single synced steps",
                             "srloraCompiledWarmupSeconds": round(big_warm_s, 1),
                             "achievedTflops": {k: round(v, 1) for k, v in tf.items()},
                             "fractionOfCeiling": {k: round(v / ceiling, 3) for k, v in tf.items()}}
        out["fractionOfCeilingLargeBatch"] = out["largeBatch"]["fractionOfCeiling"]["srloraCompiled"]
        save("large batch")
    out["sdpa (batch BIG: backend chosen per mask kind; dropout under graph capture)"] = sdpa_diagnosis(BIG)
    save("sdpa diagnosis")
    try:  # last: a Trainer/accelerate failure costs this section only
        out["hfTrainerCompiled"] = hf_trainer_compiled(20 if a.toy else 40)
    except Exception as e:  # noqa: BLE001
        out["hfTrainerCompiled"] = {"error": f"{type(e).__name__}: {str(e)[:400]}"}
    save("Hugging Face Trainer, torch_compile=True")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
