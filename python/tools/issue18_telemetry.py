"""Telemetry on ÷ off with the compiled step, alone (issue 18; ~90 s on the lent H200): the bench's telemetry section
(blocks of 100 consecutive steps, train.py's deferred reads, alternating with blocks without) without the rest.

    cd python && python3 tools/issue18_telemetry.py --out "$OUT"
"""
import argparse
import json
import os
import statistics
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from srlora_torch import bench as B  # noqa: E402
from srlora_torch.client import EventRecorder  # noqa: E402
from srlora_torch.compiled import get_lr  # noqa: E402
from srlora_torch.telemetry import Telemetry  # noqa: E402
from issue18_probe2 import setup  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--rounds", type=int, default=6)
    a = ap.parse_args()
    m, layers, opt, ctl, step, inputs = setup(True)
    rec = EventRecorder("telemetry", tempfile.mkdtemp())
    rec.emit({"type": "hello", "protocol": {"major": 1, "minor": 0}, "method": "srlora", "backend": {"name": "pytorch", "device": "cuda"},
              "totalSteps": 10 ** 6, "config": {}, "layers": [{"name": n, "shape": [l.out_features, l.in_features], "r": l.r, "rTarget": l.r_target} for n, l in layers.items()]})
    every = {"trainerDefault": 10, "maxRate": 1, "metricsOnly": 1}
    tels = {k: Telemetry(rec, ctl, B.BATCH, lambda: get_lr(opt), {"importanceEvery": e}, snapshots=k != "metricsOnly") for k, e in every.items()}
    for t in tels.values():
        t.defer = True

    def off():
        for i in range(100):
            step(*inputs[i % 4])
            ctl.after_step()

    def on(tel):
        def run():
            for i in range(100):
                loss = step(*inputs[i % 4])
                skipped = step.found_inf.clone()
                tel.settle()
                ctl.after_step()
                tel.after_step(loss, skipped)
            tel.flush()
        return run
    times = {k: [] for k in ["off", *tels]}
    for _ in range(a.rounds):
        times["off"].append(B.timed(off, 1) / 100)
        for k, t in tels.items():
            times[k].append(B.timed(on(t), 1) / 100)
    rec.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "msPerStep": {k: round(v, 3) for k, v in med.items()},
           "onOverOff": {k: round(med["off"] / v, 4) for k, v in med.items() if k != "off"},
           "how": f"blocks of 100 consecutive compiled steps (batch 32, inputs on the GPU), {a.rounds} alternating rounds, medians"}
    with open(os.path.join(a.out, "telemetry.json"), "w") as f:
        json.dump(out, f, indent=2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
