"""Batched recomposition (recompose.py) against the per-layer formulas of SRLORA.md §3.1-3.4, written out plainly."""
import pytest
import torch
from torch import nn

from srlora_torch import recompose as rc
from srlora_torch.controller import SRLoRAController
from srlora_torch.layer import SRLoRALinear


def layers_and_optimizer(shapes, seed=0):
    g = torch.Generator().manual_seed(seed)
    layers = {}
    for i, (out_f, in_f) in enumerate(shapes):
        base = nn.Linear(in_f, out_f, bias=False).double()
        base.weight.data = torch.randn(out_f, in_f, generator=g, dtype=torch.float64)
        layers[f"l{i}"] = SRLoRALinear(base, r=4, alpha=8, r_target=16)
    params = [p for l in layers.values() for p in (l.A, l.B)]
    opt = torch.optim.Adam(params, lr=1e-2)
    for l in layers.values():  # a trained-looking state: moved factors, EMAs, moments (the last layer has none yet)
        with torch.no_grad():
            l.A.add_(0.1 * torch.randn(l.A.shape, generator=g, dtype=torch.float64))
            l.B.add_(0.1 * torch.randn(l.B.shape, generator=g, dtype=torch.float64))
            for n in ("ema_IA", "ema_UA", "ema_IB", "ema_UB"):
                getattr(l, n).copy_(torch.rand(getattr(l, n).shape, generator=g))
            l.age.fill_(5)
    for p in params[:-2]:
        opt.state[p] = {"step": torch.tensor(3.0), "exp_avg": torch.randn(p.shape, generator=g, dtype=torch.float64),
                        "exp_avg_sq": torch.rand(p.shape, generator=g, dtype=torch.float64)}
    return layers, opt


def expected(l, slots, opt):
    """The spec per layer: fuse s·B[:,K]A[K], reinitialise on directions p, p+1, … and subtract them, zero the rest."""
    K = torch.tensor(slots)
    J = torch.arange(l.p, l.p + len(slots))
    scale = torch.sqrt(l.S[J] / l.s)
    b, a = l.U[:, J] * scale, (l.V[:, J] * scale).T
    W = l.W + l.s * l.B[:, K] @ l.A[K] - l.s * b @ a
    A, B = l.A.detach().clone(), l.B.detach().clone()
    A[K], B[:, K] = a, b
    ema = {n: getattr(l, n).clone() for n in ("ema_IA", "ema_UA", "ema_IB", "ema_UB")}
    for n in ("ema_IA", "ema_UA"):
        ema[n][K] = 0
    for n in ("ema_IB", "ema_UB"):
        ema[n][:, K] = 0
    moments = {}
    for p, axis in ((l.A, 0), (l.B, 1)):
        for key in ("exp_avg", "exp_avg_sq"):
            if key in opt.state.get(p, {}):
                t = opt.state[p][key].clone()
                t.index_fill_(axis, K, 0)
                moments[(id(p), key)] = t
    dirs = l.directions.clone()
    dirs[K] = J
    age = l.age.clone()
    age[K] = 0
    return {"W": W, "A": A, "B": B, "ema": ema, "moments": moments, "dirs": dirs, "age": age, "p": l.p + len(slots),
            "old": [l.dir_host[k] for k in slots]}


def check(l, e, opt, res):
    assert torch.allclose(l.W, e["W"], rtol=0, atol=1e-12)
    assert torch.allclose(l.A, e["A"], rtol=0, atol=1e-14) and torch.allclose(l.B, e["B"], rtol=0, atol=1e-14)
    for n, t in e["ema"].items():
        assert torch.equal(getattr(l, n), t), n
    for p in (l.A, l.B):
        for key in ("exp_avg", "exp_avg_sq"):
            if (id(p), key) in e["moments"]:
                assert torch.equal(opt.state[p][key], e["moments"][(id(p), key)])
    assert torch.equal(l.directions, e["dirs"]) and l.dir_host == e["dirs"].tolist()
    assert torch.equal(l.age, e["age"]) and l.p == e["p"] and res["old"] == e["old"]
    assert res["norms"][1].item() < 1e-13  # preservation error, float64 layers


def test_batched_recomposition_is_the_per_layer_formula():
    # three layers of one shape (different selections, one with none), one of another shape
    layers, opt = layers_and_optimizer([(12, 10), (12, 10), (12, 10), (9, 14)])
    selections = [("l0", [3, 0]), ("l1", []), ("l2", [1, 2, 3]), ("l3", [2])]
    want = {n: expected(layers[n], s, opt) for n, s in selections if s}
    before = {n: layers[n].W.clone() for n, s in selections if not s}
    chunks = rc.plan(layers, selections)
    assert [ns for ns, _ in chunks] == [["l0", "l2"], ["l3"]]  # same-shape layers together; none for no slots
    for ns, sl in chunks:
        for n, res in zip(ns, rc.recompose_group([layers[n] for n in ns], sl, optimizer=opt)):
            check(layers[n], want[n], opt, res)
    assert torch.equal(layers["l1"].W, before["l1"])


def test_chunks_bound_memory_and_give_the_same_result(monkeypatch):
    shapes = [(12, 10)] * 5
    a, opt_a = layers_and_optimizer(shapes, seed=1)
    b, opt_b = layers_and_optimizer(shapes, seed=1)
    sel = [(f"l{i}", [i % 4]) for i in range(5)]
    monkeypatch.setattr(rc, "CHUNK_BYTES", 2 * 12 * 10 * 8)  # two layers per chunk
    chunks = rc.plan(b, sel)
    assert [len(ns) for ns, _ in chunks] == [2, 2, 1]
    for ns, sl in chunks:
        rc.recompose_group([b[n] for n in ns], sl, optimizer=opt_b)
    monkeypatch.setattr(rc, "CHUNK_BYTES", 2 ** 30)
    [(ns, sl)] = rc.plan(a, sel)
    rc.recompose_group([a[n] for n in ns], sl, optimizer=opt_a)
    for n in a:
        assert torch.allclose(a[n].W, b[n].W, rtol=0, atol=1e-12) and torch.equal(a[n].A, b[n].A)


def test_controller_events_follow_the_layer_order_and_report_norms():
    layers, opt = layers_and_optimizer([(12, 10), (9, 14), (12, 10)])
    ctl = SRLoRAController(layers, opt, total_steps=100, r=4, r_target=16, min_slot_age=1)
    factors = {n: (l.A.detach().clone(), l.B.detach().clone(), l.s) for n, l in layers.items()}
    rec = ctl.recompose("forced")
    assert [e.layer for e in rec.layers] == ["l0", "l1", "l2"]
    for e in rec.layers:  # γ = 0.5 of r = 4: two pairs per layer
        A, B, s = factors[e.layer]
        assert len(e.slots) == 2 and e.new_directions == [4, 5] and e.p == 6
        assert abs(e.delta_norm - (s * B[:, e.slots] @ A[e.slots]).norm().item()) < 1e-12 and e.preservation_error < 1e-13


def test_too_few_directions_is_refused_before_anything_changes():
    """plan() checks every layer before any is recomposed: a chunk refused for l1 leaves l0, earlier in the same
    request, untouched — and l0 on its own still recomposes."""
    layers, _ = layers_and_optimizer([(12, 10), (12, 10)])
    layers["l1"].p = layers["l1"].r_target - 1  # rTarget is min(16, 10) = 10
    W = layers["l0"].W.clone()
    try:
        for ns, sl in rc.plan(layers, [("l0", [0]), ("l1", [0, 1])]):  # the controller's own loop
            rc.recompose_group([layers[n] for n in ns], sl)
        raise AssertionError("plan accepted 2 slots with 1 direction left")
    except RuntimeError as e:
        assert "l1: 2 slots but only 1 directions left" in str(e)
    assert torch.equal(layers["l0"].W, W)
    [(ns, sl)] = rc.plan(layers, [("l0", [0])])
    rc.recompose_group([layers[n] for n in ns], sl)
    assert not torch.equal(layers["l0"].W, W) and layers["l0"].p == 5


def test_norms_of_a_float32_and_a_bf16_layer_are_the_float64_measure():
    """W is updated in its own precision (≥ float32) and the norms come from Gram matrices and one float64 pass: the
    reported preservation error and ‖ΔW‖ must be what a plain float64 evaluation of the stored tensors gives."""
    for dtype in (torch.float32, torch.bfloat16):
        g = torch.Generator().manual_seed(3)
        layers = {}
        for i in range(3):
            base = nn.Linear(20, 24, bias=False)
            base.weight.data = torch.randn(24, 20, generator=g).to(dtype)
            l = SRLoRALinear(base, r=4, alpha=8, r_target=16)
            with torch.no_grad():
                l.A.add_(0.1 * torch.randn(l.A.shape, generator=g))
                l.B.add_(0.1 * torch.randn(l.B.shape, generator=g))
            layers[f"l{i}"] = l
        eff = lambda l: l.W.double() + l.s * l.B.double() @ l.A.double()  # noqa: E731
        before = {n: eff(l) for n, l in layers.items()}
        fused = {n: l.s * (l.B.double()[:, [0, 2]] @ l.A.double()[[0, 2]]).norm().item() for n, l in layers.items()}
        [(ns, sl)] = rc.plan(layers, [(n, [0, 2]) for n in layers])
        for n, res in zip(ns, rc.recompose_group([layers[n] for n in ns], sl)):
            err = ((eff(layers[n]) - before[n]).norm() / before[n].norm()).item()
            delta, got = res["norms"].tolist()
            assert abs(delta - fused[n]) <= 1e-9 * fused[n], (dtype, delta, fused[n])
            assert abs(got - err) <= 1e-6 * err + 1e-15, (dtype, got, err)
            assert err < (1e-6 if dtype == torch.float32 else 1e-2)  # the rounding of W in its dtype, nothing more


def _three_recompositions(recomposer_kw, device="cpu"):
    layers, opt = layers_and_optimizer([(12, 10), (9, 14), (12, 10), (9, 14)], seed=4)
    for l in layers.values():
        l.to(device)
    for p in list(opt.state):
        opt.state[p] = {k: v.to(device) if k != "step" else v for k, v in opt.state[p].items()}
    ctl = SRLoRAController(layers, opt, total_steps=100, r=4, r_target=16, min_slot_age=1)
    ctl._recomposer = rc.Recomposer(layers, **recomposer_kw)
    recs = [ctl.recompose("forced"), ctl.recompose("forced", ["l1", "l2"]), ctl.recompose("forced", ["l3"])]
    events = [(e.layer, e.slots, e.old_directions, e.new_directions, e.p, round(e.delta_norm, 9)) for r_ in recs for e in r_.layers]
    state = {n: [t.detach().cpu().clone() for t in (l.W, l.A, l.B, l.ema_IA, l.ema_UB, l.age, l.directions)] for n, l in layers.items()}
    moments = [v.cpu().clone() for p in opt.state for k, v in opt.state[p].items() if k != "step"]
    return events, state, moments, ctl._recomposer, [e.preservation_error for r_ in recs for e in r_.layers]


def test_every_layer_as_one_fixed_program_is_the_plan_result():
    """On CUDA every layer takes part in every recomposition (a zero slot mask for the others) so the device work is
    one fixed program, captured as a CUDA graph; here (CPU, no graph) that program against the plan's chunks."""
    ev_a, st_a, mo_a, _, err_a = _three_recompositions({})
    ev_b, st_b, mo_b, rec_b, err_b = _three_recompositions({"fixed": True})
    assert rec_b.fixed and not rec_b.capture
    assert ev_a == ev_b and [e[0] for e in ev_a] == ["l0", "l1", "l2", "l3", "l1", "l2", "l3"]
    for n in st_a:
        for x, y in zip(st_a[n], st_b[n]):
            assert torch.allclose(x, y, rtol=0, atol=1e-13)
    assert all(torch.equal(x, y) for x, y in zip(mo_a, mo_b)) and len(mo_a) == 12
    assert max(err_a + err_b) < 1e-13


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graph capture needs a CUDA GPU (run on the lent H200)")
def test_on_cuda_the_recomposition_is_replayed_from_one_graph_with_the_eager_result():
    logs = []
    ev_a, st_a, mo_a, _, _ = _three_recompositions({"capture": False, "fixed": True}, "cuda")
    ev_b, st_b, mo_b, rec_b, err_b = _three_recompositions({"log": logs.append}, "cuda")
    assert rec_b.captures == 1 and rec_b.graph is not None, logs  # the first ran eagerly, the second captured
    assert ev_a == ev_b
    for n in st_a:
        for x, y in zip(st_a[n], st_b[n]):
            assert torch.allclose(x, y, rtol=0, atol=1e-12)
    assert all(torch.allclose(x, y, rtol=0, atol=1e-12) for x, y in zip(mo_a, mo_b)) and max(err_b) < 1e-13
