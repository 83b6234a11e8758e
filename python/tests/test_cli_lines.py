"""The lines the trainer prints for a person to read or copy: every path absolute, every command shell-quoted, as the
built-in trainer's (src/cli/summary.ts)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from srlora_torch.progress import continue_command, summary


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
    (run / "export" / "merged.safetensors").write_text("x")
    monkeypatch.chdir(runs)
    text = summary(run.name, "interrupted")
    assert f"\n  run folder      {run}\n" in text, text
    assert f"\n  export          {run / 'export'}\n" in text, text
    assert f"\n  dashboard       {NODE} {CLI} serve --runs-dir '{runs}'\n" in text, text
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
NODE, CLI = shutil.which("node"), os.path.join(ROOT, "dist", "cli.js")  # the checkout's CLI: needs npm run build (CI builds first)
VECTORS = os.path.join(os.path.dirname(__file__), "..", "..", "test", "vectors", "continue", "lines.json")


def test_continue_line_matches_the_shared_vectors():
    """One rule in both languages: src/viewmodel/continueCommand.ts meets the same cases (test/resumeOwner.test.ts)."""
    from srlora_torch.progress import continue_command
    with open(VECTORS, encoding="utf-8") as f:
        cases = json.load(f)["cases"]
    assert any(c.get("launch", {}).get("pythonPath") for c in cases)
    for c in cases:
        assert continue_command(c["runDir"], c["worldSize"], c.get("launch"), pytorch=c["pytorch"]) == c["line"], c


def test_dashboard_line_matches_the_shared_vectors():
    """src/viewmodel/continueCommand.ts dashboardCommand meets the same cases (test/continueLine.test.ts)."""
    from srlora_torch.progress import dashboard_command
    with open(VECTORS, encoding="utf-8") as f:
        cases = json.load(f)["serve"]
    for c in cases:
        assert dashboard_command(c["runsDir"], c.get("launch")) == c["line"], c


def _events(run):
    with open(run / "events.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _interrupt_when(p, run_of, until, timeout=300):
    """SIGINT p's process group once until(events of run_of()) holds (a run must not finish first: steps are many)."""
    deadline = time.time() + timeout
    while time.time() < deadline and p.poll() is None:
        run = run_of()
        if run is not None and (run / "events.jsonl").exists() and until(_events(run)):
            break
        time.sleep(0.02)
    assert p.poll() is None, "the run ended before it could be interrupted"
    os.killpg(p.pid, signal.SIGINT)
    out, err = p.communicate(timeout=300)
    return err


def test_the_printed_continue_line_runs_as_printed_from_a_fresh_shell_elsewhere(tmp_path):
    """Session 7 cli.1: a run started as `PYTHONPATH=python .venv/bin/python -m srlora_torch.train` printed "continue
    python -m srlora_torch.train --resume …", which a fresh shell cannot run (no such python, or no srlora_torch)."""
    runs = tmp_path / "my runs"  # a space: the line quotes the folder
    cfg = tmp_path / "c.srlora.json"
    cfg.write_text(json.dumps({"task": {"kind": "matrix"}, "steps": 100000, "checkpointEvery": 100000, "evalEvery": 100000, "r": 2, "rTarget": 4}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SRLORA_") and k != "PYTHONPATH"}
    python = os.path.relpath(sys.executable, ROOT)  # relative, as a user types it
    p = subprocess.Popen([python, "-m", "srlora_torch.train", "--config", str(cfg), "--runs-dir", str(runs), "--no-progress"],
                         cwd=ROOT, env={**env, "PYTHONPATH": "python"}, stderr=subprocess.PIPE, text=True, start_new_session=True)
    run_of = lambda: next((runs / n for n in os.listdir(runs)), None) if runs.exists() else None  # noqa: E731
    err = _interrupt_when(p, run_of, lambda ev: any(m["type"] == "metrics" for m in ev))
    assert p.returncode == 0, err
    run = run_of()
    hello = _events(run)[0]
    assert hello["launch"] == {"python": os.path.join(ROOT, python), "pythonPath": os.path.join(ROOT, "python")}
    line = next(l for l in err.splitlines() if l.startswith("  continue ")).split(None, 1)[1]
    assert line == continue_command(str(run), 1, hello["launch"]), err
    assert line.startswith(f"PYTHONPATH={os.path.join(ROOT, 'python')} {os.path.join(ROOT, python)} -m srlora_torch.train --resume '{runs}/"), line
    # A fresh shell (no PYTHONPATH, no venv on PATH) in another folder: the line resumes the run.
    elsewhere = tmp_path / "elsewhere"
    os.makedirs(elsewhere)
    q = subprocess.Popen(["bash", "-c", line], cwd=elsewhere, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
    # a training row after the rewind: the resumed trainer is past its start-up (and handles SIGINT)
    resumed = lambda ev: any(m["type"] == "metrics" for m in ev[next((i for i, m in enumerate(ev) if m["type"] == "rewind"), len(ev)):])  # noqa: E731
    err2 = _interrupt_when(q, lambda: run, resumed)
    assert q.returncode == 0, err2
    assert "resumed" in err2 and "Traceback" not in err2, err2
    # which checkpoint it resumed from, as the built-in trainer says it (FINDINGS F10)
    import re
    assert re.search(rf"\nresumed from {re.escape(str(run))}/checkpoints/step-(\d+) \(step \1\)\n", err2), err2
    states = [m["state"] for m in _events(run) if m["type"] == "state"]
    assert states[-1] == "interrupted" and states.count("interrupted") == 2, states


def test_config_errors_name_the_flag_the_user_typed_by_the_shared_vectors():
    from srlora_torch.runconfig import config_error_message
    with open(os.path.join(os.path.dirname(VECTORS), "..", "flags", "errors.json"), encoding="utf-8") as f:
        cases = json.load(f)["cases"]
    for c in cases:
        assert config_error_message(c["source"], c["errors"], c["flags"]) == c["message"], c


def test_a_bad_flag_value_names_the_flag_and_a_bad_file_value_the_file_and_pointer(tmp_path, capsys):
    """Session 7 cli.3: `--steps 0` was refused as "config: /steps: …", naming a field the user never wrote."""
    from srlora_torch import train
    bad = tmp_path / "bad.srlora.json"
    bad.write_text(json.dumps({"steps": 0}))
    for argv, want in [(["--steps", "0"], "--steps: must be ≥ 1, got 0"),
                       (["--steps", "5", "--method", "foo"], '--method: expected "lora" | "pissa" | "srlora", got "foo"'),
                       (["--config", str(bad)], f"{bad}: /steps: must be ≥ 1, got 0"),
                       (["--config", str(bad), "--method", "foo"], f'2 errors: {bad}: /steps: must be ≥ 1, got 0; --method: expected "lora" | "pissa" | "srlora", got "foo"'),
                       (["--max-examples", "0"], "--max-examples: must be ≥ 1, got 0")]:
        try:
            train.main([*argv, "--check"])
            raise AssertionError(f"{argv} was accepted")
        except SystemExit as e:
            assert str(e.code) == want, argv


def test_resume_refusals_name_the_run_folder_absolute(tmp_path, monkeypatch):
    """Session 7 cli.2, its kind: `--resume runs/x` refused with "runs/x is not a run folder", a path that means another
    folder once read from anywhere else."""
    from srlora_torch import train
    monkeypatch.delenv("SRLORA_OWNER", raising=False)
    os.makedirs(tmp_path / "runs" / "x")
    monkeypatch.chdir(tmp_path)
    try:
        train.main(["--resume", os.path.join("runs", "x")])
        raise AssertionError("accepted")
    except SystemExit as e:
        assert str(e.code) == f"{tmp_path / 'runs' / 'x'} is not a run folder (no config.json)"


def test_the_watch_it_and_dashboard_lines_run_as_printed_and_the_hub_answers(tmp_path, monkeypatch, capsys):
    """FINDINGS F5/F6: '(watch it: srlora serve --runs-dir /a/my runs)' broke when pasted (unquoted), and `srlora` is
    not on a checkout's PATH: both lines name node and the checkout's dist/cli.js, quoted, and run as printed."""
    from srlora_torch import train
    monkeypatch.delenv("SRLORA_RUN_DIR", raising=False)
    monkeypatch.delenv("SRLORA_HUB_URL", raising=False)
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"task": {"kind": "matrix"}, "steps": 2, "device": "cpu"}))
    runs = tmp_path / "my runs"
    assert train.main(["--config", str(cfg), "--runs-dir", str(runs), "--no-progress"]) == 0
    err = capsys.readouterr().err
    want = f"{NODE} {CLI} serve --runs-dir '{runs}'"
    assert f"(watch it: {want})" in err, err
    assert f"\n  dashboard       {want}\n" in err, err
    env = {k: v for k, v in os.environ.items() if not k.startswith("SRLORA_")}
    p = subprocess.Popen(["bash", "-c", f"exec {want}"], cwd=tmp_path, env={**env, "PATH": "/usr/bin:/bin"},
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = None
        for line in p.stdout:  # the serve prints its URL once it listens
            if line.startswith("SRLoRA dashboard: "):
                url = line.split(": ", 1)[1].strip()
                break
        assert url, "serve printed no URL"
        from urllib.parse import parse_qs, urlsplit
        from urllib.request import Request, urlopen
        token = parse_qs(urlsplit(url).query)["token"][0]
        with urlopen(Request(url, headers={"Authorization": f"Bearer {token}"}), timeout=30) as r:
            assert r.status == 200 and b"<html" in r.read(4096).lower()
    finally:
        p.terminate()
        p.wait(timeout=30)


def _flags_vectors(name):
    with open(os.path.join(os.path.dirname(VECTORS), "..", "flags", name), encoding="utf-8") as f:
        return json.load(f)


def test_one_wording_for_a_bad_value_from_a_flag_or_a_file_by_the_shared_vectors(tmp_path, capsys):
    """FINDINGS F8: the built-in trainer said "Expected integer to be greater or equal to 1", this one "must be ≥ 1";
    src/cli/trainCommand.ts configWithFlags meets the same cases (test/trainFlags.test.ts)."""
    from srlora_torch import train
    values = _flags_vectors("errors.json")["values"]
    assert len(values) >= 15
    file = tmp_path / "c.srlora.json"
    for c in values:
        if "file" in c:
            file.write_text(json.dumps(c["file"]))
        argv = [*c.get("argv", []), *(["--config", str(file)] if "file" in c else []), "--check"]
        try:
            train.main(argv)
            raise AssertionError(f"{argv} was accepted")
        except SystemExit as e:
            said = e.code if isinstance(e.code, str) else capsys.readouterr().err.strip()
            assert said == c["message"].replace("FILE", str(file)), c


def test_the_config_field_flags_are_the_one_schemas_and_an_unknown_one_is_one_line(capsys):
    """FINDINGS F7: --eval-every, --checkpoint-every, … were "unrecognized arguments" (argparse's usage block); the
    flag set is the schema's, as the built-in trainer's (test/trainFlags.test.ts)."""
    from srlora_torch import train
    from srlora_torch.runconfig import config_flags
    v = _flags_vectors("flags.json")
    assert config_flags() == v["flags"]
    for flag, ptr in v["flags"].items():
        if flag in ("--task", "--model"):
            continue
        assert train.split_flags([flag, "1"])[1:] == ([(ptr, 1)], {ptr: flag}), flag
    for flag, words in v["unknown"]:
        with pytest.raises(SystemExit) as e:
            train.main([flag, "5"])
        assert e.value.code == 2
        assert capsys.readouterr().err == f"python -m srlora_torch.train: {words}; python -m srlora_torch.train --help lists them\n", flag
    cfg = train.load_config(None, {}, *train.split_flags(["--eval-every", "20", "--checkpoint-every=20", "--task.kind", "matrix", "--fusion-threshold", "off"])[1:])
    assert (cfg["evalEvery"], cfg["checkpointEvery"], cfg["task"]["kind"], cfg["fusionThreshold"]) == (20, 20, "matrix", None)


def test_the_end_summary_has_the_built_in_trainers_layout_by_the_shared_vectors(tmp_path):
    """FINDINGS F10: this trainer's summary put the eval on one line, `continue` after `dashboard`, no best values, no
    time trained; src/cli/summary.ts trainingSummary meets the same cases (test/cli.test.ts)."""
    with open(os.path.join(os.path.dirname(VECTORS), "..", "summary", "summaries.json"), encoding="utf-8") as f:
        v = json.load(f)
    runs = tmp_path / "runs"
    for i, c in enumerate(v["cases"]):
        run = runs / f"run-{i}"
        os.makedirs(run)
        if c["checkpoint"]:
            os.makedirs(run / "checkpoints" / "step-20")
            (run / "checkpoints" / "step-20" / "state.pt").write_text("abc")
            (run / "checkpoints" / "step-20" / "COMPLETE.json").write_text(json.dumps({"step": 20, "files": {"state.pt": {"bytes": 3, "sha256": "0" * 64}}}))
        if c["export"]:
            os.makedirs(run / "export")
            (run / "export" / "merged.safetensors").write_text("x")
        (run / "events.jsonl").write_text("".join(json.dumps({"v": 1, "runId": f"run-{i}", "seq": k + 1, "time": 1_790_000_000_000 + 7000 * k, **e}) + "\n"
                                                  for k, e in enumerate(c["events"])))
        state = next(e["state"] for e in reversed(c["events"]) if e["type"] == "state")
        assert summary(str(run), state, v["cli"]) == c["summary"].replace("RUNS", str(runs)).replace("RUN", str(run)), c["name"]
