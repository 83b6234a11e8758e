/**
 * One naming rule for every way a run is started: `<UTC time>-<method>-xxxx`. A run started by a supervisor (VS Code's
 * Start Run…, `srlora serve --config/--demo`) is named by RunManager before its trainer runs; one started from a
 * terminal is named by its trainer (`srlora train`, `python -m srlora_torch.train`). They used to differ: serve's
 * runs were `<time>-run-xxxx` (the method was taken from the overrides only), the trainers' `<time>-srlora-xxxx`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { Hub } from '../src/hub/hub';
import { RunManager } from '../src/supervisor/runManager';
import { makeNewRunDir } from '../src/trainer/process/trainingRun';
import { tempDir } from './helpers/tmp';

const NAME = /^\d{8}-\d{6}-(?<method>[a-z]+)-[a-z0-9]{4}$/;
const methodOf = (name: string) => NAME.exec(name)?.groups?.method ?? `(not <time>-<method>-xxxx: ${name})`;
const python = process.env.SRLORA_TEST_PYTHON ?? resolve('.venv/bin/python');

test('a run started by a supervisor (serve, Start Run…) is named as the trainers name theirs: <time>-<method>-xxxx, the method from the config', async () => {
  const dir = tempDir();
  const runsDir = join(dir, 'runs');
  const plain = join(dir, 'plain.srlora.json'); // no method: the default, srlora
  writeFileSync(plain, JSON.stringify({ steps: 10 }));
  const lora = join(dir, 'lora.srlora.json');
  writeFileSync(lora, '// a comment, as srlora init writes\n{ "method": "lora", "steps": 10, }\n');
  const hub = await Hub.start({ heartbeatMs: 60_000 });
  // The trainer is not the point here: a command that ends at once.
  const runs = new RunManager({ runsDir, hub, cliPath: 'unused', trainerCommand: 'exit 0' });
  const names: Record<string, string> = {};
  try {
    names.supervisorDefault = (await runs.start({ configFile: plain, cwd: dir })).runId;
    names.supervisorLora = (await runs.start({ configFile: lora, cwd: dir })).runId;
    names.supervisorDemo = (await runs.start({ overrides: { method: 'srlora' }, cwd: dir })).runId; // serve --demo
    names.supervisorOverride = (await runs.start({ configFile: plain, overrides: { method: 'pissa' }, cwd: dir })).runId;
  } finally {
    await runs.dispose('stop');
    await hub.close();
  }
  // The built-in trainer from a terminal names its folder from its config's method.
  names.builtinTrainer = basename(makeNewRunDir(join(dir, 'other'), 'srlora'));
  // The PyTorch trainer's own rule (python/srlora_torch/train.py new_run_id).
  names.pytorchTrainer = execFileSync(python, ['-c', 'import sys; from srlora_torch.train import new_run_id; sys.stdout.write(new_run_id("srlora"))'],
    { cwd: join(import.meta.dirname, '../python'), encoding: 'utf8' });
  assert.deepEqual(Object.fromEntries(Object.entries(names).map(([k, v]) => [k, methodOf(v)])), {
    supervisorDefault: 'srlora', supervisorLora: 'lora', supervisorDemo: 'srlora', supervisorOverride: 'pissa', builtinTrainer: 'srlora', pytorchTrainer: 'srlora',
  }, JSON.stringify(names));
});
