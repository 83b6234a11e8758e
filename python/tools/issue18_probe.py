"""Where the compiled step's time goes (issue 18 diagnosis, for the lead on the lent GPU; ~8 minutes):

    cd python && python3 tools/issue18_probe.py --out "$OUT"

Writes OUT/probe.json after each section:
1. batch 128 × 128, the bench's model: compiled step ms (20 consecutive steps, inputs prepared beforehand, one sync)
   and the top GPU kernels by time with category sums — float32 base (the bench's), bf16 base, then "max" mode;
2. batch 32: the trainer loop's host reads (per-step loss read, skipped() read, telemetry) against a loop without
   them, and a loop that reads the previous step's loss (pipelined);
3. a steady recomposition under cProfile (host time by function).
"""
import argparse
import cProfile
import io
import itertools
import json
import os
import pstats
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from srlora_torch import bench as B  # noqa: E402
from srlora_torch.compiled import CompiledStep  # noqa: E402
from srlora_torch.controller import SRLoRAController, apply_srlora  # noqa: E402

OUT = {}


def save(path):
    with open(path, "w") as f:
        json.dump(OUT, f, indent=2)


def build(dtype=None, seed=0):
    m = B.roberta(seed)
    if dtype is not None:
        m = m.to(dtype)
    m = m.to("cuda")
    layers = apply_srlora(m, B.TARGETS, r=B.R, alpha=2 * B.R, r_target=4 * B.R, method="srlora")
    opt = torch.optim.AdamW([p for l in layers.values() for p in (l.A, l.B)], lr=1e-4)
    ctl = SRLoRAController(layers, opt, total_steps=10 ** 6, r=B.R, r_target=4 * B.R, min_slot_age=1)
    return m, layers, opt, ctl


def consecutive_ms(fn, inputs, n):
    torch.cuda.synchronize()
    t = time.perf_counter()
    for i in range(n):
        fn(*inputs[i % len(inputs)])
    torch.cuda.synchronize()
    return (time.perf_counter() - t) * 1000 / n


def kernels(fn, inputs, n=5):
    it = itertools.count()
    return B.profiled_kernels(lambda: fn(*inputs[next(it) % len(inputs)]), n=n, top=30)


def large(label, dtype, mode, path, bflops, ceiling):
    torch._dynamo.reset()
    m, layers, opt, ctl = build(dtype)
    gen = torch.Generator().manual_seed(0)
    inputs = [B.batch(gen, B.BIG) for _ in range(4)]
    logs = []
    t = time.perf_counter()
    step = CompiledStep(B.loss_fn(m), opt, ctl, mode=mode, log=logs.append)

    def fn(x, y):
        loss = step(x, y)
        ctl.after_step()
        return loss
    for i in range(3):
        fn(*inputs[i])
    torch.cuda.synchronize()
    warm = time.perf_counter() - t
    ms = min(consecutive_ms(fn, inputs, 20) for _ in range(3))
    res = {"dtype": str(dtype or "float32 (autocast bf16)"), "mode": mode, "warmupS": round(warm, 1), "msPerStep (20 consecutive, best of 3)": round(ms, 3),
           "fractionOfCeiling": round(bflops / ms / 1e9 / ceiling, 4), "log": logs[-2:]}
    res.update(kernels(fn, inputs))
    OUT["large"][label] = res
    save(path)
    print(label, json.dumps({k: res[k] for k in ("msPerStep (20 consecutive, best of 3)", "fractionOfCeiling", "kernelMsPerStep", "byKindMs")}), flush=True)
    del m, layers, opt, ctl, step
    torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--sections", default="loop,recompose,large")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, "probe.json")
    sections = a.sections.split(",")
    ceiling = B.bf16_ceiling()
    OUT.update(device=torch.cuda.get_device_name(), torch=torch.__version__, ceilingTflops=round(ceiling, 1), large={})
    bflops = B.step_flops(B.roberta(0), B.BIG)
    OUT["largeFlops"] = bflops

    if "loop" in sections or "recompose" in sections:
        from srlora_torch.client import EventRecorder
        from srlora_torch.telemetry import Telemetry
        import tempfile
        m, layers, opt, ctl = build()
        gen = torch.Generator().manual_seed(0)
        inputs = [B.batch(gen) for _ in range(8)]
        step = CompiledStep(B.loss_fn(m), opt, ctl, mode="auto")
        for i in range(3):
            step(*inputs[i])
            ctl.after_step()
        torch.cuda.synchronize()
        rec = EventRecorder("probe", tempfile.mkdtemp())
        rec.emit({"type": "hello", "protocol": {"major": 1, "minor": 0}, "method": "srlora", "backend": {"name": "pytorch", "device": "cuda"},
                  "totalSteps": 10 ** 6, "config": {}, "layers": [{"name": n, "shape": [l.out_features, l.in_features], "r": l.r, "rTarget": l.r_target} for n, l in layers.items()]})
        tel = Telemetry(rec, ctl, B.BATCH, lambda: 1e-4, {"importanceEvery": 10})
        ctl._scheduled = set()  # no scheduled recompositions in these loops

        def off(x, y):
            step(x, y)
            ctl.after_step()

        def read_each(x, y):
            loss = step(x, y)
            float(loss)
            ctl.after_step()

        def trainer_now(x, y):  # train.py's loop today: skipped() read, after_step, telemetry reading this step's loss
            loss = step(x, y)
            if step.skipped():
                ctl._skip_this_step = True
            ctl.after_step()
            tel.after_step(loss)
        prev = [None]

        def pipelined(x, y):  # the host reads the previous step's loss after this step is queued
            loss = step(x, y)
            ctl.after_step()
            if prev[0] is not None:
                tel.after_step(prev[0])
            prev[0] = loss
        variants = {"off": off, "readLossEachStep": read_each, "trainerNow": trainer_now, "pipelined": pipelined}
        if "loop" in sections:
            res = {k: [] for k in variants}
            for _ in range(5):
                for k, fn in variants.items():
                    res[k].append(consecutive_ms(fn, inputs, 100))
            OUT["loop (batch 32, ms/step over 100 consecutive steps, 5 alternating rounds)"] = {
                k: {"best": round(min(v), 3), "median": round(sorted(v)[2], 3)} for k, v in res.items()}
            OUT["loopOnOverOff"] = {k: round(min(res["off"]) / min(v), 4) for k, v in res.items()}
            save(path)
            print("loop", json.dumps(OUT["loopOnOverOff"]), flush=True)
        if "recompose" in sections:
            times = []
            for i in range(6):
                for l in layers.values():
                    l.age.fill_(10 ** 6)
                torch.cuda.synchronize()
                t = time.perf_counter()
                if i == 5:
                    pr = cProfile.Profile()
                    pr.enable()
                ctl.recompose("forced")
                torch.cuda.synchronize()
                if i == 5:
                    pr.disable()
                times.append((time.perf_counter() - t) * 1000)
                for j in range(3):
                    step(*inputs[j])
                    ctl.after_step()
            s = io.StringIO()
            pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(30)
            s2 = io.StringIO()
            pstats.Stats(pr, stream=s2).sort_stats("cumulative").print_stats(40)
            step_ms = consecutive_ms(lambda x, y: (step(x, y), ctl.after_step()), inputs, 50)
            OUT["recompose"] = {"times": [round(t, 2) for t in times], "stepMs": round(step_ms, 3), "profileTottime": s.getvalue()[-6000:],
                                "profileCumulative": s2.getvalue()[-8000:]}
            save(path)
            print("recompose", OUT["recompose"]["times"], "step", step_ms, flush=True)
        rec.close()
        del m, layers, opt, ctl, step
        torch.cuda.empty_cache()

    if "large" in sections:
        large("float32Auto", None, "auto", path, bflops, ceiling)
        large("bf16Auto", torch.bfloat16, "auto", path, bflops, ceiling)
        large("bf16Max", torch.bfloat16, "max", path, bflops, ceiling)
    print("done", flush=True)


if __name__ == "__main__":
    main()
