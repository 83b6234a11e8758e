/**
 * What a viewer knows about a run, folded from its events.jsonl (the record of truth) in seq order. Pure (no Node,
 * no DOM), so the Runs tree, the status bar, the hub's run list, the CLI and the dashboard page all derive their
 * view with this one reducer, and show the same state. The model is plain JSON (minus latestImportance), so a
 * run-folder summary can cache it with the byte offset it was folded to.
 */
import type { ExitInfo, FusionRule, LayerImportance, LayerInfo, Method, RunStateName, Settings, TrainerMessage } from '../protocol/messages';

export interface LayerUsage extends LayerInfo { p: number }

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
  /** Steps whose gradients were not finite (skipped by the update and the importance EMAs). */
  nonFiniteSteps: number;
  /** Times the run was resumed from a checkpoint. */
  rewinds: number;
  worldSize: number;
  lastCheckpoint: string | null;
  lastSeq: number;
  /** First and latest message times (ms), for ETA and "relative time". */
  startedAt: number | null;
  updatedAt: number | null;
  latestImportance: { step: number; layers: LayerImportance[] } | null;
}

export function emptyRun(runId: string): RunModel {
  return {
    runId, name: runId, method: null, backend: '', pytorch: false, state: 'starting', stateReason: null, exit: null, step: 0, totalSteps: null,
    loss: null, examplesPerSec: null, evalLoss: null, evalAccuracy: null, layers: [], config: {}, settings: null, recompositions: 0,
    recompositionSteps: [], schedule: null, minSlotAge: null, startRule: null, nonFiniteSteps: 0, rewinds: 0, worldSize: 1,
    lastCheckpoint: null, lastSeq: 0, startedAt: null, updatedAt: null, latestImportance: null,
  };
}

/** Applies one message in place; returns the model for chaining. Messages at or below lastSeq are ignored. */
export function applyMessage(m: RunModel, msg: TrainerMessage): RunModel {
  if (msg.seq <= m.lastSeq) return m;
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
      m.worldSize = msg.worldSize ?? 1;
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
      break;
    }
    case 'importance':
      m.latestImportance = { step: msg.step, layers: msg.layers };
      for (const l of msg.layers) {
        const u = m.layers.find((x) => x.name === l.name);
        if (u) u.p = l.p;
      }
      break;
    case 'recomposition':
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
      break;
    case 'state':
      m.state = msg.state;
      m.stateReason = msg.reason ?? null;
      m.exit = msg.exit ?? (isActive(msg.state) ? null : m.exit);
      m.step = Math.max(m.step, msg.step);
      break;
    case 'rewind':
      // Resumed from the checkpoint at msg.step: what the run said about later steps is superseded.
      m.rewinds++;
      m.step = msg.step;
      m.recompositionSteps = m.recompositionSteps.filter((s) => s <= msg.step);
      m.recompositions = m.recompositionSteps.length;
      m.exit = null;
      break;
    case 'ack':
      if (msg.status === 'applied' && msg.settings) m.settings = msg.settings;
      break;
    case 'checkpoint':
      m.lastCheckpoint = msg.path;
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

/** Seconds left at the run's average pace, or null when unknown. */
export function etaSeconds(m: RunModel): number | null {
  if (!m.totalSteps || m.step === 0 || m.startedAt === null || m.updatedAt === null || m.state !== 'running') return null;
  return ((m.updatedAt - m.startedAt) / 1000 / m.step) * (m.totalSteps - m.step);
}

/** A trainer is (or should be) working on the run. */
export function isActive(state: RunStateName): boolean {
  return state === 'starting' || state === 'running' || state === 'paused' || state === 'stopping';
}

/** Ended before its last step, and can continue from its latest checkpoint. */
export function isResumable(state: RunStateName): boolean {
  return state === 'stopped' || state === 'interrupted' || state === 'failed';
}
