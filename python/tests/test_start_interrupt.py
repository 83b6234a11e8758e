"""Ctrl+C while a run starts (session 7, pyfaults; reported by the cli task): a SIGINT between a resume's `rewind` and
the session's signal handlers was a KeyboardInterrupt traceback, and one while the model or checkpoint loaded left a
traceback too — a new run's folder holding only config.json, a resumed run's trainer.pid naming a process that is gone.
Now the session's handlers come first (a signal during its start ends the run `interrupted` at its first step
boundary), and a Ctrl+C before the session exists is one line and exit 130: a new run's folder removed, a resumed run
left as it was."""
import os
import signal

import pytest

from srlora_torch import train
from srlora_torch.client import EventRecorder
from test_resume_failure import interrupted_run, log


def test_a_sigint_right_after_the_rewind_ends_the_resumed_run_interrupted_not_in_a_traceback(tmp_path, monkeypatch):
    run = interrupted_run(tmp_path, monkeypatch)
    emit = EventRecorder.emit

    def emit_then_ctrl_c(self, body, build=None):
        msg = emit(self, body, build)
        if body.get("type") == "rewind":
            os.kill(os.getpid(), signal.SIGINT)
        return msg
    monkeypatch.setattr(EventRecorder, "emit", emit_then_ctrl_c)
    assert train.main(["--resume", run, "--no-progress"]) == 0
    after = log(run)
    rewind = max(i for i, m in enumerate(after) if m["type"] == "rewind")
    states = [m["state"] for m in after[rewind:] if m["type"] == "state"]
    assert states[-1] == "interrupted" and states[-2] == "stopping", states
    assert after[-1]["reason"] == "received SIGINT" and after[-1]["step"] == 2


def test_ctrl_c_while_a_new_run_loads_is_one_line_and_leaves_no_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("SRLORA_RUN_DIR", raising=False)
    monkeypatch.delenv("SRLORA_HUB_URL", raising=False)

    def ctrl_c(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(train, "build_model", ctrl_c)
    runs = tmp_path / "runs"
    with pytest.raises(SystemExit) as e:
        train.main(["--steps", "3", "--runs-dir", str(runs), "--no-progress"])
    assert e.value.code == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "interrupted before the run started: nothing was trained"
    assert os.listdir(runs) == []


def test_ctrl_c_while_a_checkpoint_loads_leaves_the_run_as_it_was(tmp_path, monkeypatch, capsys):
    run = interrupted_run(tmp_path, monkeypatch)
    before = open(os.path.join(run, "events.jsonl"), "rb").read()

    def ctrl_c(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(train, "restore_run", ctrl_c)
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        train.main(["--resume", run, "--no-progress"])
    assert e.value.code == 130
    assert "interrupted before the run resumed: it is as it was (resumable)" in capsys.readouterr().err
    assert open(os.path.join(run, "events.jsonl"), "rb").read() == before  # still interrupted at step 2, no failed
    assert not os.path.exists(os.path.join(run, "trainer.pid"))
