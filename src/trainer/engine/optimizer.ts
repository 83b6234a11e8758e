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

/** slotSteps: per parameter, each slot's own Adam step count (absent in checkpoints from before reinitOptimizer). */
export interface OptimizerState { t: number; moments: { m: Float32Array; v: Float32Array }[]; slotSteps?: number[][] }

export class Optimizer {
  /** Global step count (bias correction); never reset. */
  t = 0;
  private readonly m = new Map<tf.Variable, tf.Variable>();
  private readonly v = new Map<tf.Variable, tf.Variable>();
  /**
   * Each slot's own step count (bias correction of that slot's rows of A / columns of B): equal to t until a
   * `restart` reset sets a slot's to 0, as a fresh Adam would start it (reinitOptimizer 'restart').
   */
  private readonly slotT = new Map<tf.Variable, Int32Array>();

  constructor(public config: OptimizerConfig, private readonly params: Param[]) {
    if (config.type !== 'sgd') {
      for (const p of params) {
        this.m.set(p.variable, tf.variable(tf.zerosLike(p.variable), false));
        this.v.set(p.variable, tf.variable(tf.zerosLike(p.variable), false));
        this.slotT.set(p.variable, new Int32Array(p.variable.shape[p.slotAxis] as number));
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
      for (const { variable, slotAxis } of this.params) {
        const g = grads[variable.name];
        if (!g) continue;
        if (c.type === 'sgd') {
          variable.assign(tf.sub(variable, tf.mul(g, c.lr)));
          continue;
        }
        const m = this.m.get(variable)!, v = this.v.get(variable)!;
        m.assign(tf.add(tf.mul(m, c.beta1), tf.mul(g, 1 - c.beta1)));
        v.assign(tf.add(tf.mul(v, c.beta2), tf.mul(tf.square(g), 1 - c.beta2)));
        const ts = this.slotT.get(variable)!;
        for (let k = 0; k < ts.length; k++) ts[k]++;
        let mHat: tf.Tensor, vHat: tf.Tensor;
        if (ts.every((x) => x === this.t)) { // no restarted slot: the plain scalar correction
          mHat = tf.div(m, 1 - c.beta1 ** this.t);
          vHat = tf.div(v, 1 - c.beta2 ** this.t);
        } else {
          const shape = slotAxis === 0 ? [ts.length, 1] : [1, ts.length];
          mHat = tf.div(m, tf.tensor(Float32Array.from(ts, (x) => 1 - c.beta1 ** x), shape));
          vHat = tf.div(v, tf.tensor(Float32Array.from(ts, (x) => 1 - c.beta2 ** x), shape));
        }
        let next = tf.sub(variable, tf.mul(tf.div(mHat, tf.add(tf.sqrt(vHat), c.eps)), c.lr));
        if (c.type === 'adamw' && c.weightDecay) next = tf.sub(next, tf.mul(variable, c.lr * c.weightDecay));
        variable.assign(next);
      }
    });
  }

  /**
   * Zeroes both moments of the given slots of one parameter (rows of A, columns of B); with `restart`, also their
   * step count, so their bias correction starts again (1 − β^1 at their next update). Nothing else changes.
   */
  resetSlots(variable: tf.Variable, slotAxis: SlotAxis, slots: readonly number[], restart = false): void {
    if (this.config.type === 'sgd' || slots.length === 0) return;
    const m = this.m.get(variable), v = this.v.get(variable);
    if (!m || !v) throw new Error('resetSlots: not a parameter of this optimiser');
    if (restart) for (const k of slots) this.slotT.get(variable)![k] = 0;
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
      slotSteps: this.params.map(({ variable }) => Array.from(this.slotT.get(variable) ?? [])),
    };
  }

  /** Each slot's step count of one parameter (a copy). */
  slotSteps(variable: tf.Variable): number[] {
    return Array.from(this.slotT.get(variable) ?? []);
  }

  /** Restores slot step counts (a checkpoint from before reinitOptimizer has none: every slot at t). */
  loadSlotSteps(variable: tf.Variable, steps: readonly number[] | undefined): void {
    const ts = this.slotT.get(variable);
    if (!ts) return;
    if (steps && steps.length !== ts.length) throw new Error('checkpoint: slot step counts of another rank');
    if (steps) ts.set(steps); else ts.fill(this.t);
  }

  load(state: OptimizerState): void {
    this.t = state.t;
    this.params.forEach(({ variable }, i) => this.loadSlotSteps(variable, state.slotSteps?.[i]));
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
