/**
 * Run bookkeeping and process control for the extension and `srlora serve`, with no `vscode` import (unit-testable).
 *
 * - Every run's model is its events.jsonl folded by the one reducer (src/viewmodel/runModel.ts), followed from a byte
 *   offset (src/runfolder/summary.ts) and cached in summary.json: listing never reads whole logs, and nothing here
 *   patches a model — what the supervisor knows (how a trainer ended) enters the log as a supervisor `state` record.
 * - One owner per live run (src/runfolder/lock.ts): the supervisor that starts a run, or takes over one whose owner is
 *   gone, holds owner.json; only it writes hub.json (0600), signals the trainer (identity-checked, trainer.pid) and
 *   appends records. Everyone else follows the run read-only.
 * - The runs folder is watched (fs.watch and a poll of at most `pollMs`): runs started anywhere appear, their logs are
 *   followed, and a trainer gone without a final state is recorded by its owner, or by whoever takes the run over.
 */
import { execFile } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { existsSync, mkdirSync, rmSync, watch, type FSWatcher } from 'node:fs';
import { join, resolve } from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import type { Hub, SendResult } from '../hub/hub';
import type { CommandBody, ExitInfo as ExitRecord, RunControl } from '../protocol/messages';
import { validateCommandBody, validateTrainerMessage } from '../protocol/validate';
import { EVENTS_FILE, EXPORT_DIR_NAME, HUB_DISCOVERY_FILE, newRunId, PID_FILE } from '../runfolder/runFiles';
import { latestCompleteCheckpoint } from '../runfolder/checkpoints';
import { readPidFile, sameProcess, writePidFile } from '../runfolder/pidfile';
import { acquireOwner, ensurePrivateDir, readOwner, ownerAlive, resumeFactsOf, resumeRefusalOf, writePrivateFileAtomic, type OwnerLock } from '../runfolder/lock';
import { LogFollower, readSummary, writeSummary } from '../runfolder/summary';
import { listRunFolders, runIdOf } from '../runfolder/scan';
import { applyMessage, emptyRun, isActive, isResumable, steerControl, type RunModel } from '../viewmodel/runModel';
import { ChildTrainer, PidHandle, type ExitInfo, type LaunchSpec, type TrainerHandle } from './trainerProcess';
import { appendSupervisorState, exitRecord, judgeEnding, type Intent } from './supervisorRecord';
import { pythonEnv } from './pythonTrainer';
import { readConfigValue, RunConfigSchema } from '../trainer/config/runConfig';

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
  /** How long a trainer has, after the stop command or a signal, to reach a step boundary, checkpoint and write its
   * own final state before it is sent SIGTERM, then SIGKILL (ms; default STOP_GRACE_MS). */
  graceMs?: number;
  /** The folder holding media/ (built-in data and base models), told to other trainers as SRLORA_ASSETS. */
  assetsDir?: string;
  /** The folder holding the shipped srlora_torch (the extension's python/), put first on every trainer's PYTHONPATH so
   * `python -m srlora_torch.train` and a user's script importing srlora_torch.hf need nothing installed. */
  pythonPackageDir?: string;
  /** Who supervises ("VS Code", "srlora serve"): recorded in owner.json and named in the log. */
  by?: string;
  /** Longest wait before a change in the runs folder is seen when fs.watch says nothing (ms, default 1000). */
  pollMs?: number;
  /** Whether programs may be run for this workspace (VS Code's workspace trust; default: yes). A trainer runs a command
   * line and a Python from settings on the workspace's configs: an untrusted workspace starts none. */
  trusted?: () => boolean;
  /** How long (ms, default EARLY_COMMAND_WAIT_MS) commands sent before a run's trainer has connected wait for it. */
  earlyCommandWaitMs?: number;
}

/** A trainer's time to stop on its own (the stop command, Ctrl+C, a window closing) before SIGTERM and SIGKILL: a
 * real model's step plus its checkpoint takes seconds (a full state.pt of a large model, tens of them), and a kill
 * before the checkpoint loses every step since the last one. 30 s, as Kubernetes' terminationGracePeriodSeconds. */
export const STOP_GRACE_MS = 30_000;
/** Commands sent in a run's first seconds, before its trainer's hub link is up, wait for it: at most this many per
 * run, for at most EARLY_COMMAND_WAIT_MS after the first; then delivered in order, or each reported undelivered. */
export const EARLY_COMMANDS_MAX = 8;
export const EARLY_COMMAND_WAIT_MS = 30_000;

/** The error of a start refused because the workspace is not trusted. */
export const UNTRUSTED_MESSAGE = 'this workspace is not trusted, so no trainer is started (a trainer runs programs from settings on the workspace\'s files): trust the workspace ("Workspaces: Manage Workspace Trust") to start or continue runs; past runs stay viewable';

export interface StartOptions {
  /** A *.srlora.json file; omitted → the built-in defaults (the demo). */
  configFile?: string | null;
  /** Extra `--field value` flags. */
  overrides?: Record<string, string | number>;
  /** A name for the run folder, default: `<time>-<method>-xxxx` (runMethod), as the trainers name the runs they create. */
  runId?: string;
  /** This run's trainer command line instead of the configured one (e.g. the PyTorch trainer). */
  trainerCommand?: string;
  cwd?: string;
  /** Continue the run in its folder from its latest checkpoint (`train --resume`). */
  resume?: boolean;
}

/** A run as this supervisor sees it. Its model is always its log's fold (never patched). */
export class ManagedRun {
  handle: TrainerHandle | null = null;
  /** This supervisor holds the run's owner.json. */
  lock: OwnerLock | null = null;
  /** Why this supervisor is ending the trainer, if it is. */
  intent: Intent = null;
  /** An asynchronous refold is in progress. */
  folding: Promise<void> | null = null;
  foldDone: (() => void) | null = null;
  refreshing = false;
  /** Bytes folded when summary.json was last written. */
  cachedAt = -1;
  /** This supervisor created the run's folder (start) and its trainer has not said hello yet: a run that never started. */
  unstarted = false;

  constructor(readonly runId: string, readonly dir: string, readonly follower: LogFollower<RunModel>) {}

  get model(): RunModel {
    return this.follower.model;
  }

  get owned(): boolean {
    return this.lock !== null;
  }

  /** Its log is still being read (listed, but its model is not the whole log's yet). */
  get loading(): boolean {
    return this.folding !== null;
  }
}

export interface RunManagerEvents {
  changed: [runId: string];
  output: [runId: string, text: string];
  failed: [runId: string, message: string];
  /** A command that waited for its run's trainer to connect was not delivered (it did not connect in time, or the
   * hub refused it then): `message` says why, for the user. */
  commandRefused: [runId: string, commandId: string, message: string];
  removed: [runId: string];
  /** Supervisor decisions and warnings, for the log channel. */
  log: [level: 'info' | 'warn' | 'error', text: string];
}

/** A log slice folded synchronously while listing; the rest is folded asynchronously, in slices of this size. */
const SYNC_FOLD_BYTES = 32 << 10;
const SLICE_BYTES = 128 << 10;
/** Background folding per turn of the event loop. */
const FOLD_BUDGET_MS = 8;
/** Refresh summary.json once this many more bytes were folded. */
const CACHE_EVERY_BYTES = 16 << 20;

function isRunModel(v: unknown): v is RunModel {
  const m = v as Partial<RunModel> | null;
  return typeof m === 'object' && m !== null && typeof m.runId === 'string' && typeof m.state === 'string' && typeof m.step === 'number'
    && Number.isInteger(m.lastSeq) && Array.isArray(m.layers) && Array.isArray(m.recompositionSteps);
}

export class RunManager extends EventEmitter<RunManagerEvents> {
  readonly runs = new Map<string, ManagedRun>();
  private readonly graceMs: number;
  private readonly instance = randomBytes(8).toString('hex');
  private watcher: FSWatcher | null = null;
  private poller: NodeJS.Timeout | null = null;
  private rescanTimer: NodeJS.Timeout | null = null;
  private readonly warned = new Set<string>();
  private readonly foldQueue: ManagedRun[] = [];
  private pumping = false;
  private readonly hubOpenQueue: ManagedRun[] = [];
  private openingOnHub = false;
  private disposed = false;
  /** Per run, the commands waiting for its trainer to connect (in order) and when they stop waiting. */
  private readonly early = new Map<string, { items: { id: string; body: CommandBody }[]; timer: NodeJS.Timeout }>();

  constructor(private readonly o: RunManagerOptions) {
    super();
    this.graceMs = o.graceMs ?? STOP_GRACE_MS;
    o.hub.on('message', (runId) => { const r = this.runs.get(runId); if (r) this.refresh(r); });
    o.hub.on('trainerConnected', (runId) => { this.deliverEarly(runId); if (this.runs.has(runId)) this.emit('changed', runId); });
    // Whether the run can be steered (control) follows its trainer's link: the Runs view redraws its menu.
    o.hub.on('trainerDisconnected', (runId) => { if (this.runs.has(runId)) this.emit('changed', runId); });
  }

  get runsDir(): string {
    return this.o.runsDir;
  }

  private log(level: 'info' | 'warn' | 'error', text: string): void {
    this.emit('log', level, text);
  }

  /** Trainer settings for the next launch (settings changed: no reload needed). */
  setTrainerOptions(o: { trainerCommand?: string | null; backend?: string }): void {
    if ('trainerCommand' in o) this.o.trainerCommand = o.trainerCommand;
    if (o.backend !== undefined) this.o.backend = o.backend;
  }

  /** Another runs folder (settings changed): runs this supervisor is running stay listed; the rest are the new folder's. */
  setRunsDir(dir: string): void {
    if (resolve(dir) === resolve(this.o.runsDir)) return;
    const watching = this.watcher !== null || this.poller !== null;
    this.unwatch();
    for (const r of [...this.runs.values()]) {
      if (r.handle?.alive) continue;
      this.forget(r);
    }
    this.o.runsDir = dir;
    this.log('info', `runs folder: ${dir}`);
    this.scan();
    if (watching) this.watch();
  }

  private forget(r: ManagedRun): void {
    if (r.handle instanceof PidHandle) r.handle.dispose();
    r.lock?.release();
    r.lock = null;
    this.runs.delete(r.runId);
    // The page lists what the hub serves: a run gone from here is gone from there too (its viewers are told).
    this.o.hub.closeRun(r.runId, existsSync(r.dir) ? `${r.dir} is no longer in the runs folder` : `its run folder ${r.dir} was deleted`);
    this.emit('removed', r.runId);
  }

  // ------------------------------------------------------------------ listing and following

  private newRun(runId: string, dir: string): ManagedRun {
    // A summary written under another id (the folder was renamed or copied) describes another run's fold: refolded.
    const summary = readSummary(dir, isRunModel);
    const cache = summary?.model.runId === runId ? summary : null;
    const follower = new LogFollower<RunModel>({
      file: join(dir, EVENTS_FILE),
      init: () => emptyRun(runId),
      apply: (m, value) => {
        const v = validateTrainerMessage(value);
        if (!v.ok) throw new Error(v.error);
        applyMessage(m, v.value);
      },
      lastSeq: (m) => m.lastSeq,
    }, cache);
    const run = new ManagedRun(runId, dir, follower);
    // The summary it was listed from is current up to its offset: not rewritten (fsynced) until the log grows past it.
    if (cache) run.cachedAt = cache.byteOffset;
    return run;
  }

  /**
   * Lists the runs folder: new runs are added from their summary (or a short synchronous fold, the rest asynchronously),
   * gone ones are dropped. Never reads a whole log synchronously. An odd entry is skipped with a warning (event 'log').
   * Throws only when the runs folder itself cannot be read.
   */
  scan(): void {
    const listing = listRunFolders(this.o.runsDir);
    for (const w of listing.warnings) if (!this.warned.has(w)) { this.warned.add(w); this.log('warn', w); }
    const present = new Set<string>();
    // Newest first (run folder names start with their time): the background fold and the hub take them in this order.
    for (const f of [...listing.runs].reverse()) {
      present.add(f.runId);
      if (this.runs.has(f.runId)) continue;
      if (!f.hasLog && !existsSync(join(f.dir, PID_FILE))) continue; // nothing to show yet
      const run = this.newRun(f.runId, f.dir);
      this.runs.set(f.runId, run);
      this.follow(run, true);
      // Its dashboard replays it from the hub (hub.json is written only for a run we own). Opened one at a time, each
      // once folded here (the hub then starts from the summary.json this fold wrote) and once the hub has read the rest.
      this.hubOpenQueue.push(run);
    }
    this.pumpHubOpens();
    for (const r of [...this.runs.values()]) {
      if (!present.has(r.runId) && !r.handle?.alive && !existsSync(r.dir)) this.forget(r);
    }
  }

  /** Folds what the run's log gained: a short tail now, anything longer in the background; then decides what the run needs. */
  private follow(run: ManagedRun, first = false): void {
    if (run.folding) return;
    let r: { changed: boolean; more: boolean };
    try { r = run.follower.readSome(SYNC_FOLD_BYTES); } catch (e) { this.log('warn', `run ${run.runId}: ${(e as Error).message}`); return; }
    if (!r.more) {
      if (r.changed || first) this.emit('changed', run.runId);
      this.settle(run);
      return;
    }
    if (first) this.emit('changed', run.runId); // listed now, shown as loading until folded
    run.folding = new Promise<void>((resolve) => { run.foldDone = resolve; });
    this.foldQueue.push(run);
    this.pumpFolds();
  }

  /**
   * The background fold: one queue for all runs, a slice at a time, at most FOLD_BUDGET_MS of work per turn of the
   * event loop (so twenty 100 MB logs never hold the extension host for longer than one slice).
   */
  private pumpFolds(): void {
    if (this.pumping) return;
    this.pumping = true;
    const turn = () => {
      const t0 = performance.now();
      while (this.foldQueue.length && performance.now() - t0 < FOLD_BUDGET_MS && !this.disposed) {
        const run = this.foldQueue[0];
        let more = false;
        try { more = run.follower.readSome(SLICE_BYTES).more; } catch (e) { this.log('warn', `run ${run.runId}: ${(e as Error).message}`); }
        if (more) {
          // A prefix fold is a valid summary: the next activation starts from here even if this one ends first.
          if (run.follower.byteOffset - run.cachedAt >= CACHE_EVERY_BYTES) this.saveSummary(run, true, true);
          continue;
        }
        this.foldQueue.shift();
        run.folding = null;
        run.foldDone?.();
        if (this.disposed) break;
        this.emit('changed', run.runId);
        this.saveSummary(run);
        this.settle(run);
      }
      if (this.foldQueue.length && !this.disposed) setImmediate(turn);
      else this.pumping = false;
    };
    setImmediate(turn);
  }

  private pumpHubOpens(): void {
    if (this.openingOnHub || this.disposed) return;
    const run = this.hubOpenQueue.shift();
    if (!run) return;
    this.openingOnHub = true;
    const next = () => { this.openingOnHub = false; this.pumpHubOpens(); };
    const open = () => {
      if (this.disposed) return;
      this.o.hub.openRun(run.runId, run.dir);
      const ready = (this.o.hub.run(run.runId) as { ready?: Promise<void> } | undefined)?.ready;
      if (ready) ready.then(next, next); else setImmediate(next);
    };
    if (run.folding) run.folding.then(open, open); else open();
  }

  /** A live message arrived (the hub forwarded it): fold the log's new lines, once per turn of the event loop. */
  private refresh(run: ManagedRun): void {
    if (run.folding || run.refreshing) return;
    run.refreshing = true;
    setImmediate(() => {
      run.refreshing = false;
      try { if (!run.folding && run.follower.catchUpSync()) this.emit('changed', run.runId); } catch { /* the folder may be gone */ }
    });
  }

  private saveSummary(run: ManagedRun, force = false, partial = false): void {
    if ((run.folding && !partial) || run.follower.byteOffset === run.cachedAt) return;
    if (!force && run.follower.byteOffset - run.cachedAt < CACHE_EVERY_BYTES && !(run.cachedAt >= 0 && !isActive(run.model.state))) return;
    try {
      writeSummary(run.dir, run.follower.toCache((m) => ({ ...m, latestImportance: null })));
      run.cachedAt = run.follower.byteOffset;
    } catch { /* a cache: the folder may be read-only or gone */ }
  }

  /**
   * What a run needs once its log is folded: an active run with no trainer attached is taken (owner.json) when no one
   * else owns it; then its trainer is reattached if trainer.pid still names a live process, or recorded as gone.
   * A run someone else owns is followed read-only; it is looked at again on every poll (its owner may go away).
   */
  private settle(run: ManagedRun): void {
    if (this.disposed) return;
    if (!isActive(run.model.state)) {
      if (!run.handle?.alive && run.lock) { run.lock.release(); run.lock = null; }
      if (run.cachedAt < 0) this.saveSummary(run, true);
      return;
    }
    if (run.handle) return; // ours, running
    const pid = readPidFile(join(run.dir, PID_FILE));
    if (!pid.ok) return; // no identity recorded: nothing here can judge it
    if (pid.id.selfStarted) {
      // Started without a supervisor (a terminal, a user's script): followed, never owned or signalled. Once its
      // identity is gone without a final state, one watcher (the lock decides which) records it.
      if (sameProcess(pid.id)) { this.o.hub.setControl(run.runId, 'started from a terminal: this page follows it read-only'); return; }
      const took = acquireOwner(run.dir, this.instance, this.o.by ?? 'srlora');
      if (!took.ok) return;
      this.recordEnd(run, null, pid.id.pid);
      this.clearProcessFiles(run, pid.id.pid);
      took.lock.release();
      return;
    }
    const got = acquireOwner(run.dir, this.instance, this.o.by ?? 'srlora');
    if (!got.ok) {
      this.o.hub.setControl(run.runId, `owned by ${got.owner.by} (pid ${got.owner.pid}): this page follows it read-only; steer it from there`);
      if (!this.warned.has(`owned:${run.runId}:${got.owner.instance}`)) {
        this.warned.add(`owned:${run.runId}:${got.owner.instance}`);
        this.log('info', `run ${run.runId} belongs to ${got.owner.by} (pid ${got.owner.pid}): followed read-only`);
      }
      return;
    }
    run.lock = got.lock;
    this.o.hub.setControl(run.runId, null);
    if (got.tookOver) this.log('info', `run ${run.runId}: took over from ${got.tookOver.by} (pid ${got.tookOver.pid}), which is gone`);
    if (sameProcess(pid.id)) {
      this.log('info', `run ${run.runId}: reattached to its trainer (pid ${pid.id.pid})`);
      this.attach(run, new PidHandle(pid.id));
      this.openOnHub(run); // the trainer re-reads hub.json when its connection drops and resends what we lack
      this.emit('changed', run.runId);
    } else {
      this.recordEnd(run, null, pid.id.pid);
      this.clearProcessFiles(run, pid.id.pid);
      run.lock.release();
      run.lock = null;
    }
  }

  /**
   * The run's trainer (pid) is proven gone and the run has its final state: its trainer.pid and hub.json name a
   * process and a hub that no longer serve it, so the owner (the caller holds the run's lock) removes them. A
   * trainer.pid naming another process (a run continued meanwhile) stays.
   */
  private clearProcessFiles(run: ManagedRun, pid: number): void {
    if (isActive(run.model.state)) return;
    const pidFile = readPidFile(join(run.dir, PID_FILE));
    try {
      if (pidFile.ok && pidFile.id.pid === pid) rmSync(join(run.dir, PID_FILE), { force: true });
      rmSync(join(run.dir, HUB_DISCOVERY_FILE), { force: true });
    } catch { /* the folder may be gone */ }
  }

  private openOnHub(run: ManagedRun): string {
    const { token } = this.o.hub.openRun(run.runId, run.dir);
    writePrivateFileAtomic(join(run.dir, HUB_DISCOVERY_FILE), JSON.stringify({ url: this.o.hub.url, token, pid: process.pid }));
    return token;
  }

  /** Watches the runs folder (fs.watch, and a poll every `pollMs` for what it misses). */
  watch(): void {
    if (this.disposed || this.poller) return;
    const pollMs = this.o.pollMs ?? 1000;
    const rescan = () => {
      if (this.rescanTimer) return;
      this.rescanTimer = setTimeout(() => { this.rescanTimer = null; this.tick(); }, 50);
    };
    try {
      ensurePrivateDir(this.o.runsDir);
      this.watcher = watch(this.o.runsDir, rescan);
      this.watcher.on('error', () => { this.watcher?.close(); this.watcher = null; });
    } catch (e) {
      this.log('warn', `cannot watch ${this.o.runsDir} (${(e as Error).message}); polling every ${pollMs} ms`);
    }
    this.poller = setInterval(() => this.tick(), pollMs);
    this.poller.unref();
  }

  private unwatch(): void {
    this.watcher?.close();
    this.watcher = null;
    if (this.poller) clearInterval(this.poller);
    this.poller = null;
    if (this.rescanTimer) clearTimeout(this.rescanTimer);
    this.rescanTimer = null;
  }

  /** One look at the runs folder and every run's log. */
  private tick(): void {
    if (this.disposed) return;
    try { this.scan(); } catch (e) { this.log('warn', (e as Error).message); }
    for (const run of this.runs.values()) {
      if (run.handle?.alive) { this.refresh(run); continue; }
      this.follow(run);
      this.saveSummary(run);
    }
  }

  // ------------------------------------------------------------------ starting

  private launchSpec(run: ManagedRun, token: string, opts: StartOptions): LaunchSpec {
    const env: NodeJS.ProcessEnv = {
      ...process.env, SRLORA_HUB_URL: this.o.hub.url, SRLORA_TOKEN: token, SRLORA_RUN_DIR: run.dir,
      // Who holds the run for it: a resuming trainer then knows the live owner.json is its launcher's (lock.ts).
      ...(run.lock ? { SRLORA_OWNER: run.lock.record.instance } : {}),
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

  /** Starts a run in a new folder (0700, in a runs folder created 0700), owned by this supervisor. */
  async start(opts: StartOptions = {}): Promise<ManagedRun> {
    this.assertTrusted();
    const name = opts.runId ?? newRunId(runMethod(opts));
    const runId = runIdOf(name);
    ensurePrivateDir(this.o.runsDir);
    const dir = resolve(this.o.runsDir, name);
    try {
      mkdirSync(dir, { mode: 0o700 });
    } catch (e) {
      throw new Error((e as NodeJS.ErrnoException).code === 'EEXIST' ? `run folder ${dir} already exists` : `cannot create run folder ${dir}: ${(e as Error).message}`);
    }
    if (this.runs.has(runId)) throw new Error(`a run with id ${runId} is already listed`);
    const got = acquireOwner(dir, this.instance, this.o.by ?? 'srlora');
    if (!got.ok) throw new Error(`run folder ${dir} belongs to ${got.owner.by} (pid ${got.owner.pid})`);
    const run = this.newRun(runId, dir);
    run.lock = got.lock;
    run.unstarted = true;
    this.runs.set(runId, run);
    this.o.hub.openRun(runId, dir);
    return this.launch(run, opts);
  }

  /** Continues a stopped, interrupted or failed run in its own folder from its latest checkpoint. A PyTorch run needs
   * the command that continues it (`python -m srlora_torch.train --resume \${runDir}`); the built-in trainer's is
   * `train --resume`. Its events.jsonl continues its seq, so the dashboard goes on from where it was. */
  async continueRun(runId: string, trainerCommand?: string): Promise<ManagedRun> {
    this.assertTrusted();
    const run = this.get(runId);
    run.follower.catchUpSync();
    if (run.handle?.alive || !isResumable(run.model.state)) {
      const who = isActive(run.model.state) ? this.runningBy(runId) : '';
      throw new Error(`run ${run.model.name} is ${run.model.state}${isActive(run.model.state) ? (who ? `: ${who}` : '') : ': only a stopped, interrupted or failed run continues'}`);
    }
    // The trainer verifies the checksums when it resumes; here sizes and markers are enough to know it can.
    const cp = latestCompleteCheckpoint(run.dir, { hashes: false });
    if (!cp.dir) throw new Error(`run ${run.model.name} has no complete checkpoint to continue from${cp.skipped.length ? ` (${cp.skipped.map((k) => `step ${k.step}: ${k.reason}`).join('; ')})` : ''}`);
    if (run.model.pytorch && !trainerCommand) throw new Error(`run ${run.model.name} is a PyTorch run: it needs a Python with torch to continue`);
    // The shared rule (lock.ts): a live trainer the log does not show yet (a resume from a terminal) refuses too.
    const refusal = resumeRefusalOf(run.dir, { ...resumeFactsOf(run.dir), launchedBy: this.instance });
    if (refusal) throw new Error(refusal);
    const got = acquireOwner(run.dir, this.instance, this.o.by ?? 'srlora');
    if (!got.ok) throw new Error(`run ${run.model.name} belongs to ${got.owner.by} (pid ${got.owner.pid})`);
    run.lock = got.lock;
    run.intent = null;
    return this.launch(run, { resume: true, cwd: run.dir, ...(trainerCommand ? { trainerCommand } : {}) });
  }

  /** Who runs an active run, for a refusal to continue it: this supervisor, another one (owner.json), or a trainer
   * started from a terminal (its own trainer.pid), as a phrase ("it belongs to VS Code (pid 123); …"); '' when nothing
   * here can tell. */
  runningBy(runId: string): string {
    const run = this.get(runId);
    const by = this.o.by ?? 'supervisor';
    if (run.handle?.alive && run.owned) return `this ${by} runs it (trainer pid ${run.handle.pid}); steer it here`;
    const owner = readOwner(run.dir);
    if (owner && owner.instance !== this.instance && ownerAlive(owner)) return `it belongs to ${owner.by} (pid ${owner.pid}); steer or stop it there`;
    const pid = readPidFile(join(run.dir, PID_FILE));
    if (pid.ok && pid.id.selfStarted && sameProcess(pid.id)) return `its trainer (pid ${pid.id.pid}) was started from a terminal; stop it there (Ctrl+C: it checkpoints), then continue it`;
    return '';
  }

  private assertTrusted(): void {
    if (this.o.trusted && !this.o.trusted()) throw new Error(UNTRUSTED_MESSAGE);
  }

  private async launch(run: ManagedRun, opts: StartOptions): Promise<ManagedRun> {
    const token = this.openOnHub(run);
    let child: ChildTrainer;
    try {
      child = await ChildTrainer.spawn(this.launchSpec(run, token, opts));
    } catch (e) {
      // Never started, so proven gone: the record says why.
      run.follower.catchUpSync();
      this.append(run, { state: 'failed', reason: (e as Error).message }, exitRecord(null, null, [(e as Error).message]));
      run.lock?.release();
      run.lock = null;
      throw e;
    }
    // The child runs from here on: a pid file that cannot be written (its folder deleted at once, a full disk) must not
    // leave it unattached — its exit still has to be seen and recorded. Without the file a later supervisor cannot
    // prove the process is ours, so it will not signal it (the safe side).
    if (child.identity) {
      try { writePidFile(join(run.dir, PID_FILE), child.identity); } catch (e) {
        this.log('warn', `run ${run.runId}: could not write its trainer's pid file (${(e as Error).message})`);
      }
    }
    this.log('info', `run ${run.runId}: trainer started (pid ${child.pid})`);
    this.attach(run, child);
    this.emit('changed', run.runId);
    return run;
  }

  private attach(run: ManagedRun, handle: TrainerHandle): void {
    run.handle = handle;
    handle.on('output', (stream, text) => {
      this.emit('output', run.runId, text);
      if (stream === 'stderr') for (const line of text.split(/\r?\n/)) if (line.trim()) this.log('info', `[${run.runId}] ${line}`);
    });
    handle.on('exit', (info) => {
      if (handle instanceof PidHandle) handle.dispose();
      // The trainer is gone: its log is complete. Fold all of it, then say what the trainer could not.
      try { run.follower.catchUpSync(); } catch { /* folder gone */ }
      if (run.unstarted && run.owned && run.intent?.kind === 'interrupt' && this.removeUnstarted(run)) return;
      if (isActive(run.model.state) && run.owned) {
        this.recordEnd(run, handle instanceof PidHandle ? null : exitRecord(info.code, info.signal, handle.stderrTail()), handle.pid);
      } else {
        this.log('info', `run ${run.runId}: trainer ended (${info.signal ?? `code ${info.code}`}), ${run.model.state}`);
      }
      run.intent = null;
      if (!isActive(run.model.state)) {
        if (run.owned) this.clearProcessFiles(run, handle.pid);
        run.lock?.release();
        run.lock = null;
      }
      this.saveSummary(run, true);
      this.emit('changed', run.runId);
    });
  }

  /**
   * Our own interruption (Ctrl+C of serve, a window closing) ended the trainer of a run this supervisor created before
   * the run started (it was still importing or loading its model: no hello, so nothing trained, no checkpoint): as the
   * trainers do with a new run's folder (docs/protocol.md, States), the folder is removed — never a run that would
   * then be listed `interrupted` with nothing to resume from, which every continue path described differently
   * (FINDINGS F1). Returns whether it was removed (false: the trainer wrote its hello meanwhile; it is recorded as usual).
   */
  private removeUnstarted(run: ManagedRun): boolean {
    if (run.model.backend !== '' || run.model.lastCheckpointSeq !== undefined) { run.unstarted = false; return false; }
    try {
      rmSync(run.dir, { recursive: true, force: true });
    } catch (e) {
      this.log('warn', `run ${run.runId}: could not remove the folder of a run that never started (${(e as Error).message})`);
      return false;
    }
    this.log('info', `run ${run.runId}: interrupted before it started (nothing was trained); its folder ${run.dir} was removed`);
    run.intent = null;
    this.forget(run);
    return true;
  }

  /** The trainer (pid) is proven gone without a final state: append the supervisor's record of how it ended. */
  private recordEnd(run: ManagedRun, exit: ExitRecord | null, pid: number): void {
    const ending = judgeEnding(exit, pid, run.intent);
    this.append(run, ending, exit ?? exitRecord(null, null, []));
    if (ending.state === 'failed') this.emit('failed', run.runId, ending.reason);
  }

  private append(run: ManagedRun, ending: { state: 'failed' | 'interrupted' | 'stopped'; reason: string }, exit: ExitRecord): void {
    if (!existsSync(run.dir)) { this.log('error', `run ${run.runId}: its folder ${run.dir} was deleted while it trained; nothing was recorded`); return; }
    try {
      // The log may have grown since it was folded (appendSupervisorState checks its real end): fold it again, and
      // write nothing once the trainer's own final state is there.
      for (let tries = 0; ; tries++) {
        if (!isActive(run.model.state)) { this.log('info', `run ${run.runId}: the trainer wrote its own final state (${run.model.state}); no supervisor record`); break; }
        const written = appendSupervisorState(join(run.dir, EVENTS_FILE), run.runId, run.model.lastSeq, run.follower.byteOffset, { state: ending.state, step: run.model.step, reason: ending.reason, exit });
        if (written) { this.log(ending.state === 'failed' ? 'error' : 'info', `run ${run.runId} ${ending.state}: ${ending.reason}`); break; }
        if (tries >= 3) throw new Error('its events.jsonl keeps growing: another process writes it');
        run.follower.catchUpSync();
      }
    } catch (e) {
      this.log('error', `run ${run.runId}: could not record ${ending.state} (${(e as Error).message})`);
    }
    run.follower.catchUpSync();
    this.emit('changed', run.runId);
  }

  // ------------------------------------------------------------------ steering and ending

  get(runId: string): ManagedRun {
    const r = this.runs.get(runId);
    if (!r) throw new Error(`no run ${runId}`);
    return r;
  }

  command(runId: string, body: CommandBody): SendResult {
    const run = this.get(runId);
    if (!isActive(run.model.state)) return { ok: false, error: `run ${runId} is ${run.model.state}` };
    // Our trainer runs but its link to the hub is not up yet (it connects while it loads): the command waits for it.
    if (run.handle?.alive && this.o.hub.run(runId)?.trainer == null) {
      const v = validateCommandBody(body);
      if (!v.ok) return { ok: false, error: v.error.slice(0, 300) };
      let q = this.early.get(runId);
      if (!q) {
        const timer = setTimeout(() => this.expireEarly(runId), this.o.earlyCommandWaitMs ?? EARLY_COMMAND_WAIT_MS);
        timer.unref();
        q = { items: [], timer };
        this.early.set(runId, q);
      }
      if (q.items.length >= EARLY_COMMANDS_MAX) {
        return { ok: false, error: `run ${runId}: its trainer (pid ${run.handle.pid}) is still starting and ${EARLY_COMMANDS_MAX} commands already wait for it; try again in a moment` };
      }
      const id = `c-${randomUUID()}`;
      q.items.push({ id, body: v.value });
      return { ok: true, commandId: id };
    }
    return this.o.hub.sendCommand(runId, body);
  }

  /** The run's trainer connected: the commands that waited for it go now, in order, with the ids their callers got. */
  private deliverEarly(runId: string): void {
    const q = this.early.get(runId);
    if (!q) return;
    this.early.delete(runId);
    clearTimeout(q.timer);
    for (const { id, body } of q.items) {
      const sent = this.o.hub.sendCommand(runId, body, id);
      if (!sent.ok) this.refuseEarly(runId, id, `run ${runId}: command ${body.kind} was not delivered: ${sent.error}`);
    }
  }

  /** The wait is over and the trainer has not connected: every waiting command is reported undelivered. */
  private expireEarly(runId: string): void {
    const q = this.early.get(runId);
    if (!q) return;
    this.early.delete(runId);
    const s = Math.round((this.o.earlyCommandWaitMs ?? EARLY_COMMAND_WAIT_MS) / 100) / 10;
    for (const { id, body } of q.items) this.refuseEarly(runId, id, `run ${runId}: command ${body.kind} was not delivered: its trainer did not connect within ${s} s`);
  }

  private refuseEarly(runId: string, id: string, message: string): void {
    this.log('error', message);
    this.emit('commandRefused', runId, id, message);
  }

  /**
   * Whether steering commands can reach the run, and why not: the one rule (viewmodel steerControl) over this
   * supervisor's fold of the run's record and what its hub knows of the trainer (connected, read-only) — what the
   * hub's run list and the dashboard say too. Commands sent while the trainer is still starting wait for it (see
   * command), but no view offers steering before the trainer is connected.
   */
  control(runId: string): RunControl {
    const run = this.get(runId);
    return steerControl(run.model, this.o.hub.link(runId) ?? { connected: false, readOnly: null });
  }

  /** The user's Stop: the stop command (the trainer checkpoints and writes `stopped`), then SIGTERM, then SIGKILL.
   * Only the run's owner stops it; for any other run this does nothing and resolves null. */
  async stop(runId: string): Promise<ExitInfo | null> {
    const run = this.get(runId);
    if (!run.handle || !run.owned) {
      if (isActive(run.model.state)) this.log('warn', `run ${runId} is not this ${this.o.by ?? 'supervisor'}'s: not stopped`);
      return null;
    }
    run.intent = { kind: 'stop' };
    return run.handle.end(() => this.o.hub.sendCommand(runId, { kind: 'stop' }), this.graceMs);
  }

  /** Ends a trainer as its surroundings going away do: `signal` (SIGTERM, or SIGINT for a Ctrl+C: the trainer
   * checkpoints and writes `interrupted`, naming it), then SIGKILL. */
  async interrupt(runId: string, reason: string, signal: 'SIGTERM' | 'SIGINT' = 'SIGTERM'): Promise<ExitInfo | null> {
    const run = this.get(runId);
    if (!run.handle?.alive || !run.owned) return null;
    run.intent = { kind: 'interrupt', reason };
    const h = run.handle;
    return h.end(() => h.signal(signal), this.graceMs, signal === 'SIGTERM');
  }

  /** Deletes a run's folder (never a running run's, nor one another supervisor owns). */
  delete(runId: string): void {
    const run = this.get(runId);
    run.follower.catchUpSync();
    if (run.handle?.alive) throw new Error(`run ${runId} is still running; stop it first`);
    const owner = readOwner(run.dir);
    if (owner && owner.instance !== this.instance && ownerAlive(owner) && isActive(run.model.state)) throw new Error(`run ${runId} belongs to ${owner.by} (pid ${owner.pid})`);
    rmSync(run.dir, { recursive: true, force: true });
    this.forget(run);
  }

  list(): ManagedRun[] {
    return [...this.runs.values()].sort((a, b) => (b.model.startedAt ?? 0) - (a.model.startedAt ?? 0) || b.runId.localeCompare(a.runId));
  }

  /**
   * Window closing (or serve's Ctrl+C): interrupt every trainer this supervisor owns (`stop`), or leave them running
   * for the next window to take over (`detach`). Either way its locks are released and its records written first.
   * `reason` names what interrupted the runs in their record; `signal` is what their trainers get (serve passes on
   * the SIGINT of a Ctrl+C).
   */
  async dispose(onWindowClose: OnWindowClose, reason = 'the window closed or reloaded', signal: 'SIGTERM' | 'SIGINT' = 'SIGTERM'): Promise<void> {
    this.unwatch();
    const live = [...this.runs.values()].filter((r) => r.handle?.alive && r.owned);
    if (onWindowClose === 'stop') {
      await Promise.all(live.map((r) => this.interrupt(r.runId, reason, signal)));
    } else {
      for (const r of live) if (r.handle instanceof ChildTrainer) r.handle.detach();
    }
    this.disposed = true;
    for (const q of this.early.values()) clearTimeout(q.timer);
    this.early.clear();
    for (const r of this.runs.values()) {
      if (r.handle instanceof PidHandle) r.handle.dispose();
      this.saveSummary(r, true, true);
      r.lock?.release();
      r.lock = null;
    }
    this.removeAllListeners();
  }
}

/**
 * The method a started run trains with, for its folder's name (`<time>-<method>-xxxx`, runfolder newRunId: the name
 * every trainer gives a run it creates, so a run looks the same however it was started): a `method` override, else
 * the config file's `method`, else the config default. A file that cannot be read gives the default here; the trainer
 * says what is wrong with it.
 */
export function runMethod(opts: Pick<StartOptions, 'configFile' | 'overrides'>): string {
  if (opts.overrides?.method !== undefined) return String(opts.overrides.method);
  if (opts.configFile) {
    try {
      const v = readConfigValue(opts.configFile) as { method?: unknown } | null;
      if (typeof v === 'object' && v !== null && typeof v.method === 'string' && v.method) return v.method;
    } catch { /* the trainer reports it */ }
  }
  return RunConfigSchema.properties.method.default as string;
}

function shellQuote(s: string): string {
  return `'${s.replaceAll("'", "'\\''")}'`;
}
