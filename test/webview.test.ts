/** The dashboard's pure parts, in Node: decimation and smoothing must equal their brute-force definitions. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MinMaxIndex } from '../webview/minMaxIndex';
import { DebiasedEma } from '../webview/smoothing';
import type { Point } from '../webview/minMaxIndex';
import { Rng } from '../src/trainer/rng';

/** The definition: scan every point of each equal-width bucket. */
/** Min-max decimation of (x, y) into at most 2·buckets points, order kept: the envelope a plot at that width shows. */
function minMaxDecimate(x: ArrayLike<number>, y: ArrayLike<number>, buckets: number): Point[] {
  const n = y.length;
  if (n <= 2 * buckets) return Array.from({ length: n }, (_, i) => ({ x: x[i], y: y[i] }));
  const out: Point[] = [];
  const x0 = x[0], span = x[n - 1] - x0 || 1;
  let i = 0;
  for (let b = 0; b < buckets && i < n; b++) {
    const end = x0 + ((b + 1) * span) / buckets;
    let lo = i, hi = i;
    while (i < n && (x[i] <= end || b === buckets - 1)) {
      if (y[i] < y[lo]) lo = i;
      if (y[i] > y[hi]) hi = i;
      i++;
    }
    if (lo <= hi) { out.push({ x: x[lo], y: y[lo] }); if (hi !== lo) out.push({ x: x[hi], y: y[hi] }); }
    else { out.push({ x: x[hi], y: y[hi] }); out.push({ x: x[lo], y: y[lo] }); }
  }
  return out;
}

test('the block-indexed min-max decimation equals the brute-force one, also while points are appended', () => {
  const rng = new Rng(5);
  const n = 50_000;
  const x = Float64Array.from({ length: n }, (_, i) => i + 1);
  const y = Float64Array.from({ length: n }, () => rng.normal());
  const idx = new MinMaxIndex();
  for (const len of [100, 1000, 1001, 33_333, 50_000]) {
    for (const buckets of [10, 37, 400]) {
      const a = idx.decimate(x.subarray(0, len), y.subarray(0, len), buckets);
      const b = minMaxDecimate(x.subarray(0, len), y.subarray(0, len), buckets);
      assert.deepEqual(a, b, `len ${len}, buckets ${buckets}`);
    }
  }
});

test('the incremental debiased EMA equals the definition, point by point', () => {
  const y = [3, 1, 4, 1, 5, 9, 2, 6];
  const beta = 0.8;
  const ema = new DebiasedEma(beta);
  ema.update(y.slice(0, 3));
  const got = Array.from(ema.update(y));
  let a = 0;
  const want = y.map((v, t) => { a = beta * a + (1 - beta) * v; return a / (1 - beta ** (t + 1)); });
  got.forEach((g, i) => assert.ok(Math.abs(g - want[i]) < 1e-12, `${i}: ${g} vs ${want[i]}`));
  assert.equal(got[0], 3, 'debiased: the first point is the first value');
});

test('τ and γ parse as the palette does (one function for the palette and the page)', async () => {
  const { parseThreshold, parseRatio } = await import('../src/srlora/commandInput');
  const palette = await import('../src/supervisor/commandHandlers');
  assert.equal(palette.parseThreshold, parseThreshold, 'the palette uses the shared parser');
  for (const bad of ['-1.5', '-', 'abc', 'NaN', 'Infinity', '1e999']) assert.equal(parseThreshold(bad).ok, false, bad);
  for (const [text, value] of [['', null], ['off', null], [' OFF ', null], ['0', 0], ['1.25', 1.25]] as const) assert.deepEqual(parseThreshold(text), { ok: true, value }, text);
  for (const bad of ['2', '0', '-0.5', '', '-', 'x']) assert.equal(parseRatio(bad).ok, false, bad);
  assert.deepEqual(parseRatio('0.25'), { ok: true, value: 0.25 });
  assert.deepEqual(parseRatio('1'), { ok: true, value: 1 });
});
