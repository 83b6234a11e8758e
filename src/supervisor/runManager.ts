/**
 * Run bookkeeping and process control for the extension, with no `vscode` import (unit-testable): starts trainers
 * against the hub, keeps a RunModel per run from the live stream (or from events.jsonl for past runs), steers,
 * stops (command → SIGTERM → SIGKILL), marks a dead trainer failed with its exit code and last stderr lines,
 * and after a window reload finds still-running trainers again through the hub discovery file.
 */
import { execFile } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Hub, SendResult } from '../hub/hub';
import type { CommandBody } from '../protocol/messages';
import { readJsonl } from '../runfolder/eventLog';
import { writeFileAtomic } from '../runfolder/atomic';
import { applyMessage, emptyRun, foldRun, isActive, type RunModel } from '../viewmodel/runModel';
import { pythonEnv } from './pythonTrainer';
import { ChildTrainer, isAlive, PidHandle, type ExitInfo, type LaunchSpec, type TrainerHandle } from './trainerProcess';
import type { TrainerMessage } from '../protocol/messages';
import { runIdOf } from '../runfolder/runId';
import { EVENTS_FILE, EXIT_FILE, EXPORT_DIR_NAME, HUB_DISCOVERY_FILE, latestCheckpoint, newRunId, PID_FILE } from '../runfolder/runFiles';


export type OnWindowClose = 'stop' | 'detach';

export interface RunManagerOptions {
  runsDir: string;
  hub: Hub;
  /** How to launch the built-in trainer: the bundled CLI under VS Code's own runtime by default. */
  cliPath: string;
  nodePath?: string;
  /** A user's trainer command line (srlora.trainer.command); ${config} and ${runDir} are substituted. */
  trainerCommand?: string | null;
  backend?: string;
  graceMs?: number;
  /** The folder holding media/ (built-in data and base models), told to other trainers as SRLORA_ASSETS. */
  assetsDir?: string;
  /** The folder holding the shipped srlora_torch (the extension's python/), put first on every trainer's PYTHONPATH so
   * `python -m srlora_torch.train` and a user's script importing srlora_torch.hf need nothing installed. */
  pythonPackageDir?: string;
}

export interface StartOptions {
  /** A *.srlora.json file; omitted → the built-in defaults (the demo). */
  configFile?: string | null;
  /** Extra `--field value` flags. */
  overrides?: Record<string, string | number>;
  /** A name for the run folder, default: time + method + random. */
  runId?: string;
  /** This run's trainer command line instead of the configured one (e.g. the PyTorch trainer). */
  trainerCommand?: string;
  cwd?: string;
  /** Continue the run in its folder from its latest checkpoint (`train --resume`). */
  resume?: boolean;
}

export interface ManagedRun {
  runId: string;
  dir: string;
  model: RunModel;
  handle: TrainerHandle | null;
  exit: (ExitInfo & { stderr: string[] }) | null;
}

export interface RunManagerEvents {
  changed: [runId: string];
  output: [runId: string, text: string];
  failed: [runId: string, message: string];
  removed: [runId: string];
}

export class RunManager extends EventEmitter<RunManagerEvents> {
  readonly runs = new Map<string, ManagedRun>();
  private readonly graceMs: number;

  constructor(private readonly o: RunManagerOptions) {
    super();
    this.graceMs = o.graceMs ?? 3000;
    o.hub.on('message', (runId, msg) => this.onMessage(runId, msg));
  }

  get runsDir(): string {
    return this.o.runsDir;
  }

  private onMessage(runId: string, msg: TrainerMessage): void {
    const run = this.runs.get(runId);
    if (!run) return;
    applyMessage(run.model, msg);
    this.emit('changed', runId);
  }

  /** Lists past runs from their folders and reattaches the ones whose trainer is still running. */
  scan(): void {
    if (!existsSync(this.o.runsDir)) return;
    for (const name of readdirSync(this.o.runsDir)) {
      const dir = join(this.o.runsDir, name);
      const id = runIdOf(dir); // the trainer derives the same id from the folder
      if (this.runs.has(id) || !statSync(dir).isDirectory() || !existsSync(join(dir, EVENTS_FILE))) continue;
      const model = foldRun(id, readJsonl<TrainerMessage>(join(dir, EVENTS_FILE)).events);
      const run: ManagedRun = { runId: id, dir, model, handle: null, exit: null };
      this.runs.set(id, run);
      const exitFile = join(dir, EXIT_FILE);
      const pid = readPid(dir);
      if (isActive(model.state) && pid !== null && isAlive(pid)) {
        this.attach(run, new PidHandle(pid));
        this.openOnHub(run); // the trainer re-reads hub.json when its connection drops and resends what we lack
      } else {
        if (isActive(model.state)) {
          const saved = existsSync(exitFile) ? (JSON.parse(readFileSync(exitFile, 'utf8')) as ManagedRun['exit']) : null;
          this.markFailed(run, saved ?? { code: null, signal: null, stderr: [] }, !saved);
        }
        this.o.hub.openRun(name, dir); // read-only: its dashboard replays the run from its log
      }
      this.emit('changed', name);
    }
  }

  private openOnHub(run: ManagedRun): string {
    const { token } = this.o.hub.openRun(run.runId, run.dir);
    writeFileAtomic(join(run.dir, HUB_DISCOVERY_FILE), JSON.stringify({ url: this.o.hub.url, token, pid: process.pid }));
    return token;
  }

  private launchSpec(run: ManagedRun, token: string, opts: StartOptions): LaunchSpec {
    const env: NodeJS.ProcessEnv = {
      ...process.env, SRLORA_HUB_URL: this.o.hub.url, SRLORA_TOKEN: token, SRLORA_RUN_DIR: run.dir,
      ...(this.o.assetsDir ? { SRLORA_ASSETS: this.o.assetsDir } : {}),
      ...(this.o.pythonPackageDir ? pythonEnv(this.o.pythonPackageDir) : {}),
    };
    const cwd = opts.cwd ?? process.cwd();
    const command = opts.trainerCommand ?? this.o.trainerCommand;
    if (command) {
      const line = command.replaceAll('${config}', shellQuote(opts.configFile ?? '')).replaceAll('${runDir}', shellQuote(run.dir));
      return { command: line, args: [], env, cwd, shell: true };
    }
    const args = [this.o.cliPath, 'train', '--no-progress'];
    if (opts.resume) args.push('--resume', run.dir); // as configured: no other flags
    else if (opts.configFile) args.push('--config', opts.configFile);
    if (this.o.backend && this.o.backend !== 'auto' && !opts.resume) args.push('--backend', this.o.backend);
    for (const [k, v] of Object.entries(opts.overrides ?? {})) args.push(`--${k}`, String(v));
    // VS Code's own runtime runs the bundled CLI: users need no Node install.
    return { command: this.o.nodePath ?? process.execPath, args, env: { ...env, ELECTRON_RUN_AS_NODE: '1' }, cwd };
  }

  /** Writes a run's export from its latest checkpoint through `srlora export` in a child process (the extension host
   * loads no training code). Resolves with the folder and the step exported; rejects with the CLI's own message. */
  exportModel(runId: string): Promise<{ dir: string; step: number }> {
    const run = this.get(runId);
    return new Promise((done, fail) => {
      execFile(this.o.nodePath ?? process.execPath, [this.o.cliPath, 'export', run.dir], { env: { ...process.env, ELECTRON_RUN_AS_NODE: '1' }, timeout: 300_000 },
        (err, stdout, stderr) => {
          const step = /exported step (\d+)/.exec(stdout);
          if (err || !step) fail(new Error(stderr.trim().split('\n').at(-1)?.replace(/^srlora: /, '') || err?.message || 'no output'));
          else done({ dir: join(run.dir, EXPORT_DIR_NAME), step: Number(step[1]) });
        });
    });
  }

  async start(opts: StartOptions = {}): Promise<ManagedRun> {
    const runId = opts.runId ?? newRunId(opts.overrides?.method ? String(opts.overrides.method) : 'run');
    const dir = resolve(this.o.runsDir, runId);
    if (existsSync(dir)) throw new Error(`run folder ${dir} already exists`);
    mkdirSync(dir, { recursive: true });
    const run: ManagedRun = { runId, dir, model: emptyRun(runId), handle: null, exit: null };
    this.runs.set(runId, run);
    return this.launch(run, opts);
  }

  /** Continues a stopped, finished or failed run in its own folder from its latest checkpoint. A PyTorch run needs
   * the command that continues it (`python -m srlora_torch.train --resume \${runDir}`); the built-in trainer's is
   * `train --resume`. Its events.jsonl continues its seq, so the dashboard goes on from where it was. */
  async continueRun(runId: string, trainerCommand?: string): Promise<ManagedRun> {
    const run = this.get(runId);
    if (run.handle?.alive || isActive(run.model.state)) throw new Error(`run ${run.model.name} is ${run.model.state}`);
    if (!latestCheckpoint(run.dir)) throw new Error(`run ${run.model.name} has no checkpoint to continue from`);
    if (run.model.pytorch && !trainerCommand) throw new Error(`run ${run.model.name} is a PyTorch run: it needs a Python with torch to continue`);
    rmSync(join(run.dir, EXIT_FILE), { force: true });
    run.exit = null;
    return this.launch(run, { resume: true, cwd: run.dir, ...(trainerCommand ? { trainerCommand } : {}) });
  }

  private async launch(run: ManagedRun, opts: StartOptions): Promise<ManagedRun> {
    const token = this.openOnHub(run);
    try {
      const child = await ChildTrainer.spawn(this.launchSpec(run, token, opts));
      writeFileAtomic(join(run.dir, PID_FILE), String(child.pid));
      this.attach(run, child);
    } catch (e) {
      this.markFailed(run, { code: null, signal: null, stderr: [(e as Error).message] }, true);
      throw e;
    }
    this.emit('changed', run.runId);
    return run;
  }

  private attach(run: ManagedRun, handle: TrainerHandle): void {
    run.handle = handle;
    handle.on('output', (_s, text) => this.emit('output', run.runId, text));
    handle.on('exit', (info) => {
      // The trainer's own events.jsonl is the record of truth: its last events may not have reached the hub (a
      // connection that dropped at the very end). Fold what the hub did not deliver before judging the exit.
      for (const m of readJsonl<TrainerMessage>(join(run.dir, EVENTS_FILE)).events) applyMessage(run.model, m);
      const finished = run.model.state === 'finished';
      if (!finished && !(info.code === 0 && run.model.state === 'failed')) {
        this.markFailed(run, { ...info, stderr: handle.stderrTail() }, handle instanceof PidHandle);
      } else if (info.code !== 0 && info.code !== null && finished) {
        run.exit = { ...info, stderr: handle.stderrTail() };
      }
      this.emit('changed', run.runId);
    });
  }

  private markFailed(run: ManagedRun, exit: ExitInfo & { stderr: string[] }, lostTrack: boolean): void {
    run.exit = exit;
    const how = lostTrack ? 'the trainer is no longer running'
      : exit.signal ? `the trainer was killed by ${exit.signal}` : `the trainer exited with code ${exit.code}`;
    const message = exit.stderr.length ? `${how}: ${exit.stderr.slice(-3).join(' | ')}` : how;
    if (run.model.state !== 'failed') {
      run.model.state = 'failed';
      run.model.stateReason = message;
    }
    try { writeFileAtomic(join(run.dir, EXIT_FILE), JSON.stringify(exit)); } catch { /* the folder may be gone */ }
    this.emit('failed', run.runId, message);
  }

  get(runId: string): ManagedRun {
    const r = this.runs.get(runId);
    if (!r) throw new Error(`no run ${runId}`);
    return r;
  }

  command(runId: string, body: CommandBody): SendResult {
    const run = this.get(runId);
    if (!isActive(run.model.state)) return { ok: false, error: `run ${runId} is ${run.model.state}` };
    return this.o.hub.sendCommand(runId, body);
  }

  async stop(runId: string): Promise<ExitInfo | null> {
    const run = this.get(runId);
    if (!run.handle) return null;
    return run.handle.stop(() => this.o.hub.sendCommand(runId, { kind: 'stop' }).ok, this.graceMs);
  }

  /** Deletes a run's folder (never an active run's). */
  delete(runId: string): void {
    const run = this.get(runId);
    if (run.handle?.alive) throw new Error(`run ${runId} is still running; stop it first`);
    rmSync(run.dir, { recursive: true, force: true });
    this.runs.delete(runId);
    this.emit('removed', runId);
  }

  list(): ManagedRun[] {
    return [...this.runs.values()].sort((a, b) => (b.model.startedAt ?? 0) - (a.model.startedAt ?? 0) || b.runId.localeCompare(a.runId));
  }

  /** Window closing: stop every trainer, or leave them running to be reattached by the next window. */
  async dispose(onWindowClose: OnWindowClose): Promise<void> {
    const live = [...this.runs.values()].filter((r) => r.handle?.alive);
    if (onWindowClose === 'stop') {
      await Promise.all(live.map((r) => this.stop(r.runId)));
    } else {
      for (const r of live) if (r.handle instanceof ChildTrainer) r.handle.detach();
    }
    for (const r of this.runs.values()) if (r.handle instanceof PidHandle) r.handle.dispose();
    this.removeAllListeners();
  }
}

function readPid(dir: string): number | null {
  try {
    const pid = Number(readFileSync(join(dir, PID_FILE), 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

function shellQuote(s: string): string {
  return `'${s.replaceAll("'", "'\\''")}'`;
}
