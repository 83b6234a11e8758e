"""python -m srlora_torch.train [--config FILE] [--steps N] [--runs-dir DIR] [--device auto|cpu|cuda] | --resume RUN_DIR
torchrun --nproc_per_node=N -m srlora_torch.train …   (data-parallel: DDP over the adapted model, steered in lockstep)

A steerable SRLoRA run the extension can launch through `srlora.trainer.command` (env contract of docs/protocol.md:
SRLORA_HUB_URL, SRLORA_TOKEN, SRLORA_RUN_DIR), with the built-in trainer's config fields and defaults. Tasks
(tasks.py): `matrix` (the matrix regression of the conformance vectors), `transformer` (sequence classification on an
encoder built from a config: `tiny` for CPU, `roberta-base` shapes for a GPU; no downloads), and the built-in
trainer's `digits` and `tabular`.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import re
import shutil
import sys
import time
from types import SimpleNamespace
from typing import Callable, Dict, Optional

import torch

from .compiled import MODES, CompiledStep, resolve_mode
from .controller import SRLoRAController
from .checkpoint import CHECKPOINTS, newest_verified, verified_checkpoints
from .client import EventRecorder, LogFacts, read_facts
from .export import export_run
from .runconfig import (ConfigError, check_files, config_error_message, config_flags, flag_value, parse_file,
                        unknown_flag, with_overrides)
from .runconfig import validate as validate_config
from .distributed import Lockstep, end_refused_start, refuse_sharding, world_from_env
from .session import Session, device_label, log, remove_own_pid_file, run_id_of, write_own_pid_file
from .ownership import resume_refusal
from .optim import SlotAdam
from .progress import ProgressLine, cli_launch, continue_command, dashboard_command, launch_facts, summary
from .tasks import base_weights, build_model, restore
from .texttask import resolve_paths

# One source for the run config's fields and defaults, shared with the built-in trainer: the schema generated from
# src/trainer/config (npm run gen:schema writes this copy; a test keeps it equal). Then this trainer's own fields.
_SCHEMA = json.load(open(os.path.join(os.path.dirname(__file__), "run-config.schema.json"), encoding="utf-8"))
IGNORED = {"$schema", "backend"}  # built-in-trainer fields that do not apply here
DEFAULTS = {**{k: v.get("default") for k, v in _SCHEMA["properties"].items() if k not in IGNORED}, "device": "auto", "bf16": False}
OPTIONAL = {k for k, v in _SCHEMA["properties"].items() if "default" not in v}  # name, targets, …: None when absent
TASKS = ("transformer", "matrix", "digits", "tabular", "text")


def load_config(path: Optional[str], overrides: Dict[str, object], flagged: Optional[list] = None,
                typed: Optional[Dict[str, str]] = None) -> dict:
    """The run config of `path` (JSONC) with `overrides` (field -> value; None: not given) and `flagged` (the
    command line's config-field flags: [(JSON pointer, value)], set in order; `typed`: pointer -> the flag as typed) over
    it and every default, validated before any work against the generated schema (runconfig.py): a bad one exits with
    one line naming the flag the user typed for a value a flag gave (--steps), else the file and the field."""
    source = path or "config"
    user = parse_file(path) if path else {}
    flagged = [(f"/{k}", v) for k, v in overrides.items() if v is not None] + list(flagged or [])
    typed = {**{f"/{k}": f"--{k}" for k, v in overrides.items() if v is not None}, **(typed or {})}
    if isinstance(user, dict):
        # a run folder's config.json holds null for an optional field it did not set (name, targets): not set
        user = with_overrides({k: v for k, v in user.items() if v is not None or k not in OPTIONAL}, flagged)
    try:
        checked = validate_config(user, source)
    except ConfigError as e:  # name what the user typed: the flag for a value a flag gave (--steps), else FILE: /pointer
        if e.errors is None or not typed:
            raise
        raise ConfigError(config_error_message(e.source, e.errors, typed), e.source, e.errors) from None
    cfg = {**DEFAULTS, **{k: v for k, v in checked.items() if k not in IGNORED}}  # optional fields: None
    if cfg["task"]["kind"] in ("digits", "tabular"):  # the built-in trainer's tasks, with its defaults and paths
        cfg["task"] = {"transform": "rot90", **cfg["task"]} if cfg["task"]["kind"] == "digits" else {"labelColumn": "label", **cfg["task"]}
        cfg["model"] = {"kind": "vit", **(cfg["model"] or {})}
        at = os.path.dirname(os.path.abspath(path)) if path else os.getcwd()  # relative to the config file
        for obj, key in ((cfg["model"], "weights"), (cfg["task"], "train"), (cfg["task"], "eval")):
            if obj.get(key):
                obj[key] = os.path.join(at, obj[key])
    resolve_paths(cfg, os.path.dirname(os.path.abspath(path)) if path else os.getcwd())  # text task, huggingface model
    check_files(cfg, source)
    return cfg


def data_parallel_problem(cfg: dict, world: int, source: str = "config", local_world: Optional[int] = None) -> Optional[str]:
    """Why this config cannot run data-parallel on `world` processes (`local_world` of them on this host, default
    world), or None (also for world 1). What it checks: the task has data to split across the ranks (not `matrix`), the
    frozen weights are not sharded (distributed.refuse_sharding), and a CUDA device has a GPU per local rank (and is not
    one GPU named for them all, cuda:N).
    train.py asks it before it creates a run folder (also for --check --world-size N, what srlora serve --gpus N asks)."""
    if world <= 1:
        return None
    if cfg["task"]["kind"] == "matrix":
        return (f"{source}: task.kind \"matrix\" cannot run data-parallel on {world} processes: it has no data to split "
                f"across them (use transformer, digits, tabular or text, or run it on one process)")
    try:
        refuse_sharding()
    except ValueError as e:
        return str(e)
    local = world if local_world is None else local_world
    if cfg["device"].startswith("cuda:") and local > 1:  # every rank would take that one GPU (NCCL: duplicate GPU)
        return (f"{source}: device {json.dumps(cfg['device'])} names one GPU for {local} processes on this host: use "
                f"\"cuda\" (each process its own GPU, by LOCAL_RANK; CUDA_VISIBLE_DEVICES picks which)")
    if cfg["device"] in ("auto", "cuda") and torch.cuda.is_available() and torch.cuda.device_count() < local:
        return (f"{source}: device {cfg['device']!r} on {local} processes needs a GPU each, but this host has "
                f"{torch.cuda.device_count()} (fewer processes, e.g. --nproc_per_node={torch.cuda.device_count()})")
    return None


def _cuda_absent() -> str:
    """Why this machine has no CUDA device, in words (a PyTorch built without CUDA, no driver, none visible)."""
    if torch.version.cuda is None:
        return f"this PyTorch ({torch.__version__}) was built without CUDA"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and not visible.strip():
        return "CUDA_VISIBLE_DEVICES is empty: no GPU is visible"
    return f"this machine has no CUDA GPU that PyTorch {torch.__version__} can use (no NVIDIA driver or GPU)"


def _field(key: str, value, source: str, typed: Optional[Dict[str, str]]) -> str:
    """A config field as the user gave it: the flag typed (`--compile max`) when a flag set it, else the file's
    `FILE: compile "max"`."""
    flag = (typed or {}).get(f"/{key}")
    return f"{flag} {value if isinstance(value, str) else json.dumps(value)}" if flag else f"{source}: {key} {json.dumps(value)}"


def compile_problem(mode: str, kind: str, source: str = "config", typed: Optional[Dict[str, str]] = None) -> Optional[str]:
    """Why config `compile` (`mode`) cannot build on a `kind` ("cuda", "cpu", "mps") device here, or None: a compiled
    step (compiled.resolve_mode: "max" anywhere, "auto" on CUDA) with torch.compile's default backend, Inductor, writes
    and builds kernels — C++ through a compiler on the CPU (CXX, else g++ / clang++ on macOS, looked up on PATH as
    torch's cpp_builder does), Triton on CUDA. Without them the run would fail at its first step, after the model
    loaded, with a compiler traceback; this says so before anything is made. SRLORA_COMPILE_BACKEND (another backend)
    needs neither: not judged."""
    if mode not in MODES or resolve_mode(mode, torch.device(kind)) == "off":
        return None
    if (os.environ.get("SRLORA_COMPILE_BACKEND") or "inductor") != "inductor":
        return None
    field = _field("compile", mode, source, typed)
    if kind == "cpu":
        cxx = os.environ.get("CXX") or ("clang++" if sys.platform == "darwin" else "g++")
        if shutil.which(cxx) is None:
            return (f"{field}: torch.compile builds its CPU kernels with a C++ compiler and there is none here "
                    f"({cxx} is not on PATH; install it or set CXX) (use compile \"off\" or \"auto\")")
    elif kind == "cuda":
        from torch.utils._triton import has_triton
        if not has_triton():
            return (f"{field}: torch.compile builds its GPU kernels with Triton and this Python has none "
                    f"(pip install triton, the version your torch {torch.__version__} names) (use compile \"off\")")
    return None


def machine_problem(cfg: dict, source: str = "config", typed: Optional[Dict[str, str]] = None) -> Optional[str]:
    """Why this config cannot run on this machine, or None: the config values that only the machine can judge — a
    `device` that is not here (cuda without a usable GPU, cuda:N past the GPU count, mps off macOS or unavailable) and
    `bf16` on a device without bfloat16 (a GPU before compute capability 8.0), a `compile` that torch.compile cannot
    build here (compile_problem). One line naming the field as the user gave it (the flag typed, `typed`: JSON pointer
    -> flag, e.g. `--device cuda`; else `source`'s field) and what this machine has. train.py asks it before
    it creates a run folder, for --check too (what srlora serve asks before it starts anything)."""
    name = cfg["device"]
    field = _field("device", name, source, typed)
    cuda_index = int(name.split(":", 1)[1]) if name.startswith("cuda:") else 0
    if name in ("auto", "cpu"):
        pass
    elif name.startswith("cuda"):
        if not torch.cuda.is_available():
            return f"{field}: {_cuda_absent()} (use device \"cpu\" or \"auto\")"
        n = torch.cuda.device_count()
        if cuda_index >= n:
            return (f"{field}: this machine has {n} CUDA GPU{'s' if n != 1 else ''} "
                    f"({', '.join(f'cuda:{i}' for i in range(n))}): there is no cuda:{cuda_index}")
    elif name == "mps":
        if sys.platform != "darwin":
            return f"{field}: MPS (Apple's GPUs) is only on macOS; this machine runs {sys.platform} (use \"cuda\", \"cpu\" or \"auto\")"
        if not torch.backends.mps.is_available():
            why = "built without MPS" if not torch.backends.mps.is_built() else "cannot use MPS on this Mac (macOS 12.3 or later and an Apple GPU needed)"
            return f"{field}: this PyTorch ({torch.__version__}) {why} (use \"cpu\" or \"auto\")"
    kind = "cuda" if name.startswith("cuda") or (name == "auto" and torch.cuda.is_available()) else name if name == "mps" else "cpu"
    problem = compile_problem(cfg.get("compile", "auto"), kind, source, typed)
    if problem:
        return problem
    if cfg.get("bf16"):
        where = _field("bf16", True, source, typed)
        if kind == "cuda":
            # the run's GPU (is_bf16_supported asks about the current one, another GPU of a mixed machine)
            major, minor = torch.cuda.get_device_capability(cuda_index)
            if (major, minor) < (8, 0):
                return (f"{where}: the GPU {torch.cuda.get_device_name(cuda_index)} (compute capability {major}.{minor}) has no "
                        f"bfloat16 arithmetic (8.0 or later needed): set bf16 false")
        elif kind == "mps":
            try:
                torch.ones(1, dtype=torch.bfloat16, device="mps")
            except (RuntimeError, TypeError) as e:
                return f"{where}: this Mac's MPS has no bfloat16 ({str(e)[:120]}): set bf16 false"
    return None


def reinit_optimizer(cfg: dict) -> str:
    """The config's reinitOptimizer; resetOptimizerMoments false (the legacy switch) means "keep"."""
    return "keep" if cfg.get("resetOptimizerMoments") is False else cfg.get("reinitOptimizer") or "zero-moments"


def make_optimizer(cfg: dict, layers, extra=()) -> torch.optim.Optimizer:
    """The configured optimiser over the layers' A and B; reinitOptimizer "restart" needs per-slot step counts
    (SlotAdam), which torch's Adam does not keep."""
    params = [p for l in layers.values() for p in (l.A, l.B)] + list(extra)
    if cfg["optimizer"] != "sgd" and reinit_optimizer(cfg) == "restart":
        return SlotAdam(layers.values(), lr=cfg["learningRate"], weight_decay=cfg["weightDecay"], decoupled=cfg["optimizer"] == "adamw", extra=extra)
    opt_cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[cfg["optimizer"]]
    return opt_cls(params, lr=cfg["learningRate"], **({"weight_decay": cfg["weightDecay"]} if cfg["optimizer"] != "sgd" else {}))


def make_controller(cfg: dict, layers, opt, r_target: int) -> SRLoRAController:
    return SRLoRAController(layers, opt, cfg["steps"], cfg["r"], r_target, cfg["fusionRatio"], cfg["fusionThreshold"],
                            cfg["minSlotAge"], reinit_optimizer=reinit_optimizer(cfg), fusion_select=cfg.get("fusionSelect") or "least-important",
                            seed=cfg["seed"])


def eager_step(task, opt: torch.optim.Optimizer, ctl: SRLoRAController) -> torch.Tensor:
    """One uncompiled training step on the task's next batch: loss, backward, importance (the controller skips a step
    whose gradients are not finite), the optimiser step. Returns the loss (still on the device). The caller runs
    ctl.after_step() (recomposition on schedule) and its telemetry."""
    loss = task.loss()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    ctl.after_backward()
    opt.step()
    return loss


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """The configured device; under torchrun a CUDA device is this process's own GPU (LOCAL_RANK)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def build_run(cfg: dict, run_dir: str, device: torch.device, env: Optional[Dict[str, str]] = None,
              lockstep: Optional[Lockstep] = None) -> SimpleNamespace:
    """The run a config describes, ready to start: its task and model with SRLoRA applied, optimiser, controller and
    Session (checkpoints with everything a resume needs, the export when it finishes). main() drives it; so does the
    steering vectors' runner (python/tests/test_steering_vectors.py), step by step. With lockstep (one rank of a
    torchrun launch) the model trains under DistributedDataParallel on this rank's slice of each global batch, and
    only rank 0 evaluates, checkpoints and exports."""
    torch.manual_seed(cfg["seed"])
    shard = (lockstep.rank, lockstep.world) if lockstep else (0, 1)
    problem = data_parallel_problem(cfg, lockstep.world if lockstep else 1)
    if problem is None:
        try:
            task, layers, r_target = build_model(cfg, device, shard)
        except (ValueError, OSError) as e:  # a bad model, data file or row: its own message, not a traceback
            problem = f"{run_dir}: {e}"
    if lockstep:  # before any other collective: a rank that cannot build would leave the others waiting in one
        problem = lockstep.agree_failure(problem)
    if problem is not None:
        raise SystemExit(problem)  # "": rank 0 says why, once (main waits for it)
    extra = list(getattr(task, "extra_params", []))
    opt = make_optimizer(cfg, layers, extra)
    ctl = make_controller(cfg, layers, opt, r_target)

    def save_checkpoint(folder: str) -> None:
        """Everything a resume needs to continue as if never stopped: the model (factors, frozen weights, EMAs, ages,
        directions), the optimiser, the data position, the rule and settings in force."""
        torch.save({"model": task.model.state_dict(), "optimizer": opt.state_dict(), "step": ctl.step,
                    "p": {n: l.p for n, l in layers.items()}, "data": task.gen.get_state(), "settings": dict(session.settings),
                    "rule": {"fusionThreshold": ctl.fusion_threshold, "fusionRatio": ctl.fusion_ratio}}, os.path.join(folder, "state.pt"))

    main_rank = lockstep is None or lockstep.is_main
    world = lockstep.world if lockstep else 1
    if lockstep:  # rank 0's weights everywhere; the gradients all-reduced by the compiled step itself, or by DDP
        if resolve_mode(cfg["compile"], device) != "off" and CompiledStep.unsupported(opt) is None:
            lockstep.broadcast_module(task.model)  # compiled_step: one all-reduce of its flat gradient buffer, no DDP
        else:
            task.train_model = lockstep.wrap(task.model, device)
    session = Session(ctl, opt, run_dir, total_steps=cfg["steps"], batch_size=cfg["batchSize"] * world, name=cfg["name"],
                      config={**cfg, **({"globalBatchSize": cfg["batchSize"] * world} if world > 1 else {})},
                      device=device_label(device), importance_every=cfg["importanceEvery"],
                      eval_every=cfg["evalEvery"], checkpoint_every=cfg["checkpointEvery"],
                      evaluate=task.evaluate if main_rank else None, save_checkpoint=save_checkpoint if main_rank else None,
                      on_finish=(lambda: export_run(run_dir, task.model, layers, base_weights(cfg), cfg["method"],
                                                    export_hf=getattr(task, "export_hf", None))) if main_rank else None,
                      env=env, lockstep=lockstep)
    return SimpleNamespace(task=task, layers=layers, opt=opt, ctl=ctl, session=session)


def _load_failure(e: Exception) -> str:
    """Why torch.load refused a file, in one line, without torch's advice to retry with weights_only=False (which
    would run whatever code the file holds)."""
    text = str(e)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0]
    words = " ".join(text.split())
    return f"{type(e).__name__}: {words[:200]}" if words else type(e).__name__


def _older_checkpoints(ckpt: str, log: Callable[[str], None]):
    """The verified checkpoints of ckpt's run older than it, newest first, each hashed only when reached; none when
    ckpt is not a run's checkpoints/step-N folder (a state.pt handed over from elsewhere has no older siblings)."""
    parent, name = os.path.split(os.path.normpath(os.path.abspath(ckpt)))
    m = re.fullmatch(r"step-(\d+)", name)
    if m is None or os.path.basename(parent) != CHECKPOINTS:
        return iter(())
    return (f for f, _ in verified_checkpoints(os.path.dirname(parent), log, below=int(m.group(1))))


def restore_run(run: SimpleNamespace, ckpt: str, device: torch.device, log: Callable[[str], None] = lambda s: None) -> str:
    """A verified checkpoint into a freshly built run; returns the checkpoint folder it came from. A state.pt that
    does not load (whatever its checksum says: written by another version, a bug) is skipped with a log line for the
    next older verified checkpoint, as newest_verified skips unverified ones (nothing was applied yet). Raises
    SystemExit with one line naming the state.pt (not a traceback) when none loads, or when the one loaded does not
    fit this run (a field missing, a shape changed: the run is then half-restored, so no older one is tried)."""
    first = os.path.join(ckpt, "state.pt")
    failures = []
    state = None
    for candidate in itertools.chain([ckpt], _older_checkpoints(ckpt, log)):
        file = os.path.join(candidate, "state.pt")
        try:
            state = torch.load(file, map_location=device)
            break
        except Exception as e:  # noqa: BLE001
            failures.append(_load_failure(e))
            log(f"skipped checkpoint {os.path.basename(candidate)}: state.pt does not load ({failures[-1]})")
    if state is None:
        older = f"; the {len(failures) - 1} older verified one{'s' if len(failures) > 2 else ''} did not load either" if len(failures) > 1 else ""
        raise SystemExit(f"{first}: cannot load it: {failures[0]}{older}")
    ckpt = candidate
    try:
        restore(run.task, run.layers, state)
        run.opt.load_state_dict(state["optimizer"])
        run.ctl.step = state["step"]
        run.task.gen.set_state(state["data"].cpu())
        run.session.settings.update(state["settings"])
        run.ctl.set(fusion_threshold=state["rule"]["fusionThreshold"], fusion_ratio=state["rule"]["fusionRatio"])
    except Exception as e:  # noqa: BLE001 - a checkpoint of another config or version: its field, not a traceback
        what = f"no field {e}" if isinstance(e, KeyError) else f"{type(e).__name__}: {str(e)[:300]}"
        raise SystemExit(f"{file}: does not fit this run ({what})") from None
    return ckpt
def compiled_step(cfg: dict, device: torch.device, task, opt, ctl, session) -> Optional[CompiledStep]:
    """The compiled, graph-captured step for config `compile` on this device, or None for the eager loop (compile off,
    the CPU under "auto", or an optimiser the graph cannot hold: said in the run's log). Under torchrun the compiled
    step averages its flat gradient buffer over the ranks itself (Lockstep.average_, between its two graphs), with no
    DDP wrapper (build_run left the model unwrapped); when it cannot run, every rank falls back to the eager step under
    DDP alike. SRLORA_COMPILE_BACKEND (tests, CPU checks): torch.compile's backend, e.g. "aot_eager" (default inductor)."""
    def say(text: str) -> None:
        if session.main:
            print(text, file=sys.stderr, flush=True)
        session.rec.emit({"type": "log", "level": "info", "text": text[:2000]})
    mode = resolve_mode(cfg["compile"], device)
    if mode == "off":
        if cfg["compile"] == "auto":  # the record says which step ran, not only the config's word
            say(f"compile: auto runs the eager step on {device.type} (the compiled, graph-captured step is for CUDA)")
        return None
    lockstep = session.lockstep
    if lockstep is not None and task.train_model is not task.model:  # build_run chose DDP: the optimiser cannot be fused
        say(f"compile: the eager step runs under DDP ({CompiledStep.unsupported(opt)})")
        return None
    try:
        step = CompiledStep(task.loss_of, opt, ctl, mode=mode, log=say, backend=os.environ.get("SRLORA_COMPILE_BACKEND") or "inductor",
                            reduce=lockstep.average_ if lockstep is not None else None)
        if not step.capture:
            say(f"compile: {mode}: torch.compile without a CUDA graph on {device.type}")
        if lockstep is not None:
            say(f"compile: the compiled step on {lockstep.world} ranks, its gradients averaged by one all-reduce per step (no DDP wrapper)")
        return step
    except ValueError as e:
        say(f"compile: the eager step runs instead ({e})")
        if lockstep is not None:  # every rank meets the same refusal: DDP averages the gradients from here on
            task.train_model = lockstep.wrap(task.model, device)
        return None


def stepper(run: SimpleNamespace, step_fn: Optional[CompiledStep], progress=None) -> Callable[[], bool]:
    """train.py's training step (what train_loop repeats and bench_ddp times): the compiled step (step_fn) or the eager
    one, the controller's step end, the session's (telemetry, eval, checkpoints, commands, pause). A step replayed from
    a CUDA graph is never waited for by the host: its loss and skipped flag are read one step late (Telemetry.defer;
    at once before a checkpoint, eval, command, snapshot or the end), so the GPU always has the next step queued.
    The callable returns False when the run must end at once (a loss was not finite: recorded); raises what a step raises."""
    task, ctl, session = run.task, run.ctl, run.session
    lockstep = session.lockstep
    deferred = step_fn is not None and step_fn.capture
    session.telemetry.defer = deferred

    def step() -> bool:
        skipped = grad_norm = None
        if step_fn is not None:  # forward, backward, importance and AdamW: one CUDA graph (two around the all-reduce)
            loss = step_fn(*task.batch())
            if deferred:
                # read with the loss, a step later: Telemetry.add_loss copies both (one stack) before the next replay
                # overwrites them, so no clone of its own here (a kernel a step)
                skipped = step_fn.found_inf
                if not session.settle():  # the earlier steps' losses (done on the GPU meanwhile): one was not finite
                    return False
            elif step_fn.skipped():
                ctl._skip_this_step = True  # gradients not finite: the graph skipped the update; the row says so
            grad_norm = getattr(step_fn, "grad_norm", None)  # computed inside the graph; read with the loss (one copy), no sync of its own
        else:
            loss = eager_step(task, opt=run.opt, ctl=ctl)  # its grad norm: read by the controller's finite check
        ctl.after_step()
        step_loss = lockstep.mean(loss) if lockstep else loss
        session.after_step(step_loss, skipped=skipped, grad_norm=grad_norm)  # the global batch's loss, on every rank
        if progress and progress.due(ctl.step):  # the loss is read (a device sync) only for a line that is written
            progress.update(ctl.step, float(step_loss.detach()))
        return True
    return step


def train_loop(cfg: dict, run: SimpleNamespace, step_fn: Optional[CompiledStep], progress=None) -> None:
    """Steps (stepper) until the config's steps are done or the session says stop. Raises what a step raises (the
    caller's session.finish records it)."""
    step = stepper(run, step_fn, progress)
    while run.ctl.step < cfg["steps"] and not run.session.stop_reason:
        if not step():
            break


def never_started_message(run_dir: str, facts: LogFacts) -> Optional[str]:
    """Why a run folder cannot be continued because its run never started — its events.jsonl holds no hello (a trainer
    stopped while it still loaded, by an older supervisor that left the folder) — or None. Every continue path says
    this in these words (src/cli/runTarget.ts neverStartedMessage). facts: its log's (read_facts)."""
    if not os.path.isfile(os.path.join(run_dir, "events.jsonl")) or facts.hello is not None:
        return None
    return (f"{run_dir} never started: its events.jsonl holds no hello (nothing was trained, there is no checkpoint): "
            "there is nothing to continue; start a new run")


def record_resume_failure(run_dir: str, reason: str, rec: Optional[EventRecorder] = None) -> None:
    """Appends `failed` with `reason` to a run whose resume ended before its trainer started (a checkpoint that does not
    load, a model or data file gone since the run began, a device not here), at the step its log last reached, so
    every view shows why instead of the old interrupted/stopped state. Only into an existing events.jsonl (a deleted
    run folder is never re-created); rec: the built session's recorder, if any (it continues the seq). Fsynced."""
    if not os.path.isfile(os.path.join(run_dir, "events.jsonl")):
        return
    try:
        rec = rec or EventRecorder(run_id_of(run_dir), run_dir, on_log=log)
        rec.emit({"type": "state", "state": "failed", "step": rec.facts.reached,
                  "reason": f"could not resume: {reason}"[:4096]})
        rec.sync()
        rec.close()
    except OSError as e:  # a full disk, the folder going: the stderr line is all there is
        log(f"could not record the failed resume in {run_dir}: {e}")
    remove_own_pid_file(run_dir)


def new_run_id(method: str) -> str:
    """The folder name the built-in trainer gives a new run (src/runfolder/runFiles.ts newRunId): UTC time to the
    second, the method, 4 random base-36 characters — two runs started in the same second get different names."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    tag = "".join(random.choice("0123456789abcdefghijklmnopqrstuvwxyz") for _ in range(4))
    return f"{stamp}-{re.sub(r'[^A-Za-z0-9]', '', method)}-{tag}"


def make_run_dir(runs_dir: str, method: str, tries: int = 20) -> str:
    """Creates a new run folder exclusively (os.mkdir, never exist_ok) in runs_dir and returns its path. A name already
    taken (another run started the same second and drew the same suffix) is retried with a fresh suffix, so no two
    trainers ever share a folder and interleave one events.jsonl. Raises SystemExit after `tries` collisions."""
    os.makedirs(runs_dir, exist_ok=True)
    for _ in range(tries):
        path = os.path.join(runs_dir, new_run_id(method))
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue
    raise SystemExit(f"cannot create a new run folder in {runs_dir}: {tries} names in a row were taken")


def _local_world(world: int) -> int:
    """The processes of this run on this host (torchrun's LOCAL_WORLD_SIZE; the world size when not set)."""
    try:
        return int(os.environ.get("LOCAL_WORLD_SIZE") or world)
    except ValueError:
        return world


def _remove_unstarted(run_dir: str) -> None:
    """Removes a run folder this process made when the run could not start: only its config.json (os.rmdir leaves a
    folder that holds anything else)."""
    try:
        os.remove(os.path.join(run_dir, "config.json"))
        os.rmdir(run_dir)
    except OSError:
        pass


class Parser(argparse.ArgumentParser):
    """argparse for the trainer's own flags (split_flags takes the config-field flags out first), whose errors are one
    line (no usage block): an unknown flag names the closest known one."""

    def error(self, message: str):  # noqa: D102 - argparse's hook; exits 2, as argparse does
        self.exit(2, f"{self.prog}: {message}\n")


OWN_VALUE_FLAGS = ("--config", "--runs-dir", "--resume", "--world-size", "--max-examples")
OWN_BOOL_FLAGS = ("--check", "--no-progress", "--help", "-h")
PROG = "python -m srlora_torch.train"


def split_flags(argv: list) -> tuple:
    """(the trainer's own flags for argparse, [(JSON pointer, value)] of the config-field flags in order, {pointer: the
    flag as typed}). The config-field flags come from the one config schema (runconfig.config_flags: the built-in
    trainer's set); `--flag value` or `--flag=value`. Anything else is refused in one line (SystemExit 2): an unknown
    flag with the closest known one, a flag without its value, a word that is not a flag."""
    fields = config_flags()
    known = list(OWN_VALUE_FLAGS) + [f for f in OWN_BOOL_FLAGS if f.startswith("--")] + list(fields)
    own, flagged, typed = [], [], {}
    i = 0
    while i < len(argv):
        a = argv[i]
        name, eq, inline = a.partition("=")
        if not a.startswith("-"):
            raise ConfigError(f"{PROG}: unexpected argument {json.dumps(a[:80], ensure_ascii=False)} (flags are --name value)")
        if name in OWN_BOOL_FLAGS or name in OWN_VALUE_FLAGS:
            take = 1 if eq or name in OWN_BOOL_FLAGS else 2
            own += argv[i:i + take]
            i += take
            continue
        if name not in fields:
            raise ConfigError(f"{PROG}: {unknown_flag(name, known)}; {PROG} --help lists them")
        if not eq:
            if i + 1 >= len(argv):
                raise ConfigError(f"{PROG}: {name} needs a value")
            inline = argv[i + 1]
        flagged.append((fields[name], flag_value(fields[name], inline)))
        typed[fields[name]] = name
        i += 1 if eq else 2
    return own, flagged, typed


def _help_epilog() -> str:
    """Every config-field flag (the schema's fields, as `srlora train --help` lists them): what it takes and its default."""
    props = _SCHEMA["properties"]
    rows = []
    for flag, ptr in config_flags().items():
        parts = ptr.strip("/").split("/")
        node = props.get(parts[0], {})
        if len(parts) == 1 and flag == f"--{parts[0]}" and any(c.isupper() for c in parts[0]):
            continue  # the camelCase spelling of a field listed as --kebab-case
        if len(parts) == 2 and any(c.isupper() for c in flag.split(".", 1)[1]):
            continue
        words = [node.get("description", "")] if len(parts) == 1 else []
        if len(parts) == 1 and "default" in node and not isinstance(node["default"], (dict, list)):
            words.append(f"default {json.dumps(node['default'])}")
        rows.append(f"  {flag:<24} {' · '.join(w for w in words if w) or 'a config field'}")
    return "config fields (each a flag over the config file's value, as srlora train takes them):\n" + "\n".join(rows)


def main(argv=None) -> int:
    ap = Parser(prog=PROG, description="Train a steerable SRLoRA run (PyTorch); its folder's events.jsonl is what the dashboard shows.",
                epilog=_help_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    ap.add_argument("--config", metavar="FILE", help="run config (.srlora.json, the built-in trainer's fields and defaults); default: the defaults")
    ap.add_argument("--runs-dir", metavar="DIR", default=os.path.join(".srlora", "runs"), help="where the run folder is made (default .srlora/runs, as srlora train and serve)")
    ap.add_argument("--max-examples", type=int, metavar="N", help="text task: train and evaluate on the first N examples (a quick subset)")
    ap.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its latest checkpoint, as configured (a finished run: nothing to do)")
    ap.add_argument("--check", action="store_true", help="validate the config (and flags) and exit: nothing is created (srlora serve asks this before it makes a run folder)")
    ap.add_argument("--no-progress", action="store_true", help="no progress line on stderr (by default: one line rewritten on a terminal, a line per 10%% of the steps elsewhere)")
    ap.add_argument("--world-size", type=int, metavar="N", help="with --check: validate for a data-parallel run on N processes of this host (default: torchrun's WORLD_SIZE, else 1; srlora serve --gpus N asks this)")
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(x in ("--help", "-h") for x in argv):
        ap.parse_args(["--help"])
    try:
        own, flagged, typed = split_flags(argv)
    except ConfigError as e:  # one line, exit 2 as argparse's usage errors (no usage block)
        log(str(e.code))
        raise SystemExit(2) from None
    a = ap.parse_args(own)
    a.flagged, a.typed = flagged, typed
    rank, world, local_rank = world_from_env()
    resuming = SimpleNamespace(run_dir=None, rec=None)  # set by _main while a resume it may record is starting
    try:
        return _main(a, rank, world, local_rank, resuming)
    except KeyboardInterrupt:
        # Ctrl+C before the session took the signals over (loading the model, the data, the checkpoint): nothing was
        # trained; a new run's folder is gone (_main removed it), a resumed run is as it was.
        if resuming.run_dir:
            remove_own_pid_file(resuming.run_dir)
        if rank == 0:
            log("interrupted before the run " + ("resumed: it is as it was (resumable)" if a.resume else "started: nothing was trained"))
        raise SystemExit(130) from None
    except (Exception, SystemExit) as e:
        if resuming.run_dir and rank == 0 and not (isinstance(e, SystemExit) and e.code in (0, None, "")):
            code = e.code if isinstance(e, SystemExit) else None
            reason = (code if isinstance(code, str) else f"the trainer exited with code {code}" if code is not None
                      else f"{type(e).__name__}: {str(e)[:1000]}")
            record_resume_failure(resuming.run_dir, reason, resuming.rec)
        if not isinstance(e, SystemExit):
            raise
        # Under a launcher every rank meets the same start-up refusal (one config, one folder, one machine): rank 0
        # says it, once; the others end as soon as it has (not before: the launcher stops every rank when one exits
        # non-zero, so rank 0 could be stopped mid-sentence), each saying its own reason if rank 0 never does.
        if world > 1 and isinstance(e.code, str):
            raise SystemExit(end_refused_start(e.code, rank)) from None
        raise


def _main(a: argparse.Namespace, rank: int, world: int, local_rank: int, resuming: SimpleNamespace) -> int:
    """main() after its flags. resuming.run_dir is set once a resume holds its run (nobody else trains it) and cleared
    when the session has started (it records its own end from there): what fails between is recorded by main()."""
    if a.world_size is not None and (a.world_size < 1 or not a.check):
        raise SystemExit("--world-size N (a whole number from 1) goes with --check: under torchrun the launcher sets the world size")
    if a.max_examples is not None and a.max_examples < 1:  # set into the config after it is validated: checked here
        raise SystemExit(f"--max-examples: must be ≥ 1, got {a.max_examples}")
    made_here = False  # this process created the run folder (and removes it if the run cannot even start)
    if a.resume:
        if a.config or any(p != "/device" for p, _ in a.flagged):  # --device: this machine's choice, not the run's
            raise SystemExit("--resume continues the run as configured; flags that change the config are not allowed")
        run_dir = os.path.abspath(a.resume)  # every message names the folder absolute (a line read later still finds it)
        cfg_file = os.path.join(run_dir, "config.json")
        facts = read_facts(run_dir)  # its log, read once: whether it started, who wrote it, on how many ranks, finished
        never = never_started_message(run_dir, facts)
        if never:
            raise SystemExit(never)
        if not os.path.exists(cfg_file):
            raise SystemExit(f"{run_dir} is not a run folder (no config.json)")
        if facts.builtin:
            raise SystemExit(f"{run_dir} is a run of the built-in trainer (srlora train): continue it with {continue_command(run_dir, 1, facts.hello.get('launch') or cli_launch(), pytorch=False)}")
        # Someone else training it (serve, VS Code, another terminal): a second trainer would append to its log too.
        # Every rank asks before the rendezvous; rank 0 takes the run only after it (below), so no rank sees rank 0.
        refusal = resume_refusal(os.path.abspath(run_dir))
        if refusal:
            raise SystemExit(refusal)
        resuming.run_dir = run_dir  # ours from here: a failure to continue it is recorded in its log
        had = facts.world_size
        if had != world:  # the global batch (batchSize per rank × ranks) and the data split would change mid-run
            raise SystemExit(f"run {os.path.abspath(run_dir)} was trained on {had} process{'es' if had > 1 else ''}; this resume has {world}: "
                             f"the global batch would change. Continue it on {had}: {continue_command(run_dir, had, launch_facts())}")
        cfg = load_config(cfg_file, {}, a.flagged, a.typed)
        problem = machine_problem(cfg, cfg_file, a.typed) or data_parallel_problem(cfg, world, cfg_file, _local_world(world))
        if problem:
            raise SystemExit(problem)
        done = facts.finished_at
        if done is not None:  # as the built-in trainer: nothing left to do; loading it would redo the export and log
            log(f"run {run_id_of(run_dir)} is finished (step {done}/{cfg['steps']}): every step is done, nothing to continue")
            return 0
        found = newest_verified(run_dir, on_log=log)  # the newest complete, verified one; newer ones skipped say why
        if found is None:
            raise SystemExit(f"{run_dir} has no complete checkpoint to resume from")
        ckpt = found[0]
    else:
        cfg = load_config(a.config, {}, a.flagged, a.typed)
        n = a.world_size or world
        problem = (machine_problem(cfg, a.config or "config", a.typed)
                   or data_parallel_problem(cfg, n, a.config or "config", n if a.world_size else _local_world(world)))
        if problem:  # before any run folder is made: nothing is left behind
            raise SystemExit(problem)
        if a.check:
            return 0
        if a.max_examples is not None:
            cfg["task"]["maxExamples"] = a.max_examples
        run_dir = os.environ.get("SRLORA_RUN_DIR")  # the supervisor's: it created the folder itself, exclusively
        made_here = not run_dir  # (the supervisor records the failure of a run in its own folder)
        if not run_dir:  # rank 0 creates it (other ranks take rank 0's path below)
            run_dir = make_run_dir(a.runs_dir, cfg["method"]) if rank == 0 else os.path.join(a.runs_dir, "pending")
    device = pick_device(cfg["device"], local_rank)
    lockstep = Lockstep.init(device.type) if world > 1 else None
    if lockstep:  # rank 0's choices for every rank: the run folder (named by its clock), the checkpoint to resume from
        run_dir, ckpt = lockstep.agree((run_dir, ckpt if a.resume else None))
    if a.resume and rank == 0 and not os.environ.get("SRLORA_HUB_URL"):
        # From a terminal: hold the run from now on (Session.start writes it again), not only once the model has loaded,
        # so that a second resume meanwhile is refused.
        write_own_pid_file(run_dir)
    if not a.resume and rank == 0:
        os.makedirs(run_dir, exist_ok=True)
        with open(os.path.join(run_dir, "config.json"), "w", encoding="utf-8") as f:
            json.dump(cfg, f, indent=2, allow_nan=False)
    if lockstep:
        lockstep.barrier()  # the run folder exists before any rank opens it
    try:
        run = build_run(cfg, run_dir, device, lockstep=lockstep)
        resuming.rec = run.session.rec
    except (SystemExit, KeyboardInterrupt) as e:  # a model that does not load; Ctrl+C while it loads
        if lockstep:
            lockstep.report(str(getattr(e, "code", "interrupted while loading")))
            lockstep.close()
        if rank == 0 and made_here:  # it holds only config.json: no run to show in the Runs view, none to resume
            _remove_unstarted(run_dir)
        raise
    if rank == 0:
        log(f"{cfg['method']} run {'resumed' if a.resume else 'started'}{f' on {world} ranks' if world > 1 else ''}: {os.path.abspath(run_dir)} "
            f"(watch it: {dashboard_command(os.path.dirname(os.path.abspath(run_dir)), cli_launch())})")
    task, ctl, session = run.task, run.ctl, run.session
    opt = run.opt
    if a.resume:
        ckpt = restore_run(run, ckpt, device, log)
        if rank == 0:  # which checkpoint (a newer one may have been skipped), in the built-in trainer's words
            log(f"resumed from {os.path.abspath(ckpt)} (step {ctl.step})")
    session.launch = launch_facts()  # so that every continue line names this interpreter (and PYTHONPATH): it runs as printed
    session.start(resumed=bool(a.resume), checkpoint=os.path.relpath(ckpt, run_dir).replace(os.sep, "/") if a.resume else None)
    resuming.run_dir = None  # started: the session records how it ends
    step_fn = compiled_step(cfg, device, task, opt, ctl, session)
    progress = ProgressLine(cfg["steps"], cfg["batchSize"] * world, sys.stderr) if rank == 0 and not a.no_progress else None
    error = None
    try:
        train_loop(cfg, run, step_fn, progress)
    except Exception as e:  # noqa: BLE001 - reported as the run's failure
        error = e
    if progress:
        progress.done()
    outcome = session.finish(error)
    if rank == 0 and (session.folder_gone or not os.path.isdir(run_dir)):  # nothing to sum up, nothing to resume
        if not session.folder_gone:  # (when the session noticed, it said so, in these words: once)
            log(f"run {run_id_of(run_dir)}: its folder {os.path.abspath(run_dir)} was deleted while it trained; nothing was recorded")
    elif rank == 0 and not os.environ.get("SRLORA_HUB_URL"):  # as the built-in trainer: a launched run's stderr tail keeps its error
        try:
            sys.stderr.write("\n" + summary(run_dir, outcome))
        except (OSError, ValueError):  # stderr gone: the run's end is in its events.jsonl
            pass
    if lockstep:
        lockstep.close()
    return 1 if outcome == "failed" else 0  # finished, stopped, interrupted: a clean, recorded end


if __name__ == "__main__":
    sys.exit(main())
