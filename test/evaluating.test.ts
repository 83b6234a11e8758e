/**
 * Protocol 1.3 `evaluating`: a real model's eval set can take a minute, and a dashboard that shows nothing meanwhile
 * looks stuck. Each trainer announces every eval (same step, after the rows before it; python/tests/test_evaluating.py
 * holds the PyTorch trainer to the same), and the one reducer holds it as under way until the eval of that step, a
 * rewind, or the run's end.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readJsonl } from '../src/runfolder/eventLog';
import { parseRunConfig } from '../src/trainer/config/runConfig';
import { TrainingRun } from '../src/trainer/process/trainingRun';
import { selectBackend } from '../src/trainer/engine/backend';
import { evaluatingFact, foldRun } from '../src/viewmodel/runModel';
import type { TrainerMessage } from '../src/protocol/messages';
import { FixtureLog } from './helpers/runFixtures';
import { tempDir } from './helpers/tmp';

const root = join(import.meta.dirname, '..');
before(async () => { await selectBackend('auto'); });

const fold = (f: FixtureLog) => foldRun(f.runId, f.lines.map((l) => JSON.parse(l) as TrainerMessage));

test('built-in trainer: every eval is announced right before it, after the rows before it', async () => {
  const dir = join(tempDir(), 'run-evaluating');
  const config = parseRunConfig({ model: { kind: 'mlp' }, steps: 12, evalEvery: 5, checkpointEvery: 0, importanceEvery: 5, r: 4, rTarget: 12 });
  assert.equal(await (await TrainingRun.create({ config, runDir: dir, baseDir: root })).run(), 'finished');
  const msgs = readJsonl<TrainerMessage>(join(dir, 'events.jsonl')).events;
  const evals = msgs.flatMap((m, i) => (m.type === 'eval' ? [i] : []));
  assert.ok(evals.length >= 3, `${evals.length} evals`);
  for (const i of evals) {
    const before = msgs[i - 1], step = (msgs[i] as { step: number }).step;
    assert.equal(before.type, 'evaluating', `the message before the eval of step ${step}`);
    assert.equal((before as { step: number }).step, step);
    const rows = msgs.slice(0, i - 1).flatMap((m) => (m.type === 'metrics' ? m.rows.map((r) => r.step) : []));
    assert.equal(Math.max(0, ...rows), step, `the rows up to step ${step} are out before its eval is announced`);
  }
  assert.equal(msgs.filter((m) => m.type === 'evaluating').length, evals.length);
  assert.equal(foldRun('r', msgs).evaluating, null, 'a finished run has no eval under way');
});

test('the reducer: an eval under way from its announcement until its eval, a rewind, or the run ending', () => {
  const f = new FixtureLog('e').hello({ name: 'e', totalSteps: 100 }).state('running', 0).metrics(1, 10, () => 1);
  f.add('evaluating', { step: 10 }, 0);
  const since = JSON.parse(f.lines.at(-1)!).time as number;
  const m = fold(f);
  assert.deepEqual(m.evaluating, { step: 10, since });
  assert.equal(evaluatingFact(m, since + 12_000), 'evaluating at step 10… (since 12s)');
  assert.equal(evaluatingFact(m, since - 5000), 'evaluating at step 10… (since 0s)', 'a clock behind the trainer\'s never reads negative');
  f.evalAt(8, 0.6, 0.7); // an older step's eval (never sent so, but views keep per-step truth): not this one
  assert.notEqual(fold(f).evaluating, null);
  f.evalAt(10, 0.5, 0.8);
  assert.equal(fold(f).evaluating, null, 'its eval came');
  assert.equal(evaluatingFact(fold(f), since), null);
  f.metrics(11, 20, () => 1).add('evaluating', { step: 20 }, 0);
  assert.equal(fold(f.state('interrupted', 20, 'SIGTERM')).evaluating, null, 'the run ended mid-eval');
  const g = new FixtureLog('g').hello({ name: 'g', totalSteps: 100 }).state('running', 0).metrics(1, 20, () => 1).add('evaluating', { step: 20 }, 0);
  assert.equal(fold(g.rewind(10)).evaluating, null, 'a rewind supersedes it');
});
