"""What the PyTorch trainer says in the terminal, as the built-in trainer does (src/trainer/process/progress.ts and
src/cli/summary.ts): a progress line while it trains and a short summary at the end, both on stderr."""
from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import sys
import time
from typing import Callable, Optional, TextIO


def format_duration(s: float) -> str:
    """Seconds as 42s, 3m05s or 1h02m (common/formatDuration.ts's form)."""
    s = max(0, int(round(s)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


class ProgressLine:
    """`step S/TOTAL  loss L  R ex/s  ETA T` on `out`: on a terminal one line rewritten at most every 0.25 s (and at
    the last step); elsewhere (a pipe, a log file) one line per 10% of the steps, as the built-in trainer."""

    def __init__(self, total: int, examples_per_step: int, out: TextIO, now: Callable[[], float] = time.monotonic):
        self.total, self.per_step, self.out, self.now = max(1, total), examples_per_step, out, now
        self.tty = bool(getattr(out, "isatty", lambda: False)())
        self.last, self.last_percent, self.base = -1e9, -1, None

    def due(self, step: int) -> bool:
        """Whether update(step, …) would write: ask before reading the loss (a device sync)."""
        if self.tty:
            return self.now() - self.last >= 0.25 or step == self.total
        percent = 100 * step // self.total
        return percent != self.last_percent and percent % 10 == 0

    def update(self, step: int, loss: float) -> None:
        now = self.now()
        if self.base is None:
            self.base = (now, step)
        if not self.due(step):
            return
        self.last, self.last_percent = now, 100 * step // self.total
        done, spent = step - self.base[1], now - self.base[0]
        # "–" until a rate is measured (no step done since the start): "0 ex/s" read as a stalled run
        rate = f"{done * self.per_step / spent:.0f}" if done > 0 and spent > 0 else "–"
        eta = format_duration(spent / done * (self.total - step)) if done > 0 else "…"
        line = f"step {step}/{self.total}  loss {loss:.4f}  {rate} ex/s  ETA {eta}"
        try:
            self.out.write(f"\r\x1b[K{line}" if self.tty else f"{line}\n")
            self.out.flush()
        except (OSError, ValueError):  # stderr gone (a closed window): training goes on
            pass

    def done(self) -> None:
        if self.tty:
            try:
                self.out.write("\n")
            except (OSError, ValueError):
                pass


def recompositions_count(count: int, pairs_fused: int, fused_nothing: int) -> str:
    """The value after the summary's `recompositions` label, in the built-in trainer's words (src/cli/summary.ts
    recompositionsCount; shared vectors test/vectors/summary/recompositions.json): every recomposition, the pairs they
    fused, how many fused nothing — "2 (2 pairs fused, 1 fused nothing)", "1 (1 pair fused)", "0"."""
    if count == 0:
        return "0"
    pairs = f"{pairs_fused} pair{'' if pairs_fused == 1 else 's'} fused"
    return f"{count} ({pairs}{f', {fused_nothing} fused nothing' if fused_nothing else ''})"


def launch_facts() -> dict:
    """hello.launch: how this trainer was started, so that its continue line runs as printed in a fresh shell —
    {"python": the interpreter (absolute; a venv's own path, not the file it links to), "pythonPath": the PYTHONPATH it
    needs (absolute entries joined by os.pathsep: the ones it was given, and the folder srlora_torch was imported from
    when that is not on the interpreter's own path, i.e. not installed; absent when nothing is needed)}."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the folder srlora_torch is imported from
    given = [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    # sys.path[0] is the current folder (-m) or the script's: not there in a fresh shell elsewhere
    own = {os.path.abspath(p) for p in sys.path[1:] if p} - set(given)
    entries = given + ([root] if root not in own and root not in given else [])
    return {"python": os.path.abspath(sys.executable), **({"pythonPath": os.pathsep.join(entries)} if entries else {})}


def python_module(launch: Optional[dict], module: str) -> str:
    """`python -m MODULE` as the run's trainer ran it (`PYTHONPATH=… /abs/python -m MODULE`) from its hello.launch; a
    bare `python -m MODULE` for a run whose trainer did not record it. src/viewmodel/continueCommand.ts pythonModule."""
    if not launch or not launch.get("python"):
        return f"python -m {module}"
    env = f"PYTHONPATH={shlex.quote(launch['pythonPath'])} " if launch.get("pythonPath") else ""
    return f"{env}{shlex.quote(launch['python'])} -m {module}"


def srlora_command(launch: Optional[dict], subcommand: str) -> str:
    """The `srlora` command line's SUBCOMMAND as `launch` ran it (hello.launch node, cli: `/usr/bin/node
    /abs/dist/cli.js serve`; VS Code's Electron run as Node.js: ELECTRON_RUN_AS_NODE=1): a checkout has no `srlora` on
    PATH. `srlora SUBCOMMAND` when launch names no CLI. src/viewmodel/continueCommand.ts srloraCommand
    (test/vectors/continue/lines.json `serve`)."""
    if not launch or not launch.get("node") or not launch.get("cli"):
        return f"srlora {subcommand}"
    env = "ELECTRON_RUN_AS_NODE=1 " if launch.get("electronRunAsNode") else ""
    return f"{env}{shlex.quote(launch['node'])} {shlex.quote(launch['cli'])} {subcommand}"


def dashboard_command(runs_dir: str, launch: Optional[dict]) -> str:
    """The line that shows the runs of runs_dir (made absolute, shell-quoted) on the dashboard, by the CLI launch names
    (srlora_command): every "dashboard" / "watch it" hint prints it. src/viewmodel/continueCommand.ts dashboardCommand."""
    return f"{srlora_command(launch, 'serve')} --runs-dir {shlex.quote(os.path.abspath(runs_dir))}"


def cli_launch() -> Optional[dict]:
    """The srlora command line this package came with, as a hello.launch {node, cli}: the checkout's (or the
    extension's) dist/cli.js beside the folder srlora_torch is imported from, run by the `node` on PATH (both
    absolute); None when either is missing (then the hints say `srlora`, the installed bin)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    cli = os.path.join(root, "dist", "cli.js")
    node = shutil.which("node")
    return {"node": os.path.abspath(node), "cli": cli} if node and os.path.isfile(cli) else None


def continue_command(run_dir: str, world: int, launch: Optional[dict] = None, pytorch: bool = True) -> str:
    """The command line that continues the run in run_dir (its absolute path, shell-quoted) on as many processes as it
    had (world > 1: through srlora_torch.launch, i.e. torchrun): the same global batch; by the interpreter and
    PYTHONPATH that ran it (launch: its hello's, or launch_facts() for this process). A built-in trainer's run (pytorch
    False): srlora train. src/viewmodel/continueCommand.ts says it in the same words (test/vectors/continue/lines.json)."""
    command = (srlora_command(launch, "train") if not pytorch else python_module(launch, "srlora_torch.train") if world <= 1
               else python_module(launch, f"srlora_torch.launch --standalone --nproc_per_node={world} -m srlora_torch.train"))
    return f"{command} --resume {shlex.quote(os.path.abspath(run_dir))}"


def _fmt(v) -> str:
    """A summary number as src/cli/summary.ts fmt: 4 decimals, or JavaScript's toExponential(3) for tiny/huge ones."""
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        return "–"
    if abs(v) >= 1e4 or (v != 0 and abs(v) < 1e-3):
        mantissa, exp = f"{v:.3e}".split("e")
        return f"{mantissa}e{'+' if int(exp) >= 0 else '-'}{abs(int(exp))}"
    return f"{v:.4f}"


def time_trained(messages: list) -> float:
    """Seconds the run trained, summed over its incarnations as its log states them (src/cli/summary.ts timeTrained):
    from a trainer message to the next state that is not starting/running; a rewind starts a new stretch; what the
    supervisor wrote after the trainer was gone does not count."""
    total, start, last = 0, None, None
    for m in messages:
        if m["type"] == "state" and m.get("origin") == "supervisor":
            continue
        if m["type"] == "rewind" and start is not None and last is not None:
            total, start = total + last - start, None
        start = m["time"] if start is None else start
        last = m["time"]
        if m["type"] == "state" and m.get("state") not in ("starting", "running"):
            total, start = total + m["time"] - start, None
    if start is not None and last is not None:
        total += last - start
    return total / 1000


def summary(run_dir: str, outcome: str, cli: Optional[dict] = None) -> str:
    """A few lines (ending in a newline) on how the run in run_dir ended, read from its events.jsonl, in the built-in
    trainer's layout (src/cli/summary.ts trainingSummary; shared vectors test/vectors/summary/summaries.json): state,
    reason, steps and time trained; method and backend; final and best train loss, eval loss and each eval metric;
    recompositions; skipped steps; the folder and export; how to continue it (not finished: on as many ranks as it had)
    and how to watch it (by `cli`, default this package's srlora command line: cli_launch). `outcome`: the state when
    the log has none."""
    from .client import read_log  # the project's one log reader (strict JSON, a torn last line cut)
    folder = os.path.abspath(run_dir)  # every path absolute: a line copied into another terminal names the same folder
    try:
        messages = read_log(os.path.join(folder, "events.jsonl"))
    except OSError:
        return f"run {outcome}: {folder}\n"
    name, method, backend, total, state, reason, step, world, launch, skipped = os.path.basename(folder), None, "", None, outcome, None, 0, 1, None, 0
    losses, evals, recomps = {}, {}, []  # one value per step (a resume rewinds: the latest message for a step wins)
    for m in messages:
        t = m["type"]
        if t == "hello":
            name, method, total = m.get("name") or m.get("runId") or name, m.get("method"), m.get("totalSteps")
            backend = f"{(m.get('backend') or {}).get('name')} · {(m.get('backend') or {}).get('device')}"
            world, launch = m.get("worldSize") or 1, m.get("launch")
        elif t == "metrics" and m.get("rows"):
            for r in m["rows"]:
                losses[r["step"]] = r.get("loss")
                skipped += 1 if r.get("nonFiniteGrad") else 0
            step = max(step, m["rows"][-1]["step"])
        elif t == "eval":
            evals[m["step"]] = m
        elif t == "recomposition":
            recomps.append((m["step"], sum(len(l.get("slots") or []) for l in m.get("layers") or [])))
        elif t == "rewind":
            step = m["step"]
            losses = {k: v for k, v in losses.items() if k <= step}
            evals = {k: v for k, v in evals.items() if k <= step}
            recomps = [r for r in recomps if r[0] <= step]
        elif t == "state":
            state, reason, step = m.get("state"), m.get("reason"), max(step, m.get("step", 0))
    check = "✓" if state == "finished" else "✗" if state == "failed" else "■"
    trained = f" in {format_duration(time_trained(messages))} trained" if messages else ""
    lines = [f"{check} {name} — {state}{f' ({reason})' if reason else ''}, step {step}/{total if total is not None else '?'}{trained}",
             f"  method {method or '?'} on {backend or '?'}"]
    table = []
    values = [v for v in losses.values()]
    if values:
        table.append(("train loss", values[-1], min(values)))
    ordered = [evals[k] for k in sorted(evals)]
    if ordered:
        table.append(("eval loss", ordered[-1].get("loss"), min(e.get("loss") for e in ordered)))
        for k in sorted((ordered[-1].get("metrics") or {})):
            vals = [e["metrics"][k] for e in ordered if isinstance((e.get("metrics") or {}).get(k), (int, float))]
            best = min(vals) if re.search(r"loss|error|perplexity", k, re.I) else max(vals)
            table.append((f"eval {k}", ordered[-1]["metrics"][k], best))
    w = max([12] + [len(k) + 1 for k, _, _ in table] + ([len("recompositions") + 1] if method == "srlora" else []))
    lines += [f"  {k.ljust(w)} final {_fmt(final)}   best {_fmt(best)}" for k, final, best in table]
    if method == "srlora":
        lines.append(f"  {'recompositions'.ljust(w)} {recompositions_count(len(recomps), sum(n for _, n in recomps), sum(1 for _, n in recomps if n == 0))}")
    if skipped:
        lines.append(f"  {skipped} step{'' if skipped == 1 else 's'} skipped (non-finite gradients)")
    label = lambda k: f"  {k.ljust(w)} "  # noqa: E731
    lines.append(f"{label('run folder')}{folder}")
    if os.path.isfile(os.path.join(folder, "export", "merged.safetensors")):
        lines.append(f"{label('export')}{os.path.join(folder, 'export')}")
    if state != "finished":  # offered only when a resume can start (sizes and markers: the resume verifies the checksums)
        from .checkpoint import newest_verified
        pytorch = backend.startswith("pytorch ")
        can = newest_verified(folder, check="size") is not None
        lines.append(f"{label('continue')}{continue_command(folder, world, launch, pytorch) if can else 'not possible: no complete checkpoint to resume from'}")
    lines.append(f"{label('dashboard')}{dashboard_command(os.path.dirname(folder), cli if cli is not None else cli_launch())}")
    return "\n".join(lines) + "\n"
