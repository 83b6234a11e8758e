// The dashboard's measures (docs/ALGORITHM.md, "What the trainers measure") against the shared vector that
// python/tests/test_parity_measures.py holds the PyTorch trainer to.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { Matrix, SVD } from 'ml-matrix';
import { effectiveRank, factoredRank, stepBoost } from '../src/trainer/engine/measures';
import { SRLoRAEngine } from '../src/trainer/engine/engine';
import { Rng } from '../src/trainer/rng';

interface Vec {
  effectiveRank: { sigma: number[]; effectiveRank: number }[];
  factored: { name: string; P: number[][]; Q: number[][]; effectiveRank: number; norm: number }[];
  stepBoost: { name: string; r: number; in: number; out: number; slotSteps: number[]; beta1: number; beta2: number; eps: number;
    mA: number[][]; vA: number[][]; mB: number[][]; vB: number[][]; stepBoost: number[] }[];
}
const vec = JSON.parse(readFileSync(join(import.meta.dirname, 'vectors/measures.json'), 'utf8')) as Vec;
const close = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);
const dense = (m: number[][]) => ({ data: Float64Array.from(m.flat()), rows: m.length, cols: m[0].length });

test('effectiveRank of singular values matches the shared vector', () => {
  for (const c of vec.effectiveRank) close(effectiveRank(c.sigma), c.effectiveRank, JSON.stringify(c.sigma));
});

test('effective rank and norm of P Qᵀ from its factors match the formed product (shared vector)', () => {
  assert.ok(vec.factored.some((c) => c.effectiveRank === 0), 'the vector has an exactly-zero ΔW case');
  for (const c of vec.factored) {
    const r = factoredRank(dense(c.P), dense(c.Q));
    close(r.effectiveRank, c.effectiveRank, `${c.name} effectiveRank`);
    close(r.norm, c.norm, `${c.name} norm`);
  }
});

test('per-slot step boost from Adam moments matches the shared vector', () => {
  for (const c of vec.stepBoost) {
    const got = stepBoost({ mA: c.mA.flat(), vA: c.vA.flat(), mB: c.mB.flat(), vB: c.vB.flat() }, c.r, c.in, c.out, c.slotSteps, c.beta1, c.beta2, c.eps);
    c.stepBoost.forEach((x, k) => close(got[k], x, `${c.name} slot ${k}`));
  }
});

test('the engine\'s deltaRank equals the effective rank of W + s·BA − W0 formed directly, for lora, pissa and srlora (with recompositions and a checkpoint round trip)', async () => {
  await tf.setBackend('cpu');
  const out = 10, inp = 12, rng = new Rng(5);
  const W0 = Float64Array.from({ length: out * inp }, () => rng.normal() / Math.sqrt(inp));
  const T = tf.tensor2d(Float32Array.from(W0, (w) => w + 0.3 * rng.normal()), [out, inp]);
  for (const method of ['lora', 'pissa', 'srlora'] as const) {
    const make = () => new SRLoRAEngine([{ name: 'l', out, in: inp, W0 }], {
      method, r: 2, rTarget: 8, alpha: 4, totalSteps: 30, optimizer: { type: 'adam', lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8 }, seed: 1,
    });
    const engine = make();
    const lossFn = () => tf.mul(tf.mean(tf.square(tf.sub(engine.layers[0].effectiveWeight(), T))), 0.5) as tf.Scalar;
    let recompositions = 0;
    for (let s = 0; s < 30; s++) if (engine.trainStep(lossFn).recomposition) recompositions++;
    if (method === 'srlora') assert.ok(recompositions >= 5, `srlora recomposed ${recompositions} times`);
    const l = engine.layers[0];
    const eff = l.effectiveWeight().dataSync();
    const m = new Matrix(out, inp);
    for (let i = 0; i < out; i++) for (let j = 0; j < inp; j++) m.set(i, j, eff[i * inp + j] - W0[i * inp + j]);
    const sigma = new SVD(m, { computeLeftSingularVectors: false, computeRightSingularVectors: false, autoTranspose: true }).diagonal;
    const big = sigma.filter((x) => x > 1e-5 * sigma[0]); // W's float32 rounding is a floor of ~1e-7·‖W0‖ under the direct form
    const sum = big.reduce((a, b) => a + b, 0);
    const direct = Math.exp(-big.reduce((h, x) => h + (x / sum) * Math.log(x / sum), 0));
    const got = engine.deltaRank()[0];
    assert.ok(Math.abs(got.effectiveRank - direct) < 1e-3 * direct, `${method}: deltaRank ${got.effectiveRank} vs direct ${direct}`);
    assert.ok(Math.abs(got.norm - Math.hypot(...sigma)) < 1e-5 * got.norm, `${method}: norm ${got.norm} vs ${Math.hypot(...sigma)}`);
    if (method === 'srlora') {
      assert.ok(got.effectiveRank > 2.5, `srlora's ΔW grew past r = 2: ${got.effectiveRank}`);
      const { tensors, meta } = engine.saveState();
      const again = make();
      again.loadState(tensors, meta);
      assert.equal(again.deltaRank()[0].effectiveRank, got.effectiveRank, 'a checkpoint carries the fused pairs\' factors');
      again.dispose();
    }
    engine.dispose();
  }
  T.dispose();
});

test('the training loss\'s gradient has no cancellation for a confidently classified example (issue 16 parity)', async () => {
  const { crossEntropy } = await import('../src/trainer/models/model');
  await tf.setBackend('cpu');
  const rows = [[20, 0, 1, -3], [0.5, 0.2, -0.1, 0]], labels = Int32Array.from([0, 2]);
  const z = tf.tensor2d(rows);
  const g = tf.grad((x: tf.Tensor) => crossEntropy(x as tf.Tensor2D, labels, 4))(z).arraySync() as number[][];
  rows.forEach((r, i) => {
    const m = Math.max(...r), e = r.map((x) => Math.exp(x - m)), S = e.reduce((a, b) => a + b, 0);
    r.forEach((_, j) => {
      const exact = (e[j] / S - (j === labels[i] ? 1 : 0)) / rows.length; // float64; p_y − 1 computed as −Σ others
      const exactY = j === labels[i] ? -(S - e[j]) / S / rows.length : exact;
      assert.ok(Math.abs(g[i][j] - exactY) <= 1e-5 * Math.abs(exactY), `row ${i} class ${j}: ${g[i][j]} vs ${exactY}`);
    });
  });
  z.dispose();
});

test('deltaRank ends on factors whose products underflow (a captured case ml-matrix\'s SVD never returned on)', () => {
  // Run in a child: a synchronous loop that never ends cannot be cut by the test runner's own timeout.
  const script = `
    const { readFileSync } = require('node:fs');
    const { factoredSingularValues } = require(${JSON.stringify(join(__dirname, '../src/trainer/engine/measures.ts'))});
    const v = JSON.parse(readFileSync(${JSON.stringify(join(__dirname, 'vectors/measures-subnormal.json'))}, 'utf8'));
    const dense = (m) => { const data = new Float64Array(m.rows * v.k); m.values.forEach((row, i) => m.columns.forEach((j, c) => { data[i * v.k + j] = row[c]; })); return { data, rows: m.rows, cols: v.k }; };
    process.stdout.write(JSON.stringify(factoredSingularValues(dense(v.P), dense(v.Q))));`;
  const run = spawnSync(process.execPath, ['--import', 'tsx', '-e', script], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(run.error, undefined, `deltaRank did not end within 60 s: ${run.error?.message}`);
  assert.equal(run.status, 0, run.stderr);
  const sigma = JSON.parse(run.stdout) as number[];
  const want = (JSON.parse(readFileSync(join(__dirname, 'vectors/measures-subnormal.json'), 'utf8')) as { referenceSingularValues: number[] }).referenceSingularValues;
  for (let i = 0; i < 8; i++) assert.ok(Math.abs(sigma[i] - want[i]) <= 1e-9 * want[0], `σ${i}: ${sigma[i]} vs ${want[i]}`);
  for (let i = 8; i < sigma.length; i++) assert.ok(sigma[i] <= 1e-10 * want[0], `σ${i} ${sigma[i]} is rounding, ≤ 1e-10 of σ0`);
});
