"""merged_forward.py: the adapted layer's forward with s·B·A merged into W under half-precision autocast."""
import torch
from torch import nn

from srlora_torch.layer import SRLoRALinear
from srlora_torch.merged_forward import MIN_TOKENS, MergedLoRALinear


def test_the_merged_product_and_its_gradients_are_exact_in_float64():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 6, dtype=torch.float64, generator=g, requires_grad=True)
    W, b = torch.randn(4, 6, dtype=torch.float64, generator=g), torch.randn(4, dtype=torch.float64, generator=g)
    A = torch.randn(2, 6, dtype=torch.float64, generator=g, requires_grad=True)
    B = torch.randn(4, 2, dtype=torch.float64, generator=g, requires_grad=True)

    def f(x, A, B):
        return MergedLoRALinear.apply(x, W, b, A, B, 0.7, torch.float64)
    ref = x @ W.T + b + 0.7 * (x @ A.T) @ B.T
    assert (f(x, A, B) - ref).abs().max().item() < 1e-12
    assert torch.autograd.gradcheck(f, (x, A, B))


def _layer(method="srlora"):
    torch.manual_seed(0)
    base = nn.Linear(48, 40)
    lay = SRLoRALinear(base, r=4, alpha=8, r_target=16, method=method)
    with torch.no_grad():  # B ≠ 0 for lora too, so the adapter's part of every gradient is tested
        lay.B.normal_(0, 0.1)
    return lay


def _run(lay, x, merged):
    lay.merged_forward = merged
    for p in (lay.A, lay.B):
        p.grad = None
    xg = x.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = lay(xg)
    (y.float() ** 2).sum().backward()
    return y, xg.grad, lay.A.grad.clone(), lay.B.grad.clone()


def _rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def test_under_bf16_autocast_with_many_tokens_the_merged_form_runs_and_agrees_with_the_split_form():
    for method in ("srlora", "lora"):
        lay = _layer(method)
        x = torch.randn(2, MIN_TOKENS // 2, 48)
        merged = _run(lay, x, True)
        assert type(merged[0].grad_fn).__name__ == "MergedLoRALinearBackward", method
        split = _run(lay, x, False)
        assert type(split[0].grad_fn).__name__ != "MergedLoRALinearBackward"
        assert merged[0].dtype == split[0].dtype == torch.bfloat16
        # bf16 rounds W, A and B in both forms, at different places: agreement to bf16's precision, not bitwise
        for name, m, s in zip(("y", "dx", "dA", "dB"), merged, split):
            assert _rel(m, s) < 2e-2, (method, name, _rel(m, s))
            assert m.dtype == s.dtype, (method, name)


def test_float32_runs_and_few_tokens_keep_the_split_form():
    lay = _layer()
    few = torch.randn(1, MIN_TOKENS - 1, 48)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert type(lay(few).grad_fn).__name__ != "MergedLoRALinearBackward"
    many = torch.randn(1, MIN_TOKENS, 48)
    assert type(lay(many).grad_fn).__name__ != "MergedLoRALinearBackward"  # no autocast: float32, split


def test_an_input_that_needs_no_gradient_gets_none():
    lay = _layer()
    x = torch.randn(1, MIN_TOKENS, 48)  # the first adapted layer's input: frozen embeddings, no grad
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = lay(x)
    y.float().sum().backward()
    assert lay.A.grad is not None and lay.B.grad is not None and x.grad is None


def test_training_with_the_merged_form_follows_the_split_form_through_recompositions():
    """80 eager steps of the tiny transformer (batch 32 × 32 = MIN_TOKENS tokens, bf16 autocast on the CPU), a forced
    recomposition at 40 and τ = 0.9 from 60: every step's loss within bf16 tolerance of the split form's, and the
    same recompositions."""
    from srlora_torch.tasks import build_model
    from srlora_torch.train import load_config, make_controller, make_optimizer
    runs = {}
    for merged in (True, False):
        cfg = load_config(None, {"steps": 80, "device": "cpu", "method": "srlora"})
        cfg.update(bf16=True, batchSize=32, compile="off", learningRate=2e-3, optimizer="adamw")
        cfg["task"] = {"kind": "transformer", "preset": "tiny"}
        torch.manual_seed(cfg["seed"])
        task, layers, r_target = build_model(cfg, torch.device("cpu"))
        for lay in layers.values():
            lay.merged_forward = merged
        opt = make_optimizer(cfg, layers)
        ctl = make_controller(cfg, layers, opt, r_target)
        seen = set()
        for lay in layers.values():
            lay.register_forward_hook(lambda mod, inp, out: seen.add(type(out.grad_fn).__name__))
        losses, recs = [], []
        for i in range(80):
            loss = task.loss()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            ctl.after_backward()
            opt.step()
            if ctl.after_step() is not None:
                recs.append(i)
            if i == 40:
                ctl.recompose("forced")
                recs.append(i)
            if i == 60:
                ctl.set(fusion_threshold=0.9)
            losses.append(loss.detach().float())
        runs[merged] = (torch.stack(losses), recs, seen)
    (m, mrec, mseen), (s, srec, sseen) = runs[True], runs[False]
    assert mseen == {"MergedLoRALinearBackward"} and "MergedLoRALinearBackward" not in sseen, (mseen, sseen)
    diff = (m - s).abs()
    rel = diff / s.abs().clamp_min(1e-3)
    print(f"merged vs split over 80 steps: max |Δloss| {diff.max():.4g}, max rel {rel.max():.4g}, mean |Δ| {diff.mean():.4g}; "
          f"recompositions at {mrec} / {srec}")
    assert mrec == srec and len(mrec) >= 2, (mrec, srec)
    assert torch.isfinite(m).all()
    assert rel.max() < 0.05 and diff.mean() < 0.01, (rel.max(), diff.mean())


def test_the_merged_form_compiles_without_a_graph_break_and_gives_the_eager_result():
    from torch._dynamo.utils import counters
    lay = _layer()
    x = torch.randn(2, MIN_TOKENS // 2, 48)

    def f(x):
        with torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False):
            return lay(x).float().square().sum()
    torch._dynamo.reset()
    counters.clear()
    eager = f(x)
    eager.backward()
    ga, gb = lay.A.grad.clone(), lay.B.grad.clone()
    lay.A.grad = lay.B.grad = None
    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)(x)  # fullgraph: a break raises
    compiled.backward()
    assert sum(counters["graph_break"].values()) == 0
    torch.testing.assert_close(compiled, eager)
    torch.testing.assert_close(lay.A.grad, ga)
    torch.testing.assert_close(lay.B.grad, gb)
