"""Issue 15: every scalar gets a chart — the PyTorch trainer sends them. The names and units are one list for both
trainers (test/vectors/scalars.json = src/protocol/scalars.ts = telemetry.SCALARS); rows carry the gradient norm
(eager: read with the controller's finite check; compiled: computed inside the step, read with the deferred loss)
and, once per metrics message on its last row, the system readings (CPU run: process memory and CPU)."""
import json
import math
import os
from types import SimpleNamespace

import torch

from conftest import VECTORS
from srlora_torch.compiled import CompiledStep
from srlora_torch.telemetry import SCALAR_TITLES, SCALARS, SystemScalars, Telemetry
from srlora_torch.train import DEFAULTS, build_run, stepper
from test_compiled import _data, _mlp
from test_session import strict

VECTOR = json.load(open(os.path.join(VECTORS, "scalars.json")))["scalars"]
MINE = {s["name"] for s in VECTOR if {"pytorch", "pytorch-cpu"} & set(s["trainers"])}


def test_the_names_units_and_titles_are_the_shared_list():
    assert SCALARS == {s["name"]: s["unit"] for s in VECTOR}
    assert SCALAR_TITLES == {s["name"]: s["title"] for s in VECTOR}


def _rows_by_message(run_dir):
    msgs = [strict(l) for l in open(run_dir / "events.jsonl")]
    return [m["rows"] for m in msgs if m["type"] == "metrics"]


def _check_rows(messages):
    assert messages
    for rows in messages:
        for i, r in enumerate(rows):
            sc = r.get("scalars", {})
            assert set(sc) <= MINE, sc
            assert all(math.isfinite(v) for v in sc.values())
            assert sc.get("grad_norm", 0) > 0, r
            last = i == len(rows) - 1
            assert ("process/rss_MiB" in sc) == last and ("process/cpu_pct" in sc) == last, (i, len(rows), sc)
            if last:
                assert sc["process/rss_MiB"] > 1 and sc["process/cpu_pct"] >= 0


def _run(tmp_path, **over):
    cfg = {**DEFAULTS, "model": {"kind": "mlp"}, "steps": 12, "evalEvery": 1000, "checkpointEvery": 0, "importanceEvery": 5,
           "r": 4, "rTarget": 12, "device": "cpu", **over}
    run = build_run(cfg, str(tmp_path), torch.device("cpu"), env={})
    run.session.start()
    return cfg, run


def test_eager_rows_carry_the_gradient_norm_and_each_message_the_process_readings(tmp_path):
    cfg, run = _run(tmp_path)
    step = stepper(run, None)
    grads = []
    while run.ctl.step < cfg["steps"]:
        assert step()
        gs = [p.grad for g in run.opt.param_groups for p in g["params"] if p.grad is not None]
        grads.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in gs]))))
    run.session.finish(None)
    messages = _rows_by_message(tmp_path)
    _check_rows(messages)
    got = [r["scalars"]["grad_norm"] for rows in messages for r in rows]
    assert len(got) == cfg["steps"] and all(abs(a - b) <= 1e-5 * b for a, b in zip(got, grads)), (got, grads)


def test_compiled_step_computes_the_gradient_norm_inside_the_step():
    m, layers, opt, ctl = _mlp()
    scale = torch.ones(())
    st = CompiledStep(lambda x, y: torch.nn.functional.cross_entropy(m(x), y) * scale, opt, ctl, mode="capture", capture=False)
    (x, y), = _data(1)
    st(x, y)
    ctl.after_step()
    want = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in st.params]))
    assert float(st.grad_norm) > 0 and abs(float(st.grad_norm) - float(want)) <= 1e-5 * float(want)
    scale.fill_(float("inf"))
    st(x, y)
    assert st.skipped() and not math.isfinite(float(st.grad_norm))


def test_deferred_rows_carry_the_gradient_norm_read_with_the_loss_and_none_for_a_skipped_step():
    rows = []
    rec = SimpleNamespace(emit=lambda body, build=None: rows.extend(body["rows"]))
    ctl = SimpleNamespace(step=1, last_skipped_step=None, skipped_steps=0)
    tel = Telemetry(rec, ctl, 4, lambda: 1e-3, {"importanceEvery": 10}, snapshots=False)
    tel.defer = True
    tel.add_loss(1, torch.tensor(0.5), torch.zeros(()), torch.tensor(2.5))
    tel.add_loss(2, torch.tensor(0.4), torch.ones(()), torch.tensor(float("inf")))
    tel.flush()
    assert rows[0]["scalars"]["grad_norm"] == 2.5
    assert rows[1]["nonFiniteGrad"] is True and "grad_norm" not in rows[1]["scalars"]
    assert "process/rss_MiB" in rows[1]["scalars"] and "process/rss_MiB" not in rows[0]["scalars"]


def test_compiled_trainer_rows_carry_the_gradient_norm(tmp_path):
    """The trainer's compiled path (the step without a CUDA graph on the CPU) hands its in-step norm to the rows."""
    cfg, run = _run(tmp_path)
    st = CompiledStep(run.task.loss_of, run.opt, run.ctl, mode="capture", capture=False)
    step = stepper(run, st)
    while run.ctl.step < cfg["steps"]:
        assert step()
    run.session.finish(None)
    _check_rows(_rows_by_message(tmp_path))


def test_system_readings_on_the_cpu_and_on_cuda():
    t = {"cpu": 10.0, "clock": 100.0}
    sys_ = SystemScalars(None, clock=lambda: t["clock"], cpu=lambda: t["cpu"], rss=lambda: 256 * 1024 * 1024)
    t["cpu"] += 1.5
    t["clock"] += 1.0
    assert sys_.sample() == {"process/rss_MiB": 256.0, "process/cpu_pct": 150.0}
    assert sys_.sample() == {"process/rss_MiB": 256.0}  # no time elapsed: no CPU reading, never a non-finite one
    if torch.cuda.is_available():
        got = SystemScalars(torch.device("cuda", torch.cuda.current_device())).sample()
        assert {"gpu/allocated_MiB", "gpu/reserved_MiB", "gpu/peak_MiB"} <= set(got) <= set(SCALARS)


def test_each_system_scalars_reads_through_its_own_process_handle(monkeypatch):
    """The psutil.Process handle was a module-global cache: two sessions in one process (tests, a notebook) shared
    it, so one session's reading came through whatever handle an earlier one made. Now each instance makes its own,
    once (and again after a fork: another pid)."""
    import psutil
    made = []

    class Handle:
        def __init__(self):
            self.pid, self.n = os.getpid(), len(made) + 1
            made.append(self)

        def memory_info(self):
            return SimpleNamespace(rss=self.n * 1024 * 1024)
    monkeypatch.setattr(psutil, "Process", Handle)
    a, b = SystemScalars(None), SystemScalars(None)
    assert a.sample()["process/rss_MiB"] == 1.0
    assert b.sample()["process/rss_MiB"] == 2.0  # b's own handle, not a's
    assert a.sample()["process/rss_MiB"] == 1.0 and len(made) == 2  # one handle per instance, made once
    made[0].pid = -1  # as after a fork: the handle is of another process
    assert a.sample()["process/rss_MiB"] == 3.0 and len(made) == 3
