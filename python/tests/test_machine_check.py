"""Config values only the machine can judge (session 7, pyfaults.1): `device: "cuda"` on a machine without CUDA printed
a Python traceback and left a run folder holding only config.json. Now every such value — a device that is not here
(cuda without a GPU, cuda:N past the GPU count, mps off macOS), bf16 on a GPU without bfloat16 — is refused before the
run folder is made, in one line naming the field and what this machine has; `train --check` (what srlora serve asks
up front) says the same. The GPU cases are judged against a pretend machine (torch.cuda's answers patched): the
check reads nothing else."""
import json
import os
import sys

import pytest
import torch

from srlora_torch import train


def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


def gpus(monkeypatch, n, bf16=True, name="Tesla T4", capability=None):
    capability = capability or ((8, 0) if bf16 else (7, 5))  # what the GPU answers is_bf16_supported from
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: name)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=0: capability[i] if isinstance(capability, dict) else capability)
    import torch.utils._triton as triton
    monkeypatch.setattr(triton, "has_triton", lambda: True)  # what compile "auto" on CUDA needs (its own test below)


def refused(argv, tmp_path, monkeypatch) -> str:
    """train.main(argv) exits with one line (no traceback) and leaves no run folder; returns the line."""
    monkeypatch.delenv("SRLORA_RUN_DIR", raising=False)
    monkeypatch.delenv("SRLORA_HUB_URL", raising=False)
    runs = tmp_path / "runs"
    with pytest.raises(SystemExit) as e:
        train.main([*argv, "--runs-dir", str(runs), "--no-progress"])
    assert isinstance(e.value.code, str) and "\n" not in e.value.code, e.value.code
    assert not runs.exists() or os.listdir(runs) == [], os.listdir(runs)
    return e.value.code


def config(tmp_path, **fields) -> str:
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"steps": 2, **fields}))
    return str(f)


def test_device_cuda_without_a_gpu_is_one_line_naming_the_field_and_no_run_folder(tmp_path, monkeypatch):
    no_gpu(monkeypatch)
    cfg = config(tmp_path, device="cuda")
    line = refused(["--config", cfg], tmp_path, monkeypatch)
    assert line.startswith(f'{cfg}: device "cuda": ') and "CUDA" in line and '"cpu"' in line, line
    assert refused(["--check", "--config", cfg], tmp_path, monkeypatch) == line  # what srlora serve asks up front
    flag = refused(["--device", "cuda"], tmp_path, monkeypatch)  # from the flag: named as typed
    assert flag.startswith("--device cuda: "), flag


def test_a_gpu_number_past_the_count_names_the_gpus_this_machine_has(tmp_path, monkeypatch):
    gpus(monkeypatch, 2)
    cfg = config(tmp_path, device="cuda:2")
    line = refused(["--check", "--config", cfg], tmp_path, monkeypatch)
    assert line == f'{cfg}: device "cuda:2": this machine has 2 CUDA GPUs (cuda:0, cuda:1): there is no cuda:2', line
    assert train.main(["--check", "--config", config(tmp_path, device="cuda:1")]) == 0


def test_bf16_on_a_gpu_without_bfloat16_names_the_field_and_the_gpu(tmp_path, monkeypatch):
    gpus(monkeypatch, 1, bf16=False)
    for device in ("cuda", "auto", "cuda:0"):
        cfg = config(tmp_path, device=device, bf16=True)
        line = refused(["--check", "--config", cfg], tmp_path, monkeypatch)
        assert line.startswith(f"{cfg}: bf16 true: the GPU Tesla T4 (compute capability 7.5)") and "bf16 false" in line, line
    assert train.main(["--check", "--config", config(tmp_path, device="cpu", bf16=True)]) == 0  # CPU autocast has bfloat16
    assert train.main(["--check", "--config", config(tmp_path, device="cuda", bf16=False)]) == 0


def test_mps_off_macos_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    cfg = config(tmp_path, device="mps")
    line = refused(["--check", "--config", cfg], tmp_path, monkeypatch)
    assert line.startswith(f'{cfg}: device "mps": MPS') and "only on macOS" in line and "linux" in line, line


def test_a_resume_on_a_machine_without_the_runs_device_is_refused_before_it_loads_anything(tmp_path, monkeypatch):
    """A run made with device cpu, continued with --device cuda here: the same line, before any model is built."""
    monkeypatch.delenv("SRLORA_RUN_DIR", raising=False)
    monkeypatch.delenv("SRLORA_HUB_URL", raising=False)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"steps": 4, "device": "cuda"}))
    no_gpu(monkeypatch)
    monkeypatch.setattr(train, "build_run", lambda *a, **k: pytest.fail("built a model for a device that is not here"))
    with pytest.raises(SystemExit) as e:
        train.main(["--resume", str(run)])
    assert str(e.value.code).startswith(f'{run / "config.json"}: device "cuda": '), e.value.code


def test_one_gpu_named_for_several_processes_is_refused_for_data_parallel(tmp_path, monkeypatch):
    """cuda:N under torchrun put every rank on that one GPU (NCCL's "duplicate GPU" error mid-start)."""
    gpus(monkeypatch, 2)
    cfg = config(tmp_path, device="cuda:1", task={"kind": "transformer", "preset": "tiny"})
    assert train.main(["--check", "--config", cfg]) == 0  # one process: that GPU
    line = refused(["--check", "--config", cfg, "--world-size", "2"], tmp_path, monkeypatch)
    assert line.startswith(f'{cfg}: device "cuda:1" names one GPU for 2 processes') and '"cuda"' in line, line


def test_the_hello_names_the_device_the_run_trains_on():
    """An MPS run's hello said "CPU" (every device but CUDA was labelled so)."""
    from srlora_torch.session import device_label
    assert device_label(torch.device("mps")) == "MPS"
    assert device_label(torch.device("cpu")) == "CPU"


def test_bf16_is_judged_on_the_runs_gpu_not_the_current_one(tmp_path, monkeypatch):
    """A machine of mixed GPUs: the current one (cuda:0) has bfloat16, cuda:1 has not. torch.cuda.is_bf16_supported
    answers for the current GPU, so cuda:1 with bf16 was accepted (a review's finding): refused now, naming cuda:1."""
    gpus(monkeypatch, 2, bf16=True, capability={0: (9, 0), 1: (7, 5)})
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"steps": 2, "bf16": True, "task": {"kind": "matrix"}}))
    line = refused(["--config", str(cfg), "--device", "cuda:1", "--check"], tmp_path, monkeypatch)
    assert "compute capability 7.5" in line and "bf16" in line, line


def no_compiler_on_path(tmp_path, monkeypatch):
    """A machine with no C++ compiler: PATH holds only an empty folder, no CXX (inductor's CPU kernels cannot build)."""
    empty = tmp_path / "bin"
    empty.mkdir(exist_ok=True)
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.delenv("SRLORA_COMPILE_BACKEND", raising=False)


def test_compile_max_on_a_cpu_without_a_cpp_compiler_is_refused_up_front_naming_the_field(tmp_path, monkeypatch):
    # Before: the run folder was made, the model loaded, and the first step died in inductor's compiler traceback.
    no_gpu(monkeypatch)
    no_compiler_on_path(tmp_path, monkeypatch)
    cfg = config(tmp_path, device="cpu", compile="max")
    line = refused(["--config", cfg], tmp_path, monkeypatch)
    assert line == (f'{cfg}: compile "max": torch.compile builds its CPU kernels with a C++ compiler and there is none here '
                    '(g++ is not on PATH; install it or set CXX) (use compile "off" or "auto")'), line
    assert refused(["--check", "--config", cfg], tmp_path, monkeypatch) == line  # what srlora serve asks up front
    monkeypatch.setenv("CXX", "clang-99")  # the compiler the user named is the one looked for
    assert "(clang-99 is not on PATH;" in refused(["--config", cfg], tmp_path, monkeypatch)


def test_compile_that_needs_no_compiler_here_is_not_refused(tmp_path, monkeypatch):
    no_gpu(monkeypatch)
    no_compiler_on_path(tmp_path, monkeypatch)
    for mode in ("auto", "off"):  # the CPU runs the eager step for both
        assert train.machine_problem({"device": "cpu", "compile": mode}) is None
    monkeypatch.setenv("SRLORA_COMPILE_BACKEND", "aot_eager")  # builds no kernels
    assert train.machine_problem({"device": "cpu", "compile": "max"}) is None
    monkeypatch.delenv("SRLORA_COMPILE_BACKEND")
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    monkeypatch.setenv("CXX", os.path.basename(sys.executable))  # any program found on PATH stands for the compiler
    assert train.machine_problem({"device": "cpu", "compile": "max"}) is None


def test_compile_on_a_gpu_without_triton_is_refused_for_max_and_auto(tmp_path, monkeypatch):
    import torch.utils._triton as triton
    gpus(monkeypatch, 1)
    monkeypatch.setattr(triton, "has_triton", lambda: False)
    monkeypatch.delenv("SRLORA_COMPILE_BACKEND", raising=False)
    for mode in ("max", "auto"):  # auto compiles on CUDA
        line = train.machine_problem({"device": "cuda", "compile": mode}, "c.json")
        assert line is not None and line.startswith(f'c.json: compile "{mode}": torch.compile builds its GPU kernels with Triton'), line
    assert train.machine_problem({"device": "cuda", "compile": "off"}, "c.json") is None
    monkeypatch.setattr(triton, "has_triton", lambda: True)
    assert train.machine_problem({"device": "cuda", "compile": "max"}, "c.json") is None


def test_a_machine_refusal_names_the_flag_that_gave_the_value(tmp_path, monkeypatch, capsys):
    """fresh8 F9: `--compile max` on a machine without a C++ compiler was blamed on the config file
    (`c.json: compile "max": …`); only --device was told from its flag. Every field the machine judges (device,
    compile, bf16) names what the user typed."""
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"steps": 2, "device": "cpu"}))
    monkeypatch.setenv("PATH", str(tmp_path))  # no g++ here
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.delenv("SRLORA_COMPILE_BACKEND", raising=False)
    with pytest.raises(SystemExit) as e:
        train.main(["--config", str(cfg), "--compile", "max", "--runs-dir", str(tmp_path / "runs"), "--no-progress"])
    line = str(e.value.code)
    assert line.startswith("--compile max: torch.compile builds its CPU kernels with a C++ compiler"), line
    assert not (tmp_path / "runs").exists()
    cfg.write_text(json.dumps({"steps": 2, "device": "cpu", "compile": "max"}))
    with pytest.raises(SystemExit) as e:
        train.main(["--config", str(cfg), "--runs-dir", str(tmp_path / "runs"), "--no-progress"])
    assert str(e.value.code).startswith(f'{cfg}: compile "max": torch.compile builds'), e.value.code
