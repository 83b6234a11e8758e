"""Non-finite numbers end to end (issue 12.3): no line that is not strict JSON ever reaches events.jsonl (or the link,
which sends those same lines); a non-finite loss fails the run naming the step after every row before it is written;
a step with non-finite gradients changes nothing (no update, no importance EMA update), is flagged and counted."""
import math

import torch

from srlora_torch.client import EventRecorder
from srlora_torch.session import Session
from test_controller import build, synthetic_batch
from test_session import as_a_trainer, events, hf_callback, strict


def step(model, opt, ctl, shape, g, poison_grad=False):
    x, y = synthetic_batch(16, shape, g, torch.device("cpu"))
    loss = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    if poison_grad:
        next(iter(ctl.layers.values())).A.grad[0, 0] = float("inf")
    ctl.after_backward()
    opt.step()
    ctl.after_step()
    return loss


def run_with_losses(tmp_path, bad_at, bad_value, flush_every_step):
    model, layers, opt, ctl, shape, g = build()
    s = Session(ctl, opt, str(tmp_path / "run"), total_steps=20, batch_size=16, env={}, handle_signals=False)
    # held back: the bad row arrives in one batch with those before it; or each row flushed at its step
    s.telemetry.min_interval_s = 0 if flush_every_step else 1e9
    s.start()
    steps = 0
    while not s.stop_reason and ctl.step < 20:
        loss = step(model, opt, ctl, shape, g)
        s.after_step(loss * bad_value if ctl.step == bad_at else loss)
        steps += 1
    return s.finish(), events(tmp_path / "run"), steps


def test_an_inf_loss_fails_the_run_after_every_row_before_it_is_written(tmp_path):
    outcome, msgs, _ = run_with_losses(tmp_path, 6, float("inf"), flush_every_step=False)
    assert outcome == "failed"
    assert [r["step"] for m in msgs if m["type"] == "metrics" for r in m["rows"]] == [1, 2, 3, 4, 5]
    assert msgs[-1]["type"] == "state" and msgs[-1]["state"] == "failed"
    assert msgs[-1]["reason"] == "loss is inf at step 6" and msgs[-1]["step"] == 5


def test_a_nan_loss_stops_the_loop_at_once_and_fails_naming_the_step(tmp_path):
    outcome, msgs, steps = run_with_losses(tmp_path, 4, float("nan"), flush_every_step=True)
    assert outcome == "failed" and steps == 4  # the loop saw stop_reason at once, it did not train to the end
    assert [r["step"] for m in msgs if m["type"] == "metrics" for r in m["rows"]] == [1, 2, 3]
    assert msgs[-1]["reason"] == "loss is NaN at step 4" and msgs[-1]["state"] == "failed"
    assert not (tmp_path / "run" / "checkpoints").exists()  # a failed run is not checkpointed (nothing to resume into NaN)


def test_inf_gradients_skip_the_update_and_the_importance_step_and_are_flagged(tmp_path):
    model, layers, opt, ctl, shape, g = build()
    saved = []
    s = Session(ctl, opt, str(tmp_path / "run"), total_steps=100, batch_size=16, env={}, handle_signals=False, importance_every=1,
                save_checkpoint=lambda d: saved.append(d) or open(f"{d}/state.pt", "w").close())
    s.start()
    first = next(iter(layers.values()))
    for i in range(1, 31):
        if i in (5, 6):
            before = {n: (l.A.detach().clone(), l.ema_IA.clone(), l.ema_UB.clone(), l.age.clone()) for n, l in layers.items()}
            m_before = opt.state[first.A]["exp_avg"].clone()
        loss = step(model, opt, ctl, shape, g, poison_grad=i in (5, 6))
        if i in (5, 6):
            for n, l in layers.items():  # nothing moved: weights, EMAs, ages, the optimiser's moments
                A, IA, UB, age = before[n]
                assert torch.equal(l.A, A) and torch.equal(l.ema_IA, IA) and torch.equal(l.ema_UB, UB) and torch.equal(l.age, age + 1)
            assert torch.equal(opt.state[first.A]["exp_avg"], m_before)
        s.after_step(loss)
        if i == 12:
            s.on_command("r1", {"kind": "recompose"})
    assert ctl.skipped_steps == 2
    for l in layers.values():
        assert all(bool(t.isfinite().all()) for t in (l.ema_IA, l.ema_IB, l.ema_UA, l.ema_UB, l.A, l.B))
    assert s.finish() == "stopped"  # 30 of 100 steps
    msgs = events(tmp_path / "run")
    rows = {r["step"]: r for m in msgs if m["type"] == "metrics" for r in m["rows"]}
    assert sorted(rows) == list(range(1, 31))
    assert [k for k, r in rows.items() if r.get("nonFiniteGrad")] == [5, 6]
    recs = [m for m in msgs if m["type"] == "recomposition"]
    assert recs and all(math.isfinite(v) for m in recs for l in m["layers"] for v in l["scores"])
    assert all(l["slots"] for m in recs if m.get("commandId") == "r1" for l in m["layers"])
    snaps = [m for m in msgs if m["type"] == "importance"]
    assert snaps and all(math.isfinite(v) for m in snaps for l in m["layers"] for v in l["S"] + l["sHat"])


def test_layers_with_non_finite_scores_are_not_recomposed(tmp_path):
    model, layers, opt, ctl, shape, g = build()
    s = Session(ctl, opt, str(tmp_path / "run"), total_steps=100, batch_size=16, env={}, handle_signals=False)
    s.start()
    for _ in range(3):
        s.after_step(step(model, opt, ctl, shape, g))
    bad = "blocks.0.attn.q"
    layers[bad].ema_IA.fill_(float("nan"))
    before = layers[bad].directions.clone()
    s.on_command("r1", {"kind": "recompose"})
    s.after_step(step(model, opt, ctl, shape, g))
    s.finish()
    msgs = events(tmp_path / "run")
    [rec] = [m for m in msgs if m.get("commandId") == "r1" and m["type"] == "recomposition"]
    assert bad not in [l["name"] for l in rec["layers"]] and len(rec["layers"]) == len(layers) - 1
    assert torch.equal(layers[bad].directions, before)
    assert any(m["type"] == "log" and bad in m["text"] and "not finite" in m["text"] for m in msgs)


def test_a_message_holding_a_non_finite_number_never_reaches_the_log(tmp_path):
    rec = EventRecorder("t", str(tmp_path))
    seen = []
    rec.listeners.append(lambda m, text: seen.append(text))  # what the hub link would send
    rec.emit({"type": "eval", "step": 1, "loss": float("nan"), "metrics": {}})
    rec.emit({"type": "eval", "step": 2, "loss": 1.0, "metrics": {"accuracy": float("-inf")}})
    rec.emit({"type": "eval", "step": 3, "loss": 0.5, "metrics": {}})
    rec.close()
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    msgs = [strict(l) for l in lines]
    assert [strict(t) for t in seen] == msgs
    assert [m["type"] for m in msgs] == ["log", "log", "eval"] and [m["seq"] for m in msgs] == [1, 2, 3]
    assert "Out of range float values are not JSON compliant" in msgs[0]["text"]


def test_the_hugging_face_callback_fails_on_a_nan_logged_loss(tmp_path, monkeypatch):
    model, layers, opt, _, shape, g = build()
    cb = hf_callback(monkeypatch)(layers, r=4, r_target=12, run_dir=str(tmp_path / "hf"))

    def flush_every_step(step):
        cb.session.telemetry.min_interval_s = 0
    state, _ = as_a_trainer(cb, model, opt, shape, g, during=flush_every_step,
                            logs=lambda step, loss: {"loss": float("nan") if step == 3 else loss.item()})
    msgs = events(tmp_path / "hf")
    assert state.global_step < 50 and msgs[-1]["state"] == "failed" and msgs[-1]["reason"] == "loss is NaN at step 3"
    assert [r["step"] for m in msgs if m["type"] == "metrics" for r in m["rows"]] == [1, 2]
