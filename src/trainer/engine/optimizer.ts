/**
 * The optimisers over the adapters' tfjs variables. Our own small Adam/AdamW rather than tf.train.adam: the
 * SRLoRA reset (SRLORA.md §3.5) must zero the first and second moments of exactly the fused slots' rows of A and
 * columns of B, and checkpoints must save and restore the moments — tfjs's optimiser does not expose them per
 * variable in a form that allows either.
 */
import * as tf from '@tensorflow/tfjs';
import { slotKeepMask, type SlotAxis } from './slotMask';

export type OptimizerConfig =
  | { type: 'sgd'; lr: number }
  | { type: 'adam' | 'adamw'; lr: number; beta1: number; beta2: number; eps: number; weightDecay?: number };


export interface Param { variable: tf.Variable; slotAxis: SlotAxis }

export interface OptimizerState { t: number; moments: { m: Float32Array; v: Float32Array }[] }

export class Optimizer {
  /** Global step count (bias correction); never reset. */
  t = 0;
  private readonly m = new Map<tf.Variable, tf.Variable>();
  private readonly v = new Map<tf.Variable, tf.Variable>();

  constructor(public config: OptimizerConfig, private readonly params: Param[]) {
    if (config.type !== 'sgd') {
      for (const p of params) {
        this.m.set(p.variable, tf.variable(tf.zerosLike(p.variable), false));
        this.v.set(p.variable, tf.variable(tf.zerosLike(p.variable), false));
      }
    }
  }

  get lr(): number {
    return this.config.lr;
  }

  set lr(value: number) {
    this.config = { ...this.config, lr: value };
  }

  apply(grads: tf.NamedTensorMap): void {
    this.t++;
    const c = this.config;
    tf.tidy(() => {
      for (const { variable } of this.params) {
        const g = grads[variable.name];
        if (!g) continue;
        if (c.type === 'sgd') {
          variable.assign(tf.sub(variable, tf.mul(g, c.lr)));
          continue;
        }
        const m = this.m.get(variable)!, v = this.v.get(variable)!;
        m.assign(tf.add(tf.mul(m, c.beta1), tf.mul(g, 1 - c.beta1)));
        v.assign(tf.add(tf.mul(v, c.beta2), tf.mul(tf.square(g), 1 - c.beta2)));
        const mHat = tf.div(m, 1 - c.beta1 ** this.t);
        const vHat = tf.div(v, 1 - c.beta2 ** this.t);
        let next = tf.sub(variable, tf.mul(tf.div(mHat, tf.add(tf.sqrt(vHat), c.eps)), c.lr));
        if (c.type === 'adamw' && c.weightDecay) next = tf.sub(next, tf.mul(variable, c.lr * c.weightDecay));
        variable.assign(next);
      }
    });
  }

  /** Zeroes both moments of the given slots of one parameter (rows of A, columns of B); nothing else changes. */
  resetSlots(variable: tf.Variable, slotAxis: SlotAxis, slots: readonly number[]): void {
    if (this.config.type === 'sgd' || slots.length === 0) return;
    const m = this.m.get(variable), v = this.v.get(variable);
    if (!m || !v) throw new Error('resetSlots: not a parameter of this optimiser');
    tf.tidy(() => {
      const keep = slotKeepMask(variable.shape[slotAxis] as number, slots, slotAxis);
      m.assign(tf.mul(m, keep));
      v.assign(tf.mul(v, keep));
    });
  }

  moments(variable: tf.Variable): { m: tf.Variable; v: tf.Variable } | null {
    const m = this.m.get(variable), v = this.v.get(variable);
    return m && v ? { m, v } : null;
  }

  state(): OptimizerState {
    return {
      t: this.t,
      moments: this.params.map(({ variable }) => {
        const mv = this.moments(variable);
        return mv ? { m: mv.m.dataSync() as Float32Array, v: mv.v.dataSync() as Float32Array } : { m: new Float32Array(0), v: new Float32Array(0) };
      }),
    };
  }

  load(state: OptimizerState): void {
    this.t = state.t;
    tf.tidy(() => this.params.forEach(({ variable }, i) => {
      const mv = this.moments(variable);
      if (!mv) return;
      mv.m.assign(tf.tensor(state.moments[i].m, variable.shape));
      mv.v.assign(tf.tensor(state.moments[i].v, variable.shape));
    }));
  }

  dispose(): void {
    for (const t of [...this.m.values(), ...this.v.values()]) t.dispose();
    this.m.clear();
    this.v.clear();
  }
}
