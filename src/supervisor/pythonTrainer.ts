/**
 * Is the PyTorch trainer usable with this Python, and on what device? Asked before offering it in "Start Run…":
 * a Python without torch (or without srlora_torch) is reported with exactly what is missing, never a silent fallback.
 * The extension ships srlora_torch (pure Python) in its own `python/` folder and puts that folder first on PYTHONPATH
 * of the probe and of every trainer it launches (pythonEnv): nothing of ours needs installing into the user's Python.
 */
import { execFile } from 'node:child_process';
import { delimiter, isAbsolute, join, resolve } from 'node:path';

/** ok: torch and srlora_torch import; `missing` names optional packages that are absent (transformers, peft: needed
 * for Hugging Face models) with their import errors; `gpus`: CUDA devices torch sees (0 on a CPU-only machine). */
export type PythonProbe = { ok: true; label: string; torch: string; gpus: number; missing: string[] } | { ok: false; error: string };

// Each import on its own, so the answer names every missing package, not only the first one.
// transformers and peft are only looked up (find_spec), not imported: importing them takes seconds.
const PROBE = [
  'import json, sys, importlib.util',
  'missing = {}',
  'for m in ("torch", "srlora_torch"):',
  '    try: __import__(m)',
  '    except Exception as e: missing[m] = f"{type(e).__name__}: {e}"',
  'for m in ("transformers", "peft"):',
  '    if importlib.util.find_spec(m) is None: missing[m] = f"ModuleNotFoundError: No module named \'{m}\'"',
  'out = {"python": sys.version.split()[0], "missing": missing}',
  'if "torch" not in missing:',
  '    import torch',
  '    cuda = torch.cuda.is_available()',
  '    out.update(torch=torch.__version__, device=("CUDA · " + torch.cuda.get_device_name(0)) if cuda else "CPU", gpus=torch.cuda.device_count() if cuda else 0)',
  'print(json.dumps(out))',
].join('\n');

const PROBE_TIMEOUT_MS = 120_000;

/** The folder holding srlora_torch inside an installed extension (or this repository). */
export function pythonPackageDir(extensionRoot: string): string {
  return join(extensionRoot, 'python');
}

/** The environment additions that make `import srlora_torch` find the extension's copy first (before any installed
 * one, so the trainer always speaks the extension's protocol). `base` is the environment being extended. */
export function pythonEnv(packageDir: string, base: NodeJS.ProcessEnv = process.env): { PYTHONPATH: string } {
  return { PYTHONPATH: base.PYTHONPATH ? `${packageDir}${delimiter}${base.PYTHONPATH}` : packageDir };
}

export function probePython(python: string, env: NodeJS.ProcessEnv = {}): Promise<PythonProbe> {
  return new Promise((resolve) => {
    execFile(python, ['-c', PROBE], { env: { ...process.env, ...env }, timeout: PROBE_TIMEOUT_MS }, (err, stdout, stderr) => {
      if (err && (err as { killed?: boolean }).killed) {
        resolve({ ok: false, error: `${python}: did not answer within ${PROBE_TIMEOUT_MS / 1000} s (importing torch)` });
        return;
      }
      if (err) {
        const lines = (stderr || err.message).trim().split('\n');
        resolve({ ok: false, error: `${python}: ${lines[lines.length - 1]}` });
        return;
      }
      let r: { python: string; missing: Record<string, string>; torch?: string; device?: string; gpus?: number };
      try {
        r = JSON.parse(stdout.trim().split('\n').pop() ?? '') as typeof r;
      } catch {
        resolve({ ok: false, error: `${python}: unexpected answer ${JSON.stringify(stdout.slice(0, 200))}` });
        return;
      }
      const required = ['torch', 'srlora_torch'].filter((m) => m in r.missing);
      if (required.length || !r.torch) {
        const what = required.map((m) => `${m} (${r.missing[m]})`).join('; ');
        const hint = 'torch' in r.missing ? ` — install PyTorch into this Python (pip install torch) or pick another one in srlora.python.path` : '';
        resolve({ ok: false, error: `${python} (Python ${r.python}): missing ${what}${hint}` });
        return;
      }
      const optional = ['transformers', 'peft'].filter((m) => m in r.missing);
      const label = `PyTorch · ${r.device ?? 'CPU'}`;
      const gpus = Number.isInteger(r.gpus) && (r.gpus ?? 0) > 0 ? (r.gpus as number) : 0;
      resolve({ ok: true, label, torch: r.torch, gpus, missing: optional.map((m) => `${m} (${r.missing[m]}): Hugging Face models need it`) });
    });
  });
}

/**
 * The interpreter as every launch runs it: a path typed relative (".venv/bin/python") made absolute against `base`
 * (the folder it was typed in: serve's working folder, VS Code's workspace folder) — the trainer runs in the run's
 * folder, where a relative path names nothing (exit 127, no word of why). A bare name ("python3") is left to PATH.
 */
export function interpreterPath(python: string, base: string): string {
  return /[\\/]/.test(python) && !isAbsolute(python) ? resolve(base, python) : python;
}

/** How a PyTorch run starts: one process, or `ranks` data-parallel processes (one per GPU) under torch's own
 * launcher through `python -m srlora_torch.launch` (torch.distributed.run, i.e. torchrun, with its arguments, from the
 * same Python: no PATH lookup; an interrupt ends in one line, not torchrun's traceback). */
function launcher(python: string, ranks: number): string {
  const py = JSON.stringify(python);
  const n = Math.max(1, Math.floor(ranks));
  return n > 1 ? `${py} -m srlora_torch.launch --standalone --nproc_per_node=${n} -m srlora_torch.train` : `${py} -m srlora_torch.train`;
}

/** The command line the extension (and `srlora serve --trainer pytorch`) runs for a PyTorch run of a config file, on
 * `ranks` GPUs (1: no torchrun); `withConfig` false: the trainer's built-in defaults (the demo task). */
export function pytorchCommand(python: string, ranks = 1, withConfig = true): string {
  return withConfig ? `${launcher(python, ranks)} --config \${config}` : launcher(python, ranks);
}

/** The command line that continues a PyTorch run from its latest checkpoint, on `ranks` processes. */
export function pytorchResumeCommand(python: string, ranks = 1): string {
  return `${launcher(python, ranks)} --resume \${runDir}`;
}

/** How many ranks a continued run gets: as many as it had (its hello's worldSize), no more than the GPUs there are
 * now (a CPU-only machine keeps the count: gloo runs there). */
export function resumeRanks(worldSize: number, gpus: number): number {
  return gpus > 0 ? Math.max(1, Math.min(worldSize, gpus)) : Math.max(1, worldSize);
}
