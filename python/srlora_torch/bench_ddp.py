"""python -m srlora_torch.bench_ddp [--gpus 2] [--out bench/results/gpu-ddp.json]: SRLoRA under torchrun (issue 17).

Measures, on the RoBERTa-base shape (built from its config, random weights; no download), bf16, per-GPU batch
32 × 128, the trainer's own step (train.stepper: the step, the controller, the Session with its telemetry and its
lockstep exchange), for both steps a user can get:
- compiled (config compile "auto", the default on CUDA): compiled.CompiledStep replayed from CUDA graphs; under
  torchrun no DDP wrapper: one all-reduce of its flat gradient buffer between its two graphs;
- eager (compile "off"): the eager step, under DistributedDataParallel on several GPUs.
Each on 1 GPU (one process, no DDP) and on `--gpus` GPUs (torchrun). Results:
- scaling2: the compiled default's training throughput on `--gpus` GPUs ÷ on one GPU at a fixed per-GPU batch:
  examples/s, i.e. steps/s × ranks (the plain steps/s ratio, ≤ 1 by construction, is `stepsPerSecRatio`); `eager`
  holds the same for the eager step;
- recompositionMs: a forced recomposition of every layer on every rank (selection on rank 0, broadcast, the
  cross-rank check included), median of 3;
- ackMs: a command's latency from its arrival on rank 0 (as the hub link hands it over, at a random moment of a step)
  to its `applied` ack written to events.jsonl, median of 8 (learning-rate sets, agreed by every rank);
- identical: after the 3 recompositions every rank's sha256 of every layer's W, A, B, directions and ages equals rank 0's.
Each measurement runs in its own processes (the driver launches `python -m torch.distributed.run`), so it needs only
torch. `--preset tiny --device cpu --batch 8` runs the same on the CPU with gloo (the compiled step as
torch.compile without a graph, backend aot_eager: a quick check that it works; its timings mean nothing).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time


def _sync(device) -> None:
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def worker(a) -> dict:
    """One process of a measurement (one rank under torchrun). Returns rank 0's results."""
    import torch

    from .distributed import Lockstep, world_from_env
    from .train import build_run, compiled_step, load_config, pick_device, stepper

    os.environ.pop("SRLORA_HUB_URL", None)
    rank, world, local_rank = world_from_env()
    cfg = load_config(None, {})
    compile_mode = "off" if a.step == "eager" else ("max" if a.device == "cpu" else "auto")  # the CPU: no graph, aot_eager (drive)
    cfg.update(task={"kind": "transformer", "preset": a.preset}, batchSize=a.batch, bf16=a.device != "cpu", compile=compile_mode, steps=100_000,
               r=8, rTarget=32, minSlotAge=1, evalEvery=100_000, checkpointEvery=0, importanceEvery=10, device=a.device, seed=0)
    device = pick_device(a.device, local_rank)
    lockstep = Lockstep.init(device.type) if world > 1 else None
    run_dir = tempfile.mkdtemp(prefix="srlora-bench-ddp-") if rank == 0 else None
    if lockstep:
        run_dir = lockstep.agree(run_dir)
    run = build_run(cfg, run_dir, device, lockstep=lockstep)
    task, ctl, opt, session = run.task, run.ctl, run.opt, run.session
    session.evaluate = None  # no eval pass inside the timing
    session.start()
    step_fn = compiled_step(cfg, device, task, opt, ctl, session)
    if a.step == "compiled" and step_fn is None:
        raise SystemExit("bench_ddp: the compiled step did not start (see the log above)")
    one = stepper(run, step_fn)

    def step() -> None:
        if not one():
            raise SystemExit("bench_ddp: a loss was not finite")

    losses = []  # the first steps' global-batch losses (rank 0's record): the steps and world sizes side by side
    if session.main:
        session.rec.listeners.append(lambda m, _t: losses.extend(r["loss"] for r in m["rows"]) if m["type"] == "metrics" else None)
    t_warm = time.perf_counter()
    for _ in range(a.warmup):
        step()
    _sync(device)
    warmup_s = time.perf_counter() - t_warm
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    _sync(device)
    sps = a.steps / (time.perf_counter() - t0)

    # a command's latency: injected on rank 0 at a random moment (as the hub link's thread does), until its applied
    # ack is written; every rank runs the same number of steps meanwhile
    acks, sent = {}, {}
    if session.main:
        session.rec.listeners.append(lambda m, _t: acks.setdefault(m["commandId"], time.perf_counter())
                                     if m["type"] == "ack" and m["status"] == "applied" else None)
    step_s = 1 / sps
    rng = random.Random(1)

    def inject() -> None:
        for i in range(a.commands):
            time.sleep(step_s * (3 + 2 * rng.random()))
            cid = f"bench-{i}"
            sent[cid] = time.perf_counter()
            session.on_command(cid, {"kind": "set", "learningRate": cfg["learningRate"]})
    injector = threading.Thread(target=inject, daemon=True) if session.main else None
    if injector:
        injector.start()
    for _ in range(int(a.commands * 5 + 20)):
        step()
    if injector:
        injector.join()
    session.rec.drain()
    ack_ms = [(acks[c] - sent[c]) * 1000 for c in sent if c in acks]

    # forced recompositions of every layer, a few steps apart; then every rank's digest compared with rank 0's
    rec_ms = []
    for _ in range(3):
        for _ in range(3):
            step()
        _sync(device)
        t0 = time.perf_counter()
        r = ctl.recompose("forced")
        _sync(device)
        rec_ms.append((time.perf_counter() - t0) * 1000)
        fused = sum(len(e.slots) for e in r.layers)
    from .distributed import layer_digests
    mine = layer_digests(run.layers)
    if lockstep:
        every = [None] * world
        lockstep.dist.all_gather_object(every, mine, group=lockstep.control)
    else:
        every = [mine]
    identical = all(d == every[0] for d in every)
    session.stop_reason, session.end_state = "benchmark done", "stopped"
    session.save_checkpoint = session.on_finish = None  # no checkpoint nor export of a throwaway run
    session.finish()
    if session.main:
        import shutil
        shutil.rmtree(run_dir, ignore_errors=True)
    if lockstep:
        lockstep.close()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    return {"world": world, "step": a.step, "stepsPerSec": sps, "examplesPerSec": sps * a.batch * world, "ackMs": ack_ms, "acked": len(ack_ms),
            "recompositionMs": rec_ms, "fusedPairsLast": fused, "identical": identical, "layers": len(run.layers), "device": name,
            "torch": torch.__version__, "warmupS": warmup_s, "captured": bool(step_fn is not None and step_fn.graph is not None),
            "ddpWrapper": task.train_model is not task.model, "losses": losses[:20]}


def _summary(one: dict, many: dict, gpus: int) -> dict:
    med = lambda xs: statistics.median(xs) if xs else None  # noqa: E731
    return {
        f"scaling{gpus}": many["examplesPerSec"] / one["examplesPerSec"],
        "stepsPerSecRatio": many["stepsPerSec"] / one["stepsPerSec"],
        "stepsPerSec": {"1": one["stepsPerSec"], str(gpus): many["stepsPerSec"]},
        "examplesPerSec": {"1": one["examplesPerSec"], str(gpus): many["examplesPerSec"]},
        "stepMs": {"1": 1000 / one["stepsPerSec"], str(gpus): 1000 / many["stepsPerSec"]},
        "recompositionMs": med(many["recompositionMs"]), "recompositionMsAll": many["recompositionMs"],
        "recompositionMsOneProcess": med(one["recompositionMs"]),
        "ackMs": med(many["ackMs"]), "ackMsAll": many["ackMs"],
        "identicalAfter3Recompositions": many["identical"], "fusedPairsLastRecomposition": many["fusedPairsLast"],
        "warmupS": {"1": one["warmupS"], str(gpus): many["warmupS"]},
        "cudaGraph": many["captured"], "ddpWrapper": many["ddpWrapper"],
    }


def drive(a) -> dict:
    """Launches the one-process and the torchrun measurement of each step kind and combines them into the results
    file: the compiled default's keys at the top level (scaling2, recompositionMs, ackMs, …), the eager step's under
    `eager`."""
    common = ["--preset", a.preset, "--batch", str(a.batch), "--device", a.device, "--steps", str(a.steps),
              "--warmup", str(a.warmup), "--commands", str(a.commands)]
    parts = {}
    kinds = [k for k in ("compiled", "eager") if k in a.kinds.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SRLORA_HUB_URL", "SRLORA_RUN_DIR")}
        env.setdefault("OMP_NUM_THREADS", "1")  # what torchrun gives each rank: the one-process baseline gets the same
        if a.device == "cpu":
            env.setdefault("SRLORA_COMPILE_BACKEND", "aot_eager")  # no Inductor code generation for a CPU check
        for kind in kinds:
            for world in (1, a.gpus):  # one process first: the multi-process compile then finds Inductor's cache warm
                part = os.path.join(tmp, f"{kind}-w{world}.json")
                me = ["-m", "srlora_torch.bench_ddp", "--worker", "--step", kind, "--part", part, *common]
                cmd = [sys.executable, *me] if world == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={world}", *me]
                print(f"bench_ddp: {kind} step, {world} process{'es' if world > 1 else ''} …", file=sys.stderr, flush=True)
                t0 = time.perf_counter()
                r = subprocess.run(cmd, env=env, timeout=a.timeout)
                if r.returncode != 0 or not os.path.exists(part):
                    raise SystemExit(f"bench_ddp: the {kind} {world}-process measurement failed (exit {r.returncode})")
                with open(part, encoding="utf-8") as f:
                    parts[(kind, world)] = json.load(f)
                print(f"bench_ddp: {kind} step, {world} process{'es' if world > 1 else ''}: {parts[(kind, world)]['examplesPerSec']:.1f} examples/s "
                      f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    first = parts[(kinds[0], a.gpus)]
    out = {
        "what": f"SRLoRA under torchrun: {a.preset} shape, {'bf16' if a.device != 'cpu' else 'float32'}, per-rank batch {a.batch} "
                f"(global {a.batch * a.gpus}), train.py's step with its Session; top level: the "
                f"{'compiled step (compile auto: CUDA graphs, one gradient all-reduce between them, no DDP wrapper)' if kinds[0] == 'compiled' else 'eager step (DDP)'}",
        "device": first["device"], "torch": first["torch"], "gpus": a.gpus, "step": kinds[0],
        f"scaling{a.gpus}Means": f"examples/s on {a.gpus} GPUs / on 1 at a fixed per-GPU batch of {a.batch} (= steps/s ratio x {a.gpus})",
        "goal": {f"scaling{a.gpus}": 1.8 if a.gpus == 2 else None},
        **_summary(parts[(kinds[0], 1)], first, a.gpus),
    }
    if "eager" in kinds and kinds[0] != "eager":
        out["eager"] = _summary(parts[("eager", 1)], parts[("eager", a.gpus)], a.gpus)
        out[f"compiled{a.gpus}OverEager{a.gpus}"] = first["examplesPerSec"] / parts[("eager", a.gpus)]["examplesPerSec"]
        out[f"compiled{a.gpus}OverCompiled1"] = out[f"scaling{a.gpus}"]
        pairs = list(zip(first["losses"], parts[("eager", a.gpus)]["losses"]))
        out["lossesFirstSteps"] = {f"compiled{a.gpus}": first["losses"], f"eager{a.gpus}": parts[("eager", a.gpus)]["losses"]}
        out["lossMaxRelDiffCompiledVsEager"] = max((abs(x - y) / max(abs(y), 1e-12) for x, y in pairs), default=None)
    out["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out["met"] = bool(out[f"scaling{a.gpus}"] >= 1.8 and out["identicalAfter3Recompositions"]) if a.gpus == 2 else None
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    print(json.dumps(out, indent=2))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m srlora_torch.bench_ddp")
    ap.add_argument("--gpus", type=int, default=2, help="ranks of the data-parallel measurement (one per GPU)")
    ap.add_argument("--preset", default="roberta-base")
    ap.add_argument("--batch", type=int, default=32, help="per-rank batch (sequences of the preset's length, 128)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=60, help="timed steps")
    ap.add_argument("--warmup", type=int, default=15)
    ap.add_argument("--commands", type=int, default=8)
    ap.add_argument("--kinds", default="compiled,eager", help="the steps measured, comma-separated: compiled (the default users get) and/or eager")
    ap.add_argument("--timeout", type=int, default=300, help="seconds per measurement")
    ap.add_argument("--step", default="compiled", choices=("compiled", "eager"), help=argparse.SUPPRESS)
    ap.add_argument("--out", default=os.path.join("bench", "results", "gpu-ddp.json"))
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--part", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if not a.worker:
        drive(a)
        return 0
    res = worker(a)
    if int(os.environ.get("RANK", "0")) == 0:
        with open(a.part, "w", encoding="utf-8") as f:
            json.dump(res, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
