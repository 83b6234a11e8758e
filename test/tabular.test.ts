import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseRunConfig, withAbsolutePaths } from '../src/trainer/config/runConfig';
import { loadTabular } from '../src/trainer/data/tabular';
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
