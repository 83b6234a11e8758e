"""Telemetry: metrics rows and importance snapshots at ≤ 10/s by its clock, snapshots decoded on the writer thread, and a
snapshot that fails to decode becomes an error log line in its place (the seq stays contiguous)."""
import json

import pytest
import torch

from srlora_torch.client import EventRecorder
from srlora_torch.protocol import validate
from srlora_torch.telemetry import Telemetry
from test_controller import build, train


def read(run_dir):
    return [json.loads(l) for l in open(run_dir / "events.jsonl")]


def test_rates_follow_the_clock_and_messages_are_valid(tmp_path):
    model, layers, opt, ctl, shape, g = build()
    rec = EventRecorder("t", str(tmp_path))
    now = {"t": 0.0}
    tel = Telemetry(rec, ctl, 16, lambda: 1e-3, {"importanceEvery": 1}, min_interval_s=0.125, clock=lambda: now["t"])
    for i in range(1, 8):  # steps at t = 1/16, 2/16, … s (exact in binary)
        train(model, opt, ctl, shape, g, 1)
        now["t"] = i / 16
        tel.after_step(torch.tensor(float(i)))
    tel.flush()
    rec.close()
    msgs = read(tmp_path)
    assert [m for m in msgs if validate(m)] == []
    assert [m["seq"] for m in msgs] == list(range(1, len(msgs) + 1))
    metrics = [[row["step"] for row in m["rows"]] for m in msgs if m["type"] == "metrics"]
    assert metrics == [[1, 2], [3, 4], [5, 6], [7]]  # flushed each 1/8 s, then the final flush
    assert [row["loss"] for m in msgs if m["type"] == "metrics" for row in m["rows"]] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    snaps = [m for m in msgs if m["type"] == "importance"]
    assert [m["step"] for m in snaps] == [1, 3, 5, 7]  # at once, then each 1/8 s later
    assert [l["name"] for l in snaps[-1]["layers"]] == list(layers)  # the model's order, not the scoring's shape groups
    last = {l["name"]: l for l in snaps[-1]["layers"]}
    for s in ctl.importance():  # the last snapshot was taken after the last step: it is the state now
        assert last[s["name"]]["S"] == s["S"] and last[s["name"]]["age"] == s["age"]


def test_a_snapshot_that_cannot_be_built_becomes_an_error_log_line(tmp_path):
    rec = EventRecorder("t", str(tmp_path))
    rec.emit({"type": "log", "level": "info", "text": "before"})

    def broken():
        raise ValueError("no such layer")
    rec.emit({"type": "importance", "step": 3}, build=broken)
    rec.emit({"type": "log", "level": "info", "text": "after"})
    rec.close()
    msgs = read(tmp_path)
    assert [m["seq"] for m in msgs] == [1, 2, 3] and [m for m in msgs if validate(m)] == []
    assert msgs[1]["type"] == "log" and msgs[1]["level"] == "error"
    assert msgs[1]["text"] == "could not write the importance message: ValueError: no such layer"
    assert msgs[2]["text"] == "after"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (run on the lent H200: tools/issue18_device.py)")
def test_a_deferred_read_waits_for_its_own_step_not_the_one_queued_after_it():
    """Deferred telemetry reads step N's loss after step N+1 is queued; the read must not wait for N+1 (stream order
    would make a plain read wait for everything queued before it, leaving the GPU idle at every read)."""
    from types import SimpleNamespace
    rows = []
    rec = SimpleNamespace(emit=lambda body, build=None: rows.append(body))
    ctl = SimpleNamespace(step=1, last_skipped_step=None, skipped_steps=0)
    tel = Telemetry(rec, ctl, 4, lambda: 1e-3, {"importanceEvery": 10}, snapshots=False)
    tel.defer = True
    tel.add_loss(1, torch.tensor(0.5, device="cuda"), torch.zeros((), device="cuda"))
    torch.cuda._sleep(2_000_000_000)  # "step N+1": about a second of GPU time queued behind step N's read
    after = torch.cuda.Event()
    after.record()
    tel.settle()
    assert not after.query(), "the read waited for the work queued after it"
    assert tel.losses == [(1, 0.5, False, None)]
    torch.cuda.synchronize()


def test_a_snapshot_waits_only_for_the_losses_of_the_steps_it_shows():
    """Deferred telemetry: a snapshot whose step's loss is not read yet reads it first (the CPU's snapshot is of now);
    an earlier snapshot (a GPU's, copied out while the next was queued) needs no read, so the newest step's loss
    stays held and the GPU keeps its queued step; a non-finite loss still stops that earlier snapshot when it shows
    a step at or after the loss."""
    from types import SimpleNamespace
    emitted = []
    rec = SimpleNamespace(emit=lambda body, build=None: emitted.append(body["type"]))
    lag = {"steps": 0}
    ctl = SimpleNamespace(step=0, last_skipped_step=None, skipped_steps=0)
    ctl.importance_async = lambda: SimpleNamespace(step=ctl.step - lag["steps"], layers=lambda: [])
    tel = Telemetry(rec, ctl, 4, lambda: 1e-3, {"importanceEvery": 1}, min_interval_s=0.0, clock=lambda: 0.0)
    tel.defer = True
    ctl.step = 1
    tel.after_step(torch.tensor(0.5))
    assert tel.held == [] and emitted.count("importance") == 1  # a snapshot of now: its loss read first
    lag["steps"] = 1
    ctl.step = 2
    tel.after_step(torch.tensor(0.25))
    assert [h[0] for h in tel.held] == [2] and emitted.count("importance") == 2  # step 1's snapshot: step 2 stays held
    ctl.step = 3
    tel.after_step(torch.tensor(float("nan")))  # step 2's snapshot: step 3 (NaN) held, not shown
    assert emitted.count("importance") == 3
    ctl.step = 4
    with pytest.raises(Exception, match="NaN"):
        tel.after_step(torch.tensor(0.1))  # step 3's loss read: the run fails before step 3's snapshot
    assert emitted.count("importance") == 3


def test_deferred_rows_carry_their_steps_learning_rate_read_with_the_loss_never_by_a_read_of_its_own():
    """The compiled step keeps lr as a device tensor: a read of its own (get_lr's .item()) waits for every step queued
    — a drained GPU at each metrics message. Deferred, each step's lr comes in its loss's copy, so lr() is not called,
    and a row says the lr its own step used (a change between steps lands in the right row)."""
    from types import SimpleNamespace
    rows = []
    rec = SimpleNamespace(emit=lambda body, build=None: rows.extend(body.get("rows", [])))
    ctl = SimpleNamespace(step=0, last_skipped_step=None, skipped_steps=0)
    lr = torch.tensor(0.5)  # float32, as CompiledStep makes it

    def host_read():
        raise AssertionError("lr() read the device learning rate: a sync per metrics message")
    tel = Telemetry(rec, ctl, 4, host_read, {"importanceEvery": 10}, snapshots=False, min_interval_s=1e9, device_lr=lambda: lr)
    tel.defer = True
    for step, value in [(1, 0.5), (2, 0.5), (3, 0.25)]:
        lr.fill_(value)  # a steering command before this step (CompiledStep._check fills the tensor in place)
        ctl.step = step
        tel.after_step(torch.tensor(float(step)), torch.zeros(()))
    tel.flush()
    assert [(r["step"], r["lr"]) for r in rows] == [(1, 0.5), (2, 0.5), (3, 0.25)]


def test_a_float32_learning_rate_is_written_as_the_decimal_it_holds():
    """A compiled step's lr is a float32 tensor: 3e-3 reads back as 0.003000000026077032, and rows, the record and the
    dashboard said so. Written as the shortest decimal of the same float32: 0.003 (a new user's finding)."""
    from types import SimpleNamespace
    from srlora_torch.compiled import float32_value, get_lr
    rows = []
    rec = SimpleNamespace(emit=lambda body, build=None: rows.extend(body.get("rows", [])))
    ctl = SimpleNamespace(step=0, last_skipped_step=None, skipped_steps=0)
    lr = torch.tensor(3e-3)
    tel = Telemetry(rec, ctl, 4, lambda: 0.0, {"importanceEvery": 10}, snapshots=False, min_interval_s=1e9, device_lr=lambda: lr)
    tel.defer = True
    for step, value in [(1, 3e-3), (2, 2e-5), (3, 1.2345678e-4)]:
        lr.fill_(value)
        ctl.step = step
        tel.after_step(torch.tensor(1.0), torch.zeros(()))
    tel.flush()
    assert [r["lr"] for r in rows] == [0.003, 2e-05, 0.00012345678]
    assert get_lr(SimpleNamespace(param_groups=[{"lr": torch.tensor(3e-3)}])) == 0.003
    f32 = lambda v: torch.tensor(v, dtype=torch.float32).item()  # noqa: E731
    assert float32_value(0.1) == 0.1 and f32(float32_value(1 / 3)) == f32(1 / 3) and len(repr(float32_value(1 / 3))) <= 10
