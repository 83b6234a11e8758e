/**
 * Seeded mini-batches over a dataset. Its whole state — the generator and the position in the current epoch's
 * permutation — is a small object, so a checkpoint can save it and a resumed run sees exactly the same batches.
 */
import { Rng } from '../rng';
import type { Dataset } from './dataset';

export interface BatcherState { rng: number; epoch: number; pos: number; order: number[] }

export class Batcher {
  private rng: Rng;
  private order: Int32Array;
  private pos = 0;
  epoch = 0;

  constructor(private readonly data: Dataset, readonly batchSize: number, seed: number) {
    if (batchSize < 1) throw new Error('batchSize must be ≥ 1');
    this.rng = new Rng(seed);
    this.order = Int32Array.from({ length: data.n }, (_, i) => i);
    this.rng.shuffle(this.order);
  }

  /** The next batch's features (batchSize × dim) and labels; epochs wrap with a fresh shuffle. */
  next(): { x: Float32Array; y: Int32Array } {
    const { dim } = this.data;
    const x = new Float32Array(this.batchSize * dim);
    const y = new Int32Array(this.batchSize);
    for (let b = 0; b < this.batchSize; b++) {
      if (this.pos >= this.order.length) {
        this.pos = 0;
        this.epoch++;
        this.rng.shuffle(this.order);
      }
      const i = this.order[this.pos++];
      x.set(this.data.features.subarray(i * dim, (i + 1) * dim), b * dim);
      y[b] = this.data.labels[i];
    }
    return { x, y };
  }

  state(): BatcherState {
    return { rng: this.rng.state, epoch: this.epoch, pos: this.pos, order: Array.from(this.order) };
  }

  load(s: BatcherState): void {
    if (s.order.length !== this.order.length) throw new Error('checkpoint data position does not match this dataset');
    this.rng = new Rng(s.rng);
    this.epoch = s.epoch;
    this.pos = s.pos;
    this.order = Int32Array.from(s.order);
  }
}
