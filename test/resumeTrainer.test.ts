/**
 * `srlora train --resume` of a run the PyTorch trainer wrote says so, with the command that continues it, before it
 * reads anything else (fresh-user session 5, fixb.2: it said "config.json: /targets: Expected array, got null").
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './helpers/tmp';

const cli = join(import.meta.dirname, '../dist/cli.js');

test('srlora train --resume <a PyTorch run> names the PyTorch trainer and the command that resumes it', () => {
  const dir = join(tempDir(), '20261130-050000-srlora-abcd');
  mkdirSync(dir, { recursive: true });
  // As the PyTorch trainer writes them: its config holds null for optional fields (targets), its hello says pytorch.
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ method: 'srlora', steps: 50, targets: null, device: 'auto', bf16: false }));
  const base = { v: 1, runId: '20261130-050000-srlora-abcd', time: 1_790_000_000_000 };
  writeFileSync(join(dir, 'events.jsonl'),
    `${JSON.stringify({ ...base, seq: 1, type: 'hello', protocol: { major: 1, minor: 1 }, method: 'srlora', backend: { name: 'pytorch', device: 'cpu' }, totalSteps: 50, config: {}, layers: [] })}\n`
    + `${JSON.stringify({ ...base, seq: 2, type: 'state', state: 'interrupted', step: 10 })}\n`);
  const r = spawnSync(process.execPath, [cli, 'train', '--resume', dir], { encoding: 'utf8' });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /is a run of the PyTorch trainer: continue it with python -m srlora_torch\.train --resume /, r.stderr);
  assert.doesNotMatch(r.stderr, /targets/);
});
