/**
 * Is the PyTorch trainer usable with this Python, and on what device? Asked before offering it in "Start Run…":
 * a Python without torch (or without srlora_torch) is reported with its exact import error, never a silent fallback.
 */
import { execFile } from 'node:child_process';

export type PythonProbe = { ok: true; label: string; torch: string } | { ok: false; error: string };

const PROBE = [
  'import json, torch, srlora_torch',
  'cuda = torch.cuda.is_available()',
  'print(json.dumps({"torch": torch.__version__, "device": ("CUDA · " + torch.cuda.get_device_name(0)) if cuda else "CPU"}))',
].join('\n');

export function probePython(python: string, env: NodeJS.ProcessEnv = {}): Promise<PythonProbe> {
  return new Promise((resolve) => {
    execFile(python, ['-c', PROBE], { env: { ...process.env, ...env }, timeout: 60_000 }, (err, stdout, stderr) => {
      if (err) {
        const lines = (stderr || err.message).trim().split('\n');
        resolve({ ok: false, error: `${python}: ${lines[lines.length - 1]}` });
        return;
      }
      try {
        const r = JSON.parse(stdout.trim().split('\n').pop() ?? '') as { torch: string; device: string };
        resolve({ ok: true, label: `PyTorch · ${r.device}`, torch: r.torch });
      } catch {
        resolve({ ok: false, error: `${python}: unexpected answer ${JSON.stringify(stdout.slice(0, 200))}` });
      }
    });
  });
}

/** The command line the extension runs for a PyTorch run of a config file. */
export function pytorchCommand(python: string): string {
  return `${JSON.stringify(python)} -m srlora_torch.train --config \${config}`;
}

/** The command line that continues a PyTorch run from its latest checkpoint. */
export function pytorchResumeCommand(python: string): string {
  return `${JSON.stringify(python)} -m srlora_torch.train --resume \${runDir}`;
}
