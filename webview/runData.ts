/**
 * Everything the page holds for one run, built from the snapshot and then from deltas, folded through the one
 * reducer (src/viewmodel/runModel.ts) plus the per-step series that reducer does not keep. Long series live in
 * growable typed arrays (1,000,000 steps ≈ 40 MB), not in per-point objects; charts read decimated views of them.
 *
 * One value per step: a `rewind {step}` (a resumed run) drops every value held for later steps, and a row for a step
 * already held replaces it and what follows, so a resumed run draws one curve and exports no repeated rows.
 */
import type { Ack, Eval, Recomposition, TrainerMessage } from '../src/protocol/messages';
import { applyMessage, emptyRun, etaSeconds, type RunModel } from '../src/viewmodel/runModel';

export class Series {
  data: Float64Array;
  length = 0;
  constructor(capacity = 4096) { this.data = new Float64Array(capacity); }
  push(v: number): void {
    if (this.length === this.data.length) {
      const next = new Float64Array(this.data.length * 2);
      next.set(this.data);
      this.data = next;
    }
    this.data[this.length++] = v;
  }
  view(): Float64Array { return this.data.subarray(0, this.length); }
  last(): number | undefined { return this.length ? this.data[this.length - 1] : undefined; }
}

/** Index of the first value > v in the increasing prefix a[0..n) (binary search). */
export function upperBound(a: Float64Array, n: number, v: number): number {
  let lo = 0, hi = n;
  while (lo < hi) { const mid = (lo + hi) >> 1; if (a[mid] <= v) lo = mid + 1; else hi = mid; }
  return lo;
}

/**
 * One scalar over steps: x = step (increasing, one value per step), t = message time (ms), y = the value. A named
 * scalar that comes with every metrics row shares the run's step and time arrays (`parent`) instead of copying
 * them — 16 MB less per scalar at 1,000,000 steps — until a row lacks it; then it keeps its own.
 */
export class Track {
  private ownStep: Series | null = null;
  private ownTime: Series | null = null;
  readonly value: Series;
  /** Bumped when values are dropped (incremental views — smoothing, decimation indexes — start over). */
  cuts = 0;
  constructor(capacity = 256, private readonly parent?: { step: Series; time: Series }) {
    this.value = new Series(capacity);
    if (!parent) { this.ownStep = new Series(capacity); this.ownTime = new Series(capacity); }
  }
  /** Steps and times (read the first `length` of them: a shared parent may hold one more row). */
  get step(): Series { return this.ownStep ?? this.parent!.step; }
  get time(): Series { return this.ownTime ?? this.parent!.time; }
  get length(): number { return this.value.length; }
  push(step: number, time: number, value: number): void {
    if (!this.ownStep) {
      const p = this.parent!;
      // Still aligned: a value for every row so far, and this one is for the row just added.
      if (p.step.length === this.value.length + 1 && p.step.last() === step) { this.value.push(value); return; }
      this.unshare();
    }
    const last = this.ownStep!.last();
    if (last !== undefined && step <= last) this.cutAfter(step - 1);
    this.ownStep!.push(step);
    this.ownTime!.push(time);
    this.value.push(value);
  }
  private unshare(): void {
    const n = this.value.length, p = this.parent!;
    this.ownStep = new Series(Math.max(256, n * 2));
    this.ownTime = new Series(Math.max(256, n * 2));
    for (let i = 0; i < n; i++) { this.ownStep.push(p.step.data[i]); this.ownTime.push(p.time.data[i]); }
  }
  /** Keeps the values of steps ≤ step. */
  cutAfter(step: number): void {
    if (!this.ownStep) {
      const p = this.parent!;
      const n = upperBound(p.step.data, Math.min(this.value.length, p.step.length), step);
      if (n === this.value.length) return;
      this.value.length = n;
      this.cuts++;
      return;
    }
    const n = upperBound(this.ownStep.data, this.ownStep.length, step);
    if (n === this.ownStep.length) return;
    this.ownStep.length = this.ownTime!.length = this.value.length = n;
    this.cuts++;
  }
}

export interface ImportanceFrame { step: number; time: number; layers: Map<string, { sHat: number[]; direction: number[]; stepBoost?: number[] }> }

/** Importance snapshots kept for the slot history; older ones are thinned to every other one. */
const MAX_FRAMES = 1500;

export class RunData {
  model: RunModel;
  /** The per-step training series (every metrics row has them), aligned: index i is one step. */
  readonly step = new Series();
  readonly loss = new Series();
  readonly time = new Series();
  readonly lr = new Series();
  readonly examplesPerSec = new Series();
  /** Named per-step scalars the trainer sends (MetricsRow.scalars), each over the steps it was sent at. */
  readonly scalars = new Map<string, Track>();
  /** Eval loss and each eval metric, over eval steps. */
  readonly evalTracks = new Map<string, Track>();
  evals: Eval[] = [];
  /**
   * The effective rank of each layer's ΔW over the steps the trainer measured it (deltaRank, protocol 1.2), and
   * across layers at each of those steps their mean, min and max (of the values stated, not recomputed).
   */
  readonly ranks = new Map<string, Track>();
  readonly rankSummary = { mean: new Track(), min: new Track(), max: new Track() };
  /** Bumped when frames change (a new importance snapshot, thinning, a rewind), for views drawn from them. */
  framesVersion = 0;
  recompositions: Recomposition[] = [];
  /** Where the run was resumed from a checkpoint (each rewind's step and time; a later rewind to before one drops it). */
  resumes: { step: number; time: number }[] = [];
  frames: ImportanceFrame[] = [];
  /** The latest snapshot: the one reducer's (a later one at the same step replaces it; a rewind drops later steps'). */
  get latestImportance(): RunModel['latestImportance'] { return this.model.latestImportance; }
  readonly acks = new Map<string, Ack[]>();
  ackCount = 0;
  /** Bumped on every change, so views redraw only when needed. */
  version = 0;
  /** Bumped when a snapshot replaces everything or a rewind drops values (incremental views start over). */
  resets = 0;
  truncated = false;

  constructor(readonly runId: string) {
    this.model = emptyRun(runId);
  }

  reset(truncated: boolean): void {
    const { version, resets } = this;
    Object.assign(this, new RunData(this.runId));
    this.truncated = truncated;
    this.version = version + 1;
    this.resets = resets + 1;
  }

  /** Drops every value held for steps > step (a rewind, or a row repeating a step already held). */
  private cutAfter(step: number): void {
    const n = upperBound(this.step.data, this.step.length, step);
    if (n < this.step.length) {
      for (const s of [this.step, this.loss, this.time, this.lr, this.examplesPerSec]) s.length = n;
      this.resets++;
    }
    for (const t of this.scalars.values()) t.cutAfter(step);
    for (const t of this.evalTracks.values()) t.cutAfter(step);
    this.evals = this.evals.filter((e) => e.step <= step);
    this.recompositions = this.recompositions.filter((e) => e.step <= step);
    this.resumes = this.resumes.filter((e) => e.step <= step);
    this.frames = this.frames.filter((f) => f.step <= step);
    this.framesVersion++;
    for (const t of this.ranks.values()) t.cutAfter(step);
    for (const t of Object.values(this.rankSummary)) t.cutAfter(step);
  }

  /** Seconds left: the one reducer's ETA (runModel.etaSeconds: the current stretch's pace, paused time excluded). */
  etaSeconds(): number | null {
    return etaSeconds(this.model);
  }

  private track(map: Map<string, Track>, name: string, parent?: { step: Series; time: Series }): Track {
    let t = map.get(name);
    if (!t) { t = new Track(256, parent); map.set(name, t); }
    return t;
  }

  apply(msg: TrainerMessage): void {
    if (msg.seq <= this.model.lastSeq) return; // a replay of what we have
    applyMessage(this.model, msg);
    switch (msg.type) {
      case 'metrics':
        for (const r of msg.rows) {
          const last = this.step.last();
          if (last !== undefined && r.step <= last) this.cutAfter(r.step - 1); // the latest value per step wins
          this.step.push(r.step);
          this.loss.push(r.loss);
          this.time.push(msg.time);
          this.lr.push(r.lr);
          this.examplesPerSec.push(r.examplesPerSec);
          if (r.scalars) for (const [k, v] of Object.entries(r.scalars)) this.track(this.scalars, k, this).push(r.step, msg.time, v);
        }
        break;
      case 'eval':
        this.evals = this.evals.filter((e) => e.step < msg.step); // a repeated eval step: the latest wins
        this.evals.push(msg);
        this.track(this.evalTracks, 'loss').push(msg.step, msg.time, msg.loss);
        for (const [k, v] of Object.entries(msg.metrics)) this.track(this.evalTracks, k).push(msg.step, msg.time, v);
        break;
      case 'recomposition': this.recompositions.push(msg); break;
      case 'deltaRank': {
        if (!msg.layers.length) break;
        let sum = 0, min = Infinity, max = -Infinity;
        for (const l of msg.layers) {
          this.track(this.ranks, l.name).push(msg.step, msg.time, l.effectiveRank);
          sum += l.effectiveRank; min = Math.min(min, l.effectiveRank); max = Math.max(max, l.effectiveRank);
        }
        this.rankSummary.mean.push(msg.step, msg.time, sum / msg.layers.length);
        this.rankSummary.min.push(msg.step, msg.time, min);
        this.rankSummary.max.push(msg.step, msg.time, max);
        break;
      }
      case 'rewind': // a second resume from the same checkpoint (the first died before the next) is one marker, not two
        this.cutAfter(msg.step);
        this.resumes = this.resumes.filter((e) => e.step < msg.step);
        this.resumes.push({ step: msg.step, time: msg.time });
        break;
      case 'importance': {
        // The latest snapshot per step wins, as for every other value: one frame per step.
        while (this.frames.length && this.frames[this.frames.length - 1].step >= msg.step) this.frames.pop();
        this.frames.push({ step: msg.step, time: msg.time, layers: new Map(msg.layers.map((l) => [l.name, { sHat: l.sHat, direction: l.direction, ...(l.stepBoost ? { stepBoost: l.stepBoost } : {}) }])) });
        this.framesVersion++;
        if (this.frames.length > MAX_FRAMES) this.frames = this.frames.filter((_, i) => i % 2 === 0 || i >= this.frames.length - MAX_FRAMES / 2);
        break;
      }
      case 'ack': {
        this.ackCount++;
        const list = this.acks.get(msg.commandId) ?? [];
        list.push(msg);
        this.acks.set(msg.commandId, list);
        break;
      }
      default: break;
    }
    this.version++;
  }
}

/**
 * Which importance snapshot a view shows: its record position (seq), not its step — a snapshot taken right after a
 * recomposition has the step of the one before it, and a view keyed on the step kept the state before the recomposition.
 */
export function importanceKey(r: RunData | undefined): string {
  return r?.latestImportance ? `${r.latestImportance.step}#${r.latestImportance.seq}` : '-';
}
