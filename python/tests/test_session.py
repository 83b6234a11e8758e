"""Session: a hand-written loop steered as the extension steers it (commands arrive as from the hub link's thread), and
the Hugging Face callback's hooks driven in the order a Trainer calls them (CI has no transformers: a stand-in base
class; test_hf.py runs the real Trainer where transformers is installed)."""
import importlib
import json
import sys
import threading
import time
import types
from types import SimpleNamespace

import torch

from srlora_torch.protocol import validate
from srlora_torch.session import Session
from test_controller import build, synthetic_batch, train


def strict(line):
    """RFC 8259: NaN, Infinity and -Infinity (which Python's json accepts) are not JSON."""
    def refuse(name):
        raise ValueError(f"not JSON: {name}")
    return json.loads(line, parse_constant=refuse)


def events(run_dir):
    msgs = [strict(l) for l in open(run_dir / "events.jsonl")]
    assert [m for m in msgs if validate(m)] == []
    assert [m["seq"] for m in msgs] == list(range(1, len(msgs) + 1))
    return msgs


def acks(msgs, cid):
    return [m for m in msgs if m["type"] == "ack" and m["commandId"] == cid and m["status"] != "received"]


def test_a_hand_written_loop_is_steered_at_step_boundaries(tmp_path):
    model, layers, opt, ctl, shape, g = build()
    saved = []
    session = Session(ctl, opt, str(tmp_path / "run"), total_steps=100, batch_size=16, name="loop", device="CPU", env={},
                      importance_every=1, save_checkpoint=lambda d: saved.append(d) or open(f"{d}/state.pt", "w").close())
    session.start()
    seen = []
    ctl.on_recomposition = seen.append  # a user's own callback does not cut the stream
    script = {3: [("c1", {"kind": "set", "fusionThreshold": 0.9, "learningRate": 5e-4})],
              5: [("c2", {"kind": "recompose", "layers": ["blocks.0.attn.q"]}), ("c3", {"kind": "recompose", "layers": ["nope"]})],
              7: [("c4", {"kind": "checkpoint"}), ("c5", {"kind": "pause"})],
              12: [("c7", {"kind": "stop"})]}
    def resume_later():
        time.sleep(0.4)
        session.on_command("c6", {"kind": "resume"})

    steps_done, paused_for = 0, 0.0
    while not session.stop_reason:
        loss = train(model, opt, ctl, shape, g, 1)
        for cid, body in script.get(ctl.step - 1, []):  # arrive during the step after: applied at its end
            session.on_command(cid, body)
        if ctl.step == 8:
            threading.Thread(target=resume_later).start()
        t0 = time.perf_counter()
        session.after_step(loss)
        paused_for = max(paused_for, time.perf_counter() - t0)
        steps_done += 1
    assert session.finish() == "stopped"  # the user's stop is not a finished run (13 of 100 steps)
    msgs = events(tmp_path / "run")
    assert steps_done == 13 and paused_for >= 0.35, (steps_done, paused_for)  # the pause held the loop until the resume
    [set_ack] = acks(msgs, "c1")
    assert set_ack["step"] == 4 and set_ack["settings"]["fusionThreshold"] == 0.9 and opt.param_groups[0]["lr"] == 5e-4
    [rec] = [m for m in msgs if m["type"] == "recomposition" and m.get("commandId") == "c2"]
    assert rec["step"] == 6 and [l["name"] for l in rec["layers"]] == ["blocks.0.attn.q"] and rec["rule"]["kind"] == "threshold"
    assert [r.step for r in seen] == [m["step"] for m in msgs if m["type"] == "recomposition"] and seen
    assert acks(msgs, "c3")[0]["status"] == "rejected" and acks(msgs, "c3")[0]["reason"] == "not adapted: nope"
    assert [m["path"] for m in msgs if m["type"] == "checkpoint"][0] == "checkpoints/step-8"
    states = [(m["state"], m["step"]) for m in msgs if m["type"] == "state"]
    assert states == [("running", 0), ("paused", 8), ("running", 8), ("stopping", 13), ("stopped", 13)]
    assert [row["step"] for m in msgs if m["type"] == "metrics" for row in m["rows"]] == list(range(1, 14))
    assert any(m["type"] == "importance" for m in msgs) and (tmp_path / "run" / "checkpoints" / "step-13" / "state.pt").exists()


def hf_callback(monkeypatch):
    """srlora_torch.hf.SRLoRACallback, imported afresh (with a stand-in for the one transformers class it needs when
    transformers is not installed)."""
    if importlib.util.find_spec("transformers") is None:
        monkeypatch.setitem(sys.modules, "transformers", types.SimpleNamespace(TrainerCallback=object))
    monkeypatch.delitem(sys.modules, "srlora_torch.hf", raising=False)
    from srlora_torch.hf import SRLoRACallback
    return SRLoRACallback


def as_a_trainer(cb, model, opt, shape, g, max_steps=50, during=lambda step: None, logs=lambda step, loss: None):
    """Calls the callback's hooks as transformers.Trainer does over a plain loop of up to max_steps steps: begin; each
    step backward, on_pre_optimizer_step, the optimiser step, during(step), on_step_end, on_log(logs(step, loss)) when
    that gives a dict; end. Returns (state, control)."""
    args = SimpleNamespace(per_device_train_batch_size=16, gradient_accumulation_steps=1, world_size=1, learning_rate=1e-3)
    state, control = SimpleNamespace(max_steps=max_steps, global_step=0), SimpleNamespace(should_training_stop=False)
    cb.on_train_begin(args, state, control, optimizer=opt, model=model)
    while not control.should_training_stop and state.global_step < state.max_steps:
        x, y = synthetic_batch(16, shape, g, torch.device("cpu"))
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        cb.on_pre_optimizer_step(args, state, control, optimizer=opt)
        opt.step()
        opt.zero_grad()
        state.global_step += 1
        during(state.global_step)
        cb.on_step_end(args, state, control, optimizer=opt)
        logged = logs(state.global_step, loss)
        if logged is not None:
            cb.on_log(args, state, control, logs=logged)
    cb.on_train_end(args, state, control)
    return state, control


def test_the_hugging_face_callback_streams_and_obeys_as_a_trainer_calls_it(tmp_path, monkeypatch):
    model, layers, opt, _, shape, g = build()  # the callback makes its own controller
    cb = hf_callback(monkeypatch)(layers, r=4, r_target=12, run_dir=str(tmp_path / "hf"), name="hf-run", importance_every=1)

    def commands(step):
        if step == 6:
            cb.session.on_command("s1", {"kind": "set", "fusionThreshold": 1.2})
            cb.session.on_command("k1", {"kind": "checkpoint"})
            cb.session.on_command("x1", {"kind": "stop"})
    state, control = as_a_trainer(cb, model, opt, shape, g, during=commands,  # logging_steps = 2
                                  logs=lambda step, loss: {"loss": float(loss), "learning_rate": 1e-3} if step % 2 == 0 else None)
    assert state.global_step == 6 and control.should_training_stop
    msgs = events(tmp_path / "hf")
    assert msgs[0]["name"] == "hf-run" and msgs[0]["backend"] == {"name": "pytorch", "device": "CPU"}
    assert [row["step"] for m in msgs if m["type"] == "metrics" for row in m["rows"]] == [2, 4, 6]
    assert acks(msgs, "s1")[0]["settings"]["fusionThreshold"] == 1.2 and cb.controller.fusion_threshold == 1.2
    assert acks(msgs, "k1")[0]["status"] == "applied" and (tmp_path / "hf" / "checkpoints" / "step-6" / "state.pt").exists()
    assert msgs[-1]["type"] == "state" and msgs[-1]["state"] == "stopped" and msgs[-1]["reason"] == "stopped by the user"


def test_hello_states_the_schedule_min_slot_age_and_rule(tmp_path):
    model, layers, opt, ctl, shape, g = build()
    s = Session(ctl, opt, str(tmp_path / "run"), total_steps=100, batch_size=16, env={}, handle_signals=False)
    s.start()
    s.finish()
    hello = events(tmp_path / "run")[0]
    assert hello["protocol"] == {"major": 1, "minor": 3} and hello["worldSize"] == 1
    assert hello["srlora"] == {"schedule": ctl.schedule.steps, "minSlotAge": 1, "rule": {"kind": "ratio", "fusionRatio": 0.5},
                               "reinitOptimizer": "zero-moments", "fusionSelect": "least-important"}
    assert ctl.schedule.steps == [20, 40, 60, 80]


def test_states_as_users_mean_them(tmp_path):
    """finished only when every step is done; a loop that ends early is stopped; SIGINT and SIGTERM checkpoint, then
    interrupted (a second signal acts as before: Ctrl+C twice still quits)."""
    import os
    import signal

    # the handlers the process had (SIGINT is ignored, not default, under `nohup … &`): the session puts them back
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def run(name, steps, total, sig=None):
        model, layers, opt, ctl, shape, g = build()
        s = Session(ctl, opt, str(tmp_path / name), total_steps=total, batch_size=16, env={},
                    save_checkpoint=lambda d: open(f"{d}/state.pt", "w").close())
        s.start()
        while ctl.step < steps and not s.stop_reason:
            if sig is not None and ctl.step == 3:
                os.kill(os.getpid(), sig)  # delivered to the main thread: the handler sets stop_reason
                if sig == signal.SIGINT:  # the handler is the previous one again
                    assert signal.getsignal(signal.SIGINT) is before[signal.SIGINT]
            s.after_step(train(model, opt, ctl, shape, g, 1))
        outcome = s.finish()
        msgs = events(tmp_path / name)
        return outcome, [(m["state"], m["step"], m.get("reason")) for m in msgs if m["type"] == "state"], msgs

    outcome, states, _ = run("done", 5, 5)
    assert outcome == "finished" and states[-1] == ("finished", 5, None)
    outcome, states, _ = run("short", 4, 9)
    assert outcome == "stopped" and states[-1] == ("stopped", 4, "the training loop ended at step 4 of 9")
    for sig in (signal.SIGINT, signal.SIGTERM):
        outcome, states, msgs = run(sig.name, 50, 50, sig)
        assert outcome == "interrupted", states
        assert states[-2:] == [("stopping", 4, f"received {sig.name}"), ("interrupted", 4, f"received {sig.name}")]
        assert [m["path"] for m in msgs if m["type"] == "checkpoint"] == ["checkpoints/step-4"]
        assert (tmp_path / sig.name / "checkpoints" / "step-4" / "COMPLETE.json").exists()
    assert all(signal.getsignal(sig) is h for sig, h in before.items())


def test_every_recomposition_is_followed_by_a_snapshot_of_its_result(tmp_path):
    """The page draws the heatmap, fuse preview and directions from the latest snapshot: after a recomposition (forced
    or scheduled) the record must hold one of the state it left — taken synchronously (on CUDA importance_async would
    give the previous one)."""
    model, layers, opt, ctl, shape, g = build()
    if torch.cuda.is_available():
        model.cuda()  # where importance_async would return the previous snapshot
    device = next(model.parameters()).device
    session = Session(ctl, opt, str(tmp_path / "run"), total_steps=100, batch_size=16, name="loop", device=device.type, env={},
                      importance_every=1000)  # no scheduled snapshot near the recomposition
    session.start()
    script = {3: [("c1", {"kind": "set", "fusionThreshold": 0.9})],
              5: [("c2", {"kind": "recompose"})], 8: [("c3", {"kind": "stop"})]}
    while not session.stop_reason:
        loss = train(model, opt, ctl, shape, g, 1, device)
        for cid, body in script.get(ctl.step - 1, []):
            session.on_command(cid, body)
        session.after_step(loss)
    session.finish()
    msgs = events(tmp_path / "run")
    recs = [i for i, m in enumerate(msgs) if m["type"] == "recomposition"]
    assert recs and msgs[recs[0]].get("commandId") == "c2"
    for i in recs:
        rec = msgs[i]
        snaps = [m for m in msgs[i + 1:] if m["type"] == "importance"]
        assert snaps and snaps[0]["step"] == rec["step"], f"no snapshot after the recomposition at step {rec['step']}"
        ages = {l["name"]: l["age"] for l in snaps[0]["layers"]}
        fused = [(l["name"], k) for l in rec["layers"] for k in l["slots"]]
        assert fused and all(ages[n][k] == 0 for n, k in fused), (fused, ages)  # the state after it: fresh slots


def _snapshotting_session(tmp_path):
    """A started Session of the plain loop into tmp_path/run, a scheduled snapshot every 5 steps."""
    model, layers, opt, ctl, shape, g = build()
    session = Session(ctl, opt, str(tmp_path / "run"), total_steps=100, batch_size=16, name="loop", device="CPU", env={},
                      importance_every=5)
    session.start()
    return model, opt, ctl, shape, g, session


def test_a_pause_emits_a_snapshot_of_the_paused_step(tmp_path):
    """fresh6 fixsup.3: while paused the page previews what Recompose Now would fuse from the latest snapshot; it was
    the last scheduled one (steps earlier), so the preview differed from what the recomposition then fused."""
    model, opt, ctl, shape, g, session = _snapshotting_session(tmp_path)
    while not session.stop_reason:
        loss = train(model, opt, ctl, shape, g, 1)
        if ctl.step == 8:
            session.on_command("p", {"kind": "pause"})  # applied after step 8
            threading.Timer(0.2, lambda: (session.on_command("r", {"kind": "resume"}), session.on_command("s", {"kind": "stop"}))).start()
        session.after_step(loss)
    session.finish()
    msgs = events(tmp_path / "run")
    snaps = [m["step"] for m in msgs if m["type"] == "importance"]
    assert snaps[:2] == [5, 8], snaps
    paused = next(i for i, m in enumerate(msgs) if m["type"] == "state" and m["state"] == "paused")
    assert next(m for m in msgs[paused:] if m["type"] == "importance")["step"] == 8 == msgs[paused]["step"]


def test_a_pause_at_a_step_whose_snapshot_is_out_adds_none(tmp_path):
    """Telemetry.emit_snapshot is the one owner of snapshot_step (it was set by hand in 3 places): after the scheduled
    snapshot of step 5 a pause at step 5 adds none; a pause at 8 adds step 8's; a recomposition while paused adds the
    state it left (the same step, replacing it for viewers)."""
    model, opt, ctl, shape, g, session = _snapshotting_session(tmp_path)
    while not session.stop_reason:
        loss = train(model, opt, ctl, shape, g, 1)
        if ctl.step in (5, 8):  # applied at this step's boundary (in after_step), in order
            session.on_command(f"p{ctl.step}", {"kind": "pause"})
            if ctl.step == 8:
                session.on_command("c", {"kind": "recompose"})
                session.on_command("s", {"kind": "stop"})
            session.on_command(f"r{ctl.step}", {"kind": "resume"})
        session.after_step(loss)
    session.finish()
    msgs = events(tmp_path / "run")
    assert [m["step"] for m in msgs if m["type"] == "importance"] == [5, 8, 8], [m["type"] for m in msgs]
    assert session.telemetry.snapshot_step == 8
