"""Where an importance snapshot's cost goes on the GPU (RoBERTa-base shape, 72 layers): each part alone, then step
time with one part more at a time, interleaved with steps without telemetry. Run from python/ with PYTHONPATH=."""
import json
import statistics
import tempfile
import time

import torch

from srlora_torch.bench import R, TARGETS, roberta, timed_steps
from srlora_torch.client import EventRecorder
from srlora_torch.controller import SRLoRAController, apply_srlora
from srlora_torch.telemetry import emit_snapshot


def micro(fn, n=300):
    fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e6  # µs


def main():
    gen = torch.Generator().manual_seed(0)
    m = roberta(0).cuda()
    layers = apply_srlora(m, TARGETS, r=R, alpha=2 * R, r_target=4 * R)
    opt = torch.optim.AdamW([p for l in layers.values() for p in (l.A, l.B)], lr=1e-4)
    ctl = SRLoRAController(layers, opt, total_steps=10 ** 6, r=R, r_target=4 * R, min_slot_age=1)
    timed_steps(m, opt, gen, 5, ctl.after_backward, lambda loss: ctl.after_step())
    ctl.importance_async()
    cap = ctl._captured
    order, flat = cap()
    snap = ctl._snapshot(order, flat.cpu())
    text = json.dumps({"type": "importance", "step": 1, "layers": snap.layers()})

    def copy_out():
        host = torch.empty(flat.shape, dtype=flat.dtype, pin_memory=True)
        host.copy_(flat, non_blocking=True)
        torch.cuda.Event().record()

    parts = {"stateKey": cap._state_key, "graphReplay": cap.graph.replay, "pinnedCopyAndEvent": copy_out,
             "snapshotObject": lambda: ctl._snapshot(order, flat), "decodeLayers": snap.layers,
             "jsonDumps": lambda: json.dumps({"type": "importance", "step": 1, "layers": snap.layers()}, separators=(",", ":")),
             "importanceAsyncWhole": ctl.importance_async}
    print(json.dumps({"us": {k: round(micro(f), 1) for k, f in parts.items()}, "jsonBytes": len(text)}, indent=1))

    rec = EventRecorder("p", tempfile.mkdtemp())
    fixed = json.loads(text)

    def variant(kind):
        def after(loss):
            ctl.after_step()
            if kind == "asyncOnly":
                ctl.importance_async()
            elif kind == "emitDeferred":
                s = ctl.importance_async()
                if s is not None:
                    emit_snapshot(rec, s)
            elif kind == "emitDecodedHere":
                s = ctl.importance_async()
                if s is not None:
                    rec.emit({"type": "importance", "step": s.step, "layers": s.layers()})
            elif kind == "emitConstant":
                rec.emit(dict(fixed))
        return after

    kinds = ["off", "asyncOnly", "emitDeferred", "emitDecodedHere", "emitConstant"]
    times = {k: [] for k in kinds}
    for _ in range(100):
        for k in kinds:
            times[k].append(timed_steps(m, opt, gen, 1, ctl.after_backward, variant(k), warmup=0))
    rec.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    print(json.dumps({"msPerStep": {k: round(v, 3) for k, v in med.items()},
                      "extraMsPerStep": {k: round(v - med["off"], 3) for k, v in med.items()}}, indent=1))


main()
