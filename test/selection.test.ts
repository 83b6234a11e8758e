/**
 * fusionSelect and reinitOptimizer against the shared vectors (test/vectors/selection.json), which
 * python/tests/test_selection.py reads too: both trainers select the same slots and treat the fused slots' Adam
 * state the same way.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs';
import { selectionKey, selectSlots, type LayerSlots, type RuleSettings } from '../src/srlora/rule';
import { Optimizer } from '../src/trainer/engine/optimizer';
import type { ReinitOptimizer } from '../src/srlora/defaults';

interface Vectors {
  selection: { name: string; layer: LayerSlots; rule: RuleSettings; expected: { slots: number[]; exhausted: boolean } }[];
  selectionKeys: { seed: number; step: number; layerIndex: number; key: number }[];
  reinitOptimizer: { lr: number; init: number[][]; grads: number[][][]; reinitAfterStep: number; reinitSlots: number[]; reinit: number[]; expected: Record<ReinitOptimizer, number[][]> };
}
const V = JSON.parse(readFileSync(new URL('./vectors/selection.json', import.meta.url), 'utf8')) as Vectors;

test('selectSlots: every fusionSelect case of the shared vectors', () => {
  assert.ok(V.selection.length >= 20);
  for (const c of V.selection) assert.deepEqual(selectSlots(c.layer, c.rule), c.expected, c.name);
});

test('selectionKey: the shared uint32 keys', () => {
  for (const k of V.selectionKeys) assert.equal(selectionKey(k.seed, k.step, k.layerIndex), k.key, JSON.stringify(k));
});

test('random selection without a key is refused, not silently ordered', () => {
  assert.throws(() => selectSlots({ scores: [1, 2], age: [5, 5], p: 2, rTarget: 8 }, { fusionThreshold: null, fusionRatio: 0.5, minSlotAge: 1, fusionSelect: 'random' }), /randomKey/);
});

for (const mode of ['zero-moments', 'restart', 'keep'] as const) {
  test(`reinitOptimizer ${mode}: the fused slot's Adam state as the shared vector says`, () => {
    const o = V.reinitOptimizer;
    const A = tf.variable(tf.tensor2d(o.init), true, `selA-${mode}`);
    const opt = new Optimizer({ type: 'adam', lr: o.lr, beta1: 0.9, beta2: 0.999, eps: 1e-8 }, [{ variable: A, slotAxis: 0 }]);
    o.grads.forEach((g, i) => {
      opt.apply({ [A.name]: tf.tensor2d(g) });
      if (i + 1 === o.reinitAfterStep) {
        const rows = A.arraySync();
        for (const k of o.reinitSlots) rows[k] = o.reinit;
        A.assign(tf.tensor2d(rows));
        if (mode !== 'keep') opt.resetSlots(A, 0, o.reinitSlots, mode === 'restart');
      }
    });
    const got = A.arraySync().flat(), want = o.expected[mode].flat();
    got.forEach((x, i) => assert.ok(Math.abs(x - want[i]) <= 1e-5 * Math.max(1, Math.abs(want[i])), `${mode}[${i}]: ${x} vs ${want[i]}`));
    opt.dispose();
    A.dispose();
  });
}

test('the three modes differ on the vector (the test can fail)', () => {
  const e = V.reinitOptimizer.expected;
  assert.notDeepEqual(e['zero-moments'], e.restart);
  assert.notDeepEqual(e['zero-moments'], e.keep);
});
