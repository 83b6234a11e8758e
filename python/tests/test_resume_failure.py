"""A resume that dies before its trainer starts is recorded (session 7, pyfaults.2): `python -m srlora_torch.train
--resume RUN` (what `srlora serve --resume` and VS Code's Continue launch) whose checkpoint does not load, or whose
model file is gone since the run began, exited with a line on stderr and left the run reading as its old state
(interrupted) with no reason — the supervisor records only the end of a trainer the log shows running. Now the trainer
appends `failed` with the reason naming the file (and field), at the step the log last reached, so every view shows
why; the run stays resumable (failed is) once the cause is fixed."""
import hashlib
import json
import os
import shutil

import pytest

from conftest import ROOT
from srlora_torch import train
from test_session import strict


def log(run):
    return [strict(l) for l in open(os.path.join(run, "events.jsonl"), encoding="utf-8").read().splitlines()]


def interrupted_run(tmp_path, monkeypatch, **fields) -> str:
    """A real run interrupted after 2 of 6 steps (as Ctrl+C leaves one: checkpointed, state interrupted)."""
    monkeypatch.delenv("SRLORA_RUN_DIR", raising=False)
    monkeypatch.delenv("SRLORA_HUB_URL", raising=False)
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"steps": 6, "checkpointEvery": 2, "evalEvery": 2, "device": "cpu", **fields}))

    def two_steps_then_ctrl_c(cfg, run, step_fn, progress=None):
        step = train.stepper(run, step_fn, progress)
        step()
        step()
        run.session.interrupt("interrupted by SIGINT")
    with monkeypatch.context() as m:
        m.setattr(train, "train_loop", two_steps_then_ctrl_c)
        assert train.main(["--config", str(cfg), "--runs-dir", str(tmp_path / "runs"), "--no-progress"]) == 0
    (name,) = os.listdir(tmp_path / "runs")
    run = str(tmp_path / "runs" / name)
    last = log(run)[-1]
    assert (last["type"], last["state"], last["step"]) == ("state", "interrupted", 2), last
    assert os.path.isdir(os.path.join(run, "checkpoints", "step-2"))
    return run


def own_model(tmp_path):
    """A copy of the built-in MLP's weights at tmp_path/models/mlp.safetensors (a model file the test may move away)."""
    weights = tmp_path / "models" / "mlp.safetensors"
    weights.parent.mkdir()
    shutil.copy(os.path.join(ROOT, "media", "models", "mlp.safetensors"), weights)
    return weights


def resume_fails(run) -> str:
    """train --resume RUN exits with one line; the log's new last message is `failed` at step 2 with that line."""
    before = log(run)
    with pytest.raises(SystemExit) as e:
        train.main(["--resume", run, "--no-progress"])
    line = e.value.code
    assert isinstance(line, str) and line, line
    after = log(run)
    assert after[:len(before)] == before
    assert [m["seq"] for m in after] == list(range(1, len(after) + 1))
    last = after[-1]
    assert (last["type"], last["state"], last["step"]) == ("state", "failed", 2), last
    assert last["reason"] == f"could not resume: {line}"
    assert not os.path.exists(os.path.join(run, "trainer.pid"))  # no pid file naming a process that is gone
    return line


def reseal(ckpt: str) -> None:
    """Rewrites the checkpoint's COMPLETE.json for its files as they are now: the marker and hashes are right, the
    content is what does not load (a checkpoint of another version, a bug), not a torn write."""
    marker = os.path.join(ckpt, "COMPLETE.json")
    m = json.load(open(marker))
    for rel in m["files"]:
        data = open(os.path.join(ckpt, rel), "rb").read()
        m["files"][rel] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    open(marker, "w").write(json.dumps(m))


def unloadable(run: str, step: int) -> str:
    """Makes checkpoint step-`step`'s state.pt a file torch cannot load, resealed (it verifies); returns its path."""
    state = os.path.join(run, "checkpoints", f"step-{step}", "state.pt")
    open(state, "wb").write(b"not a torch file")
    reseal(os.path.dirname(state))
    return state


def test_a_checkpoint_that_does_not_load_is_recorded_as_failed_naming_its_file(tmp_path, monkeypatch):
    run = interrupted_run(tmp_path, monkeypatch)
    state = unloadable(run, 2)
    line = resume_fails(run)
    assert line.startswith(f"{state}: cannot load it: "), line
    # torch's own message advises weights_only=False, which would run whatever code the file holds: not repeated
    assert "weights_only" not in line and "\n" not in line, line


def test_a_verified_checkpoint_that_does_not_load_falls_back_to_the_next_older_one(tmp_path, monkeypatch, capsys):
    """The newest checkpoint's marker and hashes are right but its state.pt does not load (a new user's case): the
    resume said 'cannot load it' and failed, though step-1 was whole. Now it is skipped with a line saying why, as an
    unverified one is, and the run continues from step-1 (its rewind says so)."""
    run = interrupted_run(tmp_path, monkeypatch, checkpointEvery=1)
    assert os.path.isdir(os.path.join(run, "checkpoints", "step-1"))
    state = unloadable(run, 2)
    before = len(log(run))
    assert train.main(["--resume", run, "--no-progress"]) == 0
    new = log(run)[before:]
    rewind = next(m for m in new if m["type"] == "rewind")
    assert (rewind["step"], rewind["checkpoint"]) == (1, "checkpoints/step-1"), rewind
    assert new[-1]["type"] == "state" and new[-1]["state"] == "finished", new[-1]
    err = capsys.readouterr().err
    assert "skipped checkpoint step-2: state.pt does not load (" in err and "weights_only" not in err, err


def test_a_checkpoint_that_does_not_fit_the_run_names_the_missing_field_not_a_traceback(tmp_path, monkeypatch):
    import torch
    run = interrupted_run(tmp_path, monkeypatch)
    state = os.path.join(run, "checkpoints", "step-2", "state.pt")
    s = torch.load(state)
    del s["rule"]
    torch.save(s, state)
    reseal(os.path.dirname(state))
    line = resume_fails(run)
    assert line == f"{state}: does not fit this run (no field 'rule')", line


def test_no_verified_checkpoint_left_is_recorded_as_failed(tmp_path, monkeypatch):
    run = interrupted_run(tmp_path, monkeypatch)
    shutil.rmtree(os.path.join(run, "checkpoints"))
    assert "has no complete checkpoint" in resume_fails(run)


def test_a_model_file_gone_since_the_run_began_is_recorded_as_failed_naming_the_field(tmp_path, monkeypatch):
    weights = own_model(tmp_path)
    run = interrupted_run(tmp_path, monkeypatch, model={"kind": "mlp", "weights": str(weights)})
    shutil.rmtree(weights.parent)  # the model folder moved away
    line = resume_fails(run)
    assert "/model/weights" in line and str(weights) in line and "no such file" in line, line


def test_a_resume_someone_else_holds_writes_nothing_into_their_log(tmp_path, monkeypatch):
    """Refusals before the run is this process's (another trainer appends to the log) are never recorded."""
    run = interrupted_run(tmp_path, monkeypatch)
    monkeypatch.setattr(train, "resume_refusal", lambda d: f"run {d} is being trained by pid 1")
    before = open(os.path.join(run, "events.jsonl"), "rb").read()
    with pytest.raises(SystemExit):
        train.main(["--resume", run])
    assert open(os.path.join(run, "events.jsonl"), "rb").read() == before


def test_after_the_cause_is_fixed_the_failed_run_continues(tmp_path, monkeypatch):
    weights = own_model(tmp_path)
    run = interrupted_run(tmp_path, monkeypatch, model={"kind": "mlp", "weights": str(weights)})
    shutil.move(str(weights.parent), str(tmp_path / "away"))
    resume_fails(run)
    shutil.move(str(tmp_path / "away"), str(weights.parent))
    assert train.main(["--resume", run, "--no-progress"]) == 0
    assert log(run)[-1]["state"] == "finished"


def test_a_checkpoint_folder_not_named_step_n_restores_without_looking_for_older_ones(tmp_path, monkeypatch):
    """restore_run took every folder for a run's checkpoints/step-N and read N from its name, so a state.pt handed
    over from elsewhere (the parity test's `anchor`, a copied checkpoint) raised ValueError: invalid literal for int()
    (CI, stop 22). Such a folder has no older siblings: it loads, or fails naming its file."""
    run = interrupted_run(tmp_path, monkeypatch)
    copy = tmp_path / "handed-over"
    shutil.copytree(os.path.join(run, "checkpoints", "step-2"), copy)
    cfg = train.load_config(str(tmp_path / "c.json"), {})
    import torch
    built = train.build_run(cfg, str(tmp_path / "fresh"), torch.device("cpu"))
    assert train.restore_run(built, str(copy), torch.device("cpu")) == str(copy)
    assert built.ctl.step == 2
    open(copy / "state.pt", "wb").write(b"not a torch file")
    with pytest.raises(SystemExit) as e:
        train.restore_run(train.build_run(cfg, str(tmp_path / "fresh2"), torch.device("cpu")), str(copy), torch.device("cpu"))
    assert str(e.value.code).startswith(f"{copy}/state.pt: cannot load it: "), e.value.code


def test_a_failed_resume_reads_the_log_once_to_decide_and_once_to_record(tmp_path, monkeypatch):
    """The failed-resume path read events.jsonl five times (who wrote it, on how many ranks, whether it finished, the
    recorder's seq, the step it reached: near-copies of one walk, review of session 7). Now once to decide (LogFacts)
    and once by the recorder that appends `failed` (its facts give the step) — a long run's log is not walked 5×."""
    from srlora_torch import client
    run = interrupted_run(tmp_path, monkeypatch)
    unloadable(run, 2)
    reads = []
    real = client.read_log
    monkeypatch.setattr(client, "read_log", lambda file, *a, **k: reads.append(file) or real(file, *a, **k))
    resume_fails(run)  # its step 2 is the step the recorder's facts reached
    assert reads == [os.path.join(run, "events.jsonl")] * 2, reads


def test_log_facts_fold_what_the_resume_needs():
    from srlora_torch.client import LogFacts
    facts = LogFacts()
    for i, m in enumerate([{"type": "hello", "backend": {"name": "pytorch"}, "worldSize": 2},
                           {"type": "metrics", "rows": [{"step": 1}, {"step": 7}]}, {"type": "state", "state": "finished", "step": 7}], 1):
        facts.add({"seq": i, **m})
    assert (facts.seq, facts.reached, facts.finished_at, facts.world_size, facts.builtin) == (3, 7, 7, 2, False)
    facts.add({"seq": 4, "type": "rewind", "step": 4})  # resumed from an older checkpoint: not finished, at step 4
    assert (facts.reached, facts.finished_at) == (4, None)
    facts.add({"seq": 5, "type": "hello", "backend": {"name": "builtin"}})  # the first hello says who wrote it
    assert not facts.builtin and LogFacts().world_size == 1 and not LogFacts().builtin
