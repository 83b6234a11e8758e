/**
 * What a viewer knows about a run, folded from its events.jsonl (the record of truth) in seq order. Pure (no Node,
 * no DOM), so the Runs tree, the status bar, the hub's run list, the CLI and the dashboard page all derive their
 * view with this one reducer, and show the same state. The model is plain JSON (minus latestImportance), so a
 * run-folder summary can cache it with the byte offset it was folded to.
 */
import { formatNumber } from '../common/formatNumber';
import { formatDuration } from '../common/formatDuration';
import type { CommandBody, DeltaRank, ExitInfo, FusionRule, Hello, LayerImportance, LayerInfo, Method, Recomposition, RunControl, RunStateName, Settings, TrainerMessage } from '../protocol/messages';

export interface LayerUsage extends LayerInfo { p: number }

export type FusionSelect = NonNullable<NonNullable<Hello['srlora']>['fusionSelect']>;
export type ReinitOptimizer = NonNullable<NonNullable<Hello['srlora']>['reinitOptimizer']>;
export type CommandKind = CommandBody['kind'];

/**
 * What one recomposition fused in one layer (only layers where it fused something), derived from the recomposition
 * events alone: which directions the fused pairs held, when each was installed (step 0 for the starting directions,
 * else the recomposition that re-initialised its slot onto it) and so its age in steps when fused.
 */
export interface Fusion {
  step: number;
  /** The recomposition event's seq: two recompositions at one step (forced twice while paused) are told apart by it. */
  seq: number;
  trigger: Recomposition['trigger'];
  layer: string;
  slots: number[];
  /** Direction index each fused pair held (the event's oldDirections). */
  directions: number[];
  /** Directions the slots took (newDirections), so later fusions can tell when a pair was installed. */
  newDirections: number[];
  /** Step at which each fused pair was installed on its direction (0: a starting direction). */
  installedAt: number[];
  /** Age of each fused pair in steps when fused (steps since its slot's last (re)initialisation). */
  ages: number[];
  /** Step of this layer's previous recomposition that fused something (null: none before). */
  previousStep: number | null;
  /** Fused pairs that had been re-initialised by that previous recomposition (the "freshest pairs fused again"). */
  fresh: number;
}

/**
 * Why a recomposition fused nothing in a layer, as far as the log states it. The event says only `exhausted`; the
 * rest follows from the rule it states (ratio: the ⌈γ·r⌉ oldest-enough pairs, so nothing fused means no pair was
 * old enough; threshold: the old-enough pairs with ŝ < τ) and, under τ, from an importance snapshot of the same step
 * (its ages are the layer's at that recomposition: a layer that fused nothing is unchanged by it). Without one,
 * 'not-old-enough-or-above-threshold' says both conditions honestly rather than guessing.
 */
export type NoFusionReason = 'no-direction' | 'not-old-enough' | 'above-threshold' | 'not-old-enough-or-above-threshold';

/** A layer a recomposition left as it was (nothing fused), and why. */
export interface IdleLayer {
  step: number;
  /** The recomposition event's seq (see Fusion.seq). */
  seq: number;
  layer: string;
  reason: NoFusionReason;
  /** τ of the event's rule (threshold rule), else null. */
  threshold: number | null;
}

/**
 * Why one recomposition (the event at record position `seq`) fused nothing in the named layers: the distinct reasons'
 * words, one phrase when they agree. Keyed by the event, not its step: two recompositions at one step (forced twice
 * while paused) each keep their own reasons.
 */
export function noFusionReasons(m: RunModel, seq: number, layers: ReadonlySet<string>): string[] {
  return [...new Set(m.idleLayers.filter((l) => l.seq === seq && layers.has(l.layer)).map((l) => noFusionText(l, m.minSlotAge)))];
}

/** The words for a reason ("no pair old enough (age ≥ 30 steps)"); minSlotAge from hello (null: not stated). */
export function noFusionText(l: Pick<IdleLayer, 'reason' | 'threshold'>, minSlotAge: number | null): string {
  const age = minSlotAge === null ? 'old enough' : `old enough (age ≥ ${minSlotAge} step${minSlotAge === 1 ? '' : 's'})`;
  const tau = l.threshold === null ? 'τ' : `τ = ${l.threshold}`;
  switch (l.reason) {
    case 'no-direction': return 'no direction left';
    case 'not-old-enough': return `no pair ${age}`;
    case 'above-threshold': return `no pair ${age} had ŝ below ${tau}`;
    case 'not-old-enough-or-above-threshold': return `no pair both ${age} and below ${tau}`;
  }
}

/** Fusions kept per run (the newest): every view of them needs only recent history and counts. */
export const MAX_FUSIONS = 5000;
/** Command kinds remembered per run (by command id), newest. */
const MAX_COMMANDS = 256;

export interface RunModel {
  runId: string;
  name: string;
  method: Method | null;
  backend: string;
  /** A run of the PyTorch trainer (its hello's backend): srlora_torch continues and exports it, not the built-in CLI. */
  pytorch: boolean;
  state: RunStateName;
  stateReason: string | null;
  /** Set by a supervisor's state record: how the trainer process ended. */
  exit: ExitInfo | null;
  step: number;
  totalSteps: number | null;
  loss: number | null;
  examplesPerSec: number | null;
  evalLoss: number | null;
  evalAccuracy: number | null;
  /** The step of the eval that evalLoss/evalAccuracy come from (they go stale as the run moves on). */
  evalStep: number | null;
  /**
   * An eval under way (protocol 1.3 `evaluating`): its step and when it began (the trainer's clock, ms); null once its
   * eval came, after a rewind, or when the run ended.
   */
  evaluating: { step: number; since: number } | null;
  layers: LayerUsage[];
  config: Record<string, unknown>;
  settings: Settings | null;
  recompositions: number;
  /** The step of each recomposition event, in order (a rewind drops the later ones). */
  recompositionSteps: number[];
  /** The trainer's schedule, minimum slot age and starting rule (srlora runs; from hello — never recomputed here). */
  schedule: number[] | null;
  minSlotAge: number | null;
  startRule: FusionRule | null;
  /** Which eligible pairs fuse, and the fused slots' Adam state (hello.srlora; older trainers: the paper's rule, zero-moments). */
  fusionSelect: FusionSelect | null;
  reinitOptimizer: ReinitOptimizer | null;
  /** What each recomposition fused, per layer (oldest dropped past MAX_FUSIONS; a rewind drops later ones). */
  fusions: Fusion[];
  /** Layers recompositions fused nothing in, and why (oldest dropped past MAX_FUSIONS; a rewind drops later ones). */
  idleLayers: IdleLayer[];
  /**
   * The kind of each command the log shows (an ack names only its id): told by what the trainer did right after
   * applying it (a state paused/running/stopping, a checkpoint, a recomposition with its id, the settings of a set)
   * or by a rejection's reason. Newest MAX_COMMANDS.
   */
  commandKinds: Record<string, CommandKind>;
  /** The last applied ack not yet attributed (its kind shows in the message that follows it). */
  pendingAck: { commandId: string; seq: number; step: number | null } | null;
  /** Seq of the latest checkpoint message (a checkpoint command's ack follows it). */
  lastCheckpointSeq?: number;
  /** Steps whose gradients were not finite (skipped by the update and the importance EMAs). */
  nonFiniteSteps: number;
  /** The latest effective rank and norm of each layer's ΔW, as the trainer measured them (deltaRank, protocol 1.2). */
  deltaRank: DeltaRank | null;
  /** Times the run was resumed from a checkpoint. */
  rewinds: number;
  worldSize: number;
  /** How the PyTorch trainer was started (hello.launch): the continue line's interpreter and PYTHONPATH. */
  launch: NonNullable<Hello['launch']> | null;
  lastCheckpoint: string | null;
  lastSeq: number;
  /** First and latest message times (ms), for "relative time". */
  startedAt: number | null;
  updatedAt: number | null;
  /**
   * The current stretch of training, for the ETA (etaSeconds): since the run last went `running` after a start or
   * a resume (a rewind starts a new one), with the time spent paused in it; `lastTime` is its latest metrics time.
   * Null while no stretch is under way (not yet running, or ended).
   */
  pace: { time: number; step: number; pausedMs: number; pausedAt: number | null; lastTime: number; lastStep: number } | null;
  /** The latest snapshot in record order; seq tells apart two at one step (one after a recomposition replaces the earlier). */
  latestImportance: { step: number; seq: number; layers: LayerImportance[] } | null;
}

export function emptyRun(runId: string): RunModel {
  return {
    runId, name: runId, method: null, backend: '', pytorch: false, state: 'starting', stateReason: null, exit: null, step: 0, totalSteps: null,
    loss: null, examplesPerSec: null, evalLoss: null, evalAccuracy: null, evalStep: null, evaluating: null, layers: [], config: {}, settings: null, recompositions: 0,
    recompositionSteps: [], schedule: null, minSlotAge: null, startRule: null, fusionSelect: null, reinitOptimizer: null, fusions: [], idleLayers: [],
    commandKinds: {}, pendingAck: null, deltaRank: null, nonFiniteSteps: 0, rewinds: 0, worldSize: 1, launch: null,
    lastCheckpoint: null, lastSeq: 0, startedAt: null, updatedAt: null, pace: null, latestImportance: null,
  };
}

/** The rejection reasons both trainers write, and the command kind each belongs to. */
const REJECTED: [RegExp, CommandKind][] = [
  [/^the run is already paused/, 'pause'], [/^the run is not paused/, 'resume'], [/^fusionThreshold and fusionRatio need|^no optimizer yet/, 'set'],
  [/^recomposition needs|^not adapted/, 'recompose'], [/checkpoint writer/, 'checkpoint'],
];

function noteCommand(m: RunModel, id: string, kind: CommandKind): void {
  m.commandKinds[id] = kind;
  const ids = Object.keys(m.commandKinds);
  if (ids.length > MAX_COMMANDS) delete m.commandKinds[ids[0]];
}

/** The fusions of one recomposition event, per layer that fused something (see Fusion). */
function foldFusions(m: RunModel, msg: Recomposition): void {
  for (const l of msg.layers) {
    if (l.slots.length === 0) continue;
    let previous: Fusion | undefined;
    for (let i = m.fusions.length - 1; i >= 0 && !previous; i--) if (m.fusions[i].layer === l.name) previous = m.fusions[i];
    const installedAt = l.oldDirections.map((d) => {
      for (let i = m.fusions.length - 1; i >= 0; i--) {
        const f = m.fusions[i];
        if (f.layer === l.name && f.newDirections.includes(d)) return f.step;
      }
      return 0;
    });
    // The ages the trainer states (protocol 1.2) are shown as stated; an older log's follow from the directions.
    const ages = l.ages && l.ages.length === l.slots.length ? l.ages : installedAt.map((s) => msg.step - s);
    const previousStep = previous?.step ?? null;
    m.fusions.push({
      step: msg.step, seq: msg.seq, trigger: msg.trigger, layer: l.name, slots: l.slots, directions: l.oldDirections, newDirections: l.newDirections,
      installedAt, ages, previousStep, fresh: previousStep === null ? 0 : installedAt.filter((s) => s === previousStep).length,
    });
  }
  if (m.fusions.length > MAX_FUSIONS) m.fusions.splice(0, m.fusions.length - MAX_FUSIONS);
}

/** The layers a recomposition fused nothing in, with what its rule (and a same-step snapshot) says about why. */
function foldIdleLayers(m: RunModel, msg: Recomposition): void {
  const threshold = msg.rule.kind === 'threshold' ? msg.rule.fusionThreshold : null;
  for (const l of msg.layers) {
    if (l.slots.length) continue;
    const reason: NoFusionReason = l.exhausted ? 'no-direction' : threshold === null ? 'not-old-enough' : 'not-old-enough-or-above-threshold';
    m.idleLayers.push({ step: msg.step, seq: msg.seq, layer: l.name, reason, threshold });
  }
  if (m.idleLayers.length > MAX_FUSIONS) m.idleLayers.splice(0, m.idleLayers.length - MAX_FUSIONS);
  if (m.latestImportance?.step === msg.step) refineIdleLayers(m, m.latestImportance);
}

/** Under τ: a snapshot of the recomposition's step states the layer's ages, so which condition stopped it. */
function refineIdleLayers(m: RunModel, snap: { step: number; layers: LayerImportance[] }): void {
  if (m.minSlotAge === null) return;
  for (let i = m.idleLayers.length - 1; i >= 0 && m.idleLayers[i].step >= snap.step; i--) {
    const idle = m.idleLayers[i];
    if (idle.step !== snap.step || idle.reason !== 'not-old-enough-or-above-threshold') continue;
    const layer = snap.layers.find((x) => x.name === idle.layer);
    if (layer) idle.reason = layer.age.some((a) => a >= m.minSlotAge!) ? 'above-threshold' : 'not-old-enough';
  }
}

/** Applies one message in place; returns the model for chaining. Messages at or below lastSeq are ignored. */
export function applyMessage(m: RunModel, msg: TrainerMessage): RunModel {
  if (msg.seq <= m.lastSeq) return m;
  // A model cached by an older version (summary.json) lacks the newer fields.
  m.fusions ??= [];
  m.commandKinds ??= {};
  m.pendingAck ??= null;
  m.evalStep ??= null;
  m.evaluating ??= null;
  m.fusionSelect ??= null;
  m.reinitOptimizer ??= null;
  m.deltaRank ??= null;
  m.pace ??= null;
  const pending = m.pendingAck;
  if (pending && msg.seq === pending.seq + 1 && msg.type === 'state' && (msg.state === 'paused' || msg.state === 'running')) {
    noteCommand(m, pending.commandId, msg.state === 'paused' ? 'pause' : 'resume');
    m.pendingAck = null;
  }
  m.lastSeq = msg.seq;
  m.startedAt ??= msg.time;
  m.updatedAt = msg.time;
  switch (msg.type) {
    case 'hello': {
      m.name = msg.name ?? msg.runId;
      m.method = msg.method;
      m.backend = `${msg.backend.name} · ${msg.backend.device}`;
      m.pytorch = msg.backend.name === 'pytorch';
      m.totalSteps = msg.totalSteps;
      m.config = msg.config;
      m.layers = msg.layers.map((l) => ({ ...l, p: l.r }));
      m.schedule = msg.srlora?.schedule ?? null;
      m.minSlotAge = msg.srlora?.minSlotAge ?? null;
      m.startRule = msg.srlora?.rule ?? null;
      m.fusionSelect = msg.srlora ? msg.srlora.fusionSelect ?? 'least-important' : null;
      m.reinitOptimizer = msg.srlora ? msg.srlora.reinitOptimizer ?? 'zero-moments' : null;
      m.worldSize = msg.worldSize ?? 1;
      m.launch = msg.launch ?? null;
      const c = msg.config as Partial<Settings> & { fusionThreshold?: number | null };
      if (typeof c.fusionRatio === 'number' && typeof c.importanceEvery === 'number' && typeof c.evalEvery === 'number') {
        const lr = (msg.config as { learningRate?: unknown }).learningRate;
        m.settings = {
          fusionThreshold: c.fusionThreshold ?? null, fusionRatio: c.fusionRatio, learningRate: typeof lr === 'number' ? lr : 0,
          importanceEvery: c.importanceEvery, evalEvery: c.evalEvery, ...(m.minSlotAge !== null ? { minSlotAge: m.minSlotAge } : {}),
        };
      }
      break;
    }
    case 'metrics': {
      const last = msg.rows[msg.rows.length - 1];
      m.step = Math.max(m.step, last.step);
      m.loss = last.loss;
      m.examplesPerSec = last.examplesPerSec;
      for (const r of msg.rows) if (r.nonFiniteGrad) m.nonFiniteSteps++;
      if (m.pace) { m.pace.lastTime = msg.time; m.pace.lastStep = last.step; }
      break;
    }
    case 'importance':
      // The latest state: a later snapshot at the same step replaces the earlier (one taken right after a
      // recomposition); one of an earlier step that arrives later (a GPU trainer's asynchronous copy) does not.
      if (m.latestImportance && msg.step < m.latestImportance.step) break;
      m.latestImportance = { step: msg.step, seq: msg.seq, layers: msg.layers };
      refineIdleLayers(m, m.latestImportance);
      for (const l of msg.layers) {
        const u = m.layers.find((x) => x.name === l.name);
        if (u) u.p = l.p;
      }
      break;
    case 'recomposition':
      if (msg.commandId) noteCommand(m, msg.commandId, 'recompose');
      foldFusions(m, msg);
      foldIdleLayers(m, msg);
      m.recompositionSteps.push(msg.step);
      m.recompositions = m.recompositionSteps.length;
      for (const l of msg.layers) {
        const u = m.layers.find((x) => x.name === l.name);
        if (u) u.p = l.p;
      }
      break;
    case 'eval':
      m.evalLoss = msg.loss;
      m.evalAccuracy = msg.metrics.accuracy ?? null;
      m.evalStep = msg.step;
      if (m.evaluating && msg.step >= m.evaluating.step) m.evaluating = null;
      break;
    case 'evaluating':
      m.evaluating = { step: msg.step, since: msg.time };
      break;
    case 'state':
      if (msg.state === 'stopping' && msg.reason === 'stopped by the user' && m.pendingAck) {
        noteCommand(m, m.pendingAck.commandId, 'stop');
        m.pendingAck = null;
      }
      m.state = msg.state;
      m.stateReason = msg.reason ?? null;
      m.exit = msg.exit ?? (isActive(msg.state) ? null : m.exit);
      if (!isActive(msg.state)) m.evaluating = null; // it ended mid-eval: no eval is under way any more
      m.step = Math.max(m.step, msg.step);
      foldPace(m, msg.state, msg.time, msg.step);
      break;
    case 'rewind':
      // Resumed from the checkpoint at msg.step: what the run said about later steps is superseded.
      m.rewinds++;
      m.step = msg.step;
      m.recompositionSteps = m.recompositionSteps.filter((s) => s <= msg.step);
      if (m.latestImportance && m.latestImportance.step > msg.step) m.latestImportance = null;
      m.recompositions = m.recompositionSteps.length;
      m.fusions = m.fusions.filter((f) => f.step <= msg.step);
      m.idleLayers = m.idleLayers.filter((f) => f.step <= msg.step);
      if (m.deltaRank && m.deltaRank.step > msg.step) m.deltaRank = null;
      if (m.evalStep !== null && m.evalStep > msg.step) { m.evalLoss = null; m.evalAccuracy = null; m.evalStep = null; } // that eval was superseded
      m.pendingAck = null;
      m.exit = null;
      m.evaluating = null;
      m.pace = null; // the resumed trainer's pace starts over (the time the run spent stopped is not training)
      break;
    case 'ack':
      if (msg.status === 'applied') {
        if (msg.settings) { m.settings = msg.settings; noteCommand(m, msg.commandId, 'set'); }
        else if (m.lastCheckpointSeq === msg.seq - 1) noteCommand(m, msg.commandId, 'checkpoint');
        else if (!(msg.commandId in m.commandKinds)) m.pendingAck = { commandId: msg.commandId, seq: msg.seq, step: msg.step };
      } else if (msg.status === 'rejected') {
        const hit = REJECTED.find(([re]) => re.test(msg.reason ?? ''));
        if (hit) noteCommand(m, msg.commandId, hit[1]);
      }
      break;
    case 'checkpoint':
      m.lastCheckpoint = msg.path;
      m.lastCheckpointSeq = msg.seq;
      break;
    case 'deltaRank':
      m.deltaRank = msg;
      break;
    case 'log':
      break;
  }
  return m;
}

export function foldRun(runId: string, messages: Iterable<TrainerMessage>): RunModel {
  const m = emptyRun(runId);
  for (const msg of messages) applyMessage(m, msg);
  return m;
}

/** A state message's effect on the current stretch of training: running starts one (or ends a pause), paused
 * starts a pause, an ended run has none. */
function foldPace(m: RunModel, state: RunStateName, time: number, step: number): void {
  const p = m.pace;
  if (state === 'running') {
    if (!p) m.pace = { time, step, pausedMs: 0, pausedAt: null, lastTime: time, lastStep: step };
    else if (p.pausedAt !== null) { p.pausedMs += time - p.pausedAt; p.pausedAt = null; }
  } else if (state === 'paused') {
    if (p && p.pausedAt === null) p.pausedAt = time;
  } else if (!isActive(state)) m.pace = null;
}

/**
 * Seconds left (≥ 0) at the pace of the current stretch of training: steps done since the run last went running
 * (after its start or its latest resume) over the time since then, paused time excluded, times the steps left.
 * Null unless the run is running with a measured pace. The one ETA: every view that shows one calls this.
 */
export function etaSeconds(m: RunModel): number | null {
  const p = m.pace;
  if (m.state !== 'running' || !p || !m.totalSteps) return null;
  const steps = p.lastStep - p.step, secs = (p.lastTime - p.time - p.pausedMs) / 1000;
  if (steps <= 0 || secs <= 0) return null;
  return (secs / steps) * Math.max(0, m.totalSteps - m.step);
}

/** "1 recomposition", "2 recompositions". */
export const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;

/**
 * How every view counts recompositions (the page's header and table, summary.json's `recompositions`): all of them,
 * forced and scheduled, saying how many fused nothing — "2 recompositions, 1 fused nothing", "1 recomposition". (The
 * terminal summaries, after their own `recompositions` label, count the same ones: src/cli/summary.ts recompositionsCount.)
 */
export function recompositionsText(all: number, fusedNothing: number): string {
  return `${plural(all, 'recomposition')}${fusedNothing > 0 ? `, ${fusedNothing} fused nothing` : ''}`;
}

/**
 * The latest eval, with the step it was measured at; "N steps old" once a newer eval was due (a run whose evals
 * stopped, or one that ended long after its last eval): a number from step 100 must not read as today's. Every view
 * that shows the eval (the page's header, the Runs view's tooltip) says it with these words. Null: no eval yet.
 */
export function evalFact(m: RunModel): string | null {
  if (m.evalStep === null || (m.evalAccuracy === null && m.evalLoss === null)) return null;
  const what = m.evalAccuracy !== null ? `eval acc ${(100 * m.evalAccuracy).toFixed(1)} %` : `eval loss ${formatNumber(m.evalLoss)}`;
  const every = m.settings?.evalEvery ?? (typeof m.config.evalEvery === 'number' ? m.config.evalEvery : null);
  const age = m.step - m.evalStep;
  // not stale while the eval that replaces it is under way (protocol 1.3 `evaluating`)
  const stale = age > 0 && (every === null || age >= every) && !(m.evaluating && m.evaluating.step > m.evalStep);
  return `${what} at step ${m.evalStep}${stale ? ` (stale: ${plural(age, 'step')} old)` : ''}`;
}

/**
 * An eval under way, for the views: "evaluating at step 500… (since 12 s)", counted from its `evaluating` message to
 * `now` (ms since the epoch; the page and the trainer share a machine, the hub being loopback-only). Null: none.
 */
export function evaluatingFact(m: Pick<RunModel, 'evaluating'>, now: number): string | null {
  if (!m.evaluating) return null;
  return `evaluating at step ${m.evaluating.step}… (since ${formatDuration(Math.max(0, (now - m.evaluating.since) / 1000))})`;
}

/** A trainer is (or should be) working on the run. */
export function isActive(state: RunStateName): boolean {
  return state === 'starting' || state === 'running' || state === 'paused' || state === 'stopping';
}

/**
 * What a view knows about a run besides its record: whether its trainer is connected to the hub the view talks to,
 * and why the supervisor behind that hub follows the run read-only (started from a terminal, owned by another
 * window or `srlora serve`), or null when it does not say. The hub's run list carries both (RunSummary.connected,
 * .readOnly), so every view derives the same control from them and its own fold of the record.
 */
export interface TrainerLink { connected: boolean; readOnly: string | null }

/** The reason when no trainer is connected and nothing more specific is known. */
export const NO_TRAINER = 'no trainer connected to this hub';

/**
 * Whether steering commands can reach the run from a view, and why not (≤ 300 characters): the one rule the hub
 * (its run list, and whether it forwards a command), the page's controls and the Runs view's menu all apply, so
 * they cannot disagree. Most decisive first: a run that ended or is stopping takes no more commands; a trainer
 * connected to this hub does; else what the supervisor said (read-only), else that no trainer is connected.
 */
export function steerControl(m: Pick<RunModel, 'state'>, link: TrainerLink): RunControl {
  if (!isActive(m.state) || m.state === 'stopping') return { canSteer: false, reason: `the run is ${m.state}` };
  if (link.connected) return { canSteer: true };
  return { canSteer: false, reason: link.readOnly ?? NO_TRAINER };
}

/** Ended before its last step, and can continue from its latest checkpoint. */
export function isResumable(state: RunStateName): boolean {
  return state === 'stopped' || state === 'interrupted' || state === 'failed';
}
