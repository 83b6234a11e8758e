"""Lockstep.broadcast_module hands the collective only contiguous tensors, as NCCL requires ('Tensors must be
contiguous'); gloo accepts strided ones, so the CPU DDP tests could not see the failure the 2xH200 bench hit."""
import torch

from srlora_torch.distributed import Lockstep


class NcclLikeDist:
    """Stands in for torch.distributed: refuses a strided tensor like ProcessGroupNCCL, and 'receives' rank 0's
    values by writing a known pattern into what it is given."""

    def __init__(self):
        self.calls = 0

    def broadcast(self, t, src):
        assert src == 0
        if not t.is_contiguous():
            raise ValueError("Tensors must be contiguous")
        self.calls += 1
        t.copy_(torch.arange(t.numel(), dtype=t.dtype).reshape(t.shape))


def test_broadcast_module_copies_strided_parameters_back():
    m = torch.nn.Module()
    m.w = torch.nn.Parameter(torch.zeros(3, 4).t())  # a transposed view: strided, like an SVD factor's .T
    m.register_buffer("b", torch.zeros(2, 6)[:, ::2])  # a strided buffer
    assert not m.w.is_contiguous() and not m.b.is_contiguous()
    ls = Lockstep(rank=1, world=2)
    ls.dist = NcclLikeDist()
    ls.broadcast_module(m)
    assert ls.dist.calls == 2
    assert torch.equal(m.w.data, torch.arange(12.).reshape(4, 3))  # received values reached the parameter itself
    assert torch.equal(m.b, torch.arange(6.).reshape(2, 3))
