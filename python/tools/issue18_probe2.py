"""Issue 18 diagnosis, part 2 (lead, lent GPU, ~4 min): where telemetry's host cost comes from, and what contiguous
A factors do to the compiled step (foreach fast path in the importance update).

    cd python && python3 tools/issue18_probe2.py --out "$OUT"
"""
import argparse
import json
import os
import sys
import tempfile
import time
import traceback
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from srlora_torch import bench as B  # noqa: E402
from srlora_torch.client import EventRecorder  # noqa: E402
from srlora_torch.compiled import CompiledStep  # noqa: E402
from srlora_torch.controller import SRLoRAController, apply_srlora  # noqa: E402
from srlora_torch.telemetry import Telemetry  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from issue18_probe import build, consecutive_ms, kernels  # noqa: E402

OUT = {}


class NullRec:
    def emit(self, body, build=None):
        return body


def setup(contiguous, big=False):
    torch._dynamo.reset()
    m = B.roberta(0).to("cuda")
    layers = apply_srlora(m, B.TARGETS, r=B.R, alpha=2 * B.R, r_target=4 * B.R, method="srlora")
    if contiguous:
        for l in layers.values():
            l.A.data = l.A.data.contiguous()
            l.B.data = l.B.data.contiguous()
    OUT.setdefault("strides", {})[str(contiguous)] = [list(l.A.stride()) for l in list(layers.values())[:1]] + [list(l.B.stride()) for l in list(layers.values())[:1]]
    opt = torch.optim.AdamW([p for l in layers.values() for p in (l.A, l.B)], lr=1e-4)
    ctl = SRLoRAController(layers, opt, total_steps=10 ** 6, r=B.R, r_target=4 * B.R, min_slot_age=1)
    ctl._scheduled = set()
    gen = torch.Generator().manual_seed(0)
    inputs = [B.batch(gen, B.BIG if big else B.BATCH) for _ in range(4)]
    step = CompiledStep(B.loss_fn(m), opt, ctl, mode="auto")
    for i in range(3):
        step(*inputs[i])
        ctl.after_step()
    torch.cuda.synchronize()
    return m, layers, opt, ctl, step, inputs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    a = ap.parse_args()
    path = os.path.join(a.out, "probe2.json")

    def save():
        with open(path, "w") as f:
            json.dump(OUT, f, indent=2)
    # 1. contiguous factors: batch 32 and 128, ms and kernels
    for contiguous in (True,):
        for big in (False, True):
            m, layers, opt, ctl, step, inputs = setup(contiguous, big)

            def fn(x, y):
                step(x, y)
                ctl.after_step()
            ms = min(consecutive_ms(fn, inputs, 20 if big else 50) for _ in range(3))
            k = kernels(fn, inputs)
            key = f"contiguous={contiguous} batch={'128' if big else '32'}"
            OUT[key] = {"ms": round(ms, 3), "kernelMs": k["kernelMsPerStep"], "byCategory": k["byKindMs"], "top": k["top"][:14],
                        "launches": None}
            save()
            print(key, ms, k["kernelMsPerStep"], k["byKindMs"], flush=True)
            if big:
                del m, layers, opt, ctl, step
                torch.cuda.empty_cache()
    # 2. telemetry parts at batch 32 (contiguous factors)
    m, layers, opt, ctl, step, inputs = setup(True)
    rec = EventRecorder("probe", tempfile.mkdtemp())
    rec.emit({"type": "hello", "protocol": {"major": 1, "minor": 0}, "method": "srlora", "backend": {"name": "pytorch", "device": "cuda"},
              "totalSteps": 10 ** 6, "config": {}, "layers": [{"name": n, "shape": [l.out_features, l.in_features], "r": l.r, "rTarget": l.r_target} for n, l in layers.items()]})
    from srlora_torch.compiled import get_lr
    tels = {
        "full": Telemetry(rec, ctl, B.BATCH, lambda: get_lr(opt), {"importanceEvery": 10}),
        "floatLr": Telemetry(rec, ctl, B.BATCH, lambda: 1e-4, {"importanceEvery": 10}),
        "noSnapshots": Telemetry(rec, ctl, B.BATCH, lambda: get_lr(opt), {"importanceEvery": 10}, snapshots=False),
        "nullRecorder": Telemetry(NullRec(), ctl, B.BATCH, lambda: get_lr(opt), {"importanceEvery": 10}),
    }

    def off(x, y):
        step(x, y)
        ctl.after_step()

    def loop(tel, skipped=True):
        def f(x, y):
            loss = step(x, y)
            if skipped and step.skipped():
                ctl._skip_this_step = True
            ctl.after_step()
            tel.after_step(loss)
        return f
    variants = {"off": off, **{k: loop(t) for k, t in tels.items()}, "fullNoSkippedRead": loop(tels["full"], False)}
    res = {k: [] for k in variants}
    for _ in range(5):
        for k, fn in variants.items():
            res[k].append(consecutive_ms(fn, inputs, 100))
    OUT["telemetry (batch 32, ms/step, 100 consecutive, best of 5)"] = {k: round(min(v), 3) for k, v in res.items()}
    OUT["telemetryOnOverOff"] = {k: round(min(res["off"]) / min(v), 4) for k, v in res.items()}
    save()
    print(json.dumps(OUT["telemetryOnOverOff"]), flush=True)
    # 3. where the training thread synchronises (sync debug mode), 40 steps of the full loop
    syncs = {}
    f = variants["full"]
    torch.cuda.set_sync_debug_mode("warn")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(40):
            f(*inputs[i % 4])
    torch.cuda.set_sync_debug_mode(0)
    for w in caught:
        syncs[str(w.message)[:80]] = syncs.get(str(w.message)[:80], 0) + 1
    # the sync warnings carry no stack: find the callers with a profile of the host
    import cProfile, io, pstats
    pr = cProfile.Profile()
    pr.enable()
    for i in range(200):
        f(*inputs[i % 4])
    torch.cuda.synchronize()
    pr.disable()
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(25)
    OUT["syncWarnings (40 steps)"] = syncs
    OUT["hostProfile (200 steps, full)"] = s.getvalue()[-7000:]
    rec.close()
    save()
    print("done", flush=True)


if __name__ == "__main__":
    main()
