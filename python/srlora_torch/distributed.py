"""SRLoRA under data parallelism (torchrun / DistributedDataParallel), steered in lockstep on every rank.

Every rank must hold the same frozen weights, slots and directions after every step. How this module keeps them so:
- the start: rank 0's parameters and buffers (frozen W, SVD factors, directions, EMAs) are broadcast once;
- importance: the gradients are all-reduced before anything reads them — by DDP during backward (the eager step), or
  by one all-reduce of the compiled step's flat gradient buffer between its two graphs (compiled.CompiledStep,
  `reduce`: no DDP wrapper on that path) — so w·g, and so every EMA, every optimiser update, is identical on every
  rank by construction;
- recompositions: the selection (pure host arithmetic on those identical EMAs) is still made on rank 0 and broadcast
  (`SRLoRAController.agree`), so a divergence could never turn into different selections silently;
- steering: rank 0 alone talks to the hub and writes events.jsonl and checkpoints. At each step boundary every rank
  joins one small all-reduce on a CPU (gloo) group — "does rank 0 have commands or a stop to share, did any rank get
  a signal" — and when rank 0 has something, one broadcast of the commands follows; every rank applies them after
  that same step, in the same order (the ack names the step). A pause is a loop of such exchanges (every 0.5 s), so
  every rank holds and no collective times out however long the pause lasts;
- checks: after every recomposition and every command, a checksum of every adapted layer's state (the bits of W, A,
  B, directions, ages and EMAs, position-weighted, summed in int64 on the device) is all-gathered and compared; a
  mismatch fails the run naming the rank and the layers;
- failures: a rank that fails says so in the launcher's store (`srlora/failed/RANK`) before it exits; rank 0 watches
  its peers' processes (same host) and the store, and fails the run "rank R failed: reason" — also when a peer died
  without a word (SIGKILL, OOM) and rank 0 is stuck in a collective waiting for it.

Sharded frozen weights (FSDP, DeepSpeed ZeRO-3) are refused at start: a recomposition rewrites each whole frozen
weight in place and needs all of it on every rank.
"""
from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

SUPPORTED = ("SRLoRA runs data-parallel with DistributedDataParallel (torchrun --nproc_per_node=N, or accelerate launch "
             "without FSDP/DeepSpeed) over unsharded weights")
PAUSE_TICK_S = 0.5  # while paused, rank 0 ticks the other ranks this often (none of them times out waiting)


class Diverged(RuntimeError):
    """The ranks' SRLoRA state is no longer identical (the run fails: continuing would train different models)."""


class PeerFailed(RuntimeError):
    """Another rank failed or died: the run fails with its rank and reason."""


def world_from_env(env=None) -> Tuple[int, int, int]:
    """(rank, world size, local rank) as torchrun (or accelerate launch) sets them; (0, 1, 0) when not launched so."""
    env = os.environ if env is None else env
    try:
        return int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))
    except ValueError:
        return 0, 1, 0


# A start-up refusal under a launcher (srlora_torch.train's main): rank 0 says the reason once; every other rank ends
# with this exit code as soon as rank 0 has said it (launch.failed_line counts such a rank as stopped, not failed).
FOLLOWED_RANK0 = 3
FOLLOW_WAIT_S = 30.0  # how long a rank waits for rank 0 to say why before it says its own reason


def _said_key(env) -> str:
    return f"srlora/start-refused/{env.get('TORCHELASTIC_RUN_ID', '')}/{env.get('TORCHELASTIC_RESTART_COUNT', '0')}"


def _launcher_store(env, timeout_s: float):
    """A client of the launcher's key-value store (torchrun's agent store at MASTER_ADDR:MASTER_PORT), reachable
    before and after the process group; None when there is none (not launched so, or it does not answer)."""
    from datetime import timedelta
    addr, port = env.get("MASTER_ADDR"), env.get("MASTER_PORT")
    if not addr or not port:
        return None
    try:
        return torch.distributed.TCPStore(addr, int(port), is_master=False, timeout=timedelta(seconds=timeout_s), wait_for_workers=False)
    except Exception:  # noqa: BLE001 - no store to meet at: each rank says its own reason
        return None


def end_refused_start(reason: str, rank: int, env=None, wait_s: float = FOLLOW_WAIT_S) -> int:
    """One rank's end after a start-up refusal under a launcher (every rank meets the same config, folder and machine):
    rank 0 prints `reason` on stderr, then marks it said in the launcher's store; another rank waits there for rank 0's
    word and then ends at once (FOLLOWED_RANK0) instead of waiting to be stopped, or — no word within wait_s, no store,
    a reason rank 0 did not meet ("" is "rank 0 has it") — prints its own "rank R: reason" and ends with 1. Returns the
    exit code."""
    env = os.environ if env is None else env
    if rank == 0 and reason:
        print(reason, file=sys.stderr, flush=True)  # first: finding the store may take its timeout
    store = _launcher_store(env, 5.0)
    if rank == 0:
        if store is not None:
            try:
                store.set(_said_key(env), "said")
            except Exception:  # noqa: BLE001 - the launcher is going: the others are stopped with it
                pass
        return 1
    if store is not None:
        try:
            from datetime import timedelta
            store.wait([_said_key(env)], timedelta(seconds=wait_s))
            return FOLLOWED_RANK0
        except Exception:  # noqa: BLE001 - rank 0 did not say it in time (it met no refusal, or is gone)
            pass
    if reason:
        print(f"rank {rank}: {reason}", file=sys.stderr, flush=True)
    return 1


def refuse_sharding(args=None, model=None, env=None) -> None:
    """Raises ValueError naming what is supported when the frozen weights would be sharded: FSDP (torch's, or
    accelerate's / the Hugging Face Trainer's `fsdp` setting) or DeepSpeed ZeRO stage 3."""
    env = os.environ if env is None else env
    what = None
    if str(env.get("ACCELERATE_USE_FSDP", "")).lower() in ("1", "true", "yes"):
        what = "FSDP (accelerate launch with ACCELERATE_USE_FSDP)"
    elif str(env.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", "")) == "3":
        what = "DeepSpeed ZeRO-3 (accelerate launch)"
    if args is not None and what is None:
        if getattr(args, "fsdp", None):
            what = f"FSDP (TrainingArguments.fsdp={getattr(args, 'fsdp')!r})"[:120]
        ds = getattr(args, "hf_deepspeed_config", None)
        if ds is not None and callable(getattr(ds, "is_zero3", None)) and ds.is_zero3():
            what = "DeepSpeed ZeRO-3 (TrainingArguments.deepspeed)"
    if model is not None and what is None:
        for m in model.modules():
            kind = type(m).__name__
            if kind in ("FullyShardedDataParallel", "FSDPModule") or kind.startswith("FSDP"):
                what = f"FSDP ({kind})"
                break
        else:
            if any(hasattr(p, "ds_id") or type(p).__name__ == "DTensor" for p in model.parameters()):
                what = "sharded parameters (DeepSpeed ZeRO-3 or DTensor)"
    if what:
        raise ValueError(f"{what} shards the frozen weights, but an SRLoRA recomposition rewrites each whole frozen weight "
                         f"in place on every rank. {SUPPORTED}.")


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The tensor's bits as int64 (exact: a checksum over them changes with any bit of any element)."""
    t = t.detach().contiguous().reshape(-1)
    if t.dtype in (torch.float64, torch.int64):
        return t.view(torch.int64)
    if t.dtype in (torch.float32, torch.int32):
        return t.view(torch.int32).to(torch.int64)
    if t.dtype in (torch.bfloat16, torch.float16, torch.int16):
        return t.view(torch.int16).to(torch.int64)
    if t.dtype == torch.bool:
        return t.to(torch.int64)
    return t.to(torch.int64)


def _fields(l) -> tuple:
    return (l.W, l.A, l.B, l.directions, l.age, l.ema_IA, l.ema_UA, l.ema_IB, l.ema_UB)


@torch.no_grad()
def state_checksums(layers: Dict[str, torch.nn.Module]) -> torch.Tensor:
    """One int64 per adapted layer (on the first layer's device): a position-weighted sum of the bits of its frozen W,
    A, B, directions, ages and importance EMAs. Equal on two ranks (up to a collision) iff their states are
    bit-identical. Layers of one shape are stacked and summed together (a few launches per shape and field, not per
    layer: 72 RoBERTa-base layers were ~3900 launches, ~50 ms on an H200)."""
    ls = list(layers.values())
    groups: Dict[tuple, List[int]] = {}
    for i, l in enumerate(ls):
        key = tuple(None if t is None else (tuple(t.shape), t.dtype, t.device) for t in _fields(l))
        groups.setdefault(key, []).append(i)
    dev = ls[0].A.device
    out = torch.zeros(len(ls), dtype=torch.int64, device=dev)
    for key, idx in groups.items():
        acc = None
        for f, spec in enumerate(key):
            if spec is None:
                continue
            b = _bits(torch.stack([_fields(ls[i])[f] for i in idx])).view(len(idx), -1)
            w = torch.arange(1, b.shape[1] + 1, device=b.device, dtype=torch.int64).remainder_(65521).add_(f * 7919 + 1)
            s = (b * w).sum(1)
            acc = s if acc is None else acc * 1000003 + s
        out[torch.as_tensor(idx, device=dev)] = acc.to(dev)
    return out


class Lockstep:
    """One rank's side of a data-parallel run (module docstring). `is_main`: rank 0 (the hub, events.jsonl,
    checkpoints). Every method that communicates must be called by every rank in the same order."""

    def __init__(self, rank: int, world: int, control=None, store=None):
        import torch.distributed as dist
        self.dist, self.rank, self.world, self.control, self.store = dist, rank, world, control, store
        self.is_main = rank == 0
        self._watcher: Optional[threading.Thread] = None
        self._peers: Dict[int, int] = {}  # rank → pid of the peers on this host (rank 0, once watch() ran)
        self._watching = False
        self._wake = threading.Event()
        self.reported = False

    # ---- setting up
    @classmethod
    def init(cls, device_type: str) -> Optional["Lockstep"]:
        """Joins the process group torchrun describes (NCCL on CUDA, gloo on the CPU) when WORLD_SIZE > 1; None
        otherwise. Steering talks over a separate gloo group, so it never waits on the GPU's queue."""
        import torch.distributed as dist
        rank, world, _ = world_from_env()
        if world <= 1:
            return None
        try:
            refuse_sharding()
        except ValueError as e:
            raise SystemExit(str(e)) from None
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
        return cls.attach()

    @classmethod
    def attach(cls) -> Optional["Lockstep"]:
        """The lockstep side of a process group someone else initialised (the Hugging Face Trainer, accelerate)."""
        import torch.distributed as dist
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() <= 1:
            return None
        control = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else None
        store = None
        try:
            store = dist.distributed_c10d._get_default_store()
        except Exception:  # noqa: BLE001 - no store: failures are still reported on stderr
            pass
        return cls(dist.get_rank(), dist.get_world_size(), control, store)

    @torch.no_grad()
    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Rank 0's parameters and buffers (frozen W, SVD factors, factors, EMAs) on every rank."""
        for t in list(module.parameters()) + [b for b in module.buffers() if b is not None]:
            if t.data.is_contiguous():
                self.dist.broadcast(t.data, 0)
            else:  # NCCL (and gloo) take only contiguous tensors: e.g. a transposed view of SVD factors
                c = t.data.contiguous()
                self.dist.broadcast(c, 0)
                t.data.copy_(c)

    def wrap(self, model: torch.nn.Module, device: torch.device):
        """DDP over the adapted model (only A, B and fully trained modules have gradients). Buffers are not
        re-broadcast each forward: they are kept identical by construction (and checked)."""
        from torch.nn.parallel import DistributedDataParallel as DDP
        self.broadcast_module(model)
        return DDP(model, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False)

    @torch.no_grad()
    def average_(self, tensors: Sequence[torch.Tensor]) -> None:
        """Each tensor (a compiled step's flat gradient buffer) replaced, in place, by its mean over every rank: one
        all-reduce each on the default group (NCCL's AVG on GPUs; gloo has no AVG: a sum, then ÷ world). Issued on
        the current stream without a host wait (NCCL), so it sits between the step's two replayed graphs."""
        nccl = self.dist.get_backend() == "nccl"
        for t in tensors:
            if nccl:
                self.dist.all_reduce(t, op=self.dist.ReduceOp.AVG)
            else:
                self.dist.all_reduce(t)
                t.div_(self.world)

    def bind(self, ctl) -> None:
        """Every recomposition of this controller: the selection made on rank 0 and broadcast, the result compared."""
        ctl.agree = self.agree
        ctl.listeners.append(lambda r: self.check_identical(ctl.layers, f"the {r.trigger} recomposition at step {r.step}"))

    # ---- per step
    def mean(self, loss: torch.Tensor) -> torch.Tensor:
        """The loss averaged over every rank's shard (the global batch's loss), identical on every rank."""
        t = loss.detach().float().clone()
        self.dist.all_reduce(t)
        return t / self.world

    def exchange(self, share: Optional[dict], signal_num: int = 0) -> Tuple[Optional[dict], int]:
        """The step boundary's agreement. `share` (rank 0; ignored elsewhere): {"commands": [(id, body)], "stop":
        (reason, end state) | None} or None when there is nothing. Returns (rank 0's share or None, the highest signal
        number any rank received, 0 for none)."""
        flag = torch.tensor([1 if (self.is_main and share) else 0, int(signal_num)], dtype=torch.int64)
        self.dist.all_reduce(flag, op=self.dist.ReduceOp.MAX, group=self.control)
        got = None
        if flag[0].item():
            box = [share if self.is_main else None]
            self.dist.broadcast_object_list(box, src=0, group=self.control)
            got = box[0]
        return got, int(flag[1].item())

    def barrier(self) -> None:
        self.dist.barrier(group=self.control)

    def agree(self, value):
        """Rank 0's value on every rank (a recomposition's selection)."""
        box = [value if self.is_main else None]
        self.dist.broadcast_object_list(box, src=0, group=self.control)
        return box[0]

    def agree_failure(self, problem: Optional[str]) -> Optional[str]:
        """Every rank's start-up problem (None: this rank is fine) gathered, so every rank ends together and the reason
        is said once: None when no rank has one; else on rank 0 the reason (one rank's, or each rank's named when they
        differ: "rank 1: …") and "" on the others (rank 0 says it). Collective (the control group)."""
        every: List[Optional[str]] = [None] * self.world
        self.dist.all_gather_object(every, problem, group=self.control)
        failed = [(r, p) for r, p in enumerate(every) if p is not None]
        if not failed:
            return None
        if not self.is_main:
            return ""
        if len(failed) == self.world and len({p for _, p in failed}) == 1:
            return failed[0][1]  # every rank met the same refusal
        return "; ".join(f"rank {r}: {p}" for r, p in failed)

    def check_identical(self, layers: Dict[str, torch.nn.Module], after: str) -> None:
        """Compares every rank's per-layer checksums with rank 0's; raises Diverged naming the ranks and layers."""
        audit = os.environ.get("SRLORA_DDP_AUDIT")
        if audit:  # a debugging aid (and the tests' independent proof): every rank's full digest at each check
            _audit(audit, self.rank, layers, after)
        mine = state_checksums(layers).cpu()
        every = [torch.zeros_like(mine) for _ in range(self.world)]
        self.dist.all_gather(every, mine, group=self.control)
        names = list(layers)
        bad = {r: [names[i] for i in (every[r] != every[0]).nonzero().flatten().tolist()] for r in range(1, self.world)}
        bad = {r: ls for r, ls in bad.items() if ls}
        if bad:
            raise Diverged(f"after {after}: the SRLoRA state differs from rank 0's on " +
                           "; ".join(f"rank {r} ({', '.join(ls[:3])}{', …' if len(ls) > 3 else ''})" for r, ls in bad.items()))

    # ---- failures
    def report(self, reason: Optional[str]) -> None:
        """Says in the launcher's store how this rank ends (None: cleanly), so rank 0 can name it."""
        if self.store is None or self.reported:
            return
        self.reported = True
        try:
            key = f"srlora/failed/{self.rank}" if reason else f"srlora/ended/{self.rank}"
            self.store.set(key, (reason or "ok")[:2000])
        except Exception:  # noqa: BLE001 - the store may be gone already
            pass

    def peer_failure(self, wait_s: float = 0.0) -> Optional[str]:
        """"rank R failed: reason" when another rank said it failed (waiting up to wait_s for it to say so), else
        "rank R (pid P) died without a word …" when a peer's process on this host is gone without having ended
        cleanly; None when every peer is fine as far as this rank can tell."""
        deadline = time.time() + wait_s
        while self.store is not None:
            for r in range(self.world):
                if r == self.rank:
                    continue
                try:
                    if self.store.check([f"srlora/failed/{r}"]):
                        return f"rank {r} failed: {self.store.get(f'srlora/failed/{r}').decode('utf-8', 'replace')}"
                except Exception:  # noqa: BLE001 - the store is gone (its launcher ended)
                    deadline = 0
                    break
            if time.time() >= deadline:
                break
            time.sleep(0.1)
        for r, pid in self._peers.items():
            if not _alive(pid) and not self._ended_cleanly(r):
                return f"rank {r} (pid {pid}) died without a word (killed? out of memory? see the launcher's output)"
        return None

    def _ended_cleanly(self, r: int) -> bool:
        try:
            return self.store is not None and self.store.check([f"srlora/ended/{r}"])
        except Exception:  # noqa: BLE001
            return False

    def watch(self, on_failure: Callable[[str], None], interval_s: float = 0.5) -> None:
        """Rank 0: a thread that calls on_failure("rank R failed: …") once, when a peer says it failed or its process
        (on this host) is gone without having ended cleanly. Collective: every rank must call it (pids are gathered)."""
        ident = {"host": socket.gethostname(), "pid": os.getpid()}
        every: List[Optional[dict]] = [None] * self.world
        self.dist.all_gather_object(every, ident, group=self.control)
        if not self.is_main:
            return
        audit = os.environ.get("SRLORA_DDP_AUDIT")
        if audit:
            import json
            os.makedirs(audit, exist_ok=True)
            with open(os.path.join(audit, "pids.json"), "w", encoding="utf-8") as f:
                json.dump({str(r): d["pid"] for r, d in enumerate(every)}, f)
        self._peers = {r: d["pid"] for r, d in enumerate(every) if r != 0 and d and d["host"] == ident["host"]}
        self._watching = True

        def loop() -> None:
            while self._watching:
                self._wake.wait(interval_s)
                if not self._watching:
                    return
                why = self.peer_failure()
                if why and " died without a word" in why:  # it may still be saying why: give it a moment
                    why = self.peer_failure(wait_s=1.0)
                if why and self._watching:
                    self._watching = False
                    on_failure(why)
                    return

        self._watcher = threading.Thread(target=loop, name="srlora-peer-watch", daemon=True)
        self._watcher.start()

    def stop_watching(self) -> None:
        """Ends the watcher and waits for it: it must not be inside a store call when the process group goes."""
        self._watching = False
        self._wake.set()
        w = self._watcher
        if w is not None and w is not threading.current_thread():
            w.join(timeout=10)

    def close(self) -> None:
        self.stop_watching()
        try:
            if self.dist.is_initialized():
                self.dist.destroy_process_group()
        except Exception:  # noqa: BLE001
            pass


def layer_digests(layers: Dict[str, torch.nn.Module]) -> Dict[str, str]:
    """{layer name: sha256 hex of its W, A, B, directions and ages, bit for bit} — what ranks compare in tests and
    the DDP bench (device → host copies: for audits, never on the training step)."""
    import hashlib
    out = {}
    for n, l in layers.items():
        h = hashlib.sha256()
        for t in (l.W, l.A, l.B, l.directions, l.age):
            h.update(_bits(t).cpu().numpy().tobytes())
        out[n] = h.hexdigest()
    return out


def _audit(folder: str, rank: int, layers: Dict[str, torch.nn.Module], after: str) -> None:
    """Appends {after, layers: {name: sha256 of its W, A, B, directions, ages}} to folder/rank-R.jsonl."""
    import json
    digest = layer_digests(layers)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"rank-{rank}.jsonl"), "a", encoding="utf-8") as f:
        f.write(json.dumps({"after": after, "layers": digest, "p": {n: l.p for n, l in layers.items()}}) + "\n")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False


def signal_number(name: Optional[str]) -> int:
    try:
        return int(signal.Signals[name]) if name else 0
    except KeyError:
        return 0


def signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def shard(items: Sequence, rank: int, world: int):
    """Rank `rank`'s part of a global batch drawn identically on every rank (so the data position is one state)."""
    n = len(items) // world
    return items[rank * n:(rank + 1) * n]


class SilentRecorder:
    """What a Session on a rank other than 0 records: nothing (rank 0 writes the run's events.jsonl)."""

    def __init__(self):
        self.seq, self.hello, self.error, self.listeners = 0, None, None, []

    def emit(self, body: dict, build=None) -> dict:
        return body

    def drain(self) -> None:
        pass

    sync = close = drain
