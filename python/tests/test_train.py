"""A short PyTorch run without a hub: a complete, valid events.jsonl and a checkpoint."""
import json
import os
import subprocess
import sys

from conftest import ROOT
from srlora_torch.protocol import validate


def test_a_run_without_a_hub(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "python")}
    env.pop("SRLORA_HUB_URL", None)
    env["SRLORA_RUN_DIR"] = str(tmp_path / "run-a")
    r = subprocess.run([sys.executable, "-m", "srlora_torch.train", "--steps", "40"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    msgs = [json.loads(l) for l in open(tmp_path / "run-a" / "events.jsonl")]
    assert [m["seq"] for m in msgs] == list(range(1, len(msgs) + 1))
    assert [m for m in msgs if validate(m)] == []
    assert msgs[0]["type"] == "hello" and msgs[-1]["type"] == "state" and msgs[-1]["state"] == "finished"
    steps = [row["step"] for m in msgs if m["type"] == "metrics" for row in m["rows"]]
    assert steps == list(range(1, 41))
    assert any(m["type"] == "recomposition" for m in msgs)
    assert os.path.exists(tmp_path / "run-a" / "checkpoints" / "step-40" / "state.pt")


def test_a_bad_config_names_the_field(tmp_path):
    cfg = tmp_path / "bad.srlora.json"
    cfg.write_text('{ "fusionTreshold": 0.5 }')
    r = subprocess.run([sys.executable, "-m", "srlora_torch.train", "--config", str(cfg)], env={**os.environ, "PYTHONPATH": os.path.join(ROOT, "python")},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "fusionTreshold" in r.stderr
