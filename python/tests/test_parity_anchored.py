"""Re-anchored per-step parity over 300 steps (issue 16; docs/ALGORITHM.md, "Per-step parity").

Free-running float32 runs of the two trainers part past 1e-4 relative within 300 steps on the srlora MLP (test_parity.py:
step 121-254 depending on the schedule), not because they compute different steps but because the training is chaotic
at lr 3e-3: a 3e-7 relative rounding difference (a ReLU within rounding of 0 switching in one trainer only) grows
past 1e-4. So the 300-step claim is checked the way it can hold: the built-in trainer runs all 300 steps, writing a
checkpoint every K steps; from each of them (and from the shared init at step 0) the PyTorch trainer starts on the SAME
state — W, A, B, fused factors, directions, ages, pointers, importance EMAs, Adam moments and step, data position —
and runs K steps. Every step's loss must agree within 1e-4 relative, every recomposition must fuse the same slots
(directions, ages), and at the window's end the PyTorch trainer's tensors must equal the built-in trainer's next
checkpoint within 1e-4 relative (Frobenius norm of the difference over the tensor's).

The state exchange is `ts_checkpoint_state`: a built-in trainer checkpoint (state.safetensors + state.json) turned into
the PyTorch trainer's restore form (what its own state.pt holds), loaded by the same code path as `--resume`.
SRLORA_PARITY_ANCHOR_K sets K (default 25).
"""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CLI = os.path.join(ROOT, "dist", "cli.js")
STEPS = 300
K = int(os.environ.get("SRLORA_PARITY_ANCHOR_K", "25"))
RTOL = 1e-4

if not (shutil.which("node") and os.path.exists(CLI)):  # a missing prerequisite must fail, not hide
    pytestmark = pytest.mark.xfail(reason=f"needs node and {CLI} (npm run build)", strict=True, run=False)

from srlora_torch.safetensors_io import read_safetensors  # noqa: E402
from srlora_torch.train import build_run, eager_step, restore_run  # noqa: E402

# built-in trainer's tensor name (per layer) -> the PyTorch layer's attribute
TENSORS = {"A": "A", "B": "B", "W": "W", "emaIA": "ema_IA", "emaIB": "ema_IB", "emaUA": "ema_UA", "emaUB": "ema_UB",
           "fusedA": "fused_A", "fusedB": "fused_B"}


def config(model, method):
    return {"task": {"kind": "digits", "transform": "rot90"}, "model": {"kind": model}, "method": method, "r": 4,
            "steps": STEPS, "seed": 3, "learningRate": 3e-3, "evalEvery": STEPS, "importanceEvery": 100,
            "checkpointEvery": K, "device": "cpu"}


def events(run_dir):
    return [json.loads(line) for line in open(os.path.join(run_dir, "events.jsonl"), encoding="utf-8")]


def losses(evs):
    return {row["step"]: row["loss"] for m in evs if m.get("type") == "metrics" for row in m["rows"]}


def fused(evs):
    return [(m["step"], [(l["name"], l["slots"], l["oldDirections"], l.get("ages")) for l in m["layers"]])
            for m in evs if m.get("type") == "recomposition"]


def ts_checkpoint_state(ckpt, run):
    """The built-in trainer's checkpoint `ckpt` as the dict the PyTorch trainer's restore_run loads (its state.pt's form):
    the freshly built run's own state with every tensor and counter the checkpoint holds replaced by the checkpoint's."""
    meta = json.load(open(os.path.join(ckpt, "state.json"), encoding="utf-8"))
    t = read_safetensors(os.path.join(ckpt, "state.safetensors"))
    t = t[0] if isinstance(t, tuple) else t
    eng = meta["engine"]
    prefix = {id(m): name for name, m in run.task.model.named_modules()}
    model = {k: v.clone() for k, v in run.task.model.state_dict().items()}
    opt = run.opt.state_dict()
    index = {id(p): i for i, p in enumerate(q for g in run.opt.param_groups for q in g["params"])}
    p = {}
    for L in eng["layers"]:
        layer = run.layers[L["name"]]
        pre = prefix[id(layer)]
        for ts_name, attr in TENSORS.items():
            key = f"{pre}.{attr}"
            assert (getattr(layer, attr) is None) == (f"{L['name']}/{ts_name}" not in t), f"{key}: held by one trainer only"
            if getattr(layer, attr) is None:  # fused factors: srlora only
                continue
            assert key in model and model[key].shape == t[f"{L['name']}/{ts_name}"].shape, key
            model[key] = t[f"{L['name']}/{ts_name}"].clone()
        model[f"{pre}.directions"] = torch.tensor(L["directions"], dtype=model[f"{pre}.directions"].dtype)
        model[f"{pre}.age"] = torch.tensor(L["age"], dtype=model[f"{pre}.age"].dtype)
        p[L["name"]] = L["p"]
        # torch's Adam counts one step per tensor: every slot's must be the optimiser's (reinitOptimizer restart not exchanged)
        assert all(s == eng["optimizerStep"] for s in L["slotSteps"]), L["slotSteps"]
        for par, m, v in ((layer.A, "adamMA", "adamVA"), (layer.B, "adamMB", "adamVB")):
            opt["state"][index[id(par)]] = {"step": torch.tensor(float(eng["optimizerStep"])),
                                            "exp_avg": t[f"{L['name']}/{m}"].clone(), "exp_avg_sq": t[f"{L['name']}/{v}"].clone()}
    d = meta["data"]
    return {"model": model, "optimizer": opt, "step": meta["step"], "p": p,
            "data": torch.tensor([d["rng"], d["epoch"], d["pos"], *d["order"]], dtype=torch.int64),
            "settings": meta["settings"], "rule": {"fusionThreshold": eng["rule"]["fusionThreshold"], "fusionRatio": eng["rule"]["fusionRatio"]}}


def torch_window(cfg, run_dir, ckpt, steps):
    """The PyTorch trainer from the built-in trainer's checkpoint (None: its own init at step 0) for `steps` steps, as
    train.main's eager loop; returns its events and the run (its state at the window's end)."""
    run = build_run(cfg, run_dir, torch.device("cpu"))
    if ckpt is not None:
        state = ts_checkpoint_state(ckpt, run)
        tmp = os.path.join(run_dir, "anchor")
        os.makedirs(tmp)
        torch.save(state, os.path.join(tmp, "state.pt"))
        restore_run(run, tmp, torch.device("cpu"))
    run.session.start(resumed=ckpt is not None)
    for _ in range(steps):
        loss = eager_step(run.task, run.opt, run.ctl)
        run.ctl.after_step()
        run.session.after_step(loss)
    run.session.finish(None)
    return events(run_dir), run


def rel(a, b):
    return float((a - b).norm() / max(float(b.norm()), 1e-30))


@pytest.mark.parametrize("model", ["mlp", "vit"])
@pytest.mark.parametrize("method", ["lora", "pissa", "srlora"])
def test_reanchored_parity_300_steps(tmp_path, model, method, monkeypatch):
    cfg = config(model, method)
    cfg_file = tmp_path / "parity.srlora.json"
    cfg_file.write_text(json.dumps({k: v for k, v in cfg.items() if k != "device"}))
    env = {**os.environ, "SRLORA_ASSETS": ROOT}
    env.pop("SRLORA_HUB_URL", None)
    ts_dir = tmp_path / "ts"
    r = subprocess.run(["node", CLI, "train", "--no-progress", "--config", str(cfg_file)], env={**env, "SRLORA_RUN_DIR": str(ts_dir)},
                       capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-2000:]
    ts_ev = events(str(ts_dir))
    ts_loss, ts_fused = losses(ts_ev), fused(ts_ev)
    assert sorted(ts_loss) == list(range(1, STEPS + 1))
    monkeypatch.setenv("SRLORA_ASSETS", ROOT)
    monkeypatch.delenv("SRLORA_HUB_URL", raising=False)
    from srlora_torch.train import load_config
    pcfg = load_config(str(cfg_file), {"device": "cpu"})
    worst = worst_t = 0.0
    for t in range(0, STEPS, K):
        ckpt = None if t == 0 else str(ts_dir / "checkpoints" / f"step-{t}")
        py_ev, run = torch_window(pcfg, str(tmp_path / f"py-{t}"), ckpt, K)
        py_loss = losses(py_ev)
        assert sorted(py_loss) == list(range(t + 1, t + K + 1)), f"window {t}: steps {sorted(py_loss)}"
        for s in sorted(py_loss):
            d = abs(ts_loss[s] - py_loss[s]) / abs(ts_loss[s])
            worst = max(worst, d)
            assert d <= RTOL, f"{model} {method} window from {t}: step {s} loss {ts_loss[s]} (built-in) vs {py_loss[s]} (PyTorch)"
        assert fused(py_ev) == [f for f in ts_fused if t < f[0] <= t + K], f"window from {t}: recompositions differ"
        end = read_safetensors(str(ts_dir / "checkpoints" / f"step-{t + K}" / "state.safetensors"))
        end = end[0] if isinstance(end, tuple) else end
        for name, layer in run.layers.items():
            st = run.opt.state
            mine = {ts: getattr(layer, attr).detach() for ts, attr in TENSORS.items() if getattr(layer, attr) is not None}
            mine.update({"adamMA": st[layer.A]["exp_avg"], "adamVA": st[layer.A]["exp_avg_sq"],
                         "adamMB": st[layer.B]["exp_avg"], "adamVB": st[layer.B]["exp_avg_sq"]})
            for ts_name, x in mine.items():
                e = rel(x, end[f"{name}/{ts_name}"])
                worst_t = max(worst_t, e)
                assert e <= RTOL, f"window from {t}: {name} {ts_name} at step {t + K} differs by {e:.2e} relative"
            ts_dirs = json.load(open(ts_dir / "checkpoints" / f"step-{t + K}" / "state.json"))["engine"]["layers"]
            L = next(x for x in ts_dirs if x["name"] == name)
            assert layer.directions.tolist() == L["directions"] and layer.age.tolist() == L["age"], f"window from {t}: {name} directions/ages"
    print(f"{model} {method}: {STEPS} steps in windows of {K}, worst loss difference {worst:.2e}, worst tensor difference {worst_t:.2e}")
