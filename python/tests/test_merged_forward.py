"""merged_forward.py: the adapted layer's forward with s·B·A merged into W under half-precision autocast."""
import pytest
import torch
from torch import nn

from srlora_torch.layer import SRLoRALinear
from srlora_torch.merged_forward import MergedLoRALinear

IN, OUT = 48, 40
MANY, FEW = 64, 40  # tokens either side of the rule's 2·in·out/(in + out) = 43.6 for a 48 → 40 layer


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
    # a half-precision base (W already in the compute dtype): the merged weight is recomputed in backward, same values
    W32 = W.float()
    for Wb in (W32, W32.to(torch.bfloat16)):
        x2, A2, B2 = (t.detach().float().requires_grad_(True) for t in (x, A, B))
        MergedLoRALinear.apply(x2, Wb, None, A2, B2, 0.7, torch.float32).square().sum().backward()
        ref2 = [t.detach().float().requires_grad_(True) for t in (x, A, B)]
        (ref2[0] @ (Wb.float() + 0.7 * ref2[2] @ ref2[1]).T).square().sum().backward()
        for got, want in zip((x2, A2, B2), ref2):
            torch.testing.assert_close(got.grad, want.grad, rtol=1e-4, atol=1e-4)


def _layer(method="srlora", wdt=torch.float32):
    torch.manual_seed(0)
    base = nn.Linear(IN, OUT).to(wdt)
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


def _merged_ran(y):
    return type(y.grad_fn).__name__ == "MergedLoRALinearBackward"


def test_merged_where_asked_under_bf16_autocast_with_many_tokens_and_it_agrees_with_the_split_form():
    for method in ("srlora", "lora"):
        lay = _layer(method)
        x = torch.randn(2, MANY // 2, IN)
        merged = _run(lay, x, True)
        assert _merged_ran(merged[0]), method
        split = _run(lay, x, False)
        assert not _merged_ran(split[0])
        assert merged[0].dtype == split[0].dtype == torch.bfloat16
        # bf16 rounds W, A and B in both forms, at different places: agreement to bf16's precision, not bitwise
        for name, m, s in zip(("y", "dx", "dA", "dB"), merged, split):
            assert _rel(m, s) < 2e-2, (method, name, _rel(m, s))
            assert m.dtype == s.dtype, (method, name)


def test_the_split_form_runs_eagerly_by_default_and_without_autocast_few_tokens_or_float64():
    lay = _layer()
    assert lay.merged_forward == "auto"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not _merged_ran(lay(torch.randn(1, MANY, IN)))  # "auto", eagerly: split (host time)
    lay.merged_forward = True
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert _merged_ran(lay(torch.randn(1, MANY, IN)))
        assert not _merged_ran(lay(torch.randn(1, FEW, IN)))
    assert not _merged_ran(lay(torch.randn(1, MANY, IN)))  # no autocast: float32, split
    lay64 = _layer().double()
    lay64.merged_forward = True
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast leaves float64 alone: so does the layer
        y = lay64(torch.randn(1, MANY, IN, dtype=torch.float64))
    assert not _merged_ran(y) and y.dtype == torch.float64


def test_under_torch_compile_auto_runs_merged_without_a_graph_break():
    from torch._dynamo.utils import counters
    lay = _layer()
    x = torch.randn(2, MANY // 2, IN)

    def f(x):
        with torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False):
            return lay(x).float().square().sum()

    def grads(fn, policy):
        lay.merged_forward = policy
        lay.A.grad = lay.B.grad = None
        out = fn(x)
        out.backward()
        return out.detach(), lay.A.grad.clone(), lay.B.grad.clone()
    torch._dynamo.reset()
    counters.clear()
    compiled = grads(torch.compile(f, backend="aot_eager", fullgraph=True), "auto")  # fullgraph: a break raises
    assert sum(counters["graph_break"].values()) == 0
    merged, split = grads(f, True), grads(f, False)
    for c, m, s in zip(compiled, merged, split):
        torch.testing.assert_close(c, m)  # "auto" traced = the merged form, to the bit here (aot_eager)
    assert not torch.equal(compiled[1], split[1])


def test_an_input_that_needs_no_gradient_gets_none():
    lay = _layer()
    lay.merged_forward = True
    x = torch.randn(1, MANY, IN)  # the first adapted layer's input: frozen embeddings, no grad
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = lay(x)
    assert _merged_ran(y)
    y.float().sum().backward()
    assert lay.A.grad is not None and lay.B.grad is not None and x.grad is None


def test_a_higher_order_gradient_through_the_merged_form_is_refused_by_name_not_silently_wrong():
    lay = _layer()
    lay.merged_forward = True
    x = torch.randn(1, MANY, IN, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = lay(x)
    with pytest.raises(RuntimeError, match="merged_forward = False"):
        torch.autograd.grad(y.float().square().sum(), x, create_graph=True)


def _new_saved_bytes(lay, x, merged):
    """Bytes autograd keeps for backward in tensors that are neither an input nor one of the layer's own tensors."""
    own = {t.untyped_storage().data_ptr() for t in (x, lay.W, lay.A, lay.B, lay.bias) if t is not None}
    new = {}

    def pack(t):
        p = t.untyped_storage().data_ptr()
        if p not in own:
            new[p] = t.untyped_storage().nbytes()
        return t
    lay.merged_forward = merged
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast("cpu", dtype=torch.bfloat16):
        lay(x)
    return sum(new.values())


def test_with_a_bf16_base_the_merged_form_keeps_no_merged_weight_for_backward():
    lay = _layer(wdt=torch.bfloat16)
    x = torch.randn(1, MANY, IN, dtype=torch.bfloat16, requires_grad=True)
    weight_bytes = OUT * IN * 2
    split, merged = _new_saved_bytes(lay, x, False), _new_saved_bytes(lay, x, True)
    assert merged < split + weight_bytes // 2, (merged, split, weight_bytes)  # no new out × in copy kept
    lay32 = _layer()  # a float32 base: autocast's cast of W is kept by both forms
    x32 = torch.randn(1, MANY, IN, requires_grad=True)
    assert _new_saved_bytes(lay32, x32, True) <= _new_saved_bytes(lay32, x32, False) + 64


def test_training_with_the_merged_form_follows_the_split_form_through_recompositions():
    """80 eager steps of the tiny transformer (batch 32 × 32 tokens, bf16 autocast on the CPU), merged forced on vs
    off, a forced recomposition at 40 and τ = 0.9 from 60: every step's loss within bf16 tolerance of the split
    form's, and the same recompositions."""
    from srlora_torch.tasks import build_model
    from srlora_torch.train import eager_step, load_config, make_controller, make_optimizer
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
            loss = eager_step(task, opt, ctl)  # the trainer's own eager step
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
