/**
 * `srlora train [--config FILE] [--runs-dir DIR (default .srlora/runs)] [--resume RUN_DIR] [--<field> VALUE …]`
 * Flags named after config fields override them (`--r 8`, `--fusion-threshold 1.0`, `--task.transform upright`).
 * The env contract of docs/protocol.md: SRLORA_HUB_URL + SRLORA_TOKEN connect to a hub; SRLORA_RUN_DIR is the run folder.
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { applyOverrides, configErrorMessage, parseRunConfig, readConfigValue, readRunConfig, readRunFolderConfig, RunConfigError, withAbsolutePaths, type RunConfig } from '../trainer/config/runConfig';
import { newRunDir, TrainingRun } from '../trainer/process/trainingRun';
import { DEFAULT_RUNS_DIR } from './usage';
import { trainingSummary } from './summary';
import { readJsonl } from '../runfolder/eventLog';
import { EVENTS_FILE } from '../runfolder/runFiles';
import { runIdOf } from '../runfolder/scan';
import { foldRun } from '../viewmodel/runModel';
import { continueCommand, dashboardCommand, type PythonLaunch } from '../viewmodel/continueCommand';
import type { TrainerMessage } from '../protocol/messages';
import { resumeRefusal } from '../runfolder/lock';
import { removeOwnPidFile, writeOwnPidFile } from '../runfolder/pidfile';
import { EventRecorder } from '../trainer/link/recorder';
import { PID_FILE } from '../runfolder/runFiles';
import { cliLaunch } from './launch';
import { neverStartedMessage } from './runTarget';

const OWN_FLAGS = new Set(['config', 'runs-dir', 'resume', 'no-progress']);

/** `own`: train's own options; `overrides`: [config field path ("r", "task.transform"), value]; `typed`: each override's
 * field path → the flag as the user typed it ("--fusion-threshold"), for errors that name it. */
export function parseFlags(argv: string[]): { own: Map<string, string | true>; overrides: [string, string][]; typed: Map<string, string> } {
  const own = new Map<string, string | true>();
  const overrides: [string, string][] = [];
  const typed = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${JSON.stringify(a)} (flags are --name value)`);
    const [key, inline] = a.slice(2).split(/=(.*)/s, 2) as [string, string | undefined];
    let value = inline;
    if (key === 'no-progress') { own.set(key, true); continue; }
    if (value === undefined) {
      value = argv[++i];
      if (value === undefined) throw new Error(`--${key} needs a value`);
    }
    if (OWN_FLAGS.has(key)) own.set(key, value);
    else {
      const field = key.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
      overrides.push([field, field === 'fusionThreshold' ? fusionThresholdFlag(value) : value]);
      typed.set(field, `--${key}`);
    }
  }
  return { own, overrides, typed };
}

/** The run config `train` runs: FILE (or the defaults) with `--field value` flags over it, validated, its paths made
 * absolute against FILE's folder (`baseDir`). Throws the one-line error naming every wrong field as the user gave it:
 * the flag they typed (`typed`: field path → flag; default `--field`), else the file and its pointer. `srlora serve
 * --config` calls it too, so that it refuses a bad file up front with the same words. */
export function configWithFlags(file: string | undefined, overrides: [string, string][], typed: ReadonlyMap<string, string> = new Map()): { config: RunConfig; baseDir: string } {
  let base: unknown;
  try {
    base = file !== undefined ? readRunConfig(resolve(file)) : parseRunConfig({}, 'defaults');
  } catch (e) {
    if (!(e instanceof RunConfigError) || file === undefined) throw e;
    base = readConfigValue(resolve(file)); // a bad file: its errors and the flags' in one line, as the PyTorch trainer says them
  }
  const baseDir = file !== undefined ? dirname(resolve(file)) : process.cwd();
  try {
    return { config: withAbsolutePaths(parseRunConfig(applyOverrides(base as Record<string, unknown>, overrides), file ?? 'defaults'), baseDir), baseDir };
  } catch (e) {
    if (!(e instanceof RunConfigError)) throw e;
    const flags = new Map(overrides.map(([field]) => [`/${field.split('.').join('/')}`, typed.get(field) ?? `--${field}`]));
    throw new Error(configErrorMessage(e.source, e.errors, flags));
  }
}

/** `--fusion-threshold`: a number ≥ 0 (τ), or `off` (also `null`: the paper's rule), as the page and palette call it;
 * anything else is refused naming the range (the schema alone would say "expected number | null, got -1"). */
function fusionThresholdFlag(value: string): string {
  if (value === 'off' || value === 'null') return 'null';
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0) throw new Error(`--fusion-threshold: ${JSON.stringify(value.slice(0, 40))} is not a number ≥ 0 or off (off: the paper's rule, the least important ceil(fusionRatio·r) pairs fuse)`);
  return value;
}

/** What `train --resume` (and `serve --resume` without `--trainer pytorch`) says of a PyTorch run's folder (absolute),
 * trained on `worldSize` processes: the command that continues it on as many. */
export function pytorchRunMessage(runDir: string, worldSize: number, launch: PythonLaunch | null): string {
  return `${runDir} is a run of the PyTorch trainer: continue it with ${continueCommand(runDir, true, worldSize, launch)}`;
}

/**
 * A resume that dies before its trainer starts (a checkpoint that does not load, a file gone) left the run reading as
 * its old interrupted/stopped state with no reason: no supervisor records the end of a trainer whose log never showed
 * it running. Appends `failed` at the step the log reached, reason `could not resume: <line>` — as the PyTorch
 * trainer does (python/srlora_torch/train.py) — and drops the trainer.pid this process wrote. A failure to record is
 * said on stderr; the error itself is still thrown by the caller.
 */
function recordFailedResume(dir: string, line: string, ownPid: boolean): void {
  try {
    const id = runIdOf(dir);
    const model = foldRun(id, readJsonl<TrainerMessage>(join(dir, EVENTS_FILE)).events);
    const rec = new EventRecorder(id, dir, true);
    rec.emit({ type: 'state', state: 'failed', step: model.step, reason: `could not resume: ${line}`.slice(0, 4096) });
    rec.sync();
    rec.close();
  } catch (e) {
    process.stderr.write(`could not record the failed resume in ${dir}: ${e instanceof Error ? e.message : String(e)}\n`);
  }
  if (ownPid) removeOwnPidFile(join(dir, PID_FILE));
}

export async function trainCommand(argv: string[]): Promise<number> {
  const { own, overrides, typed } = parseFlags(argv);
  const env = process.env;
  const resumeDir = typeof own.get('resume') === 'string' ? resolve(own.get('resume') as string) : null;
  let config: RunConfig;
  let baseDir = process.cwd();
  let runDir: string;
  if (resumeDir) {
    // Someone else training it (serve, VS Code, another terminal): a second trainer would append to its log too.
    const refusal = resumeRefusal(resumeDir);
    if (refusal) throw new Error(refusal);
    // Which trainer wrote the run, before its config is read: the PyTorch trainer's config and checkpoints are not ours.
    const events = join(resumeDir, EVENTS_FILE);
    const written = existsSync(events) ? foldRun(runIdOf(resumeDir), readJsonl<TrainerMessage>(events).events) : null;
    const never = neverStartedMessage(resumeDir);
    if (never) throw new Error(never);
    if (written?.pytorch) throw new Error(pytorchRunMessage(resumeDir, written.worldSize, written.launch));
    config = readRunFolderConfig(resumeDir);
    if (overrides.length) throw new Error('--resume continues the run as configured; flags that change the config are not allowed');
    runDir = resumeDir;
    // A finished run has nothing left to do: every step, its last checkpoint and its export are done. Loading it
    // would redo the export and append to its log; say so and show its summary instead.
    const model = foldRun(runIdOf(resumeDir), readJsonl<TrainerMessage>(join(resumeDir, EVENTS_FILE)).events);
    if (model.state === 'finished') {
      process.stderr.write(`run ${model.name} is finished (step ${model.step}/${model.totalSteps ?? model.step}): every step is done, nothing to continue\n`);
      try { process.stderr.write(`\n${trainingSummary(resumeDir)}`); } catch { /* no log */ }
      return 0;
    }
  } else {
    const file = own.get('config');
    ({ config, baseDir } = configWithFlags(typeof file === 'string' ? file : undefined, overrides, typed));
    const runsDir = typeof own.get('runs-dir') === 'string' ? resolve(own.get('runs-dir') as string) : resolve(DEFAULT_RUNS_DIR);
    runDir = env.SRLORA_RUN_DIR ? resolve(env.SRLORA_RUN_DIR) : newRunDir(runsDir, config.method);
  }
  const hub = env.SRLORA_HUB_URL ? { url: env.SRLORA_HUB_URL, token: env.SRLORA_TOKEN ?? '' } : null;
  if (hub && !hub.token) throw new Error('SRLORA_HUB_URL is set but SRLORA_TOKEN is not');
  // A resume from a terminal holds the run from now on (its own trainer.pid, as TrainingRun.create writes it again),
  // not only once the model has loaded: a second resume meanwhile is refused.
  if (resumeDir && !hub) writeOwnPidFile(join(resumeDir, PID_FILE));
  let run: TrainingRun;
  try {
    run = await TrainingRun.create({
      config, runDir, baseDir, hub, resume: Boolean(resumeDir), newFolder: !resumeDir && !env.SRLORA_RUN_DIR, progress: own.get('no-progress') !== true, launch: cliLaunch(),
      onLog: (line) => process.stderr.write(`${line}\n`),
    });
  } catch (e) {
    if (resumeDir) recordFailedResume(resumeDir, e instanceof Error ? e.message : String(e), !hub);
    throw e;
  }
  runDir = run.options.runDir; // a new run's folder may have been renamed on a clash (makeNewRunDir)
  process.stderr.write(`run ${run.runId} → ${runDir}${hub ? '' : ` (watch it: ${dashboardCommand(dirname(runDir), cliLaunch())})`}\n`);
  // Ctrl+C, or the extension closing/reloading its window: checkpoint at the step boundary, then `interrupted`.
  const stop = (sig: string) => run.requestStop(`received ${sig}`);
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
  const outcome = await run.run();
  process.stderr.write(`run ${run.runId}: ${outcome}\n`);
  if (!hub) { try { process.stderr.write(`\n${trainingSummary(runDir)}`); } catch { /* no log: nothing to sum up */ } } // webview's src/cli/summary.ts
  // The log's final state says how the run ended; the exit code says whether the trainer failed.
  const code = outcome === 'failed' ? 1 : 0;
  // Nothing may keep a finished trainer alive (a hub link that cannot close, after a disk-full failure too): exit
  // once everything has had a moment to drain. unref: a process that ends sooner is not held by this timer.
  setTimeout(() => process.exit(code), 5000).unref();
  return code;
}
