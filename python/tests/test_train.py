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


def test_the_export_is_a_plain_model_and_can_be_rebuilt_from_a_checkpoint(tmp_path):
    """merged.safetensors loads into the original architecture (no SRLoRA) and computes what the trained model does;
    delta = merged − W0; python -m srlora_torch.export rebuilds the same files from the final checkpoint, and an
    earlier checkpoint's history stops at its step."""
    import numpy as np
    import torch
    from srlora_torch.models import synthetic_batch
    from srlora_torch.tasks import Task, base_weights, build_model

    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "python"), "SRLORA_RUN_DIR": str(tmp_path / "run")}
    env.pop("SRLORA_HUB_URL", None)
    cfg_file = tmp_path / "c.json"
    cfg_file.write_text(json.dumps({"task": {"kind": "transformer", "preset": "tiny"}, "steps": 30, "checkpointEvery": 10, "fusionRatio": 0.5}))
    r = subprocess.run([sys.executable, "-m", "srlora_torch.train", "--config", str(cfg_file)], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    run = tmp_path / "run"
    out = run / "export"

    def load(path):
        """safetensors read independently of our writer: the header, then the bytes as numpy."""
        raw = open(path, "rb").read()
        n = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8:8 + n])
        header.pop("__metadata__", None)
        return {k: torch.from_numpy(np.frombuffer(raw[8 + n + v["data_offsets"][0]: 8 + n + v["data_offsets"][1]], dtype=np.float32).reshape(v["shape"]).copy())
                for k, v in header.items()}

    merged, delta = load(out / "merged.safetensors"), load(out / "delta.safetensors")
    cfg = json.loads((run / "config.json").read_text())
    plain = Task(cfg, torch.device("cpu"))
    plain.model.load_state_dict(merged, strict=True)  # the original architecture, every key and shape
    trained, layers, _ = build_model(cfg, torch.device("cpu"))
    state = torch.load(run / "checkpoints" / "step-30" / "state.pt", map_location="cpu")
    trained.model.load_state_dict(state["model"])
    x, _ = synthetic_batch(8, plain.shape, torch.Generator().manual_seed(1), torch.device("cpu"))
    with torch.no_grad():
        assert torch.allclose(plain.model(x), trained.model(x), rtol=1e-4, atol=1e-5)
    base = base_weights(cfg)
    assert set(delta) == set(base) == {f"{n}.weight" for n in layers}
    for k in delta:
        assert torch.allclose(merged[k] - base[k], delta[k], atol=1e-6) and delta[k].abs().max() > 0
    hist = json.loads((out / "directions.json").read_text())
    assert "from" not in hist and all(l["recompositions"] for l in hist["layers"])

    original = (out / "merged.safetensors").read_bytes()
    ex = [sys.executable, "-m", "srlora_torch.export", str(run)]
    r = subprocess.run(ex, env=env, capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert r.returncode == 0 and "exported step 30" in r.stdout, r.stderr
    assert (out / "merged.safetensors").read_bytes() == original
    r = subprocess.run(ex + ["--checkpoint", str(run / "checkpoints" / "step-10")], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    at10 = json.loads((out / "directions.json").read_text())
    assert at10["from"] == {"checkpoint": os.path.join("checkpoints", "step-10"), "step": 10}
    steps = [rc["step"] for l in at10["layers"] for rc in l["recompositions"]]
    assert all(s <= 10 for s in steps) and len(steps) < sum(len(l["recompositions"]) for l in hist["layers"])
    r = subprocess.run([sys.executable, "-m", "srlora_torch.export", str(tmp_path)], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "is not a run folder (no config.json)" in r.stderr


def test_resume_continues_with_the_losses_of_an_uninterrupted_run(tmp_path):
    """Interrupted part-way (SIGTERM: the trainer checkpoints, state interrupted), then --resume: the remaining steps' losses equal those of
    a run never stopped, and events.jsonl continues its seq with no second hello."""
    import signal
    import time

    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "python")}
    env.pop("SRLORA_HUB_URL", None)
    cfg_file = tmp_path / "c.json"
    cfg_file.write_text(json.dumps({"steps": 120, "seed": 3, "fusionRatio": 0.5, "evalEvery": 1000, "batchSize": 8}))
    train = [sys.executable, "-m", "srlora_torch.train"]

    def losses(run):
        lines = (run / "events.jsonl").read_text().splitlines() if (run / "events.jsonl").exists() else []
        return {row["step"]: row["loss"] for l in lines if l.endswith("}") for m in [json.loads(l)] if m["type"] == "metrics" for row in m["rows"]}

    r = subprocess.run(train + ["--config", str(cfg_file)], env={**env, "SRLORA_RUN_DIR": str(tmp_path / "a")}, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    b = tmp_path / "b"
    p = subprocess.Popen(train + ["--config", str(cfg_file)], env={**env, "SRLORA_RUN_DIR": str(b)}, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and max(losses(b), default=0) < 12:
        time.sleep(0.01)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=120) == 0, p.stderr.read()
    stopped = max(losses(b))
    assert 12 <= stopped < 120, stopped
    r = subprocess.run(train + ["--resume", str(b)], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    la, lb = losses(tmp_path / "a"), losses(b)
    assert sorted(lb) == list(range(1, 121))
    assert all(la[s] == lb[s] for s in range(stopped + 1, 121)), [(s, la[s], lb[s]) for s in range(stopped + 1, 121) if la[s] != lb[s]][:3]
    msgs = [json.loads(l) for l in open(b / "events.jsonl")]
    assert [m["seq"] for m in msgs] == list(range(1, len(msgs) + 1)) and sum(m["type"] == "hello" for m in msgs) == 1
    assert any(m["type"] == "state" and m.get("reason") == f"resumed at step {stopped}" for m in msgs)
    assert [(m["state"], m["step"]) for m in msgs if m["type"] == "state" and m["state"] in ("interrupted", "finished")] == [("interrupted", stopped), ("finished", 120)]
    assert [m["step"] for m in msgs if m["type"] == "rewind"] == [stopped]
    recs = lambda run: [m["step"] for l in open(run / "events.jsonl") for m in [json.loads(l)] if m["type"] == "recomposition"]  # noqa: E731
    assert recs(tmp_path / "a") == recs(b), "the same schedule, across the stop"
    r = subprocess.run(train + ["--resume", str(b), "--steps", "50"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "--resume continues the run as configured" in r.stderr


def test_a_config_made_for_the_built_in_trainer_runs_here_on_its_digits_task(tmp_path):
    """The extension's starter config (digits rotated by 90°, the tiny ViT) and an MLP one: the same task, base model
    and eval digits as the built-in trainer — the base model starts near chance on rotated digits and adapts."""
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "python")}
    env.pop("SRLORA_HUB_URL", None)
    for kind in ("vit", "mlp"):
        cfg = tmp_path / f"{kind}.srlora.json"
        cfg.write_text('{ "task": { "kind": "digits", "transform": "rot90" }, "model": { "kind": "%s" }, "backend": "auto",\n'
                       '  // comments and unknown-to-PyTorch fields of the built-in trainer are fine\n'
                       '  "optimizer": "adam", "learningRate": 0.003, "batchSize": 64, "steps": 60, "evalEvery": 60 }' % kind)
        r = subprocess.run([sys.executable, "-m", "srlora_torch.train", "--config", str(cfg)], env={**env, "SRLORA_RUN_DIR": str(tmp_path / kind)},
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        msgs = [json.loads(l) for l in open(tmp_path / kind / "events.jsonl")]
        assert [m for m in msgs if validate(m)] == []
        evals = {m["step"]: m["metrics"]["accuracy"] for m in msgs if m["type"] == "eval"}
        assert sorted(evals) == [0, 60] and evals[0] < 0.2 and evals[60] > evals[0] + 0.2, evals
        assert (tmp_path / kind / "export" / "merged.safetensors").exists()


def test_your_own_tabular_data_and_mlp_as_the_built_in_trainer_reads_them(tmp_path):
    """A CSV with 5 features and 3 classes, an MLP 5 → 16 → 3 saved as safetensors beside the config (relative
    paths, as the built-in trainer reads them): it trains and exports; the built-in digits model says what it takes."""
    import numpy as np
    import torch
    from srlora_torch.digits import MLP
    from srlora_torch.safetensors_io import save_safetensors

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5))
    y = np.where(x[:, 0] + x[:, 1] > 0, np.where(x[:, 2] > 0, 2, 1), 0)
    (tmp_path / "data.csv").write_text("a,b,c,d,e,label\n" + "\n".join(",".join(f"{v:.4f}" for v in r) + f",{k}" for r, k in zip(x, y)) + "\n")
    torch.manual_seed(0)
    save_safetensors(str(tmp_path / "mine.safetensors"), MLP([5, 16, 3]).state_dict())
    cfg = tmp_path / "own.srlora.json"
    cfg.write_text(json.dumps({"task": {"kind": "tabular", "train": "data.csv"}, "model": {"kind": "mlp", "weights": "mine.safetensors"},
                               "steps": 80, "batchSize": 32, "r": 2, "rTarget": 6, "evalEvery": 80, "learningRate": 0.01}))
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "python"), "SRLORA_RUN_DIR": str(tmp_path / "run")}
    env.pop("SRLORA_HUB_URL", None)
    r = subprocess.run([sys.executable, "-m", "srlora_torch.train", "--config", str(cfg)], env=env, capture_output=True, text=True, timeout=300, cwd="/")
    assert r.returncode == 0, r.stderr
    msgs = [json.loads(l) for l in open(tmp_path / "run" / "events.jsonl")]
    assert [l["name"] for l in msgs[0]["layers"]] == ["fc0", "fc1"] and [l["shape"] for l in msgs[0]["layers"]] == [[16, 5], [3, 16]]
    evals = [m["metrics"]["accuracy"] for m in msgs if m["type"] == "eval"]
    assert len(evals) == 2 and evals[1] > evals[0], evals
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["task"]["train"] == str(tmp_path / "data.csv") and saved["task"]["labelColumn"] == "label"
    cfg.write_text(json.dumps({"task": {"kind": "tabular", "train": "data.csv"}, "model": {"kind": "mlp"}}))
    r = subprocess.run([sys.executable, "-m", "srlora_torch.train", "--config", str(cfg)], env={**env, "SRLORA_RUN_DIR": str(tmp_path / "run2")},
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "the mlp model takes 784 features and 10 classes; the data has 5 features and 3 classes" in r.stderr


def test_a_bad_model_or_data_file_is_one_clear_line_not_a_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "python"), "SRLORA_RUN_DIR": str(tmp_path / "run")}
    (tmp_path / "bad.csv").write_text("a,label\n1,0\n,1\n")
    for cfg, want in (({"task": {"kind": "digits"}, "model": {"kind": "foo"}}, '/model/kind: expected "mlp" | "vit", got "foo"'),
                      ({"task": {"kind": "digits"}, "model": {"kind": "mlp", "weights": "nope.safetensors"}}, "nope.safetensors\": no such file"),
                      ({"task": {"kind": "tabular", "train": "bad.csv"}, "model": {"kind": "mlp"}}, 'bad.csv:3: column "a" is not a number: ""')):
        f = tmp_path / "c.json"
        f.write_text(json.dumps(cfg))
        r = subprocess.run([sys.executable, "-m", "srlora_torch.train", "--config", str(f)], env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode != 0 and want in r.stderr and "Traceback" not in r.stderr, r.stderr
