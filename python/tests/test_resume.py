"""Crash consistency (issue 12.5, issue 13.7-8): a torn last line in events.jsonl is cut, not fatal; checkpoints carry
a completion marker with a sha256 per file, and resume takes the newest complete, verified one, saying which newer
ones it skipped and why; a resumed run says where it rewound to; after a kill -9 between checkpoints the resumed run's
later losses equal an uninterrupted run's."""
import json
import os
import signal
import subprocess
import sys
import time

from conftest import ROOT
from srlora_torch.checkpoint import newest_verified, write_checkpoint
from srlora_torch.client import EventRecorder
from srlora_torch.protocol import validate
from test_session import strict


def test_a_torn_last_line_is_cut_and_the_log_continues(tmp_path):
    rec = EventRecorder("r", str(tmp_path))
    for i in range(3):
        rec.emit({"type": "log", "level": "info", "text": f"line {i}"})
    rec.close()
    f = tmp_path / "events.jsonl"
    whole = f.read_bytes()
    f.write_bytes(whole + b'{"v":1,"runId":"r","seq":4,"time":1,"type":"log","lev')  # kill -9 mid-write
    seen = []
    rec = EventRecorder("r", str(tmp_path), on_log=seen.append)
    assert rec.seq == 3 and f.read_bytes() == whole  # truncated to the last complete line
    assert seen and "cut a torn last line" in seen[0]
    rec.emit({"type": "log", "level": "info", "text": "after"})
    rec.close()
    msgs = [strict(l) for l in f.read_text().splitlines()]
    assert [m["seq"] for m in msgs] == [1, 2, 3, 4] and msgs[-1]["text"] == "after"
    # a last line that is complete but not a message (garbage then a newline) is cut too
    f.write_bytes(f.read_bytes() + b"\x00\x00garbage\n")
    assert EventRecorder("r", str(tmp_path)).seq == 4 and f.read_bytes().endswith(b'"after"}\n')


def write(run, step, payload=b"x" * 1000):
    def save(folder):
        with open(os.path.join(folder, "state.pt"), "wb") as fh:
            fh.write(payload + bytes([step % 256]))
        os.mkdir(os.path.join(folder, "sub"))
        open(os.path.join(folder, "sub", "extra.json"), "w").write("{}")
    return write_checkpoint(str(run), step, save)


def test_resume_takes_the_newest_complete_verified_checkpoint_and_says_why(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for step in (10, 20, 30, 40):
        assert write(run, step) == f"checkpoints/step-{step}"
    marker = json.loads((run / "checkpoints/step-10/COMPLETE.json").read_text())
    assert marker["step"] == 10 and set(marker["files"]) == {"state.pt", "sub/extra.json"}
    assert marker["files"]["state.pt"]["bytes"] == 1001 and len(marker["files"]["state.pt"]["sha256"]) == 64
    os.remove(run / "checkpoints/step-40/COMPLETE.json")  # half-written (no marker)
    p = run / "checkpoints/step-30/state.pt"
    b = bytearray(p.read_bytes())
    b[500] ^= 0x01  # one flipped bit
    p.write_bytes(bytes(b))
    with open(run / "checkpoints/step-20/sub/extra.json", "a") as f:
        f.write(" ")  # a size that no longer matches
    (run / "checkpoints/.tmp-abc").mkdir()  # a crash before a rename leaves this: never a candidate
    (run / "checkpoints/step-50").mkdir()  # an empty folder
    logs = []
    assert newest_verified(str(run), logs.append) == (str(run / "checkpoints/step-10"), 10)
    assert logs == ["skipped checkpoint step-50: no COMPLETE.json (half-written, or written before checkpoints had one)",
                    "skipped checkpoint step-40: no COMPLETE.json (half-written, or written before checkpoints had one)",
                    "skipped checkpoint step-30: state.pt does not match its sha256 (corrupt)",
                    "skipped checkpoint step-20: sub/extra.json has 3 bytes, not 2"]
    # writing step 40 again replaces the half-written one
    assert write(run, 40) == "checkpoints/step-40" and newest_verified(str(run))[1] == 40
    assert sorted(os.listdir(run / "checkpoints")) == [".tmp-abc", "step-10", "step-20", "step-30", "step-40", "step-50"]


def test_verify_says_what_it_checked_size_alone_or_sha256(tmp_path):
    """verify(hashes=False) compared a made-up digest (the marker's own) to pass: check="size" now names what a quick
    hint compares — each listed file there with its size, no content read — and the default, what a resume trusts, the
    sha256 too; another check is refused."""
    import pytest
    from srlora_torch.checkpoint import verify
    run = tmp_path / "run"
    run.mkdir()
    folder = str(run / write(run, 10))
    p = run / "checkpoints/step-10/state.pt"
    b = bytearray(p.read_bytes())
    b[5] ^= 0x01  # same size, other bytes
    p.write_bytes(bytes(b))
    assert verify(folder, 10, check="size") is None
    assert verify(folder, 10) == verify(folder, 10, check="sha256") == "state.pt does not match its sha256 (corrupt)"
    assert newest_verified(str(run), check="size") == (folder, 10) and newest_verified(str(run)) is None
    p.write_bytes(bytes(b[:-1]))
    assert verify(folder, 10, check="size") == "state.pt has 1000 bytes, not 1001"
    os.remove(p)
    assert verify(folder, 10, check="size") == "state.pt is missing"
    with pytest.raises(ValueError, match="check: one of sha256, size, not 'sizes'"):
        verify(folder, 10, check="sizes")


def env_for(run_dir=None):
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "python")}
    env.pop("SRLORA_HUB_URL", None)
    env.pop("SRLORA_RUN_DIR", None)
    if run_dir:
        env["SRLORA_RUN_DIR"] = str(run_dir)
    return env


def rows(run):
    """step → loss, the latest value per step (a rewind replaces what came after it), read as a viewer reads."""
    out = {}
    f = run / "events.jsonl"
    for line in (f.read_text().splitlines() if f.exists() else []):
        if not line.endswith("}"):
            continue
        m = strict(line)
        if m["type"] == "rewind":
            out = {s: v for s, v in out.items() if s <= m["step"]}
        elif m["type"] == "metrics":
            out.update({r["step"]: r["loss"] for r in m["rows"]})
    return out


def test_resume_after_kill_9_between_checkpoints_with_a_torn_line_and_a_corrupt_latest_checkpoint(tmp_path):
    cfg = tmp_path / "c.srlora.json"
    cfg.write_text(json.dumps({"task": {"kind": "matrix"}, "steps": 400, "checkpointEvery": 100, "evalEvery": 100000,
                               "importanceEvery": 50, "r": 4, "rTarget": 16, "seed": 5}))
    train = [sys.executable, "-m", "srlora_torch.train"]
    r = subprocess.run(train + ["--config", str(cfg)], env=env_for(tmp_path / "a"), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    whole = rows(tmp_path / "a")
    assert sorted(whole) == list(range(1, 401))

    b = tmp_path / "b"
    p = subprocess.Popen(train + ["--config", str(cfg)], env=env_for(b), stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while time.time() < deadline and max(rows(b), default=0) < 250 and p.poll() is None:
        time.sleep(0.005)
    p.send_signal(signal.SIGKILL)
    assert p.wait(timeout=60) == -signal.SIGKILL, "the run ended before it could be killed"
    crashed_at = max(rows(b))
    steps = sorted(int(d[5:]) for d in os.listdir(b / "checkpoints") if d.startswith("step-"))
    assert steps and steps[-1] < crashed_at < 400, (steps, crashed_at)
    with open(b / "events.jsonl", "ab") as f:
        f.write(b'{"v":1,"runId":"b","seq":99999,"type":"metr')  # the torn line a kill -9 mid-write leaves
    latest = b / "checkpoints" / f"step-{steps[-1]}" / "state.pt"
    raw = bytearray(latest.read_bytes())
    raw[len(raw) // 2] ^= 0x40
    latest.write_bytes(bytes(raw))
    expected_from = steps[-2] if len(steps) > 1 else None

    r = subprocess.run(train + ["--resume", str(b)], env=env_for(), capture_output=True, text=True, timeout=600)
    if expected_from is None:
        assert r.returncode != 0 and "no complete checkpoint" in r.stderr and "Traceback" not in r.stderr
        return
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert f"skipped checkpoint step-{steps[-1]}: state.pt does not match its sha256 (corrupt)" in r.stderr
    assert "cut a torn last line" in r.stderr
    lines = (b / "events.jsonl").read_text().splitlines()
    msgs = [strict(l) for l in lines]
    assert [m for m in msgs if validate(m)] == []
    assert [m["seq"] for m in msgs] == list(range(1, len(msgs) + 1)) and sum(m["type"] == "hello" for m in msgs) == 1
    [rw] = [m for m in msgs if m["type"] == "rewind"]
    assert rw["step"] == expected_from and rw["checkpoint"] == f"checkpoints/step-{expected_from}" and len(rw["incarnation"]) >= 8
    after = msgs[msgs.index(rw) + 1]
    assert after["type"] == "state" and after["state"] == "running" and after["reason"] == f"resumed at step {expected_from}"
    got = rows(b)
    assert sorted(got) == list(range(1, 401))
    assert all(got[s] == whole[s] for s in range(expected_from + 1, 401)), \
        [(s, got[s], whole[s]) for s in range(expected_from + 1, 401) if got[s] != whole[s]][:3]
    assert msgs[-1]["state"] == "finished" and msgs[-1]["step"] == 400
