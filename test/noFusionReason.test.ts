/** A recomposition that fused nothing in a layer says which condition stopped it, from what the log states. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { foldRun, noFusionReasons, noFusionText } from '../src/viewmodel/runModel';
import type { TrainerMessage } from '../src/protocol/messages';
import { FixtureLog } from './helpers/runFixtures';

const LAYERS = ['fc1', 'fc2'];
function threshold(log: FixtureLog, step: number, tau: number, exhausted = false): FixtureLog {
  return log.add('recomposition', {
    step, trigger: 'forced', rule: { kind: 'threshold', fusionThreshold: tau }, outputChange: null,
    layers: LAYERS.map((name) => ({ name, slots: [], scores: [], oldDirections: [], newDirections: [], exhausted, deltaNorm: 0, preservationError: 0, p: 4 })),
  });
}
function importance(log: FixtureLog, step: number, ages: number[][], sHat = [1.2, 1.1, 0.9, 0.8]): FixtureLog {
  return log.add('importance', { step, layers: LAYERS.map((name, i) => ({ name, S: sHat, sHat, age: ages[i], direction: [0, 1, 2, 3], p: 4, rTarget: 16 })) });
}
const events = (log: FixtureLog) => log.lines.map((l) => JSON.parse(l) as TrainerMessage);
const start = () => new FixtureLog('why').hello({ name: 'why', totalSteps: 100, srlora: { schedule: [50], minSlotAge: 10, rule: { kind: 'threshold', fusionThreshold: 0.5 } } }).state('running', 0);
const texts = (log: FixtureLog) => { const m = foldRun('why', events(log)); return m.idleLayers.map((l) => `${l.step} ${l.layer}: ${noFusionText(l, m.minSlotAge)}`); };

test('under τ, pairs old enough but all with ŝ ≥ τ read "no pair … had ŝ below τ", not "no eligible pair"', () => {
  // fc1's pairs are 30 steps old (≥ 10), so only τ stopped it; fc2's are 3 steps old.
  const log = importance(threshold(start(), 30, 0.5), 30, [[30, 30, 30, 30], [3, 3, 3, 3]]);
  assert.deepEqual(texts(log), ['30 fc1: no pair old enough (age ≥ 10 steps) had ŝ below τ = 0.5', '30 fc2: no pair old enough (age ≥ 10 steps)']);
});

test('a snapshot of the same step logged before the recomposition tells it too; one of another step does not', () => {
  assert.deepEqual(texts(threshold(importance(start(), 30, [[30, 30, 30, 30], [3, 3, 3, 3]]), 30, 0.5)),
    ['30 fc1: no pair old enough (age ≥ 10 steps) had ŝ below τ = 0.5', '30 fc2: no pair old enough (age ≥ 10 steps)']);
  // A snapshot 5 steps earlier does not state the ages at step 30: both conditions are named, neither guessed.
  assert.deepEqual(texts(importance(threshold(importance(start(), 25, [[30, 30, 30, 30], [3, 3, 3, 3]]), 30, 0.5), 35, [[35, 35, 35, 35], [8, 8, 8, 8]])),
    ['30 fc1: no pair both old enough (age ≥ 10 steps) and below τ = 0.5', '30 fc2: no pair both old enough (age ≥ 10 steps) and below τ = 0.5']);
});

test('the ratio rule fusing nothing means no pair was old enough; exhausted layers say no direction left; a rewind drops later ones', () => {
  const log = start().recomposition(20, false).add('recomposition', {
    step: 40, trigger: 'schedule', rule: { kind: 'ratio', fusionRatio: 0.5 }, outputChange: null,
    layers: [{ name: 'fc1', slots: [], scores: [], oldDirections: [], newDirections: [], exhausted: true, deltaNorm: 0, preservationError: 0, p: 16 }],
  });
  const all = texts(log);
  assert.ok(all.every((t) => t.startsWith('20 ') ? t.endsWith('no pair old enough (age ≥ 10 steps)') : t === '40 fc1: no direction left'), all.join('\n'));
  assert.equal(all.filter((t) => t.startsWith('40 ')).length, 1);
  assert.ok(texts(log.rewind(30)).every((t) => t.startsWith('20 ')));
});

test('the latest importance is the newest step\'s: a later snapshot at the same step replaces it, an earlier step\'s arriving late does not, a rewind drops later steps\'', () => {
  const latest = (log: FixtureLog) => { const li = foldRun('why', events(log)).latestImportance; return li && `${li.step} ${li.layers[0].age.join(',')}`; };
  const log = importance(importance(start(), 30, [[30, 30, 30, 30], [3, 3, 3, 3]]), 30, [[0, 30, 30, 30], [3, 3, 3, 3]]);
  assert.equal(latest(log), '30 0,30,30,30', 'the snapshot taken right after a recomposition at step 30');
  importance(log, 20, [[20, 20, 20, 20], [1, 1, 1, 1]]); // a GPU trainer's asynchronous copy of step 20, written after
  assert.equal(latest(log), '30 0,30,30,30', 'an earlier step arriving late is not the state now');
  log.rewind(25);
  assert.equal(latest(log), null, 'resumed at step 25: the step-30 state is superseded');
  importance(log, 26, [[1, 1, 1, 1], [1, 1, 1, 1]]);
  assert.equal(latest(log), '26 1,1,1,1');
});

test('each recomposition keeps its own no-fusion reasons, also two at one step (the commands list names the τ it ran with)', () => {
  const log = threshold(threshold(start(), 40, 0.7), 40, 2.5);
  const m = foldRun('why', events(log));
  const seqs = events(log).filter((e) => e.type === 'recomposition').map((e) => e.seq);
  const names = new Set(LAYERS);
  assert.deepEqual(noFusionReasons(m, seqs[0], names).map((t) => /τ = ([\d.]+)/.exec(t)?.[1] ?? t), ['0.7']);
  assert.deepEqual(noFusionReasons(m, seqs[1], names).map((t) => /τ = ([\d.]+)/.exec(t)?.[1] ?? t), ['2.5']);
});
