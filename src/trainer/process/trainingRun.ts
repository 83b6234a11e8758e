/**
 * The steerable training loop (SRLORA.md §4): one step, then a control point that applies the commands that
 * arrived, in arrival order, each acknowledged as applied after step N or rejected with the reason. Telemetry
 * (§5) goes to the run's events.jsonl and, when a hub is given, through the link — never blocking a step.
 */
import * as tf from '@tensorflow/tfjs';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import type { RunConfig } from '../config/runConfig';
import { Batcher } from '../data/batches';
import { crossEntropy, evaluate, type FineTuneModel } from '../models/model';
import type { RecompositionResult } from '../engine/engine';
import { EventRecorder, type TrainerEventBody } from '../link/recorder';
import { HubLink, type HubEndpoint } from '../link/hubLink';
import { PROTOCOL_MAJOR, PROTOCOL_MINOR, type CommandBody, type Hello, type RunStateName, type Settings } from '../../protocol/messages';
import { validateCommandBody } from '../../protocol/validate';
import { randomBytes } from 'node:crypto';
import { writeFileAtomic } from '../../runfolder/atomic';
import { CONFIG_FILE, HUB_DISCOVERY_FILE, newRunId, PID_FILE } from '../../runfolder/runFiles';
import { removeOwnPidFile, writeOwnPidFile } from '../../runfolder/pidfile';
import { buildModel, loadBaseWeights, loadTask, type TaskData } from './task';
import { loadCheckpoint, readCheckpoint, saveCheckpoint, type LiveSettings, type ReadCheckpoint } from './checkpoint';
import { latestCompleteCheckpoint } from '../../runfolder/checkpoints';
import { runIdOf } from '../../runfolder/runId';
import { selectBackend, type BackendChoice } from '../engine/backend';
import { exportRun } from './exportRun';
import { ProgressLine } from './progress';
import { SystemScalars } from './systemScalars';


/** SRLORA.md §5: at most ~10 importance snapshots per second whatever the step rate. */
const MIN_IMPORTANCE_INTERVAL_MS = 100;
/** Metrics rows are batched: flushed at least this often (and at every state change). */
const METRICS_FLUSH_MS = 100;
/** The run folder's identity is checked at least this often (ms) while training: one stat, whatever the checkpoints. */
export const FOLDER_CHECK_MS = 2000;
const PROBE_SIZE = 64;

export interface TrainingRunOptions {
  config: RunConfig;
  runDir: string;
  /** Where relative paths in the config are resolved. */
  baseDir: string;
  hub?: HubEndpoint | null;
  /** Continue from the run folder's latest checkpoint. */
  resume?: boolean;
  /**
   * runDir is a name this process drew (newRunDir), not a folder someone made for it: create it exclusively, and if
   * another run took the name meanwhile draw a new one in the same runs folder (run.options.runDir says which).
   */
  newFolder?: boolean;
  progress?: boolean;
  onLog?: (line: string) => void;
  /**
   * How often (ms, default FOLDER_CHECK_MS) the run folder's identity is checked between checkpoints: a run with
   * checkpointEvery 0 would otherwise train on, to its end, with its folder deleted. 0 = after every step (tests).
   */
  folderCheckMs?: number;
  /** Test hooks (steering vectors, fault injection); never set in production. */
  hooks?: TrainingHooks;
  /** How this trainer's command line was started (hello.launch: node, cli), so the continue lines run as printed. */
  launch?: Hello['launch'];
}

export interface TrainingHooks {
  /** Called at the control point after step `step`, before the commands that arrived are applied. */
  atControlPoint?: (step: number, run: TrainingRun) => void;
  /** A fault for step `step` (1-based): a value added to the loss or to every gradient (±Infinity, NaN). */
  fault?: (step: number) => { loss?: number; grad?: number } | null | undefined;
}

/** How a run ended (docs/protocol.md, "States"). */
export type RunOutcome = 'finished' | 'stopped' | 'interrupted' | 'failed';

/** Non-finite numbers as both trainers write them in reasons: NaN, inf, -inf. */
export function formatNonFinite(x: number): string {
  return Number.isNaN(x) ? 'NaN' : x > 0 ? 'inf' : '-inf';
}

export class TrainingRun {
  readonly runId: string;
  readonly recorder: EventRecorder;
  link: HubLink | null = null;
  private readonly queue: { id: string; command: CommandBody }[] = [];
  private wake: (() => void) | null = null;
  private paused = false;
  /** The step of the last importance snapshot emitted (-1: none yet). */
  private importanceStep = -1;
  /** Set by the stop command (→ stopped) or a signal (→ interrupted): the loop ends at the next step boundary. */
  private stopRequested: { state: 'stopped' | 'interrupted'; reason: string } | null = null;
  private nonFiniteGradSteps = 0;
  /** Random id of this trainer process, stated in `rewind` when it continues a run. */
  readonly incarnation = randomBytes(8).toString('hex');
  private state: RunStateName = 'starting';
  private readonly settings: LiveSettings;
  private rows: { step: number; loss: number; lr: number; examplesPerSec: number; scalars?: Record<string, number> }[] = [];
  private readonly system = new SystemScalars();
  private lastFlush = 0;
  private lastImportance = -Infinity;
  private readonly progress: ProgressLine | null;
  /** The run folder's dev+inode when the run opened it: a deleted or replaced folder is noticed, never re-created. */
  private readonly folderIdentity: { dev: number; ino: number };
  private lastFolderCheck = performance.now();

  private constructor(
    readonly options: TrainingRunOptions,
    readonly backend: BackendChoice,
    readonly data: TaskData,
    readonly model: FineTuneModel,
    private readonly batches: Batcher,
    private readonly probe: tf.Tensor2D,
    readonly baseFile: string,
  ) {
    this.runId = runIdOf(options.runDir);
    this.settings = { importanceEvery: options.config.importanceEvery, evalEvery: options.config.evalEvery };
    this.recorder = new EventRecorder(this.runId, options.runDir);
    const st = statSync(options.runDir);
    this.folderIdentity = { dev: st.dev, ino: st.ino };
    this.progress = options.progress ? new ProgressLine(options.config.steps) : null;
  }

  /** Everything that can fail on bad input fails here, before any training work. */
  static async create(options: TrainingRunOptions): Promise<TrainingRun> {
    const { config, baseDir } = options;
    const backend = await selectBackend(config.backend);
    const { weights, file } = loadBaseWeights(config, baseDir); // small, and a bad path fails before the data loads
    const data = loadTask(config, baseDir);
    const model = buildModel(config, weights, data.train.dim, Math.max(data.train.classes, data.eval.classes));
    const batches = new Batcher(data.train, config.batchSize, config.seed + 1);
    const probeN = Math.min(PROBE_SIZE, data.eval.n);
    const probe = tf.tensor2d(data.eval.features.subarray(0, probeN * data.eval.dim), [probeN, data.eval.dim]);
    // The run folder is made only now that everything has loaded: a start that fails leaves no empty run folder.
    let runDir = options.runDir;
    let created = false;
    if (options.newFolder) {
      runDir = makeNewRunDir(dirname(runDir), config.method, runDir);
      created = true;
    } else if (!existsSync(runDir)) {
      created = true;
    }
    let run: TrainingRun | null = null;
    try {
      if (!options.newFolder) mkdirSync(runDir, { recursive: true });
      run = new TrainingRun({ ...options, runDir }, backend, data, model, batches, probe, file);
      // No hub means no supervisor launched us (it records our identity itself): say who we are, so whoever watches
      // the runs folder can tell that we are gone if we die without a final state.
      if (!options.hub) writeOwnPidFile(join(runDir, PID_FILE));
      if (options.resume) {
        run.restore();
      } else {
        writeFileAtomic(join(runDir, CONFIG_FILE), JSON.stringify(config, null, 2) + '\n');
        run.emit(run.helloBody()); // seq 1: anything else (an early command's ack) comes after it
      }
    } catch (e) {
      run?.recorder.close();
      probe.dispose();
      model.dispose();
      if (created) rmSync(runDir, { recursive: true, force: true });
      throw e;
    }
    return run;
  }

  private restore(): void {
    // the newest one that verifies AND reads: one whose state.json is not this trainer's falls back to the next older
    let read: ReadCheckpoint | null = null;
    const choice = latestCompleteCheckpoint(this.options.runDir, { hashes: true }, (d) => {
      try { read = readCheckpoint(d, true); return null; } catch (e) { return (e as Error).message; }
    });
    // The log line names the folder absolute (as every path the terminal shows); the error below follows the run folder's
    // absolute path, so it names each skipped one inside it.
    for (const s of choice.skipped) this.log(`not resuming from ${resolve(s.dir)}: ${s.reason}`, 'warn');
    const skipped = choice.skipped.map((s) => `${relative(this.options.runDir, s.dir)}: ${s.reason}`);
    const dir = choice.dir;
    if (!dir) throw new Error(`${this.options.runDir} has no complete checkpoint to resume from${skipped.length ? ` (${skipped.join('; ')})` : ''}`);
    const meta = loadCheckpoint(dir, this.model.engine, read ?? undefined);
    this.batches.load(meta.data);
    Object.assign(this.settings, meta.settings);
    // Every view drops what it holds for later steps (a crash after this checkpoint logged them once already).
    this.emit({ type: 'rewind', step: meta.step, checkpoint: relative(this.options.runDir, dir), incarnation: this.incarnation });
    this.log(`resumed from ${dir} (step ${meta.step})`);
    if (this.recorder.recordedAs) this.log(movedRunLine(this.runId, this.recorder.recordedAs));
  }

  get step(): number {
    return this.model.engine.step;
  }

  private emit(body: TrainerEventBody): void {
    this.recorder.emit(body);
  }

  private log(text: string, level: 'info' | 'warn' | 'error' = 'info'): void {
    this.options.onLog?.(text);
    if (!this.recorder.hello || this.recorder.writeFailure) return;
    try {
      this.emit({ type: 'log', level, text: text.slice(0, 65536) });
    } catch {
      // The write failure is kept by the recorder: the next emit of the loop raises it.
    }
  }

  /** Throws when the run folder is gone or is another folder now (deleted under a live trainer). */
  private checkFolder(): void {
    this.lastFolderCheck = performance.now();
    let st;
    try {
      st = statSync(this.options.runDir);
    } catch {
      throw new Error(`the run folder ${this.options.runDir} was deleted while the run was training`);
    }
    if (st.dev !== this.folderIdentity.dev || st.ino !== this.folderIdentity.ino) {
      throw new Error(`the run folder ${this.options.runDir} was replaced by another folder while the run was training`);
    }
  }

  private setState(state: RunStateName, reason?: string): void {
    this.flushMetrics();
    this.state = state;
    this.emit({ type: 'state', state, step: this.step, ...(reason ? { reason } : {}) });
  }

  /** A command from the hub (or a test): acknowledged as received now, applied at the next step boundary. */
  enqueue(id: string, command: CommandBody): void {
    try {
      this.emit({ type: 'ack', commandId: id, status: 'received', step: null });
    } catch {
      // Cannot record it (disk full): the control point raises the recorder's failure and the run fails.
    }
    this.queue.push({ id, command });
    this.wake?.();
  }

  /** SIGINT/SIGTERM (Ctrl+C, a window reload): end at the next step boundary with a checkpoint, as `interrupted`. */
  requestStop(reason: string): void {
    this.stopRequested ??= { state: 'interrupted', reason };
    this.wake?.();
  }

  private currentSettings(): Settings {
    const e = this.model.engine;
    return {
      fusionThreshold: e.rule.fusionThreshold, fusionRatio: e.rule.fusionRatio, learningRate: e.optimizer.lr,
      importanceEvery: this.settings.importanceEvery, evalEvery: this.settings.evalEvery,
      ...(this.options.config.method === 'srlora' ? { minSlotAge: e.rule.minSlotAge } : {}),
    };
  }

  private helloBody(): TrainerEventBody {
    const c = this.options.config;
    const e = this.model.engine;
    return {
      // The trainer states what it decided (src/srlora/rule.ts); viewers never recompute it.
      ...(c.method === 'srlora' ? { srlora: { schedule: e.schedule.steps, minSlotAge: e.rule.minSlotAge, rule: e.ruleInForce(), reinitOptimizer: e.reinitOptimizer, fusionSelect: e.rule.fusionSelect ?? 'least-important' } } : {}),
      type: 'hello', protocol: { major: PROTOCOL_MAJOR, minor: PROTOCOL_MINOR }, name: c.name ?? this.runId, method: c.method,
      backend: { name: this.backend.name, device: this.backend.device }, totalSteps: c.steps,
      config: { ...c, baseModel: this.baseFile, task: c.task, data: this.data.description } as Record<string, unknown>,
      layers: this.model.engine.layers.map((l) => ({ name: l.name, shape: [l.out, l.in] as [number, number], r: l.r, rTarget: l.rTarget })),
      ...(this.options.launch ? { launch: this.options.launch } : {}),
    };
  }

  private discover(): HubEndpoint | null {
    const file = join(this.options.runDir, HUB_DISCOVERY_FILE);
    if (!existsSync(file)) return null;
    try {
      const d = JSON.parse(readFileSync(file, 'utf8')) as Partial<HubEndpoint>;
      return typeof d.url === 'string' && typeof d.token === 'string' ? { url: d.url, token: d.token } : null;
    } catch {
      return null;
    }
  }

  // ------------------------------------------------------------------ telemetry

  private flushMetrics(): void {
    if (this.rows.length === 0) return;
    // System readings once per message (src/protocol/scalars.ts), on its last row: not a syscall per step.
    const last = this.rows[this.rows.length - 1];
    last.scalars = { ...last.scalars, ...this.system.sample() };
    this.emit({ type: 'metrics', rows: this.rows });
    this.rows = [];
    this.lastFlush = performance.now();
  }

  private maybeImportance(force = false): void {
    if (this.options.config.method !== 'srlora') return;
    const now = performance.now();
    if (!force && (now - this.lastImportance < MIN_IMPORTANCE_INTERVAL_MS || this.link?.underPressure())) return;
    this.lastImportance = now;
    this.importanceStep = this.step;
    this.emit({ type: 'importance', step: this.step, layers: this.model.engine.importance() });
  }

  private probeOutput(): tf.Tensor2D {
    return tf.tidy(() => this.model.forward(this.probe));
  }

  /** Runs a recomposition with the probe batch's output measured around it, and reports it. */
  private recompose(run: () => RecompositionResult, commandId?: string): RecompositionResult {
    const before = this.probeOutput();
    const rec = run();
    const after = this.probeOutput();
    const outputChange = tf.tidy(() => tf.div(tf.norm(tf.sub(after, before)), tf.norm(before)).dataSync()[0]);
    tf.dispose([before, after]);
    this.flushMetrics();
    this.emit({
      type: 'recomposition', step: rec.step, trigger: rec.trigger, ...(commandId ? { commandId } : {}), rule: rec.rule,
      layers: rec.layers.map((l) => ({
        name: l.layer, slots: l.slots, scores: l.scores, oldDirections: l.oldDirections, newDirections: l.newDirections,
        exhausted: l.exhausted, deltaNorm: l.deltaNorm, preservationError: l.preservationError, p: l.p, ages: l.ages,
      })),
      outputChange: Number.isFinite(outputChange) ? outputChange : null,
    });
    this.maybeImportance(true); // the heatmap shows the fresh slots at once
    return rec;
  }

  private evaluate(): void {
    const { eval: ev } = this.data;
    // Said before the eval, with the rows before it: a long eval must not look like a stuck run (protocol 1.3).
    this.flushMetrics();
    this.emit({ type: 'evaluating', step: this.step });
    const r = evaluate((x) => this.model.forward(x), ev.features, ev.labels, ev.dim, Math.max(ev.classes, this.data.train.classes));
    this.emit({ type: 'eval', step: this.step, loss: r.loss, metrics: { accuracy: r.accuracy } });
    this.emit({ type: 'deltaRank', step: this.step, layers: this.model.engine.deltaRank() });
  }

  private checkpoint(): string {
    this.checkFolder();
    this.flushMetrics();
    this.recorder.sync(); // the log up to here is on disk before a checkpoint that follows it can be
    const rel = saveCheckpoint(this.options.runDir, this.model.engine, this.batches.state(), this.settings, this.recorder.lastSeq);
    this.emit({ type: 'checkpoint', step: this.step, path: rel });
    return rel;
  }

  // ------------------------------------------------------------------ commands

  private ack(id: string, status: 'applied' | 'rejected', reason?: string, settings?: Settings): void {
    this.emit({ type: 'ack', commandId: id, status, step: status === 'applied' ? this.step : null, ...(reason ? { reason } : {}), ...(settings ? { settings } : {}) });
  }

  private apply({ id, command }: { id: string; command: CommandBody }): void {
    const srlora = this.options.config.method === 'srlora';
    // The hub validates commands too; a trainer never trusts that (a test or another client may enqueue directly).
    const valid = validateCommandBody(command);
    if (!valid.ok) return this.ack(id, 'rejected', `invalid command: ${valid.error}`.slice(0, 4000));
    switch (command.kind) {
      case 'pause':
        if (this.paused) return this.ack(id, 'rejected', 'the run is already paused');
        this.paused = true;
        this.ack(id, 'applied');
        this.setState('paused');
        // While paused the page previews what Recompose Now would fuse from the latest snapshot: make it this step's.
        if (this.importanceStep !== this.step) this.maybeImportance(true);
        return;
      case 'resume':
        if (!this.paused) return this.ack(id, 'rejected', 'the run is not paused');
        this.paused = false;
        this.ack(id, 'applied');
        return this.setState('running');
      case 'set': {
        const { kind: _kind, ...change } = command;
        if (!srlora && (change.fusionThreshold !== undefined || change.fusionRatio !== undefined)) {
          return this.ack(id, 'rejected', `fusionThreshold and fusionRatio need method srlora; this run is ${this.options.config.method}`);
        }
        if (srlora) this.model.engine.set({ fusionThreshold: change.fusionThreshold, fusionRatio: change.fusionRatio });
        if (change.learningRate !== undefined) this.model.engine.optimizer.lr = change.learningRate;
        if (change.importanceEvery !== undefined) this.settings.importanceEvery = change.importanceEvery;
        if (change.evalEvery !== undefined) this.settings.evalEvery = change.evalEvery;
        return this.ack(id, 'applied', undefined, this.currentSettings());
      }
      case 'recompose': {
        if (!srlora) return this.ack(id, 'rejected', `recomposition needs method srlora; this run is ${this.options.config.method}`);
        const unknown = (command.layers ?? []).filter((n) => !this.model.targets.includes(n));
        if (unknown.length) return this.ack(id, 'rejected', `not adapted: ${unknown.join(', ')}`);
        this.recompose(() => this.model.engine.recompose('forced', command.layers), id);
        return this.ack(id, 'applied');
      }
      case 'checkpoint':
        this.checkpoint();
        return this.ack(id, 'applied');
      case 'stop':
        this.stopRequested = { state: 'stopped', reason: 'stopped by the user' };
        return this.ack(id, 'applied');
    }
  }

  /** The control point after each step; while paused it waits (no spinning) for the next command. */
  private async controlPoint(): Promise<void> {
    this.options.hooks?.atControlPoint?.(this.step, this);
    for (;;) {
      if (this.recorder.writeFailure) throw this.recorder.writeFailure;
      while (this.queue.length) this.apply(this.queue.shift()!);
      if (!this.paused || this.stopRequested) return;
      this.flushMetrics();
      await new Promise<void>((resolve) => { this.wake = resolve; });
      this.wake = null;
    }
  }

  // ------------------------------------------------------------------ the loop

  async run(): Promise<RunOutcome> {
    const c = this.options.config;
    const engine = this.model.engine;
    const resumed = Boolean(this.options.resume);
    if (this.options.hub) {
      this.link = new HubLink(this.recorder, {
        endpoint: this.options.hub, discover: () => this.discover(),
        onCommand: (id, command) => this.enqueue(id, command), onLog: (t) => this.options.onLog?.(t),
      });
      this.link.start();
    }
    let outcome: RunOutcome = 'finished';
    let reason: string | undefined;
    try {
      this.setState('running', resumed ? `resumed at step ${this.step}` : undefined);
      this.log(`${c.method} on ${this.backend.name} (${this.backend.device}); ${this.data.description}; ${engine.layers.length} adapted layers; schedule ${JSON.stringify(engine.schedule.steps)}`);
      // device and bf16 are the PyTorch trainer's fields (one config for both trainers): a value this trainer does not
      // act on is said, not silently dropped (a new user asked for cuda here and saw nothing)
      const pytorchOnly = [c.device !== 'auto' && c.device !== 'cpu' ? `device ${c.device}` : '', c.bf16 ? 'bf16' : ''].filter(Boolean);
      if (pytorchOnly.length) this.log(`${pytorchOnly.join(' and ')}: the PyTorch trainer's (--trainer pytorch); this built-in trainer runs on ${this.backend.name} (${this.backend.device}) in float32`, 'warn');
      if (!resumed) { this.evaluate(); this.maybeImportance(true); }
      // Throughput from the step itself (an EMA of its duration), so evaluations and pauses do not distort it.
      let stepMsEma = 0;
      while (this.step < c.steps && !this.stopRequested) {
        const t0 = performance.now();
        const stepNo = this.step + 1;
        const fault = this.options.hooks?.fault?.(stepNo) ?? null;
        const { x, y } = this.batches.next();
        const xt = tf.tensor2d(x, [c.batchSize, this.data.train.dim]);
        const classes = Math.max(this.data.train.classes, this.data.eval.classes);
        const lossFn = (): tf.Scalar => {
          const l = crossEntropy(this.model.forward(xt), y, classes);
          return fault?.loss === undefined ? l : tf.add(l, fault.loss) as tf.Scalar;
        };
        const { loss, due, nonFiniteGrad, gradNorm } = engine.optimizeStep(lossFn, fault?.grad);
        xt.dispose();
        // Every row before this step is flushed by the failed state (setState flushes first); this one is not a row.
        if (!Number.isFinite(loss)) throw new Error(`loss is ${formatNonFinite(loss)} at step ${stepNo}`);
        const ms = performance.now() - t0;
        stepMsEma = stepMsEma === 0 ? ms : 0.9 * stepMsEma + 0.1 * ms;
        const examplesPerSec = (c.batchSize * 1000) / stepMsEma;
        this.rows.push({ step: this.step, loss, lr: engine.optimizer.lr, examplesPerSec, ...(nonFiniteGrad ? { nonFiniteGrad: true as const } : {}),
          ...(gradNorm === null ? {} : { scalars: { grad_norm: gradNorm } }) });
        if (nonFiniteGrad && ++this.nonFiniteGradSteps <= 10) {
          this.log(`gradients are not finite at step ${this.step}: its update and importance EMAs were skipped${this.nonFiniteGradSteps === 10 ? ' (further such steps are flagged in metrics only)' : ''}`, 'warn');
        }
        if (due) this.recompose(() => engine.recompose('schedule'));
        if (this.step % this.settings.importanceEvery === 0) this.maybeImportance();
        if (this.step % this.settings.evalEvery === 0 || this.step === c.steps) this.evaluate();
        if (c.checkpointEvery > 0 && this.step % c.checkpointEvery === 0) this.checkpoint();
        if (performance.now() - this.lastFlush >= METRICS_FLUSH_MS) this.flushMetrics();
        this.progress?.update(this.step, loss, examplesPerSec);
        await new Promise((r) => setImmediate(r)); // let commands and the socket in
        await this.controlPoint();
        if (performance.now() - this.lastFolderCheck >= (this.options.folderCheckMs ?? FOLDER_CHECK_MS)) this.checkFolder();
      }
      if (this.stopRequested) {
        this.setState('stopping', this.stopRequested.reason);
        ({ state: outcome, reason } = this.stopRequested);
      }
      this.checkpoint();
      this.checkFolder();
      exportRun(this.options.runDir, this.model, this.baseFile, this.recorder.file);
    } catch (e) {
      outcome = 'failed';
      reason = (e as Error).message;
      this.log(reason, 'error');
    }
    this.progress?.done();
    try {
      this.setState(outcome, reason);
    } catch (e) {
      this.options.onLog?.(`could not record the final state ${outcome}: ${(e as Error).message}`);
    }
    if (this.link) {
      await this.link.flush(3000);
      this.link.close();
    }
    this.recorder.close();
    // Ended, with its final state written: trainer.pid would name a process that no longer trains this run.
    if (!this.options.hub) { try { removeOwnPidFile(join(this.options.runDir, PID_FILE)); } catch { /* the folder may be gone */ } }
    this.probe.dispose();
    this.model.dispose();
    return outcome;
  }
}

export function newRunDir(runsDir: string, method: string): string {
  return join(runsDir, newRunId(method));
}

/**
 * Creates a new run folder exclusively (mkdir without recursive on the last part: EEXIST is never taken as success),
 * first trying `first`, then fresh names from newRunId; returns the folder made. Two runs started in the same second
 * can draw the same name: the loser draws again instead of sharing (and interleaving) the winner's events.jsonl.
 * Throws after 20 taken names, or on any other mkdir error.
 */
export function makeNewRunDir(runsDir: string, method: string, first?: string): string {
  mkdirSync(runsDir, { recursive: true });
  for (let i = 0; i < 20; i++) {
    const dir = i === 0 && first ? first : newRunDir(runsDir, method);
    try {
      mkdirSync(dir);
      return dir;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }
  throw new Error(`cannot create a new run folder in ${runsDir}: 20 names in a row were taken`);
}

/** What a trainer says when it continues a run whose folder was renamed or copied (both trainers: Python's
 * session.moved_run_line): the run's id is its folder's now, and its earlier lines are read as this run's. */
export function movedRunLine(runId: string, recordedAs: string): string {
  return `run ${runId} was recorded as run ${recordedAs} (its folder was renamed or copied): it continues as ${runId}, its earlier records read as this run's`;
}
