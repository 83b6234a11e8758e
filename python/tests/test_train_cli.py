"""The PyTorch trainer's command line: run folders, resuming a finished run, checkpoints, terminal output, flags."""
import json
import os
import shutil
import time

import pytest

from srlora_torch import train

CLI = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "dist", "cli.js"))  # the checkout's (npm run build)


def events(run_dir):
    return [json.loads(l) for l in open(os.path.join(run_dir, "events.jsonl"), encoding="utf-8")]


def quick_run(tmp_path, monkeypatch, *extra):
    monkeypatch.delenv("SRLORA_HUB_URL", raising=False)
    monkeypatch.delenv("SRLORA_RUN_DIR", raising=False)
    return train.main(["--steps", "3", "--runs-dir", str(tmp_path / "runs"), *extra])


def test_two_runs_started_in_the_same_second_get_their_own_folders(tmp_path, monkeypatch):
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    monkeypatch.setattr(time, "strftime", lambda fmt, *a: stamp)  # both runs read the same second
    assert quick_run(tmp_path, monkeypatch) == 0
    assert quick_run(tmp_path, monkeypatch) == 0
    runs = sorted(os.listdir(tmp_path / "runs"))
    assert len(runs) == 2, runs
    for r in runs:
        msgs = events(tmp_path / "runs" / r)
        assert [m["type"] for m in msgs].count("hello") == 1
        assert [m["seq"] for m in msgs] == list(range(1, len(msgs) + 1))


def test_a_taken_folder_name_is_never_reused(tmp_path, monkeypatch):
    names = iter(["taken", "taken", "free"])
    monkeypatch.setattr(train, "new_run_id", lambda method: next(names))
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "events.jsonl").write_text("{}\n")
    assert train.make_run_dir(str(tmp_path), "srlora") == str(tmp_path / "free")
    assert (tmp_path / "taken" / "events.jsonl").read_text() == "{}\n"


def finished_run(tmp_path, monkeypatch):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"steps": 4, "checkpointEvery": 2}))
    assert quick_run(tmp_path, monkeypatch, "--config", str(cfg), "--steps", "4") == 0
    (run,) = os.listdir(tmp_path / "runs")
    return str(tmp_path / "runs" / run)


def test_a_finished_run_has_one_checkpoint_event_per_step(tmp_path, monkeypatch):
    run_dir = finished_run(tmp_path, monkeypatch)
    assert [m["step"] for m in events(run_dir) if m["type"] == "checkpoint"] == [2, 4]


def test_resuming_a_finished_run_does_nothing(tmp_path, monkeypatch, capsys):
    run_dir = finished_run(tmp_path, monkeypatch)
    before = open(os.path.join(run_dir, "events.jsonl"), encoding="utf-8").read()
    capsys.readouterr()
    assert train.main(["--resume", run_dir]) == 0
    assert "nothing to continue" in capsys.readouterr().err
    assert open(os.path.join(run_dir, "events.jsonl"), encoding="utf-8").read() == before


def test_the_terminal_shows_progress_and_a_summary(tmp_path, monkeypatch, capsys):
    """stderr here is not a terminal: a progress line per 10% of the steps, then the end-of-run summary."""
    assert quick_run(tmp_path, monkeypatch, "--steps", "10") == 0
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.startswith("step ")]
    assert [l.split()[1] for l in lines] == [f"{s}/10" for s in range(1, 11)]
    assert " loss " in lines[-1] and " ex/s " in lines[-1] and "ETA" in lines[-1]
    assert "✓ " in err and " — finished, step 10/10 in " in err and "  train loss " in err, err  # the built-in trainer's layout
    assert f"dashboard       {shutil.which('node')} {CLI} serve" in err, err


def test_a_terminal_line_is_rewritten_at_most_every_quarter_second():
    import io
    from srlora_torch.progress import ProgressLine

    class Tty(io.StringIO):
        def isatty(self):
            return True

    clock = [0.0]
    out = Tty()
    p = ProgressLine(100, 32, out, now=lambda: clock[0])
    for step in range(1, 101):
        clock[0] += 0.01  # 10 ms a step: one line per 25 steps, plus the last
        p.update(step, 0.5)
    assert out.getvalue().count("\r\x1b[K") == 5
    assert out.getvalue().endswith("step 100/100  loss 0.5000  3200 ex/s  ETA 0s")


def test_help_describes_every_flag_and_an_unknown_flag_gets_a_did_you_mean(capsys):
    with pytest.raises(SystemExit):
        train.main(["--help"])
    out = capsys.readouterr().out
    for flag in ["--config", "--steps", "--device", "--method", "--runs-dir", "--max-examples", "--resume", "--no-progress"]:
        line = next(l for l in out.splitlines() if l.strip().startswith(flag))
        assert len(line.split()) > 2, line  # the flag, its metavar and words
    with pytest.raises(SystemExit) as e:
        train.main(["--stpes", "3"])
    assert e.value.code == 2
    assert "did you mean --steps?" in capsys.readouterr().err


def test_the_terminal_summary_counts_recompositions_as_the_page_does(tmp_path):
    """Every recomposition counts, saying how many fused nothing (src/cli/summary.ts recompositionsCount); a
    resume's rewind drops the later ones, as every view does."""
    from srlora_torch.progress import summary
    layer = lambda fused: {"name": "l", "slots": [0] if fused else []}
    msgs = [{"type": "hello", "method": "srlora", "totalSteps": 20}, {"type": "recomposition", "step": 5, "layers": [layer(True)]},
            {"type": "recomposition", "step": 9, "layers": [layer(True)]}, {"type": "rewind", "step": 6},
            {"type": "recomposition", "step": 10, "layers": [layer(True)]}, {"type": "recomposition", "step": 10, "layers": [layer(False)]},
            {"type": "state", "state": "finished", "step": 20}]
    (tmp_path / "events.jsonl").write_text("".join(json.dumps({"seq": i + 1, "time": i, **m}) + "\n" for i, m in enumerate(msgs)))
    assert "  recompositions  3 (2 pairs fused, 1 fused nothing)\n" in summary(str(tmp_path), "finished")


def test_both_trainers_summaries_count_recompositions_in_the_same_words():
    """Session 6 (cli.3): "recompositions  2 recompositions, 1 fused nothing" repeated its label. The value is the
    built-in trainer's (src/cli/summary.ts recompositionsCount), held to the same shared vectors."""
    from conftest import VECTORS
    from srlora_torch.progress import recompositions_count
    cases = json.load(open(os.path.join(VECTORS, "summary", "recompositions.json"), encoding="utf-8"))["cases"]
    for c in cases:
        assert recompositions_count(c["recompositions"], c["pairsFused"], c["fusedNothing"]) == c["text"], c


def test_a_cpu_run_warns_nothing_and_its_first_line_shows_no_rate_yet(tmp_path, monkeypatch, capsys):
    """Fresh-user session 5 (fixb.5): a CPU run printed torch's UserWarning (float() of a loss that requires grad) and
    its first progress line said "0 ex/s" before any rate was measured."""
    import warnings
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert quick_run(tmp_path, monkeypatch, "--steps", "10") == 0
    assert [str(w.message) for w in seen if "requires_grad" in str(w.message) or "requires grad" in str(w.message)] == []
    lines = [l for l in capsys.readouterr().err.splitlines() if l.startswith("step ")]
    assert " – ex/s " in lines[0] and " 0 ex/s " not in lines[0]
    assert " – ex/s " not in lines[-1]


def test_a_run_folder_deleted_while_it_trained_is_said_once_plainly_with_no_resume_hint(tmp_path, monkeypatch, capsys):
    """Fresh-user session 5 (fixb.3): the terminal said "run failed: step 0/?" and "continue … --resume <the deleted
    folder>". It says the folder was deleted and nothing was recorded, and offers no resume of a folder that is gone."""
    import shutil
    loop = train.train_loop

    run_dirs = []

    def deleting(cfg, run, *a, **k):
        loop(cfg, run, *a, **k)
        run_dirs.append(os.path.abspath(run.session.run_dir))
        shutil.rmtree(run.session.run_dir)

    monkeypatch.setattr(train, "train_loop", deleting)
    assert quick_run(tmp_path, monkeypatch) == 1
    err = capsys.readouterr().err
    assert "was deleted while it trained; nothing was recorded" in err, err
    # once (session 6, cli.4: the Session said its own line first): one line names the folder, none says more
    assert [l for l in err.splitlines() if " was deleted" in l or " was replaced" in l or "the run folder" in l] == [
        f"run {os.path.basename(run_dirs[0])}: its folder {run_dirs[0]} was deleted while it trained; nothing was recorded"], err
    assert "--resume" not in err and "step 0/?" not in err, err
