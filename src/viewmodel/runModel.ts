/**
 * What a viewer knows about a run, folded from its trainer messages in seq order. Pure (no Node, no DOM), so the
 * extension's tree and status bar, the CLI and the dashboard page all derive their view with the same reducer.
 */
import type { LayerImportance, LayerInfo, Method, RunStateName, Settings, TrainerMessage } from '../protocol/messages';

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
  lastCheckpoint: string | null;
  lastSeq: number;
  /** First and latest message times (ms), for ETA and "relative time". */
  startedAt: number | null;
  updatedAt: number | null;
  latestImportance: { step: number; layers: LayerImportance[] } | null;
}

export function emptyRun(runId: string): RunModel {
  return {
    runId, name: runId, method: null, backend: '', pytorch: false, state: 'starting', stateReason: null, step: 0, totalSteps: null, loss: null,
    examplesPerSec: null, evalLoss: null, evalAccuracy: null, layers: [], config: {}, settings: null, recompositions: 0,
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
      const c = msg.config as Partial<Settings> & { fusionThreshold?: number | null };
      if (typeof c.fusionRatio === 'number' && typeof c.importanceEvery === 'number' && typeof c.evalEvery === 'number') {
        const lr = (msg.config as { learningRate?: unknown }).learningRate;
        m.settings = {
          fusionThreshold: c.fusionThreshold ?? null, fusionRatio: c.fusionRatio, learningRate: typeof lr === 'number' ? lr : 0,
          importanceEvery: c.importanceEvery, evalEvery: c.evalEvery,
        };
      }
      break;
    }
    case 'metrics': {
      const last = msg.rows[msg.rows.length - 1];
      m.step = Math.max(m.step, last.step);
      m.loss = last.loss;
      m.examplesPerSec = last.examplesPerSec;
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
      m.recompositions++;
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
      m.step = Math.max(m.step, msg.step);
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

export function isActive(state: RunStateName): boolean {
  return state === 'starting' || state === 'running' || state === 'paused' || state === 'stopping';
}
