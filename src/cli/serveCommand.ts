/**
 * `srlora serve [--runs-dir DIR] [--port N] [--host 127.0.0.1] [--demo | --config FILE | --resume RUN_DIR_OR_ID] [--trainer builtin|pytorch]`
 * The standalone dashboard (as `tensorboard --logdir`): a hub on loopback with the page, the runs of DIR, and
 * optionally a run started now (the built-in demo, or FILE), by the built-in trainer or the PyTorch one (`--trainer
 * pytorch [--python PATH] [--gpus N]`: the same RunManager launch as VS Code's Start Run…, with the srlora_torch this
 * package ships first on PYTHONPATH; a Python that cannot run it is an error naming what is missing). Prints the URL with its token. It watches DIR: runs
 * started anywhere appear and stream. Runs another supervisor owns (a VS Code window, another serve) are shown
 * read-only. `--resume RUN_DIR_OR_ID` continues a stopped, interrupted or failed run, by the trainer that wrote it, from its
 * latest complete checkpoint under this serve (RunManager.continueRun), so the page steers it — a run continued from a
 * terminal (`train --resume`) is only followed. Ctrl+C interrupts the runs this serve owns (they checkpoint and are `interrupted`) and exits; a start
 * that fails exits non-zero.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Hub } from '../hub/hub';
import { RunManager, STOP_GRACE_MS } from '../supervisor/runManager';
import { pageHandler } from '../serve/pageServer';
import { installProcessGuard } from '../serve/processGuard';
import { assetRoot } from '../trainer/process/task';
import { configWithFlags, pytorchRunMessage } from './trainCommand';
import { continueCommand, shellWord, srloraCommand } from '../viewmodel/continueCommand';
import { cliLaunch, cliOr } from './launch';
import { DEFAULT_RUNS_DIR } from './usage';
import { interpreterPath, probePython, pythonEnv, pythonPackageDir, pytorchCommand, pytorchResumeCommand, resumeRanks } from '../supervisor/pythonTrainer';
import { EVENTS_FILE } from '../runfolder/runFiles';
import { latestCompleteCheckpoint } from '../runfolder/checkpoints';
import { isResumable, type RunModel } from '../viewmodel/runModel';
import { neverStartedMessage, resolveRunArg, runTrainerOf, type RunTarget } from './runTarget';

export async function serveCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      'runs-dir': { type: 'string' }, resume: { type: 'string' }, port: { type: 'string', default: '0' }, host: { type: 'string', default: '127.0.0.1' },
      demo: { type: 'boolean', default: false }, config: { type: 'string' }, steps: { type: 'string' },
      trainer: { type: 'string' }, python: { type: 'string' }, gpus: { type: 'string', default: '1' },
    },
  });
  if (values.trainer !== undefined && values.trainer !== 'builtin' && values.trainer !== 'pytorch') throw new Error(`--trainer: ${values.trainer.slice(0, 40)} is not builtin or pytorch`);
  const gpus = Number(values.gpus);
  if (!Number.isInteger(gpus) || gpus < 1 || gpus > 64) throw new Error(`--gpus: ${values.gpus.slice(0, 40)} is not a whole number from 1 to 64`);
  if (values.steps !== undefined && !/^[1-9]\d{0,9}$/.test(values.steps)) throw new Error(`--steps: ${values.steps.slice(0, 40)} is not a whole number ≥ 1`);
  const resume = values.resume !== undefined ? resolveRunArg(values.resume, values['runs-dir'], '--resume') : null;
  const never = resume?.dir ? neverStartedMessage(resume.dir) : null;
  if (never) throw new Error(never); // before any trainer is picked: it said nothing about which one it was
  // A resumed run is continued by the trainer that wrote it (serve reads it from the run); --trainer may only agree.
  const pytorch = (values.trainer ?? (resume?.dir ? runTrainerOf(resume.dir) : null) ?? 'builtin') === 'pytorch';
  if (resume && (values.demo || values.config !== undefined || values.steps !== undefined)) throw new Error('--resume continues a run as it was configured: --demo, --config and --steps are not allowed with it');
  if (resume && values.gpus !== '1') throw new Error('--resume continues a run on as many processes as it had (no more than the GPUs here): --gpus is not allowed with it');
  const runsDir = resolve(values['runs-dir'] ?? resume?.runsDir ?? DEFAULT_RUNS_DIR);
  if (!pytorch && (values.python !== undefined || values.gpus !== '1')) throw new Error('--python and --gpus choose the PyTorch trainer\'s Python and GPUs: add --trainer pytorch');
  // A Python given as a path is made absolute here: the trainer runs in the run's folder (a resume's cwd), where a
  // relative .venv/bin/python names nothing (exit 127, said nowhere). A bare name (python3) is looked up on PATH.
  const pythonPath = values.python === undefined ? 'python3' : interpreterPath(values.python, process.cwd());
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port: ${values.port} is not a port number`);
  if (values.host !== '127.0.0.1' && values.host !== 'localhost' && values.host !== '::1') {
    process.stderr.write(`warning: serving on ${values.host}: anyone who can reach it and has the token can steer your runs\n`);
  }
  const root = assetRoot();
  // A bad config is refused before anything is created (no hub, no run folder), in the words `train` uses: the
  // built-in trainer's validator, or the PyTorch trainer's own (it alone knows its tasks and models).
  const steps: [string, string][] = values.steps ? [['steps', values.steps]] : [];
  let probe: Awaited<ReturnType<typeof probePython>> | null = null;
  if (pytorch && (values.demo || values.config || resume)) {
    // What VS Code's Start Run… does: ask the Python first, so a missing torch is said, never a silent fallback.
    probe = await probePython(pythonPath, pythonEnv(pythonPackageDir(root)));
    if (!probe.ok) throw new Error(`--trainer pytorch: ${probe.error}`);
    if (values.config) await checkPytorchConfig(pythonPath, pythonPackageDir(root), values.config, values.steps, gpus);
  } else if (values.config) {
    configWithFlags(values.config, steps);
  }
  let handler: ReturnType<typeof pageHandler> | null = null;
  installProcessGuard((line) => process.stderr.write(`${line}\n`)); // no request can end serve (issue 13.1)
  const hub = await Hub.start({ host: values.host, port, onHttpRequest: (req, res) => handler?.(req, res) });
  // One listener, from the hub's start (a page's request may come at once): http and server refusals were printed twice.
  // A run closed on the hub (its folder removed or deleted) is news, not a rejection (fresh8: "rejected … removed").
  hub.on('rejected', (where, error) => process.stderr.write(`hub: ${error.startsWith('removed: ') ? '' : 'rejected '}${where}: ${error}\n`));
  handler = pageHandler(root, hub.viewerToken, (e) => process.stderr.write(`page: ${String(e)}\n`));
  const origin = hub.httpOrigin;
  hub.allowOrigin(origin);
  hub.allowOrigin(origin.replace('127.0.0.1', 'localhost'));
  const runs = new RunManager({
    runsDir, hub, cliPath: process.argv[1], nodePath: process.execPath, assetsDir: root, by: 'srlora serve',
    pythonPackageDir: pythonPackageDir(root),
  });
  // Ctrl+C is ours from here, before any trainer is spawned: a trainer is started detached (its own process group, so
  // a terminal's Ctrl+C does not reach it), and serve ending on the default SIGINT while starting it left that trainer
  // training unseen, its run without an owner (fresh8 F1, F2). A stop during the start waits for the start, then ends
  // what it started as any stop does. The trainers get the signal serve got, so their records say what the user did.
  let starting: Promise<unknown> = Promise.resolve();
  let stopping = false;
  let stoppedDone!: () => void;
  const stopped = new Promise<void>((done) => { stoppedDone = done; });
  const stop = (sig: 'SIGINT' | 'SIGTERM') => {
    if (stopping) process.exit(130); // the second: leave now; detached trainers finish their checkpoints on their own
    stopping = true;
    const what = sig === 'SIGINT' ? 'srlora serve was stopped (Ctrl+C, SIGINT)' : 'srlora serve was terminated (SIGTERM)';
    void starting.catch(() => undefined).then(() => {
      const live = [...runs.runs.values()].filter((r) => r.owned && r.handle?.alive);
      process.stdout.write(live.length ? `\nstopping: ${live.length === 1 ? 'the trainer checkpoints' : `${live.length} trainers checkpoint`} first (up to ${STOP_GRACE_MS / 1000} s; Ctrl+C again to leave ${live.length === 1 ? 'it' : 'them'} finishing on ${live.length === 1 ? 'its' : 'their'} own)\n` : '\nstopping…\n');
      return runs.dispose('stop', what, sig).then(() => {
        for (const r of live) {
          if (!existsSync(r.dir)) continue; // never started: removed, nothing to continue
          const resumable = isResumable(r.model.state) && latestCompleteCheckpoint(r.dir, { hashes: false }).dir !== null;
          process.stdout.write(`run ${r.runId}: ${r.model.state} at step ${r.model.step}${resumable ? `; continue: ${serveResumeCommand(resolve(r.dir), r.model)}` : ''}\n`);
        }
      });
    }).then(() => hub.close()).then(stoppedDone);
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  runs.on('log', (level, text) => { if (level !== 'info' || !text.startsWith('[')) process.stderr.write(`${level === 'info' ? '' : `${level}: `}${text}\n`); });
  try {
    runs.scan();
  } catch (e) {
    await hub.close();
    throw e;
  }
  runs.watch();
  let started: string | null = null;
  if (probe?.ok) process.stdout.write(`PyTorch trainer: ${probe.label}, torch ${probe.torch} (${pythonPath})\n`);
  if (resume) {
    // A refusal (unknown run, wrong trainer, running elsewhere, no checkpoint) exits non-zero, not half up.
    const run = await (starting = continueRun(runs, resume, pytorch ? { python: pythonPath, gpus: probe?.ok ? probe.gpus : 0 } : null)
      .catch(async (e: unknown) => { await runs.dispose('stop'); await hub.close(); throw e; }));
    started = run.runId;
  }
  if (values.demo || values.config) {
    const overrides: Record<string, string> = values.steps ? { steps: values.steps } : {};
    let trainerCommand: string | undefined;
    if (pytorch) {
      const python = pythonPath;
      if (!probe?.ok) throw new Error('unreachable: the Python was probed above');
      trainerCommand = `${pytorchCommand(python, gpus, values.config !== undefined)}${values.steps ? ` --steps ${values.steps}` : ''}`;
    }
    const run = await (starting = runs.start({
      configFile: values.config ? resolve(values.config) : null, overrides: values.config ? overrides : { method: 'srlora', ...overrides },
      ...(trainerCommand ? { trainerCommand } : {}),
    })
      .catch(async (e: unknown) => { await runs.dispose('stop'); await hub.close(); throw e; })); // exits non-zero, not half up
    started = run.runId;
    process.stdout.write(`started run ${run.runId} in ${run.dir}\n`);
  }
  const url = `${origin}/?token=${hub.viewerToken}${started ? `&run=${encodeURIComponent(started)}` : ''}`;
  if (!stopping) process.stdout.write(`\nSRLoRA dashboard: ${url}\n(${runs.runs.size} run${runs.runs.size === 1 ? '' : 's'} in ${runs.runsDir}; Ctrl+C stops serve, its trainers checkpoint first)\n`);
  await stopped;
  return 0;
}

/** Continues the run `--resume` named under this serve's supervision, after saying what is wrong when it cannot: an
 * unknown id, a run of the other trainer (in `train --resume`'s words), a run that is running (and who runs it), a run
 * with nothing to continue from. `pytorch`: the Python (and its GPUs) that runs a PyTorch run. */
async function continueRun(runs: RunManager, target: RunTarget, pytorch: { python: string; gpus: number } | null) {
  const run = [...runs.runs.values()].find((r) => (target.dir ? resolve(r.dir) === target.dir : r.runId === target.id || basename(r.dir) === target.id));
  if (!run) {
    throw new Error(target.dir ? `--resume: ${target.dir} has no ${EVENTS_FILE}: it never started, there is nothing to continue`
      : `--resume: no run ${JSON.stringify(target.id.slice(0, 200))} in ${runs.runsDir}`);
  }
  await run.folding; // its whole log (a long one is folded in the background)
  const name = resolve(run.dir);
  const isPytorch = run.model.pytorch;
  // Only an explicit --trainer can disagree with the run (serve picks the run's own otherwise).
  if (isPytorch && !pytorch) throw new Error(`${pytorchRunMessage(name, run.model.worldSize, run.model.launch)} (or here: ${serveResumeCommand(name, run.model)})`);
  if (!isPytorch && pytorch) throw new Error(`${name} is a run of the built-in trainer (srlora train): continue it with ${continueCommand(name, false, 1, cliOr(run.model.launch))} (or here: ${serveResumeCommand(name, run.model)})`);
  if (run.handle?.alive && run.owned) {
    // Its owner was gone and this serve took it over while listing it: it is ours to steer already.
    process.stdout.write(`run ${run.runId} is ${run.model.state}: its supervisor was gone, this serve took it over (trainer pid ${run.handle.pid})\n`);
    return run;
  }
  const command = pytorch ? pytorchResumeCommand(pytorch.python, resumeRanks(run.model.worldSize, pytorch.gpus)) : undefined;
  const was = `${run.model.state} at step ${run.model.step}`;
  const continued = await runs.continueRun(run.runId, command);
  process.stdout.write(`continued run ${continued.runId} (${was}) in ${continued.dir}\n`);
  return continued;
}

/** Runs the PyTorch trainer's own validator on FILE (`python -m srlora_torch.train --check`), for `gpus` data-parallel
 * processes (`--world-size`: e.g. a task with no data to split is refused before anything is created): resolves when
 * it is valid; rejects with the trainer's last stderr line (what the trainer would say at its start). */
function checkPytorchConfig(python: string, packageDir: string, file: string, steps: string | undefined, gpus: number): Promise<void> {
  const args = ['-m', 'srlora_torch.train', '--check', '--config', file, ...(steps ? ['--steps', steps] : []), ...(gpus > 1 ? ['--world-size', String(gpus)] : [])];
  return new Promise((done, fail) => {
    execFile(python, args, { env: { ...process.env, ...pythonEnv(packageDir) }, timeout: 120_000, maxBuffer: 1 << 20 }, (err, _stdout, stderr) => {
      if (!err) { done(); return; }
      fail(new Error(stderr.trim().split('\n').at(-1)?.slice(0, 2000) || `the PyTorch trainer refused ${file}: ${err.message}`));
    });
  });
}

/** `serve --resume DIR` as a line that runs: a PyTorch run names the Python that ran it (its hello.launch), which
 * serve's own default (python3) may not be (fresh8 F4: the hint failed with "missing torch"). */
function serveResumeCommand(dir: string, model: RunModel): string {
  const python = model.pytorch && model.launch && 'python' in model.launch ? model.launch.python : undefined;
  return `${srloraCommand(cliLaunch(), 'serve')} --resume ${shellWord(dir)}${python ? ` --python ${shellWord(python)}` : ''}`;
}
