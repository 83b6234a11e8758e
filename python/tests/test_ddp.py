"""Issue 17: `torchrun --nproc_per_node=2 -m srlora_torch.train` on the CPU (gloo), steered in lockstep.

Each test launches the project's torch's own launcher (python -m torch.distributed.run --standalone) on the tiny
transformer. Every rank writes its own digest of every adapted layer (sha256 of W, A, B, directions, ages) at each
check point — after every command and every recomposition — to SRLORA_DDP_AUDIT; the tests compare the ranks' files
line by line, independently of the trainer's own cross-rank checksum."""
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import websockets

from conftest import ROOT

TINY = {"task": {"kind": "transformer", "preset": "tiny"}, "seed": 3, "batchSize": 8, "evalEvery": 1000, "r": 2, "rTarget": 8}
ENV = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "python"), "OMP_NUM_THREADS": "1"}
for k in ("SRLORA_HUB_URL", "SRLORA_TOKEN", "SRLORA_RUN_DIR", "RANK", "WORLD_SIZE", "LOCAL_RANK"):
    ENV.pop(k, None)


# The two steps a torchrun rank can run: "off", the eager step under DistributedDataParallel; "max", the compiled step
# (compiled.CompiledStep: on the CPU torch.compile without a CUDA graph, backend aot_eager here) with no DDP wrapper,
# its flat gradient buffer averaged by one all-reduce per step. Every lockstep guarantee is tested on both.
STEPS = ["off", "max"]
COMPILED_SAYS = "compile: the compiled step on 2 ranks, its gradients averaged by one all-reduce per step (no DDP wrapper)"


def step_env(compile_mode):
    return {**ENV, "SRLORA_COMPILE_BACKEND": "aot_eager"} if compile_mode == "max" else ENV


def says_compiled(run):
    return any(m["type"] == "log" and m["text"] == COMPILED_SAYS for m in messages(run))


def torchrun(*args):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "srlora_torch.train", *args]


def config(tmp_path, **fields):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({**TINY, **fields}))
    return str(f)


def messages(run):
    return [json.loads(l) for l in open(run / "events.jsonl")]


def losses(run):
    if not (run / "events.jsonl").exists():
        return {}
    lines = (run / "events.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for l in lines if l.endswith("}") for m in [json.loads(l)] if m["type"] == "metrics" for r in m["rows"]}


def audits(folder):
    a, b = ([json.loads(l) for l in open(folder / f"rank-{r}.jsonl")] for r in (0, 1))
    return a, b


class SteeringHub:
    """A stand-in hub that steers step by step: each command is sent once the previous one is acknowledged
    (applied or rejected) and the run has reached the step the script names."""

    def __init__(self, script):
        self.script, self.frames, self.done = script, [], threading.Event()
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        assert ready.wait(10)

    def _run(self, ready):
        asyncio.set_event_loop(self.loop)

        async def serve():
            async def handler(ws):
                hello = json.loads(await ws.recv())
                env = {"v": 1, "runId": hello["runId"], "time": 0}
                await ws.send(json.dumps({**env, "type": "welcome", "seq": 1, "protocol": {"major": 1, "minor": 1}, "received": 0}))
                i, step, waiting = 0, 0, None
                async for raw in ws:
                    m = json.loads(raw)
                    self.frames.append(m)
                    await ws.send(json.dumps({**env, "type": "received", "seq": 2, "received": m["seq"]}))
                    if m["type"] == "metrics":
                        step = m["rows"][-1]["step"]
                    if m["type"] == "ack" and m["commandId"] == waiting and m["status"] != "received":
                        waiting = None
                    if waiting is None and i < len(self.script) and step >= self.script[i][0]:
                        waiting = f"c{i}"
                        await ws.send(json.dumps({**env, "type": "command", "seq": 3 + i, "id": waiting, "command": self.script[i][1]}))
                        i += 1
                        if i == len(self.script):
                            self.done.set()

            async with websockets.serve(handler, "127.0.0.1", 0) as server:
                self.port = server.sockets[0].getsockname()[1]
                ready.set()
                await asyncio.Future()

        self.loop.run_until_complete(serve())


@pytest.mark.parametrize("compile_mode", STEPS)
def test_a_steered_two_rank_run_stays_identical_on_both_ranks_after_every_command(tmp_path, compile_mode):
    """pause → τ change → forced recomposition of two layers → checkpoint → resume → stop, each applied after the same
    step on both ranks (the ack names it; the paused run does not move), the state identical after each."""
    layers = ["blocks.0.attn.q", "blocks.1.ffn.fc1"]
    hub = SteeringHub([(3, {"kind": "pause"}), (0, {"kind": "set", "fusionThreshold": 0.9}), (0, {"kind": "recompose", "layers": layers}),
                       (0, {"kind": "checkpoint"}), (0, {"kind": "resume"}), (0, {"kind": "stop"})])
    run, audit = tmp_path / "run", tmp_path / "audit"
    env = {**step_env(compile_mode), "SRLORA_RUN_DIR": str(run), "SRLORA_HUB_URL": f"ws://127.0.0.1:{hub.port}", "SRLORA_TOKEN": "t",
           "SRLORA_DDP_AUDIT": str(audit)}
    r = subprocess.run(torchrun("--config", config(tmp_path, steps=400, compile=compile_mode)), env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    msgs = messages(run)
    assert says_compiled(run) == (compile_mode == "max")
    hello = msgs[0]
    assert hello["worldSize"] == 2 and hello["config"]["globalBatchSize"] == 16
    acks = {m["commandId"]: m for m in msgs if m["type"] == "ack" and m["status"] != "received"}
    assert [acks[f"c{i}"]["status"] for i in range(6)] == ["applied"] * 6, acks
    paused_at = acks["c0"]["step"]
    assert paused_at >= 3
    assert [acks[f"c{i}"]["step"] for i in range(1, 5)] == [paused_at] * 4, "every command while paused: after the same step"
    assert acks["c1"]["settings"]["fusionThreshold"] == 0.9
    stopped_at = acks["c5"]["step"]
    assert stopped_at >= paused_at
    states = [(m["state"], m["step"]) for m in msgs if m["type"] == "state"]
    assert ("paused", paused_at) in states and states[-1] == ("stopped", stopped_at)
    forced = [m for m in msgs if m["type"] == "recomposition" and m["trigger"] == "forced"]
    assert len(forced) == 1 and forced[0]["commandId"] == "c2" and [l["name"] for l in forced[0]["layers"]] == layers
    assert forced[0]["rule"] == {"kind": "threshold", "fusionThreshold": 0.9}
    assert [m["step"] for m in msgs if m["type"] == "checkpoint"] == [paused_at, stopped_at]
    # every rank's own record of its state: the same at every check, in the same order
    a, b = audits(audit)
    after = [x["after"] for x in a]
    for i, kind in enumerate(["pause", "set", "recompose", "checkpoint", "resume", "stop"]):
        assert f"the {kind} command c{i} at step {acks[f'c{i}']['step']}" in after
    assert f"the forced recomposition at step {paused_at}" in after
    assert a == b, next((x["after"], {n: (x["layers"][n], y["layers"][n]) for n in x["layers"] if x["layers"][n] != y["layers"][n]})
                        for x, y in zip(a, b) if x != y)
    assert len({json.dumps(x["layers"]) for x in a}) > 2, "the digests do change (the check could fail)"
    assert hub.frames and hub.frames[-1]["type"] == "state", "rank 0 alone streamed to the hub, to the end"


@pytest.mark.parametrize("compile_mode", STEPS)
def test_interrupted_on_two_ranks_then_resumed_on_two_gives_the_uninterrupted_losses(tmp_path, compile_mode):
    """SIGTERM to the launcher's process group (as the extension interrupts a run): both ranks stop after the same
    step, rank 0 checkpoints, `interrupted`; --resume on two ranks continues with the losses of a run never stopped."""
    cfg, env = config(tmp_path, steps=40, compile=compile_mode), step_env(compile_mode)
    r = subprocess.run(torchrun("--config", cfg), env={**env, "SRLORA_RUN_DIR": str(tmp_path / "a")}, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert says_compiled(tmp_path / "a") == (compile_mode == "max")
    b = tmp_path / "b"
    p = subprocess.Popen(torchrun("--config", cfg), env={**env, "SRLORA_RUN_DIR": str(b)}, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and max(losses(b), default=0) < 8 and p.poll() is None:
        time.sleep(0.01)
    os.killpg(p.pid, signal.SIGTERM)
    err = p.communicate(timeout=120)[1]
    msgs = messages(b)
    stopped = max(losses(b))
    assert msgs[-1]["type"] == "state" and (msgs[-1]["state"], msgs[-1]["step"]) == ("interrupted", stopped), err[-3000:]
    assert msgs[-1]["reason"] if "reason" in msgs[-1] else True
    assert 8 <= stopped < 40
    r = subprocess.run(torchrun("--resume", str(b)), env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    la, lb = losses(tmp_path / "a"), losses(b)
    assert sorted(lb) == list(range(1, 41))
    assert all(la[s] == lb[s] for s in range(stopped + 1, 41)), [(s, la[s], lb[s]) for s in range(stopped + 1, 41) if la[s] != lb[s]][:3]
    msgs = messages(b)
    assert sum(m["type"] == "hello" for m in msgs) == 1 and [m["step"] for m in msgs if m["type"] == "rewind"] == [stopped]
    assert [(m["state"], m["step"]) for m in msgs if m["type"] == "state" and m["state"] in ("interrupted", "finished")] == [("interrupted", stopped), ("finished", 40)]
    recs = lambda run: [m["step"] for m in messages(run) if m["type"] == "recomposition"]  # noqa: E731
    assert recs(tmp_path / "a") == recs(b)


def test_ctrl_c_under_the_launcher_ends_in_one_line_with_the_run_interrupted(tmp_path):
    """Ctrl+C (SIGINT to the whole foreground group) of `python -m srlora_torch.launch` (torchrun, as the extension and
    the summary launch it): the ranks stop after one step, rank 0 records `interrupted`; the terminal gets rank 0's
    summary — whose continue line resumes on 2 ranks — and one line from the launcher, not torchrun's traceback."""
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "srlora_torch.launch", "--standalone", "--nproc_per_node=2", "-m", "srlora_torch.train",
           "--config", config(tmp_path, steps=100000), "--no-progress"]
    p = subprocess.Popen(cmd, env={**ENV, "SRLORA_RUN_DIR": str(run)}, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and max(losses(run), default=0) < 3 and p.poll() is None:
            time.sleep(0.05)
        os.killpg(p.pid, signal.SIGINT)
        err = p.communicate(timeout=120)[1]
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    last = messages(run)[-1]
    assert (last["type"], last["state"], last["reason"]) == ("state", "interrupted", "received SIGINT"), err[-3000:]
    assert p.returncode == 128 + signal.SIGINT
    assert "Traceback" not in err and "SignalException" not in err and "closing signal" not in err, err[-3000:]
    assert [l for l in err.splitlines() if l.startswith("srlora: ")] == [
        "srlora: SIGINT: the ranks stopped after one step and rank 0 recorded how the run ended (above; its summary's continue line is the command that continues it)"]
    # by the interpreter and PYTHONPATH the ranks ran with (ENV's), written out as the user reads it: runs as printed
    line = (f"PYTHONPATH={ENV['PYTHONPATH']} {os.path.abspath(sys.executable)} -m srlora_torch.launch --standalone "
            f"--nproc_per_node=2 -m srlora_torch.train --resume {run}")
    assert re.search(r"^  continue +" + re.escape(line) + "$", err, re.M), err[-3000:]  # (the label column's width is the summary's)


@pytest.mark.parametrize("compile_mode", STEPS)
def test_a_rank_that_dies_fails_the_run_with_its_rank_and_reason(tmp_path, compile_mode):
    """Rank 1 killed (SIGKILL: it cannot say a word) in the middle of the run: rank 0 records `failed` naming rank 1."""
    run = tmp_path / "run"
    p = subprocess.Popen(torchrun("--config", config(tmp_path, steps=100000, compile=compile_mode)),
                         env={**step_env(compile_mode), "SRLORA_RUN_DIR": str(run), "SRLORA_DDP_AUDIT": str(tmp_path / "au")},
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and max(losses(run), default=0) < 5 and p.poll() is None:
            time.sleep(0.05)
        pid = json.loads((tmp_path / "au" / "pids.json").read_text())["1"] if (tmp_path / "au" / "pids.json").exists() else None
        assert pid, "rank 1's pid"
        os.kill(pid, signal.SIGKILL)
        err = p.communicate(timeout=120)[1]
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    last = messages(run)[-1]
    assert last["type"] == "state" and last["state"] == "failed", err[-2000:]
    assert last["reason"].startswith("rank 1 "), last
    assert p.returncode != 0


def test_the_compiled_step_on_two_ranks_gives_the_eager_ddp_losses_and_stays_identical(tmp_path):
    """The compiled step with its one all-reduce (no DDP) against the eager step under DDP: the same config on two
    ranks gives the same losses within float tolerance and recomposes at the same steps; both ranks' digests are
    bit-identical at every check (the start and 6 scheduled recompositions)."""
    runs = {}
    for mode in STEPS:
        run, audit = tmp_path / f"run-{mode}", tmp_path / f"audit-{mode}"
        r = subprocess.run(torchrun("--config", config(tmp_path, steps=30, compile=mode)),
                           env={**step_env(mode), "SRLORA_RUN_DIR": str(run), "SRLORA_DDP_AUDIT": str(audit)}, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        assert messages(run)[-1]["state"] == "finished"
        a, b = audits(audit)
        assert a == b and len(a) >= 7, [x["after"] for x in a]
        runs[mode] = run
    assert says_compiled(runs["max"]) and not says_compiled(runs["off"])
    eager, compiled = losses(runs["off"]), losses(runs["max"])
    assert sorted(eager) == sorted(compiled) == list(range(1, 31))
    worst = max(abs(eager[s] - compiled[s]) / abs(eager[s]) for s in eager)
    assert worst < 1e-5, worst
    recs = lambda run: [(m["step"], [len(l["slots"]) for l in m["layers"]]) for m in messages(run) if m["type"] == "recomposition"]  # noqa: E731
    assert recs(runs["off"]) == recs(runs["max"]) and len(recs(runs["off"])) == 6


def test_sharded_weights_are_refused_with_what_is_supported(tmp_path, monkeypatch, capsys):
    """FSDP / ZeRO-3 (as accelerate launch says it, or as the Trainer's arguments or the model say it): refused before
    any work and before the run folder exists, naming what is supported."""
    from types import SimpleNamespace

    from torch import nn

    from srlora_torch import train
    from srlora_torch.distributed import refuse_sharding
    for k, v in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "ACCELERATE_USE_FSDP": "true", "SRLORA_RUN_DIR": str(tmp_path / "r")}.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SystemExit) as e:
        train.main(["--config", config(tmp_path, steps=5)])
    said = str(e.value) + capsys.readouterr().err  # rank 0 says why on stderr, then ends (distributed.end_refused_start)
    assert e.value.code not in (0, None)
    assert "FSDP" in said and "shards the frozen weights" in said and "DistributedDataParallel" in said, said
    assert not (tmp_path / "r").exists()
    env = {}
    with pytest.raises(ValueError, match="ZeRO-3"):
        refuse_sharding(SimpleNamespace(fsdp="", hf_deepspeed_config=SimpleNamespace(is_zero3=lambda: True)), env=env)
    with pytest.raises(ValueError, match=r"FSDP \(TrainingArguments.fsdp"):
        refuse_sharding(SimpleNamespace(fsdp=["full_shard"]), env=env)

    class FullyShardedDataParallel(nn.Module):
        pass
    with pytest.raises(ValueError, match="FSDP"):
        refuse_sharding(model=nn.Sequential(FullyShardedDataParallel()), env=env)
    refuse_sharding(SimpleNamespace(fsdp="", hf_deepspeed_config=None), nn.Linear(2, 2), env=env)  # DDP or one process: fine


@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_the_hugging_face_callback_under_torchrun_steered_in_lockstep(tmp_path, launcher):
    """The Trainer's own DDP (gloo, two CPU processes) with SRLoRACallback, launched by torchrun or by `accelerate
    launch --multi_gpu` (accelerate's launcher; with no GPU the Trainer's ddp_backend gloo on the CPU): the same
    lockstep rules — one record from rank 0, commands after the same step on both ranks, both ranks' state identical
    after each, stop ends both."""
    pytest.importorskip("transformers")
    if launcher == "accelerate":
        pytest.importorskip("accelerate")  # in .venv as peft's dependency (python/requirements-ci.txt pins peft)
    q = "roberta.encoder.layer.0.attention.self.query"
    hub = SteeringHub([(3, {"kind": "pause"}), (0, {"kind": "set", "fusionThreshold": 0.5}), (0, {"kind": "recompose", "layers": [q]}),
                       (0, {"kind": "resume"}), (0, {"kind": "stop"})])
    run, audit = tmp_path / "run", tmp_path / "audit"
    env = {**ENV, "SRLORA_RUN_DIR": str(run), "SRLORA_HUB_URL": f"ws://127.0.0.1:{hub.port}", "SRLORA_TOKEN": "t", "SRLORA_DDP_AUDIT": str(audit)}
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ddp_hf_script.py")
    launch = (["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"] if launcher == "torchrun" else
              ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
               "--dynamo_backend", "no", "--main_process_port", "0"])
    cmd = [sys.executable, *launch, script, str(tmp_path / "out"), "1000"]
    r = subprocess.run(cmd, env={**env, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    msgs = messages(run)
    assert msgs[0]["worldSize"] == 2 and msgs[0]["config"]["trainer"] == "transformers"
    acks = {m["commandId"]: m for m in msgs if m["type"] == "ack" and m["status"] != "received"}
    assert [acks[f"c{i}"]["status"] for i in range(5)] == ["applied"] * 5, acks
    paused_at = acks["c0"]["step"]
    assert [acks[f"c{i}"]["step"] for i in range(4)] == [paused_at] * 4
    forced = [m for m in msgs if m["type"] == "recomposition" and m["trigger"] == "forced"]
    assert [l["name"] for l in forced[0]["layers"]] == [q] and forced[0]["rule"]["fusionThreshold"] == 0.5
    assert msgs[-1]["type"] == "state" and (msgs[-1]["state"], msgs[-1]["step"]) == ("stopped", acks["c4"]["step"])
    a, b = audits(audit)
    assert f"the recompose command c2 at step {paused_at}" in [x["after"] for x in a]
    assert a == b


def test_the_hugging_face_callback_resumed_from_checkpoint_on_two_ranks_gives_the_uninterrupted_losses(tmp_path):
    """The Trainer's resume_from_checkpoint under torchrun (2 ranks, gloo): 30 steps with checkpoints every 10, then a
    second launch resumed from checkpoint-20 — its losses for steps 21–30 are the uninterrupted run's, its log has a
    rewind to 20, both ranks' state identical at every check, and it ends where the uninterrupted run ended."""
    pytest.importorskip("transformers")
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ddp_hf_script.py")
    out = tmp_path / "out"

    def launch(run, *extra):
        env = {**ENV, "SRLORA_RUN_DIR": str(run), "SRLORA_DDP_AUDIT": str(run) + "-audit", "HF_HUB_OFFLINE": "1"}
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", script, str(out), "30", "10", *extra]
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert r.returncode == 0, r.stderr[-3000:]
        assert messages(run)[-1]["state"] == "finished"
        a, b = audits(tmp_path / (run.name + "-audit"))
        assert a == b
        return a

    full = launch(tmp_path / "full")
    resumed = launch(tmp_path / "resumed", str(out / "checkpoint-20"))
    lf, lr = losses(tmp_path / "full"), losses(tmp_path / "resumed")
    assert sorted(lr) == list(range(21, 31)), sorted(lr)
    assert all(lr[s] == pytest.approx(lf[s], rel=1e-6) for s in lr), [(s, lf[s], lr[s]) for s in lr if lr[s] != pytest.approx(lf[s], rel=1e-6)][:3]
    msgs = messages(tmp_path / "resumed")
    assert [m["step"] for m in msgs if m["type"] == "rewind"] == [20]
    assert resumed[-1]["layers"] == full[-1]["layers"], "the resumed run ends in the uninterrupted run's state"


def test_the_cross_rank_checksum_sees_one_bit_and_names_the_rank_and_layers():
    """state_checksums changes with any bit of W, A, B, directions, ages or EMAs; check_identical raises Diverged
    naming the rank and the layers whose checksum differs from rank 0's (a fake two-rank gather, in process)."""
    import torch

    from srlora_torch.distributed import Diverged, Lockstep, state_checksums
    from test_controller import build

    _, layers, _, _, _, _ = build()
    base = state_checksums(layers)
    assert torch.equal(base, state_checksums(layers)), "the same state, the same sums"
    name = list(layers)[-1]
    for field in ("W", "A", "B", "age", "ema_IA"):
        t = getattr(layers[name], field).data
        ix = (0,) * (t.dim() - 1) + (1,)
        old = t[ix].clone()
        t[ix] = torch.nextafter(old, old + 1) if t.dtype.is_floating_point else old + 1  # one ulp (or one) of one element
        changed = state_checksums(layers)
        t[ix] = old
        assert (changed != base).tolist() == [n == name for n in layers], field
    assert torch.equal(base, state_checksums(layers))

    class TwoRanks:  # rank 1's state differs in the last layer
        @staticmethod
        def all_gather(out, mine, group=None):
            out[0].copy_(mine)
            out[1].copy_(mine)
            out[1][-1] += 1
    ls = Lockstep.__new__(Lockstep)
    ls.dist, ls.rank, ls.world, ls.control = TwoRanks, 0, 2, None
    with pytest.raises(Diverged, match=rf"after the recomposition at step 7: the SRLoRA state differs from rank 0's on rank 1 \({name}\)"):
        ls.check_identical(layers, "the recomposition at step 7")
