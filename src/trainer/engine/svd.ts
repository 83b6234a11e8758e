/**
 * The SVD of a pretrained weight, computed once per adapted layer (SRLORA.md §1). Only the top k = rTarget
 * directions are ever used.
 * - Exact path: ml-matrix's SVD (float64, a maintained JAMA port with sorted singular values). Chosen over
 *   writing one: a general SVD is easy to get subtly wrong, and ml-matrix is small, typed and pure JS, so it
 *   bundles into the CLI and runs on every backend.
 * - Large layers: randomised subspace iteration on tfjs matmuls (Halko, Martinsson & Tropp 2011): a k+p column
 *   sketch, q power iterations with QR re-orthonormalisation, then the exact SVD of the small (k+p) × in matrix.
 *   Its error grows where the spectrum has no gap below the k-th direction, which is why it is reported.
 *   Its accuracy is measured and reported: the largest relative residual ‖W v_i − σ_i u_i‖ / σ_i.
 * Sign convention (so that implementations agree exactly): each pair (u_i, v_i) is flipped so that the entry of
 * largest absolute value in u_i is positive, the first such entry on a tie.
 */
import * as tf from '@tensorflow/tfjs';
import { Matrix, QrDecomposition, SVD } from 'ml-matrix';
import type { Rng } from '../rng';

export interface TopSvd {
  /** out × k, row-major */
  U: Float64Array;
  /** k singular values, descending */
  S: Float64Array;
  /** in × k, row-major (columns are the right singular vectors) */
  V: Float64Array;
  out: number;
  in: number;
  k: number;
  method: 'exact' | 'randomized';
  /** max_i ‖W v_i − σ_i u_i‖ / σ_i over the returned directions (0 for exact up to rounding). */
  residual: number;
  ms: number;
}

/** Above this min(out, in) the randomised method is used (exact 256×256 ≈ 0.7 s, 768×768 ≈ 10 s here). */
export const EXACT_SVD_MAX_DIM = 320;

export function applySignConvention(U: Float64Array, V: Float64Array, out: number, inp: number, k: number): void {
  for (let j = 0; j < k; j++) {
    let best = 0;
    let bestAbs = -1;
    for (let i = 0; i < out; i++) {
      const a = Math.abs(U[i * k + j]);
      if (a > bestAbs) { bestAbs = a; best = i; }
    }
    if (U[best * k + j] < 0) {
      for (let i = 0; i < out; i++) U[i * k + j] = -U[i * k + j];
      for (let i = 0; i < inp; i++) V[i * k + j] = -V[i * k + j];
    }
  }
}

function residual(W: Float64Array, out: number, inp: number, U: Float64Array, S: Float64Array, V: Float64Array, k: number): number {
  let worst = 0;
  for (let j = 0; j < k; j++) {
    if (S[j] === 0) continue;
    let sq = 0;
    for (let i = 0; i < out; i++) {
      let wv = 0;
      for (let c = 0; c < inp; c++) wv += W[i * inp + c] * V[c * k + j];
      const d = wv - S[j] * U[i * k + j];
      sq += d * d;
    }
    worst = Math.max(worst, Math.sqrt(sq) / S[j]);
  }
  return worst;
}

function takeTop(svd: SVD, out: number, inp: number, k: number): { U: Float64Array; S: Float64Array; V: Float64Array } {
  const u = svd.leftSingularVectors, v = svd.rightSingularVectors, d = svd.diagonal;
  const U = new Float64Array(out * k), V = new Float64Array(inp * k), S = new Float64Array(k);
  for (let j = 0; j < k; j++) {
    S[j] = d[j];
    for (let i = 0; i < out; i++) U[i * k + j] = u.get(i, j);
    for (let i = 0; i < inp; i++) V[i * k + j] = v.get(i, j);
  }
  return { U, S, V };
}

export function exactTopSvd(W: Float64Array, out: number, inp: number, k: number): TopSvd {
  const t0 = performance.now();
  if (k > Math.min(out, inp)) throw new Error(`svd: k=${k} exceeds min(out, in)=${Math.min(out, inp)}`);
  const m = new Matrix(out, inp);
  for (let i = 0; i < out; i++) for (let j = 0; j < inp; j++) m.set(i, j, W[i * inp + j]);
  const svd = new SVD(m, { computeLeftSingularVectors: true, computeRightSingularVectors: true, autoTranspose: true });
  const { U, S, V } = takeTop(svd, out, inp, k);
  applySignConvention(U, V, out, inp, k);
  return { U, S, V, out, in: inp, k, method: 'exact', residual: residual(W, out, inp, U, S, V, k), ms: performance.now() - t0 };
}

/** Orthonormal basis of the columns of a (rows × cols, row-major float32) by a float64 QR (ml-matrix). */
function orthonormalize(a: Float32Array, rows: number, cols: number): Float32Array {
  const m = new Matrix(rows, cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) m.set(i, j, a[i * cols + j]);
  const q = new QrDecomposition(m).orthogonalMatrix;
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[i * cols + j] = q.get(i, j);
  return out;
}

/**
 * Randomised top-k SVD: the big products (W·Ω, Wᵀ·Q, W·Z) run as tfjs matmuls; the thin QRs and the small SVD
 * run in float64 (ml-matrix), which keeps the sketch accurate through the power iterations.
 */
export function randomizedTopSvd(W: Float64Array, out: number, inp: number, k: number, rng: Rng, oversample = Math.max(10, k >> 1), powerIters = 6): TopSvd {
  const t0 = performance.now();
  const l = Math.min(k + oversample, Math.min(out, inp));
  const w = tf.tensor2d(Float32Array.from(W), [out, inp]);
  const mul = (transposeW: boolean, x: Float32Array, rows: number) =>
    tf.tidy(() => tf.matMul(w, tf.tensor2d(x, [rows, l]), transposeW, false).dataSync() as Float32Array);
  let Q: Float32Array;
  try {
    Q = orthonormalize(mul(false, Float32Array.from({ length: inp * l }, () => rng.normal()), inp), out, l);
    for (let it = 0; it < powerIters; it++) {
      const Z = orthonormalize(mul(true, Q, out), inp, l); //  Wᵀ Q: in × l
      Q = orthonormalize(mul(false, Z, inp), out, l); //        W Z:  out × l
    }
  } finally {
    w.dispose();
  }
  // Small matrix B = Qᵀ W (l × in), in float64, then its exact SVD.
  const Bd = new Float64Array(l * inp);
  for (let i = 0; i < out; i++) {
    for (let a = 0; a < l; a++) {
      const q = Q[i * l + a];
      for (let c = 0, o = a * inp, wi = i * inp; c < inp; c++) Bd[o + c] += q * W[wi + c];
    }
  }
  const B = new Matrix(l, inp);
  for (let a = 0; a < l; a++) for (let c = 0; c < inp; c++) B.set(a, c, Bd[a * inp + c]);
  const svd = new SVD(B, { computeLeftSingularVectors: true, computeRightSingularVectors: true, autoTranspose: true });
  const small = takeTop(svd, l, inp, k);
  const U = new Float64Array(out * k);
  for (let i = 0; i < out; i++) {
    for (let j = 0; j < k; j++) {
      let s = 0;
      for (let a = 0; a < l; a++) s += Q[i * l + a] * small.U[a * k + j];
      U[i * k + j] = s;
    }
  }
  applySignConvention(U, small.V, out, inp, k);
  return {
    U, S: small.S, V: small.V, out, in: inp, k, method: 'randomized',
    residual: residual(W, out, inp, U, small.S, small.V, k), ms: performance.now() - t0,
  };
}

export function topSvd(W: Float64Array, out: number, inp: number, k: number, rng: Rng, exactMaxDim = EXACT_SVD_MAX_DIM): TopSvd {
  return Math.min(out, inp) <= exactMaxDim ? exactTopSvd(W, out, inp, k) : randomizedTopSvd(W, out, inp, k, rng);
}
