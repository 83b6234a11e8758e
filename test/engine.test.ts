import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import * as tf from '@tensorflow/tfjs';
import { selectBackend } from '../src/trainer/engine/backend';
import { SRLoRAEngine, type EngineConfig } from '../src/trainer/engine/engine';
import { parseCase } from '../src/trainer/conformance/caseFormat';
import { runCase } from '../src/trainer/conformance/runCase';
import { compareAnswer } from '../src/trainer/conformance/compare';
import { exactTopSvd, randomizedTopSvd } from '../src/trainer/engine/svd';
import { computeSchedule, selectSlots } from '../src/srlora/rule';
import { Rng } from '../src/trainer/rng';

const vectorsDir = join(import.meta.dirname, 'vectors/srlora');
const caseFiles = readdirSync(vectorsDir).filter((f) => f.endsWith('.json')).sort();

before(async () => {
  const b = await selectBackend('auto');
  assert.equal(b.name, 'wasm', 'the default backend here is wasm');
});

test('the golden vectors are byte-for-byte copies of ../shared/vectors/srlora', (t) => {
  const shared = join(import.meta.dirname, '../../shared/vectors/srlora');
  if (!existsSync(shared)) return t.skip('../shared is not beside this checkout');
  const theirs = readdirSync(shared).filter((f) => f.endsWith('.json')).sort();
  assert.deepEqual(caseFiles, theirs);
  for (const f of theirs) assert.ok(readFileSync(join(shared, f)).equals(readFileSync(join(vectorsDir, f))), f);
});

for (const f of caseFiles) {
  test(`conformance ${f} on the default backend`, () => {
    const c = parseCase(JSON.parse(readFileSync(join(vectorsDir, f), 'utf8')), f);
    const errs = compareAnswer(c, runCase(c));
    assert.deepEqual(errs, []);
  });
}

test('the comparison catches a wrong answer (a perturbed loss, a swapped slot)', () => {
  const c = parseCase(JSON.parse(readFileSync(join(vectorsDir, 'case-00.json'), 'utf8')));
  const answer = runCase(c);
  const bad = structuredClone(answer);
  bad.losses[3] *= 1.01;
  bad.events[0].slots = [...bad.events[0].slots].reverse();
  const errs = compareAnswer(c, bad);
  assert.ok(errs.some((e) => e.startsWith('losses')), errs.join('\n'));
  assert.ok(errs.some((e) => e.startsWith('events[0].slots')), errs.join('\n'));
});

test('the built CLI answers a case it has never seen: `node dist/cli.js conformance CASE.json`', () => {
  const cli = join(import.meta.dirname, '../dist/cli.js');
  assert.ok(existsSync(cli), 'npm run build first');
  const c = JSON.parse(readFileSync(join(vectorsDir, 'age-01.json'), 'utf8')) as Record<string, unknown>;
  const out = execFileSync(process.execPath, [cli, 'conformance', join(vectorsDir, 'age-01.json')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const answer = JSON.parse(out) as Parameters<typeof compareAnswer>[1];
  assert.deepEqual(compareAnswer(parseCase(c), answer), []);
});

// ---------------------------------------------------------------- a random 3-layer MLP

function randomMatrix(rng: Rng, out: number, inp: number): Float64Array {
  return Float64Array.from({ length: out * inp }, () => rng.normal() / Math.sqrt(inp));
}

function mlp(config: Partial<EngineConfig> = {}) {
  const rng = new Rng(7);
  const dims = [24, 20, 16, 6];
  const specs = dims.slice(1).map((out, i) => ({
    name: `fc${i}`, out, in: dims[i], W0: randomMatrix(rng, out, dims[i]), bias: Float32Array.from({ length: out }, () => rng.normal() * 0.1),
  }));
  const engine = new SRLoRAEngine(specs, {
    method: 'srlora', r: 4, rTarget: 12, alpha: 8, totalSteps: 200, minSlotAge: 2,
    optimizer: { type: 'adam', lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8 }, ...config,
  });
  const x = tf.tensor2d(Float32Array.from({ length: 32 * dims[0] }, () => rng.normal()), [32, dims[0]]);
  const y = tf.tensor2d(Float32Array.from({ length: 32 * dims[3] }, () => rng.normal()), [32, dims[3]]);
  const forward = () => tf.tidy(() => engine.layers.reduce<tf.Tensor2D>((h, l, i) => {
    const z = l.forward(h);
    return i < engine.layers.length - 1 ? tf.relu(z) : z;
  }, x));
  const loss = () => tf.losses.meanSquaredError(y, forward()) as tf.Scalar;
  const dispose = () => { engine.dispose(); x.dispose(); y.dispose(); };
  return { engine, forward, loss, dispose };
}

function relErr(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.div(tf.norm(tf.sub(a, b)), tf.norm(b)).dataSync()[0]);
}

test('MLP: outputs before and after a recomposition agree to 1e-5 relative; at init they equal the pretrained model', () => {
  const m = mlp({ method: 'srlora' });
  try {
    for (let i = 0; i < 5; i++) m.engine.trainStep(m.loss);
    const before = m.forward();
    const rec = m.engine.recompose('forced');
    assert.ok(rec.layers.every((l) => l.slots.length === 2), 'ceil(0.5 · 4) = 2 slots per layer');
    const after = m.forward();
    const err = relErr(after, before);
    assert.ok(err < 1e-5, `relative output change ${err}`);
    for (const l of rec.layers) assert.ok(l.preservationError < 1e-5 && l.deltaNorm > 0);
    tf.dispose([before, after]);
  } finally { m.dispose(); }
});

test('a layer exhausts, then every recomposition of it is a reported no-op', () => {
  const m = mlp({ rTarget: 8, minSlotAge: 1 });
  try {
    const seen: boolean[] = [];
    for (let round = 0; round < 4; round++) {
      m.engine.trainStep(m.loss);
      const rec = m.engine.recompose('forced', ['fc1']);
      seen.push(rec.layers[0].exhausted);
      if (rec.layers[0].exhausted) assert.deepEqual(rec.layers[0].slots, []);
    }
    // r = 4, rTarget = 8, 2 slots each time: directions 4,5 then 6,7, then nothing left.
    assert.deepEqual(seen, [false, false, true, true]);
    assert.equal(m.engine.layer('fc1').p, 8);
    // fc2 is 6 × 16: its rTarget is capped at min(out, in) = 6, so it exhausts after one recomposition.
    assert.equal(m.engine.layer('fc2').rTarget, 6);
  } finally { m.dispose(); }
});

test('τ = null is the paper\'s fixed-ratio rule: the ceil(γ·r) lowest eligible pairs, in S order', () => {
  const m = mlp({ fusionThreshold: null, fusionRatio: 0.75, minSlotAge: 1 });
  try {
    for (let i = 0; i < 6; i++) m.engine.trainStep(m.loss);
    const scores = m.engine.layers.map((l) => Array.from(l.pairScores()));
    const left = m.engine.layers.map((l) => l.rTarget - l.p);
    const rec = m.engine.recompose('forced');
    rec.layers.forEach((ev, i) => {
      const order = scores[i].map((s, k) => [s, k] as const).sort((a, b) => a[0] - b[0] || a[1] - b[1]).map(([, k]) => k);
      // ceil(0.75 · 4) = 3, cut to the directions left (fc2, 6 × 16, has only 2).
      assert.deepEqual(ev.slots, order.slice(0, Math.min(3, left[i])));
      assert.deepEqual(rec.rule, { kind: 'ratio', fusionRatio: 0.75 });
    });
  } finally { m.dispose(); }
});

test('τ set: every eligible pair with ŝ below τ fuses, not capped by γ', () => {
  const sel = selectSlots({ scores: [4, 1, 2, 0.5, 3, 0.1], age: [9, 9, 9, 9, 0, 9], p: 6, rTarget: 24 }, { fusionThreshold: 1.0, fusionRatio: 0.25, minSlotAge: 1 });
  // mean S = 1.766…: ŝ < 1 for S ∈ {1, 0.5, 0.1}; slot 4 (S = 3) is too young anyway.
  assert.deepEqual(sel.slots, [5, 3, 1]);
  const cut = selectSlots({ scores: [4, 1, 2, 0.5, 3, 0.1], age: [9, 9, 9, 9, 9, 9], p: 22, rTarget: 24 }, { fusionThreshold: 1.0, fusionRatio: 0.25, minSlotAge: 1 });
  assert.deepEqual(cut.slots, [5, 3], 'cut to the directions left');
});

test('minSlotAge protects fresh slots from two forced recompositions in a row', () => {
  const m = mlp({ minSlotAge: 3, fusionRatio: 0.5 });
  try {
    for (let i = 0; i < 5; i++) m.engine.trainStep(m.loss);
    const first = m.engine.recompose('forced', ['fc1']);
    const second = m.engine.recompose('forced', ['fc1']);
    assert.equal(first.layers[0].slots.length, 2);
    // The two other slots are old enough: the second forced recomposition takes those, never the fresh ones.
    assert.equal(second.layers[0].slots.length, 2);
    assert.equal(new Set([...first.layers[0].slots, ...second.layers[0].slots]).size, 4);
    const third = m.engine.recompose('forced', ['fc1']);
    assert.deepEqual(third.layers[0].slots, [], 'every slot is fresh now');
    assert.equal(third.layers[0].exhausted, false);
  } finally { m.dispose(); }
});

test('Adam moments of the reset slots are zero and every other moment is untouched', () => {
  const m = mlp({ minSlotAge: 1 });
  try {
    for (let i = 0; i < 4; i++) m.engine.trainStep(m.loss);
    const l = m.engine.layer('fc0');
    const snap = (v: tf.Variable) => { const mv = m.engine.optimizer.moments(v)!; return { m: mv.m.arraySync() as number[][], v: mv.v.arraySync() as number[][] }; };
    const beforeA = snap(l.A), beforeB = snap(l.B);
    const other = snap(m.engine.layer('fc1').A);
    const tBefore = m.engine.optimizer.t;
    const slots = m.engine.recompose('forced', ['fc0']).layers[0].slots;
    assert.equal(slots.length, 2);
    const afterA = snap(l.A), afterB = snap(l.B);
    for (let k = 0; k < l.r; k++) {
      const reset = slots.includes(k);
      for (const key of ['m', 'v'] as const) {
        const rowA = afterA[key][k];
        const colB = afterB[key].map((row) => row[k]);
        if (reset) {
          assert.ok(rowA.every((x) => x === 0) && colB.every((x) => x === 0), `slot ${k} ${key} zeroed`);
        } else {
          assert.deepEqual(rowA, beforeA[key][k]);
          assert.deepEqual(colB, beforeB[key].map((row) => row[k]));
          assert.ok(rowA.some((x) => x !== 0), 'an untouched moment is non-zero');
        }
      }
    }
    assert.deepEqual(snap(m.engine.layer('fc1').A), other, 'other layers untouched');
    assert.equal(m.engine.optimizer.t, tBefore, 'the step count is not reset');
  } finally { m.dispose(); }
});

test('no tensor leaks: as many tensors after 200 steps with recompositions as after 10', () => {
  const m = mlp({ totalSteps: 200, rTarget: 16 });
  try {
    let recompositions = 0;
    for (let i = 0; i < 10; i++) m.engine.trainStep(m.loss);
    const at10 = tf.memory().numTensors;
    for (let i = 10; i < 200; i++) {
      if (m.engine.trainStep(m.loss).recomposition) recompositions++;
      if (i % 40 === 0) m.engine.recompose('forced');
      if (i % 50 === 0) m.engine.importance();
    }
    assert.ok(recompositions >= 3, `scheduled recompositions ran: ${recompositions}`);
    assert.equal(tf.memory().numTensors, at10);
  } finally { m.dispose(); }
});

test('lora and pissa: LoRA starts at the pretrained function with B = 0; PiSSA subtracts its top-r directions; neither recomposes', () => {
  for (const method of ['lora', 'pissa'] as const) {
    const m = mlp({ method });
    try {
      assert.deepEqual(m.engine.schedule.steps, []);
      assert.throws(() => m.engine.recompose('forced'), /needs method srlora/);
      const l = m.engine.layer('fc0');
      if (method === 'lora') {
        assert.ok((l.B.dataSync() as Float32Array).every((x) => x === 0));
        const bound = 1 / Math.sqrt(l.in);
        assert.ok((l.A.dataSync() as Float32Array).every((x) => Math.abs(x) <= bound));
      } else {
        assert.deepEqual(Array.from(l.directions), [0, 1, 2, 3]);
      }
      m.engine.trainStep(m.loss);
    } finally { m.dispose(); }
  }
});

test('schedule: n = ceil(γr), N = floor((rTarget − r)/n), T = floor(steps/(N+1))', () => {
  assert.deepEqual(computeSchedule(4, 16, 0.5, 1500).steps, [214, 428, 642, 856, 1070, 1284]);
  assert.deepEqual(computeSchedule(4, 4, 0.5, 100).steps, []);
  assert.deepEqual(computeSchedule(4, 9, 1.0, 20).steps, [10]);
});

test('randomised SVD matches the exact top directions (sign convention included) and reports a small residual', () => {
  const rng = new Rng(3);
  const out = 120, inp = 90, k = 8;
  // A matrix with a decaying spectrum: Σ_i σ_i u_i v_iᵀ with σ_i = 0.8^i, plus noise.
  const W = new Float64Array(out * inp);
  for (let i = 0; i < 40; i++) {
    const u = Array.from({ length: out }, () => rng.normal()), v = Array.from({ length: inp }, () => rng.normal());
    const s = 0.8 ** i / Math.sqrt(out * inp);
    for (let a = 0; a < out; a++) for (let b = 0; b < inp; b++) W[a * inp + b] += s * u[a] * v[b] * 30;
  }
  const exact = exactTopSvd(W, out, inp, k);
  const approx = randomizedTopSvd(W, out, inp, k, new Rng(5));
  assert.ok(exact.residual < 1e-10, `exact residual ${exact.residual}`);
  assert.ok(approx.residual < 1e-3, `randomized residual ${approx.residual}`);
  for (let j = 0; j < k; j++) {
    assert.ok(Math.abs(approx.S[j] - exact.S[j]) / exact.S[0] < 1e-4, `σ_${j}`);
    let dot = 0;
    for (let i = 0; i < out; i++) dot += approx.U[i * k + j] * exact.U[i * k + j];
    assert.ok(dot > 0.999, `u_${j} agrees with the same sign (dot ${dot})`);
  }
});

test('backends: an unavailable one is a clear error naming what to install', async () => {
  await assert.rejects(selectBackend('tensorflow'), /tfjs-node.*not installed/);
  await assert.rejects(selectBackend('gpu' as 'cpu'), /unknown backend "gpu"/);
  const b = await selectBackend('auto');
  assert.equal(b.name, 'wasm');
  assert.ok(b.notes.some((n) => /tfjs-node/.test(n)), 'the report says why tensorflow was skipped');
});
