"""Profiles one training step of PEFT LoRA and of SRLoRA on the GPU (torch.profiler): where the extra time goes."""
import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from srlora_torch.bench import R, TARGETS, batch, roberta
from srlora_torch.controller import SRLoRAController, apply_srlora


def run(model, opt, gen, before=None, after=None, n=10):
    for _ in range(n):
        x, y = batch(gen)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = nn.functional.cross_entropy(model(input_ids=x).logits.float(), y)
        loss.backward()
        if before:
            before()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if after:
            after()
    torch.cuda.synchronize()


def main():
    import peft
    gen = torch.Generator().manual_seed(0)
    pm = peft.get_peft_model(roberta(0), peft.LoraConfig(r=R, lora_alpha=2 * R, target_modules=TARGETS, lora_dropout=0.0)).cuda()
    popt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=1e-4)
    m = roberta(0).cuda()
    layers = apply_srlora(m, TARGETS, r=R, alpha=2 * R, r_target=4 * R)
    opt = torch.optim.AdamW([p for l in layers.values() for p in (l.A, l.B)], lr=1e-4)
    ctl = SRLoRAController(layers, opt, total_steps=10 ** 6, r=R, r_target=4 * R, min_slot_age=1)
    for name, args in (("peft", (pm, popt, gen)), ("srlora", (m, opt, gen, ctl.after_backward, ctl.after_step))):
        run(*args)
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            run(*args)
        print(f"===== {name}: 10 steps")
        print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=12, max_name_column_width=50))
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8, max_name_column_width=50))


main()
