"""PEFT habits the PyTorch trainer keeps (issue 14): target_modules read as PEFT reads it, layers that cannot take an
adapter refused before training with the reason, float32 factors on a half-precision base, fp16 with a GradScaler,
and our `lora` equal to peft's LoRA on the same weights."""
import copy

import pytest
import torch
from torch import nn

from srlora_torch.controller import SRLoRAController, apply_srlora
from srlora_torch.layer import SRLoRALinear
from srlora_torch.targets import default_targets, select_targets

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, 8)
        self.blocks = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8))  # named blocks.0, blocks.1

    def forward(self, x):
        return self.blocks(self.fc1(x))


def test_a_string_target_is_one_regex_over_the_whole_name_and_a_list_matches_names_or_dotted_suffixes():
    # before: "fc1" was read character by character, and "1" adapted blocks.1
    assert list(apply_srlora(Net(), "fc1", r=2, alpha=4, method="lora")) == ["fc1"]
    assert list(apply_srlora(Net(), r"blocks\.\d", r=2, alpha=4, method="lora")) == ["blocks.0", "blocks.1"]
    assert list(apply_srlora(Net(), ["1"], r=2, alpha=4, method="lora")) == ["blocks.1"]  # a dotted suffix
    with pytest.raises(ValueError, match=r"match no layer of the model \(its nn.Linear layers: fc1, blocks.0, blocks.1\)"):
        apply_srlora(Net(), ["locks.1"], r=2, alpha=4)  # not a partial name
    with pytest.raises(ValueError, match="match no layer"):
        apply_srlora(Net(), "fc", r=2, alpha=4)  # fullmatch, not search
    with pytest.raises(ValueError, match="is not a regular expression"):
        apply_srlora(Net(), "fc1(", r=2, alpha=4)


def test_a_whole_block_matched_is_refused_naming_it():
    with pytest.raises(ValueError, match=r"blocks: a Sequential, not an nn.Linear.*whole block"):
        apply_srlora(Net(), ["blocks"], r=2, alpha=4)


class WithMHA(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.attn(x, x, x)[0].mean(1))


def test_multihead_attention_out_proj_is_refused_before_training_with_the_reason():
    model = WithMHA()
    before = copy.deepcopy(model.state_dict())
    # before: it passed setup (out_proj is an nn.Linear subclass) and every forward pass then failed
    with pytest.raises(ValueError, match=r"attn.out_proj: nn.MultiheadAttention reads out_proj.weight itself and never calls"):
        apply_srlora(model, ["out_proj", "head"], r=2, alpha=4)
    assert isinstance(model.attn.out_proj, nn.Linear) and all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(p.requires_grad for p in model.parameters())  # nothing changed, nothing frozen
    assert default_targets(model) == ["head"]


def test_gpt2_conv1d_is_refused_with_the_reason():
    cfg = transformers.GPT2Config(vocab_size=50, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    model = transformers.GPT2LMHeadModel(cfg)
    with pytest.raises(ValueError, match=r"transformer.h.0.attn.c_attn: transformers' Conv1D \(GPT-2 style\) stores its weight as \(in, out\)"):
        apply_srlora(model, ["c_attn"], r=2, alpha=4)


def test_tied_weights_are_refused_never_silently_untied():
    cfg = transformers.GPT2Config(vocab_size=50, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    model = transformers.GPT2LMHeadModel(cfg)
    assert model.lm_head.weight is model.transformer.wte.weight
    with pytest.raises(ValueError, match=r"lm_head: its weight is shared with transformer.wte.weight \(tied weights\)"):
        apply_srlora(model, ["lm_head"], r=2, alpha=4)
    assert model.lm_head.weight is model.transformer.wte.weight
    # shared between two linear layers of our own
    net = Net()
    net.blocks[1].weight = net.blocks[0].weight
    with pytest.raises(ValueError, match=r"blocks.0: its weight is shared with blocks.1.weight"):
        select_targets(net, ["blocks.0"])


def test_default_targets_are_the_attention_and_ffn_projections_of_a_bert_model():
    cfg = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, num_labels=3)
    model = transformers.BertForSequenceClassification(cfg)
    t = default_targets(model, exclude=["classifier"])
    assert t == ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense", "intermediate.dense", "output.dense"]
    picked = select_targets(model, t)
    assert len(picked) == 12 and not [n for n in picked if "pooler" in n or "classifier" in n]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_half_precision_base_keeps_float32_factors_optimiser_state_and_emas(dtype):
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(16, 16), nn.Linear(16, 4)).to(dtype)
    layers = apply_srlora(base, ["0", "1"], r=2, alpha=4, r_target=4)
    opt = torch.optim.Adam([p for l in layers.values() for p in (l.A, l.B)], lr=2e-5)
    ctl = SRLoRAController(layers, opt, 10, 2, 4)
    x = torch.randn(8, 16, dtype=dtype)
    for _ in range(2):
        loss = base(x).float().pow(2).mean()
        opt.zero_grad()
        loss.backward()
        ctl.after_backward()
        opt.step()
        ctl.after_step()
    for l in layers.values():
        assert l.W.dtype == dtype and l.A.dtype == torch.float32 and l.B.dtype == torch.float32  # before: the base dtype
        assert l.A.grad.dtype == torch.float32 and l.ema_IA.dtype == torch.float32 and l.ema_UB.dtype == torch.float32
        assert opt.state[l.A]["exp_avg"].dtype == torch.float32 and opt.state[l.B]["exp_avg_sq"].dtype == torch.float32
        assert l.effective_weight().dtype == dtype
    # a step of lr 2e-5 is seen in float32 factors (a bf16 factor near 1 cannot move by less than 2^-8)
    assert all((l.A.detach() != l.A.detach().to(dtype).float()).any() for l in layers.values())
    assert base(x).dtype == dtype


def test_fp16_with_a_grad_scaler_takes_importance_from_unscaled_gradients_and_skips_overflow_steps():
    torch.manual_seed(0)
    make = lambda: nn.Sequential(nn.Linear(16, 16), nn.Linear(16, 4)).half()  # noqa: E731
    base = make()
    ref = copy.deepcopy(base)
    x = torch.randn(8, 16).half()
    layers = apply_srlora(base, ["0", "1"], r=2, alpha=4, r_target=4)
    opt = torch.optim.SGD([p for l in layers.values() for p in (l.A, l.B)], lr=1e-3)
    # 1000 steps: no scheduled recomposition among the first steps (an overflow step still ages the slots, as the
    # steering vectors pin down, so a recomposition at step 3 would move A for its own reasons)
    ctl = SRLoRAController(layers, opt, 1000, 2, 4)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 60)  # the first steps overflow fp16
    A0 = {n: l.A.detach().clone() for n, l in layers.items()}
    skipped = 0
    while True:
        loss = base(x).float().pow(2).mean()
        opt.zero_grad()
        scaler.scale(loss).backward()  # before: "Attempting to unscale FP16 gradients"
        scaler.unscale_(opt)
        finite = all(torch.isfinite(l.A.grad).all() and torch.isfinite(l.B.grad).all() for l in layers.values() if l.A.grad is not None)
        ctl.after_backward()
        scaler.step(opt)
        scaler.update()
        ctl.after_step()
        if finite:
            break
        skipped += 1
        # an overflow step changes nothing: no update, no importance
        assert all(torch.equal(l.A.detach(), A0[n]) and float(l.ema_IA.abs().sum()) == 0 for n, l in layers.items())
    assert skipped >= 1
    # the first finite step's importance is |w · g| of the UNSCALED gradient: the same as without a scaler
    ref_layers = apply_srlora(ref, ["0", "1"], r=2, alpha=4, r_target=4)
    ref_ctl = SRLoRAController(ref_layers, None, 10, 2, 4)
    ref(x).float().pow(2).mean().backward()
    ref_ctl.after_backward()
    for n, l in layers.items():
        torch.testing.assert_close(l.ema_IA, ref_layers[n].ema_IA, rtol=2e-2, atol=1e-6)


def test_our_lora_is_peft_lora_on_the_same_weights():
    torch.manual_seed(0)
    base = nn.Sequential()
    base.add_module("lin", nn.Linear(24, 16))
    ours_model, peft_base = copy.deepcopy(base), copy.deepcopy(base)
    [layer] = apply_srlora(ours_model, ["lin"], r=4, alpha=8, method="lora", seed=3).values()
    pm = peft.get_peft_model(peft_base, peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["lin"]))
    lora = pm.base_model.model.lin
    # our init is PEFT's distribution: A ~ kaiming_uniform(a=√5) = U(±1/√in), B = 0
    assert float(layer.A.abs().max()) <= 1 / 24 ** 0.5 and float(layer.B.abs().max()) == 0
    with torch.no_grad():
        layer.B.copy_(torch.randn_like(layer.B))  # a trained B, so that both factors get gradients
        lora.lora_A["default"].weight.copy_(layer.A)
        lora.lora_B["default"].weight.copy_(layer.B)
    assert lora.scaling["default"] == layer.s
    x = torch.randn(5, 24)
    y_ours, y_peft = ours_model(x), pm(x)
    torch.testing.assert_close(y_ours, y_peft, rtol=1e-6, atol=1e-6)
    (y_ours ** 2).sum().backward()
    (y_peft ** 2).sum().backward()
    torch.testing.assert_close(layer.A.grad, lora.lora_A["default"].weight.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(layer.B.grad, lora.lora_B["default"].weight.grad, rtol=1e-5, atol=1e-6)
    # the same parameters train: only the factors
    assert sorted(n for n, p in ours_model.named_parameters() if p.requires_grad) == ["lin.A", "lin.B"]
    assert isinstance(layer, SRLoRALinear)


def test_under_autocast_the_adapter_reads_its_input_as_it_is_with_the_same_result_bit_for_bit():
    """A bfloat16 input under autocast (attention.output.dense's and output.dense's in a transformer: the outputs of
    attention and GELU) went through x.to(float32) before the adapter's first matmul — a float32 copy of the layer's
    input that autocast then cast back, exactly. The adapter now reads x as it is; outputs and gradients are
    unchanged bit for bit (the round trip bfloat16 → float32 → bfloat16 is exact)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    torch.manual_seed(0)
    layer = apply_srlora(nn.Sequential(nn.Linear(48, 24)), ["0"], r=4, alpha=8)["0"]
    with torch.no_grad():
        layer.B.normal_()  # a non-zero adapter path
    x = torch.randn(6, 48).to(torch.bfloat16).requires_grad_()

    class Float32Copies(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.seen = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == x.shape:
                self.seen.append(str(func))
            return out

    with torch.autocast("cpu", dtype=torch.bfloat16), Float32Copies() as mode:
        y = layer(x)
    assert mode.seen == [], f"a float32 copy of the input was made: {mode.seen}"
    y.float().sum().backward()
    got = (y.detach().clone(), x.grad.clone(), layer.A.grad.clone(), layer.B.grad.clone())

    x.grad, layer.A.grad, layer.B.grad = None, None, None
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the formula before: the input cast to the factors' dtype
        y0 = nn.functional.linear(x, layer.W, layer.bias)
        y0 = y0 + (layer.s * nn.functional.linear(nn.functional.linear(x.to(torch.float32), layer.A), layer.B)).to(y0.dtype)
    y0.float().sum().backward()
    for a, b in zip(got, (y0.detach(), x.grad, layer.A.grad, layer.B.grad)):
        assert a.dtype == b.dtype and torch.equal(a, b)
