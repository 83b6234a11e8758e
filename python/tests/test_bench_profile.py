"""bench.profiled_kernels is the one profiler loop (review, session 8: main()'s kernel_ms had its own copy beside it,
summing, filtering and counting launches in its own way). Held to its figures with a stand-in profiler, on the CPU:
ms and launches per call of the kernels that took device time only, the attention kernels among them, the top ones."""
from types import SimpleNamespace

import torch.profiler

from srlora_torch import bench


class FakeProfile:
    """torch.profiler.profile's shape: a context manager whose key_averages() lists events (times in µs, in all)."""
    events = [SimpleNamespace(key="ampere_bf16_gemm", self_device_time_total=3000, count=20),
              SimpleNamespace(key="pytorch_flash::flash_fwd_kernel", self_device_time_total=1000, count=10),
              SimpleNamespace(key="aten::linear", self_device_time_total=0, count=40)]  # host-side op: no device time

    def __init__(self, activities):
        self.activities = activities

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def key_averages(self):
        return self.events


def test_profiled_kernels_gives_per_call_figures_of_the_kernels_that_ran(monkeypatch):
    monkeypatch.setattr(torch.profiler, "profile", FakeProfile)
    monkeypatch.setattr(bench, "DEV", "cpu")  # (its sync() is then none)
    calls = []
    got = bench.profiled_kernels(lambda: calls.append(1), n=10, top=1, warmup=2)
    assert len(calls) == 12  # 2 unprofiled, then 10 profiled
    assert got["kernelMsPerStep"] == 0.4 and got["launchesPerCall"] == 3
    assert got["top"] == [["ampere_bf16_gemm", 0.3, 2]]
    assert got["attention"] == {"pytorch_flash::flash_fwd_kernel": [0.1, 1]}
    assert sum(got["byKindMs"].values()) == 0.4

