import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseRunConfig, withAbsolutePaths } from '../src/trainer/config/runConfig';
import { loadTabular } from '../src/trainer/data/tabular';
import { selectBackend } from '../src/trainer/engine/backend';
import { initWeights } from '../src/trainer/models/model';
import { mlpArchitecture } from '../src/trainer/models/mlp';
import { TrainingRun } from '../src/trainer/process/trainingRun';
import { readSafetensors, writeSafetensors } from '../src/runfolder/safetensors';
import { Rng } from '../src/trainer/rng';
import { tempDir } from './helpers/tmp';

test('user data: CSV and JSONL rows load; every problem names its line', () => {
  const dir = tempDir();
  const csv = join(dir, 'a.csv');
  writeFileSync(csv, 'x1,x2,label\n0.5,1,0\n1.5,-2,2\n');
  const d = loadTabular(csv);
  assert.deepEqual([d.n, d.dim, d.classes], [2, 2, 3]);
  assert.deepEqual(Array.from(d.features), [0.5, 1, 1.5, -2]);
  const jsonl = join(dir, 'a.jsonl');
  writeFileSync(jsonl, '{"features":[1,2,3],"label":1}\n{"features":[4,5,6],"label":0}\n');
  assert.equal(loadTabular(jsonl).dim, 3);
  writeFileSync(csv, 'x1,x2,label\n0.5,1,0\n1.5,abc,1\n');
  assert.throws(() => loadTabular(csv), /a\.csv:3: column "x2" is not a number: "abc"/);
  writeFileSync(csv, 'x1,x2,y\n1,2,0\n');
  assert.throws(() => loadTabular(csv), /no "label" column/);
  writeFileSync(jsonl, '{"features":[1,2],"label":1}\n{"features":[1],"label":-1}\n');
  assert.throws(() => loadTabular(jsonl), /a\.jsonl:2: "label" must be an integer ≥ 0/);
});

test('a run folder\'s config names its files by absolute path, so resume and export work from any directory', () => {
  const cfg = parseRunConfig({ task: { kind: 'tabular', train: 'data/train.csv', eval: '/abs/eval.csv' }, model: { kind: 'mlp', weights: '../w.safetensors' } });
  const abs = withAbsolutePaths(cfg, '/home/me/project');
  assert.ok(abs.task.kind === 'tabular');
  assert.equal(abs.task.kind === 'tabular' && abs.task.train, resolve('/home/me/project/data/train.csv'));
  assert.equal(abs.task.kind === 'tabular' && abs.task.eval, '/abs/eval.csv');
  assert.equal(abs.model.weights, resolve('/home/me/w.safetensors'));
  assert.equal(cfg.task.kind === 'tabular' && cfg.task.train, 'data/train.csv', 'the input is not changed');
});

test('your own data with your own MLP: its layer sizes come from its weights; the built-in model says what it takes', async () => {
  await selectBackend('auto');
  const dir = tempDir();
  const rng = new Rng(3);
  const rows = ['a,b,c,d,e,label'];
  for (let i = 0; i < 240; i++) {
    const x = Array.from({ length: 5 }, () => rng.normal());
    rows.push([...x.map((v) => v.toFixed(4)), x[0] + x[1] > 0 ? (x[2] > 0 ? 2 : 1) : 0].join(','));
  }
  writeFileSync(join(dir, 'data.csv'), rows.join('\n') + '\n');
  writeSafetensors(join(dir, 'mine.safetensors'), initWeights(mlpArchitecture([5, 16, 3]), new Rng(4)));
  const task = { kind: 'tabular', train: 'data.csv' };
  const config = withAbsolutePaths(parseRunConfig({ task, model: { kind: 'mlp', weights: 'mine.safetensors' }, steps: 30, batchSize: 16, r: 2, rTarget: 6, evalEvery: 15, checkpointEvery: 0 }), dir);
  const run = await TrainingRun.create({ config, runDir: join(dir, 'run'), baseDir: dir, progress: false });
  assert.deepEqual(run.model.engine.layers.map((l) => [l.name, l.out, l.in]), [['fc0', 16, 5], ['fc1', 3, 16]]);
  assert.equal(await run.run(), 'finished');
  const merged = readSafetensors(join(dir, 'run', 'export', 'merged.safetensors')).tensors;
  assert.deepEqual(merged['fc0.weight'].shape, [16, 5]);
  await assert.rejects(TrainingRun.create({ config: parseRunConfig({ task: { ...task, train: join(dir, 'data.csv') }, model: { kind: 'mlp' } }), runDir: join(dir, 'run2'), baseDir: dir, progress: false }),
    /the mlp model takes 784 features and 10 classes; the data has 5 features and 3 classes; for other data give model.weights: your own pretrained MLP/);
});
