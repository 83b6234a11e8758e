/**
 * What the trainers measure for the dashboard beyond loss and importance (docs/ALGORITHM.md, "What the trainers
 * measure"): the effective rank of a layer's accumulated update ΔW from its factors, and the per-slot step boost from
 * the optimiser's moments. python/srlora_torch/measures.py computes the same numbers; test/vectors/measures.json
 * holds both to them.
 */
import { Matrix, SVD } from 'ml-matrix';

/** Row-major float64 matrix. */
export interface Dense { data: Float64Array; rows: number; cols: number }

/** exp(−Σ pᵢ ln pᵢ), pᵢ = σᵢ / Σσ (Roy & Vetterli 2007); 0 when every σ is 0. σ must be ≥ 0. */
export function effectiveRank(sigma: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < sigma.length; i++) sum += sigma[i];
  if (!(sum > 0)) return 0;
  let h = 0;
  for (let i = 0; i < sigma.length; i++) {
    const p = sigma[i] / sum;
    if (p > 0) h -= p * Math.log(p);
  }
  return Math.exp(h);
}

function toMatrix(a: Dense): Matrix {
  const m = new Matrix(a.rows, a.cols);
  for (let i = 0; i < a.rows; i++) for (let j = 0; j < a.cols; j++) m.set(i, j, a.data[i * a.cols + j]);
  return m;
}

/**
 * ml-matrix's SVD (JAMA's Golub–Kahan loop, no iteration cap) never ends on some matrices holding subnormal numbers
 * (below 2.2e-308): the built-in trainer hung in deltaRank at 100 % CPU, deaf to SIGTERM (test/measures.test.ts has
 * the captured case). So every matrix is scaled to a largest |entry| of 1 and entries below 1e-150 of it — far above
 * the subnormal range, far below what any tolerance here counts — are set to 0; the caller multiplies σ back.
 * Returns the scale (0 for a zero matrix: nothing to decompose).
 */
function conditioned(m: Matrix): number {
  let max = 0;
  for (let i = 0; i < m.rows; i++) for (let j = 0; j < m.columns; j++) max = Math.max(max, Math.abs(m.get(i, j)));
  if (!(max > 0) || !Number.isFinite(max)) return max > 0 ? max : 0;
  for (let i = 0; i < m.rows; i++) {
    for (let j = 0; j < m.columns; j++) {
      const x = m.get(i, j) / max;
      m.set(i, j, Math.abs(x) < 1e-150 ? 0 : x);
    }
  }
  return max;
}

/** A k-column matrix X with XᵀX = FᵀF: F itself unless it is taller than wide, else diag(σ)·Vᵀ of F's thin SVD. */
function gramFactor(f: Dense): Matrix {
  const m = toMatrix(f);
  if (f.rows <= f.cols) return m;
  const scale = conditioned(m);
  if (scale === 0) return new Matrix(f.cols, f.cols);
  const svd = new SVD(m, { computeLeftSingularVectors: false, computeRightSingularVectors: true, autoTranspose: false });
  const s = svd.diagonal, v = svd.rightSingularVectors; // v: cols × cols
  // σ at rounding level of the largest (F's exactly-zero columns) are 0, not ~1e-17 noise whose products underflow
  const floor = s[0] * f.cols * Number.EPSILON;
  const x = new Matrix(f.cols, f.cols);
  for (let i = 0; i < f.cols; i++) for (let j = 0; j < f.cols; j++) x.set(i, j, s[i] > floor ? scale * s[i] * v.get(j, i) : 0);
  return x;
}

/**
 * Singular values of P Qᵀ (P: out × k, Q: in × k, row-major float64) without forming it: σ(X Yᵀ) with XᵀX = PᵀP,
 * YᵀY = QᵀQ, a matrix of at most k × k. Descending, length min(out, in, k) or less.
 */
export function factoredSingularValues(P: Dense, Q: Dense): number[] {
  if (P.cols !== Q.cols) throw new Error(`factoredSingularValues: P has ${P.cols} columns, Q ${Q.cols}`);
  if (P.cols === 0) return [];
  const prod = gramFactor(P).mmul(gramFactor(Q).transpose());
  const scale = conditioned(prod);
  if (scale === 0) return new Array<number>(Math.min(prod.rows, prod.columns)).fill(0);
  const svd = new SVD(prod, { computeLeftSingularVectors: false, computeRightSingularVectors: false, autoTranspose: true });
  return Array.from(svd.diagonal, (x) => Math.max(0, x * scale));
}

/** Singular values at or below this fraction of ‖P‖_F·‖Q‖_F are float64 rounding of the factored product, not ΔW. */
export const RANK_TOLERANCE = 1e-10;

function frobenius(a: Dense): number {
  let sq = 0;
  for (const x of a.data) sq += x * x;
  return Math.sqrt(sq);
}

/**
 * effectiveRank and ‖·‖_F of P Qᵀ, counting only singular values above RANK_TOLERANCE·‖P‖_F·‖Q‖_F (so a ΔW that is
 * exactly zero, e.g. B A − B₀ A₀ with B = B₀ and A = A₀, gives 0 and not the entropy of rounding noise).
 */
export function factoredRank(P: Dense, Q: Dense): { effectiveRank: number; norm: number } {
  const tol = RANK_TOLERANCE * frobenius(P) * frobenius(Q);
  const sigma = factoredSingularValues(P, Q).filter((x) => x > tol);
  let sq = 0;
  for (const s of sigma) sq += s * s;
  return { effectiveRank: effectiveRank(sigma), norm: Math.sqrt(sq) };
}

/**
 * Per-slot step boost (docs/ALGORITHM.md): uₖ = ‖m̂ / (√v̂ + ε)‖₂ over slot k's row of A (mA, vA: r × in) and column of
 * B (mB, vB: out × r), with m̂ = m / (1 − β1^tₖ), v̂ = v / (1 − β2^tₖ) and tₖ the slot's Adam step count; returns
 * uₖ / meanⱼ uⱼ (all 0 when every u is 0, e.g. before the first update).
 */
export function stepBoost(
  moments: { mA: ArrayLike<number>; vA: ArrayLike<number>; mB: ArrayLike<number>; vB: ArrayLike<number> },
  r: number, inp: number, out: number, slotSteps: ArrayLike<number>, beta1: number, beta2: number, eps: number,
): number[] {
  const sq = new Float64Array(r);
  const add = (m: number, v: number, k: number) => {
    const t = slotSteps[k];
    if (t <= 0) return;
    const u = (m / (1 - beta1 ** t)) / (Math.sqrt(v / (1 - beta2 ** t)) + eps);
    sq[k] += u * u;
  };
  for (let k = 0; k < r; k++) for (let j = 0; j < inp; j++) add(moments.mA[k * inp + j], moments.vA[k * inp + j], k);
  for (let i = 0; i < out; i++) for (let k = 0; k < r; k++) add(moments.mB[i * r + k], moments.vB[i * r + k], k);
  const u = Array.from(sq, Math.sqrt);
  const mean = u.reduce((a, b) => a + b, 0) / r;
  return u.map((x) => (mean > 0 ? x / mean : 0));
}
