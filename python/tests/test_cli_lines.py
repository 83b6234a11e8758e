"""The lines the trainer prints for a person to read or copy: every path absolute, every command shell-quoted, as the
built-in trainer's (src/cli/summary.ts)."""
import json
import os
import shlex

from srlora_torch.progress import summary


def _run(parent, name="20261130-050000-srlora-abcd", state="interrupted"):
    run = parent / name
    os.makedirs(run)
    base = {"v": 1, "runId": name, "time": 1_790_000_000_000}
    (run / "events.jsonl").write_text(
        json.dumps({**base, "seq": 1, "type": "hello", "protocol": {"major": 1, "minor": 1}, "method": "srlora",
                    "backend": {"name": "pytorch", "device": "cpu"}, "totalSteps": 50, "config": {}, "layers": []}) + "\n"
        + json.dumps({**base, "seq": 2, "type": "state", "state": state, "step": 10}) + "\n")
    return run


def test_summary_prints_every_path_absolute_given_a_relative_run_folder(tmp_path, monkeypatch):
    runs = tmp_path / "my runs"
    run = _run(runs)
    os.makedirs(run / "export")
    monkeypatch.chdir(runs)
    text = summary(run.name, "interrupted")
    assert f"\n  run folder     {run}\n" in text, text
    assert f"\n  export         {run / 'export'}\n" in text, text
    assert f"\n  dashboard      srlora serve --runs-dir {shlex.quote(str(runs))}\n" in text, text
