/**
 * Everything the page holds for one run, built from the snapshot and then from deltas. Long series live in
 * growable typed arrays (1,000,000 steps ≈ 24 MB), not in per-point objects; charts read decimated views of them.
 */
import type { Ack, Eval, LayerImportance, Recomposition, TrainerMessage } from '../src/protocol/messages';
import { applyMessage, emptyRun, type RunModel } from '../src/viewmodel/runModel';

class Series {
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
}

export interface ImportanceFrame { step: number; layers: Map<string, { sHat: number[]; direction: number[] }> }

/** Importance snapshots kept for the slot history; older ones are thinned to every other one. */
const MAX_FRAMES = 1500;

export class RunData {
  model: RunModel;
  readonly step = new Series();
  readonly loss = new Series();
  readonly time = new Series();
  readonly lr = new Series();
  readonly examplesPerSec = new Series();
  evals: Eval[] = [];
  recompositions: Recomposition[] = [];
  frames: ImportanceFrame[] = [];
  latestImportance: { step: number; layers: LayerImportance[] } | null = null;
  readonly acks = new Map<string, Ack[]>();
  /** Bumped on every change, so views redraw only when needed. */
  version = 0;
  /** Bumped when a snapshot replaces everything (incremental views start over). */
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

  apply(msg: TrainerMessage): void {
    if (msg.seq <= this.model.lastSeq) return; // a replay of what we have
    applyMessage(this.model, msg);
    switch (msg.type) {
      case 'metrics':
        for (const r of msg.rows) {
          this.step.push(r.step);
          this.loss.push(r.loss);
          this.time.push(msg.time);
          this.lr.push(r.lr);
          this.examplesPerSec.push(r.examplesPerSec);
        }
        break;
      case 'eval': this.evals.push(msg); break;
      case 'recomposition': this.recompositions.push(msg); break;
      case 'importance': {
        this.latestImportance = { step: msg.step, layers: msg.layers };
        this.frames.push({ step: msg.step, layers: new Map(msg.layers.map((l) => [l.name, { sHat: l.sHat, direction: l.direction }])) });
        if (this.frames.length > MAX_FRAMES) this.frames = this.frames.filter((_, i) => i % 2 === 0 || i >= this.frames.length - MAX_FRAMES / 2);
        break;
      }
      case 'ack': {
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
