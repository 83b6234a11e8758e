"""Profiles one training step of PEFT LoRA and of SRLoRA on the GPU (torch.profiler): where the extra time goes."""
import torch
from torch.profiler import ProfilerActivity, profile

from srlora_torch.bench import R, TARGETS, roberta, timed_steps
from srlora_torch.controller import SRLoRAController, apply_srlora


def main():
    import peft
    gen = torch.Generator().manual_seed(0)
    pm = peft.get_peft_model(roberta(0), peft.LoraConfig(r=R, lora_alpha=2 * R, target_modules=TARGETS, lora_dropout=0.0)).cuda()
    popt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=1e-4)
    m = roberta(0).cuda()
    layers = apply_srlora(m, TARGETS, r=R, alpha=2 * R, r_target=4 * R)
    opt = torch.optim.AdamW([p for l in layers.values() for p in (l.A, l.B)], lr=1e-4)
    ctl = SRLoRAController(layers, opt, total_steps=10 ** 6, r=R, r_target=4 * R, min_slot_age=1)
    for name, args in (("peft", (pm, popt, gen, 10)), ("srlora", (m, opt, gen, 10, ctl.after_backward, lambda loss: ctl.after_step()))):
        timed_steps(*args)  # the bench's own step, warmed up
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            timed_steps(*args, warmup=0)
        print(f"===== {name}: 10 steps")
        print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=12, max_name_column_width=50))
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8, max_name_column_width=50))


main()
