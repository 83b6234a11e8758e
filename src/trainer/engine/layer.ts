/**
 * One adapted linear layer (SRLORA.md notation): frozen W (out × in), trainable A (r × in) and B (out × r),
 * s = α / r, forward `x Wᵀ + s · (x Aᵀ) Bᵀ` (+ a frozen bias). Pair (slot) k is column k of B and row k of A.
 * The layer owns its SVD directions, its importance EMAs and the bookkeeping of which direction each slot holds.
 */
import * as tf from '@tensorflow/tfjs';
import type { Rng } from '../rng';
import { topSvd, type TopSvd } from './svd';
import { slotKeepMask } from './slotMask';
import { factoredRank } from './measures';

export type Method = 'lora' | 'pissa' | 'srlora';

export interface LayerSpec {
  name: string;
  /** Pretrained weight, row-major out × in. */
  W0: Float64Array | Float32Array;
  out: number;
  in: number;
  bias?: Float32Array | Float64Array | null;
}

export interface LayerOptions {
  method: Method;
  r: number;
  /** Configured rTarget; the layer caps it at min(out, in). */
  rTarget: number;
  alpha: number;
  beta1: number;
  beta2: number;
  trackImportance: boolean;
  rng: Rng;
  exactSvdMaxDim?: number;
}

/** Slot k's new B column and A row for direction j: U[:,j]·sqrt(S[j]/s) and sqrt(S[j]/s)·V[:,j]ᵀ. */
function directionFactors(svd: TopSvd, dirs: readonly number[], s: number): { b: Float32Array; a: Float32Array } {
  const m = dirs.length, { out, in: inp, k } = svd;
  const b = new Float32Array(out * m), a = new Float32Array(m * inp);
  dirs.forEach((j, c) => {
    const scale = Math.sqrt(svd.S[j] / s);
    for (let i = 0; i < out; i++) b[i * m + c] = svd.U[i * k + j] * scale;
    for (let i = 0; i < inp; i++) a[c * inp + i] = svd.V[i * k + j] * scale;
  });
  return { b, a };
}

export class AdaptedLinear {
  readonly name: string;
  readonly out: number;
  readonly in: number;
  readonly r: number;
  readonly rTarget: number;
  readonly s: number;
  readonly W: tf.Variable;
  readonly A: tf.Variable;
  readonly B: tf.Variable;
  readonly bias: tf.Tensor1D | null;
  readonly svd: TopSvd | null;
  /** Next unused direction. */
  p: number;
  /** Direction held by each slot (−1 for LoRA's random init). */
  readonly directions: Int32Array;
  /** Steps since each slot's last (re)initialisation. */
  readonly age: Int32Array;
  /** Importance EMAs Ī, Ū of every element of A and B (SRLORA.md §2). */
  private readonly ema: { IA: tf.Variable; UA: tf.Variable; IB: tf.Variable; UB: tf.Variable } | null;
  /**
   * srlora: each fused pair's factors when it fused, at its direction's index (B columns: out × rTarget, A rows:
   * rTarget × in; zeros for directions not fused yet) — what ΔW's effective rank needs (deltaRank), kept in checkpoints.
   */
  private readonly fused: { A: tf.Variable; B: tf.Variable } | null;
  private readonly beta1: number;
  private readonly beta2: number;

  constructor(spec: LayerSpec, o: LayerOptions) {
    const { out, in: inp } = spec;
    if (spec.W0.length !== out * inp) throw new Error(`layer ${spec.name}: W0 has ${spec.W0.length} values, expected ${out}×${inp}`);
    const maxRank = Math.min(out, inp);
    // SVD-initialised slots need r distinct directions; plain LoRA may be over-parameterised (PEFT allows it).
    if (o.r > maxRank && o.method !== 'lora') throw new Error(`layer ${spec.name}: r=${o.r} exceeds min(out, in)=${maxRank}, the directions ${o.method} can initialise from`);
    this.name = spec.name;
    this.out = out;
    this.in = inp;
    this.r = o.r;
    this.s = o.alpha / o.r;
    this.beta1 = o.beta1;
    this.beta2 = o.beta2;
    this.rTarget = o.method === 'srlora' ? Math.max(o.r, Math.min(o.rTarget, maxRank)) : o.r;
    this.directions = new Int32Array(o.r);
    this.age = new Int32Array(o.r);
    this.bias = spec.bias ? tf.tensor1d(Float32Array.from(spec.bias)) : null;

    if (o.method === 'lora') {
      // PEFT's LoRA: A ~ Kaiming-uniform(a = √5) = U(±1/√in), B = 0, W = W0.
      const bound = 1 / Math.sqrt(inp);
      this.svd = null;
      this.p = o.r;
      this.directions.fill(-1);
      this.W = tf.variable(tf.tensor2d(Float32Array.from(spec.W0), [out, inp]), false);
      this.A = tf.variable(tf.tensor2d(Float32Array.from({ length: o.r * inp }, () => o.rng.uniform(-bound, bound)), [o.r, inp]), true);
      this.B = tf.variable(tf.zeros([out, o.r]), true);
    } else {
      // PiSSA / SRLoRA: slots 0..r−1 on directions 0..r−1, subtracted from W0 so the output is unchanged.
      const W0 = spec.W0 instanceof Float64Array ? spec.W0 : Float64Array.from(spec.W0);
      this.svd = topSvd(W0, out, inp, this.rTarget, o.rng, o.exactSvdMaxDim);
      const dirs = Array.from({ length: o.r }, (_, k) => k);
      dirs.forEach((j, k) => (this.directions[k] = j));
      this.p = o.r;
      const { b, a } = directionFactors(this.svd, dirs, this.s);
      // W = W0 − s·B·A, in float64 before rounding once to float32.
      const W = Float64Array.from(W0);
      for (let i = 0; i < out; i++) {
        for (let c = 0; c < o.r; c++) {
          const bic = this.s * b[i * o.r + c];
          for (let j = 0; j < inp; j++) W[i * inp + j] -= bic * a[c * inp + j];
        }
      }
      this.W = tf.variable(tf.tensor2d(Float32Array.from(W), [out, inp]), false);
      this.A = tf.variable(tf.tensor2d(a, [o.r, inp]), true);
      this.B = tf.variable(tf.tensor2d(b, [out, o.r]), true);
    }
    this.ema = o.trackImportance
      ? {
        IA: tf.variable(tf.zeros([o.r, inp]), false), UA: tf.variable(tf.zeros([o.r, inp]), false),
        IB: tf.variable(tf.zeros([out, o.r]), false), UB: tf.variable(tf.zeros([out, o.r]), false),
      }
      : null;
    this.fused = o.method === 'srlora'
      ? { A: tf.variable(tf.zeros([this.rTarget, inp]), false), B: tf.variable(tf.zeros([out, this.rTarget]), false) }
      : null;
  }

  /** x: batch × in → batch × out. */
  forward(x: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => {
      let y = tf.add(tf.matMul(x, this.W, false, true), tf.mul(tf.matMul(tf.matMul(x, this.A, false, true), this.B, false, true), this.s)) as tf.Tensor2D;
      if (this.bias) y = tf.add(y, this.bias);
      return y;
    });
  }

  /** W + s·B·A (out × in). */
  effectiveWeight(): tf.Tensor2D {
    return tf.tidy(() => tf.add(this.W, tf.mul(tf.matMul(this.B, this.A), this.s)));
  }

  /** Ī ← β1·Ī + (1−β1)·|w·g|; Ū ← β2·Ū + (1−β2)·|I − Ī| — with w the values the gradient was computed at. */
  updateImportance(gA: tf.Tensor, gB: tf.Tensor): void {
    const e = this.ema;
    if (!e) return;
    const b1 = this.beta1, b2 = this.beta2;
    tf.tidy(() => {
      for (const [w, g, I, U] of [[this.A, gA, e.IA, e.UA], [this.B, gB, e.IB, e.UB]] as const) {
        const inst = tf.abs(tf.mul(w, g));
        const iBar = tf.add(tf.mul(I, b1), tf.mul(inst, 1 - b1));
        I.assign(iBar);
        U.assign(tf.add(tf.mul(U, b2), tf.mul(tf.abs(tf.sub(inst, iBar)), 1 - b2)));
      }
    });
  }

  /** S_k = mean_i e(B[i,k]) + mean_j e(A[k,j]), e = Ī·Ū (zeros when importance is not tracked). */
  pairScores(): Float32Array {
    const e = this.ema;
    if (!e) return new Float32Array(this.r);
    return tf.tidy(() => tf.add(tf.mean(tf.mul(e.IB, e.UB), 0), tf.mean(tf.mul(e.IA, e.UA), 1)).dataSync() as Float32Array);
  }

  /** Zeroes the importance EMAs of the given slots. */
  resetImportance(slots: readonly number[]): void {
    const e = this.ema;
    if (!e || slots.length === 0) return;
    tf.tidy(() => {
      const keepRows = slotKeepMask(this.r, slots, 0), keepCols = slotKeepMask(this.r, slots, 1);
      e.IA.assign(tf.mul(e.IA, keepRows));
      e.UA.assign(tf.mul(e.UA, keepRows));
      e.IB.assign(tf.mul(e.IB, keepCols));
      e.UB.assign(tf.mul(e.UB, keepCols));
    });
  }

  /**
   * SRLORA.md §3.1–3.4 for the given slots (already selected, in selection order): fuse, reinitialise on the next
   * directions, subtract. Returns ‖s·B_K A_K‖ of the fusion and the relative change of W + sBA (float rounding).
   */
  recompose(slots: readonly number[]): { newDirections: number[]; oldDirections: number[]; deltaNorm: number; preservationError: number } {
    if (!this.svd) throw new Error(`layer ${this.name}: recomposition needs SVD directions (method srlora)`);
    const m = slots.length;
    const oldDirections = slots.map((k) => this.directions[k]);
    const newDirections = slots.map((_, i) => this.p + i);
    if (m === 0) return { newDirections, oldDirections, deltaNorm: 0, preservationError: 0 };
    if (this.p + m > this.rTarget) throw new Error(`layer ${this.name}: ${m} slots but only ${this.rTarget - this.p} directions left`);
    const { b, a } = directionFactors(this.svd, newDirections, this.s);
    const [deltaNorm, preservationError] = tf.tidy(() => {
      const before = this.effectiveWeight();
      const K = tf.tensor1d(Int32Array.from(slots), 'int32');
      const fused = tf.mul(tf.matMul(tf.gather(this.B, K, 1), tf.gather(this.A, K, 0)), this.s);
      const bNew = tf.tensor2d(b, [this.out, m]), aNew = tf.tensor2d(a, [m, this.in]);
      const onehot = tf.oneHot(K, this.r).toFloat() as tf.Tensor2D; // m × r: places column c at slot K[c]
      if (this.fused) { // the fused pairs' factors at their directions (each direction is held once, so no overlap)
        const D = tf.tensor1d(Int32Array.from(oldDirections), 'int32');
        const atDir = tf.oneHot(D, this.rTarget).toFloat() as tf.Tensor2D; // m × rTarget
        this.fused.B.assign(tf.add(tf.mul(this.fused.B, slotKeepMask(this.rTarget, oldDirections, 1)), tf.matMul(tf.gather(this.B, K, 1), atDir)));
        this.fused.A.assign(tf.add(tf.mul(this.fused.A, slotKeepMask(this.rTarget, oldDirections, 0)), tf.matMul(atDir, tf.gather(this.A, K, 0), true, false)));
      }
      this.B.assign(tf.add(tf.mul(this.B, slotKeepMask(this.r, slots, 1)), tf.matMul(bNew, onehot)));
      this.A.assign(tf.add(tf.mul(this.A, slotKeepMask(this.r, slots, 0)), tf.matMul(onehot, aNew, true, false)));
      this.W.assign(tf.sub(tf.add(this.W, fused), tf.mul(tf.matMul(bNew, aNew), this.s)));
      const after = this.effectiveWeight();
      const err = tf.div(tf.norm(tf.sub(after, before)), tf.norm(before));
      return [tf.norm(fused).dataSync()[0], err.dataSync()[0]];
    });
    slots.forEach((k, i) => {
      this.directions[k] = newDirections[i];
      this.age[k] = 0;
    });
    this.p += m;
    this.resetImportance(slots);
    return { newDirections, oldDirections, deltaNorm, preservationError };
  }

  /**
   * Effective rank and ‖·‖_F of ΔW = W + s·BA − W0 (docs/ALGORITHM.md), from the factors of every pair the layer held:
   * ΔW = s·(B A + B_fused A_fused − B₀ A₀), B₀ A₀ the initial factors of directions 0..p−1 (none for LoRA: B₀ = 0).
   */
  deltaRank(): { effectiveRank: number; norm: number } {
    const out = this.out, inp = this.in, s = this.s;
    const cols: { b: ArrayLike<number>; a: ArrayLike<number>; n: number; sign: number }[] = [
      { b: this.B.dataSync(), a: this.A.dataSync(), n: this.r, sign: 1 },
    ];
    if (this.fused) cols.push({ b: this.fused.B.dataSync(), a: this.fused.A.dataSync(), n: this.rTarget, sign: 1 });
    if (this.svd) {
      const { b, a } = directionFactors(this.svd, Array.from({ length: this.p }, (_, j) => j), s);
      cols.push({ b, a, n: this.p, sign: -1 });
    }
    const k = cols.reduce((t, c) => t + c.n, 0);
    const P = new Float64Array(out * k), Q = new Float64Array(inp * k);
    let at = 0;
    for (const c of cols) {
      for (let i = 0; i < out; i++) for (let j = 0; j < c.n; j++) P[i * k + at + j] = c.sign * s * c.b[i * c.n + j];
      for (let j = 0; j < c.n; j++) for (let i = 0; i < inp; i++) Q[i * k + at + j] = c.a[j * inp + i];
      at += c.n;
    }
    return factoredRank({ data: P, rows: out, cols: k }, { data: Q, rows: inp, cols: k });
  }

  /** Tensors this layer owns, for checkpoints (A, B, W, the EMAs and the fused pairs' factors). */
  stateTensors(): Record<string, tf.Variable> {
    const t: Record<string, tf.Variable> = { W: this.W, A: this.A, B: this.B };
    if (this.ema) Object.assign(t, { emaIA: this.ema.IA, emaUA: this.ema.UA, emaIB: this.ema.IB, emaUB: this.ema.UB });
    if (this.fused) Object.assign(t, { fusedA: this.fused.A, fusedB: this.fused.B });
    return t;
  }

  dispose(): void {
    for (const v of Object.values(this.stateTensors())) v.dispose();
    this.bias?.dispose();
  }
}
