"""Resume never runs two trainers on one run (fresh-user session 6, fixres.1): `python -m srlora_torch.train --resume
RUN` accepted a run that serve, VS Code or another terminal was training, and two trainers appended to one
events.jsonl. ownership.py follows the rule of src/runfolder/lock.ts; test/vectors/ownership/resume.json holds both."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from srlora_torch import ownership, train

VECTORS = os.path.join(os.path.dirname(__file__), "..", "..", "test", "vectors", "ownership", "resume.json")


def test_every_shared_vector_gets_its_refusal():
    with open(VECTORS, encoding="utf-8") as f:
        v = json.load(f)
    assert len(v["cases"]) >= 15
    for c in v["cases"]:
        owner = ownership.parse_owner(c["ownerJson"]) if c["ownerJson"] is not None else None
        trainer = ownership.parse_pid(c["trainerPid"]) if c["trainerPid"] is not None else None
        got = ownership.resume_refusal_of(v["runDir"], owner, trainer, lambda r: r["pid"] in c["alive"], c["launchedBy"], v["selfPid"])
        assert got == c["refusal"], c["name"]


@pytest.fixture
def other():
    """A live process that is not this one, and its identity (a stand-in for another trainer or supervisor)."""
    p = subprocess.Popen(["sleep", "60"])
    try:
        with open(f"/proc/{p.pid}/stat", encoding="utf-8") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/sys/kernel/random/boot_id", encoding="utf-8") as f:
            boot = f.read().strip()
        ident = {"pid": p.pid, "startTime": int(fields[19]), "pgid": int(fields[2]), "bootId": boot}
        assert ownership.alive(ident)
        yield ident
    finally:
        p.kill()
        p.wait()


def _run(tmp_path):
    run = tmp_path / "20261130-080000-srlora-abcd"
    os.makedirs(run)
    (run / "config.json").write_text(json.dumps({"method": "srlora", "steps": 50, "model": {"kind": "mlp"}}))
    return run


def test_resume_refuses_a_run_a_live_supervisor_owns(tmp_path, other, monkeypatch):
    monkeypatch.delenv("SRLORA_OWNER", raising=False)
    run = _run(tmp_path)
    (run / "owner.json").write_text(json.dumps({**other, "instance": "abc", "by": "srlora serve", "since": 1}))
    with pytest.raises(SystemExit) as e:
        train.main(["--resume", str(run)])
    assert str(e.value.code).startswith(f"run {run} belongs to srlora serve (pid {other['pid']})")
    assert not (run / "trainer.pid").exists()


def test_resume_refuses_a_run_whose_terminal_trainer_is_alive(tmp_path, other, monkeypatch):
    monkeypatch.delenv("SRLORA_OWNER", raising=False)
    run = _run(tmp_path)
    (run / "trainer.pid").write_text(json.dumps({**other, "selfStarted": True}))
    with pytest.raises(SystemExit) as e:
        train.main(["--resume", str(run)])
    assert str(e.value.code).startswith(f"run {run} is being trained by pid {other['pid']}, started from a terminal")
    assert json.loads((run / "trainer.pid").read_text())["pid"] == other["pid"]


def _pytorch_run(tmp_path, world):
    run = _run(tmp_path)
    base = {"v": 1, "runId": run.name, "time": 1_790_000_000_000}
    (run / "events.jsonl").write_text(
        json.dumps({**base, "seq": 1, "type": "hello", "protocol": {"major": 1, "minor": 1}, "method": "srlora",
                    "backend": {"name": "pytorch", "device": "cpu"}, "totalSteps": 50, "config": {}, "layers": [], "worldSize": world}) + "\n"
        + json.dumps({**base, "seq": 2, "type": "state", "state": "interrupted", "step": 10}) + "\n")
    return run


def test_resume_on_another_world_size_is_refused_with_the_launcher_command(tmp_path, monkeypatch):
    """fixres.2: a 2-process (torchrun) run resumed on 1 process resumed silently (the global batch changed)."""
    monkeypatch.delenv("SRLORA_OWNER", raising=False)
    python_dir = os.path.join(ROOT, "python")
    monkeypatch.setenv("PYTHONPATH", python_dir)  # what this process was given: the line passes it on
    run = _pytorch_run(tmp_path, 2)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        train.main(["--resume", run.name])  # a relative path: the command names the real, absolute one
    # by this interpreter (and the PYTHONPATH it needs), as typed now: the line runs as printed (session 7 cli.1).
    # Written out as the user reads it, not built with the function under test.
    assert str(e.value.code) == (f"run {run} was trained on 2 processes; this resume has 1: the global batch would change. Continue it on 2: "
                                 f"PYTHONPATH={python_dir} {os.path.abspath(sys.executable)} -m srlora_torch.launch --standalone "
                                 f"--nproc_per_node=2 -m srlora_torch.train --resume {run}")


def test_summary_continue_line_gives_the_real_path(tmp_path, monkeypatch):
    from srlora_torch.progress import summary
    run = _pytorch_run(tmp_path, 2)
    _complete_checkpoint(run, 10)
    monkeypatch.chdir(tmp_path)
    # a hello without launch (an older trainer): a bare python; test_cli_lines.py: a recorded one
    assert f"continue        python -m srlora_torch.launch --standalone --nproc_per_node=2 -m srlora_torch.train --resume {run}\n" in summary(run.name, "interrupted")


def _complete_checkpoint(run, step):
    cp = run / "checkpoints" / f"step-{step}"
    os.makedirs(cp)
    (cp / "state.pt").write_bytes(b"abc")
    (cp / "COMPLETE.json").write_text(json.dumps({"step": step, "files": {"state.pt": {"bytes": 3, "sha256": "0" * 64}}}))


def test_summary_offers_continue_only_with_a_complete_checkpoint(tmp_path):
    """fixres.3: a failed run's summary offered "continue … --resume" though it had no complete checkpoint."""
    from srlora_torch.progress import summary
    run = _pytorch_run(tmp_path, 1)
    os.makedirs(run / "checkpoints" / "step-20")  # half-written: no marker
    text = summary(str(run), "failed")
    assert "--resume" not in text
    assert "  continue        not possible: no complete checkpoint to resume from\n" in text
    _complete_checkpoint(run, 10)
    assert f"  continue        python -m srlora_torch.train --resume {run}\n" in summary(str(run), "failed")
