/**
 * Which trainer may run a config, as the "Start Run…" picker offers them (pure: no vscode, Node tests check it).
 * A config only the PyTorch trainer runs (a text task, a Hugging Face model) offers PyTorch first and shows the
 * built-in trainer as unable, with the field that rules it out — choosing it started a run that failed at once.
 */
import { checkAnyRunConfig, pytorchOnlyField, readConfigValue, readRunConfig } from '../trainer/config/runConfig';
import { pytorchCommand, type PythonProbe } from '../supervisor/pythonTrainer';

/** One quick-pick row: `id` is '' for the built-in trainer, a PyTorch command line, or 'unable' (`unable` says why). */
export interface TrainerRow { label: string; description: string; detail?: string; id: string; unable?: string }

/** Why the built-in trainer cannot run the config in `file` ("/task/kind: "text" runs on the PyTorch trainer only"),
 * or null when it can or the file cannot be read (the config check before launch reports that). */
export function builtInRefusal(file: string): string | null {
  let value: unknown;
  try { value = readConfigValue(file); } catch { return null; }
  const field = pytorchOnlyField(value);
  return field ? `${field} runs on the PyTorch trainer only` : null;
}

/**
 * The picker's rows: the built-in trainer (TensorFlow.js on `backend`) and one PyTorch row per GPU count the probe
 * found (more than one launches torchrun), or one row saying why PyTorch is unavailable. The first row is the default:
 * the built-in trainer, unless `refusal` (builtInRefusal) rules it out — then PyTorch comes first and the built-in
 * row, last, is marked unable with the reason.
 */
export function trainerRows(refusal: string | null, backend: string, probe: PythonProbe, python: string): TrainerRow[] {
  const builtIn: TrainerRow = refusal
    ? { label: '$(circle-slash) Built-in trainer: cannot run this config', description: refusal, id: 'unable', unable: `the built-in trainer cannot run this config: ${refusal}` }
    : { label: '$(symbol-method) Built-in trainer', description: `TensorFlow.js · ${backend}`, id: '' };
  const detail = probe.ok && probe.missing.length ? `Missing: ${probe.missing.join('; ')}` : undefined;
  const torch: TrainerRow[] = probe.ok
    ? Array.from({ length: Math.max(1, probe.gpus) }, (_, i) => i + 1).map((n) => ({
      label: `$(flame) ${probe.label}${n > 1 ? ` × ${n} GPUs` : probe.gpus > 1 ? ' · 1 GPU' : ''}`,
      description: `${n > 1 ? 'torchrun, DDP · ' : ''}torch ${probe.torch} · ${python}`, ...(detail ? { detail } : {}), id: pytorchCommand(python, n),
    }))
    : [{ label: '$(warning) PyTorch unavailable', description: probe.error, id: 'unable', unable: `PyTorch trainer: ${probe.error}` }];
  return refusal ? [...torch, builtIn] : [builtIn, ...torch];
}

/** The config's errors as the chosen trainer will judge them (the built-in trainer's parser, or the schema both
 * trainers share for PyTorch), or null: checked before a run folder is made, so a bad config leaves no failed run. */
export function configProblem(file: string, pytorch: boolean): string | null {
  try {
    if (!pytorch) { readRunConfig(file); return null; }
    const problem = checkAnyRunConfig(readConfigValue(file));
    return problem ? `${file}: ${problem}` : null;
  } catch (e) {
    return (e as Error).message;
  }
}
