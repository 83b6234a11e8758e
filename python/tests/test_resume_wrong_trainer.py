"""python -m srlora_torch.train --resume <a built-in run> says which trainer wrote it and the command that resumes it,
before anything else (fresh-user session 5, fixb.2: it printed "srlora run resumed: …" then "cannot load state.pt")."""
import json
import os
import shutil

import pytest

from srlora_torch import train


def test_resume_of_a_builtin_run_names_its_trainer(tmp_path, capsys):
    run = tmp_path / "20261130-050000-srlora-abcd"
    os.makedirs(run / "checkpoints" / "step-10")
    (run / "config.json").write_text(json.dumps({"method": "srlora", "steps": 50, "model": {"kind": "mlp"}}))
    base = {"v": 1, "runId": run.name, "time": 1_790_000_000_000}
    (run / "events.jsonl").write_text(
        json.dumps({**base, "seq": 1, "type": "hello", "protocol": {"major": 1, "minor": 1}, "method": "srlora",
                    "backend": {"name": "cpu", "device": "cpu"}, "totalSteps": 50, "config": {}, "layers": []}) + "\n"
        + json.dumps({**base, "seq": 2, "type": "state", "state": "interrupted", "step": 10}) + "\n")
    with pytest.raises(SystemExit) as e:
        train.main(["--resume", str(run)])
    # its hello names no CLI: the line names this checkout's (node and dist/cli.js; `srlora` is not on its PATH, F6)
    cli = os.path.join(os.path.dirname(__file__), "..", "..", "dist", "cli.js")
    assert str(e.value.code) == (f"{run} is a run of the built-in trainer (srlora train): continue it with "
                                 f"{shutil.which('node')} {os.path.abspath(cli)} train --resume {run}")
    assert "resumed" not in capsys.readouterr().err
