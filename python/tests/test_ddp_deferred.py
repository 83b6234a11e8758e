"""train.py's loop over a step replayed from a CUDA graph (the compiled step on one GPU or under torchrun) never waits
for the step it has just queued: each loss and "gradients not finite" flag is read one step late (Telemetry.defer),
and at once before a checkpoint, eval, command, snapshot or the end. The record must be the one a loop that reads at
once writes: the same rows, a non-finite loss failing the run at its own step with nothing recorded after it.

On the CPU the compiled step runs without a graph (torch.compile, aot_eager); `Replayed` makes it say it is captured,
so the loop defers exactly as it does on a GPU."""
import json
import os

import pytest
import torch

from srlora_torch import telemetry
from srlora_torch.train import build_run, compiled_step, load_config, train_loop


class Replayed:
    """The real compiled step, presented as graph-replayed (capture=True) or not; counts the steps queued; the loss
    of step `poison` reads NaN (the step itself trains as usual)."""

    def __init__(self, inner, capture, poison=None):
        self.inner, self.capture, self.found_inf, self.poison, self.queued = inner, capture, inner.found_inf, poison, 0
        self.grad_norm = inner.grad_norm

    def __call__(self, *batch):
        self.queued += 1
        loss = self.inner(*batch)
        return loss * float("nan") if self.queued == self.poison else loss

    def skipped(self):
        assert not self.capture, "a per-step host read of the skipped flag in the deferred loop"
        return self.inner.skipped()


def run_loop(tmp_path, name, capture, poison=None, steps=14, monkeypatch=None, reads=None):
    monkeypatch.setenv("SRLORA_COMPILE_BACKEND", "aot_eager")
    cfg = load_config(None, {"steps": steps})
    cfg.update(task={"kind": "transformer", "preset": "tiny"}, batchSize=8, compile="max", evalEvery=7, checkpointEvery=5,
               r=2, rTarget=8, seed=3, device="cpu")
    run_dir = tmp_path / name
    run_dir.mkdir()
    run = build_run(cfg, str(run_dir), torch.device("cpu"), env={})
    run.session.telemetry.snapshots = False  # (their timing follows the clock: not comparable run to run)
    run.session.start()
    step = Replayed(compiled_step(cfg, torch.device("cpu"), run.task, run.opt, run.ctl, run.session), capture, poison)
    if reads is not None:
        add = telemetry.Telemetry._add
        monkeypatch.setattr(telemetry.Telemetry, "_add", lambda self, s, v, k, *lr: (reads.append((s, step.queued)), add(self, s, v, k, *lr))[1])
    error = None
    try:
        train_loop(cfg, run, step)
    except Exception as e:  # noqa: BLE001 - as main() hands it to finish
        error = e
    outcome = run.session.finish(error)
    if reads is not None:
        monkeypatch.setattr(telemetry.Telemetry, "_add", add)
    msgs = [json.loads(l) for l in open(os.path.join(run_dir, "events.jsonl"), encoding="utf-8")]
    return outcome, msgs


def record(msgs):
    """What must not differ between the two loops: the rows (step, loss, nonFiniteGrad, grad_norm), and every other message's
    type, step, state and reason in order (rows are batched by the clock, so where they fall between them may)."""
    rows, others = [], []
    for m in msgs:
        if m["type"] == "metrics":
            rows += [(r["step"], r["loss"], r.get("nonFiniteGrad", False), r.get("scalars", {}).get("grad_norm")) for r in m["rows"]]
        elif m["type"] not in ("hello", "log"):
            others.append((m["type"], m.get("step"), m.get("state"), m.get("reason") if m["type"] == "state" else None))
    return rows, others


def test_the_deferred_loop_reads_each_loss_after_the_next_step_is_queued_and_records_the_same_run(tmp_path, monkeypatch):
    reads = []
    outcome, deferred = run_loop(tmp_path, "deferred", True, monkeypatch=monkeypatch, reads=reads)
    assert outcome == "finished"
    assert [s for s, _ in reads] == list(range(1, 15))
    # steps 5, 7, 10 and 14 are read at once (a checkpoint, an eval, a checkpoint, the end); every other one only
    # once the next step was queued: the host never waited for the step it had just queued
    late = [s for s, queued in reads if queued > s]
    assert late == [s for s in range(1, 15) if s not in (5, 7, 10, 14)], reads
    outcome, direct = run_loop(tmp_path, "direct", False, monkeypatch=monkeypatch)
    assert outcome == "finished"
    assert record(deferred) == record(direct)
    # issue 15: the in-step gradient norm, read with the deferred loss, on every row
    assert all(g is not None and g > 0 for *_, g in record(deferred)[0]), record(deferred)[0]
    assert [m["step"] for m in deferred if m["type"] == "checkpoint"] == [5, 10, 14]


@pytest.mark.parametrize("poison", [3, 5, 7])
def test_a_non_finite_loss_read_late_fails_the_run_at_its_own_step_with_the_same_record(tmp_path, monkeypatch, poison):
    """(3: between reads; 5: a checkpoint's step; 7: an eval's step) The failure names the loss's step; nothing of a later step
    — row, checkpoint, eval, recomposition — is recorded, as in the loop that reads every loss at once."""
    outcome, deferred = run_loop(tmp_path, "deferred", True, poison=poison, monkeypatch=monkeypatch)
    assert outcome == "failed"
    last = deferred[-1]
    assert (last["type"], last["state"], last["reason"], last["step"]) == ("state", "failed", f"loss is NaN at step {poison}", poison - 1)
    rows = [r["step"] for m in deferred if m["type"] == "metrics" for r in m["rows"]]
    assert rows == list(range(1, poison))
    _, direct = run_loop(tmp_path, "direct", False, poison=poison, monkeypatch=monkeypatch)
    assert record(deferred) == record(direct)
