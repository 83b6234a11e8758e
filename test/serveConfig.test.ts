/**
 * `srlora serve --config FILE` refuses a bad config up front, as `srlora train` does (fresh-user session 5, fixb.1):
 * before, serve started the run anyway, printed "started run …" then "the trainer exited with code 1", left a failed
 * run folder behind and kept serving. Now: the same error as train, a non-zero exit, no run folder — for the built-in
 * trainer and the PyTorch one (whose own validator is asked: it alone knows its tasks).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { tempDir } from './helpers/tmp';

const cli = join(import.meta.dirname, '../dist/cli.js');
const python = process.env.SRLORA_TEST_PYTHON ?? resolve('.venv/bin/python');

function serve(args: string[]): { p: ChildProcess; out: () => string; code: Promise<number | null> } {
  const p = spawn(process.execPath, [cli, 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  after(() => { if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL'); });
  let out = '';
  p.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  p.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  return { p, out: () => out, // Before the fix serve kept serving: give up after a while (and fail) rather than hang.
  code: new Promise((r) => { p.once('exit', (c) => r(c)); setTimeout(() => { p.kill('SIGKILL'); r(-999); }, 180_000).unref(); }) }; // loaded CI: two Pythons import torch
}

const BAD: Record<string, object> = {
  unknownField: { stepz: 10 },
  zeroRank: { r: 0 },
  wrongType: { learningRate: 'fast' },
};

/** serve refused before it started anything: a non-zero exit, no run started or served, no run folder left. */
async function refusedUpFront(s: { out: () => string; code: Promise<number | null> }, runsDir: string): Promise<void> {
  const code = await s.code;
  assert.ok(code !== 0 && code !== -999, `exit ${code}: ${s.out()}`);
  assert.doesNotMatch(s.out(), /started run|SRLoRA dashboard/);
  assert.ok(!existsSync(runsDir) || readdirSync(runsDir).length === 0, `left ${existsSync(runsDir) ? readdirSync(runsDir).join(', ') : ''}`);
}

for (const [name, config] of Object.entries(BAD)) {
  test(`serve --config with a bad config (${name}) prints train's error, exits non-zero and leaves no run folder`, async () => {
    const dir = tempDir();
    const file = join(dir, `${name}.srlora.json`);
    writeFileSync(file, JSON.stringify(config));
    const train = spawnSync(process.execPath, [cli, 'train', '--config', file, '--runs-dir', join(dir, 'train-runs')], { encoding: 'utf8' });
    assert.notEqual(train.status, 0);
    const trainError = train.stderr.trim().split('\n').at(-1)!;
    assert.match(trainError, /^srlora: /);
    const runsDir = join(dir, 'runs');
    const s = serve(['--runs-dir', runsDir, '--config', file]);
    await refusedUpFront(s, runsDir);
    assert.ok(s.out().includes(trainError), `serve said:\n${s.out()}\ntrain said: ${trainError}`);
  });
}

test('serve --trainer pytorch --config with a bad config prints the PyTorch trainer\'s error, exits non-zero and leaves no run folder', async () => {
  const dir = tempDir();
  const file = join(dir, 'bad.srlora.json');
  writeFileSync(file, JSON.stringify({ stepz: 10 }));
  const train = spawnSync(python, ['-m', 'srlora_torch.train', '--config', file, '--runs-dir', join(dir, 'train-runs')], { encoding: 'utf8', cwd: 'python' });
  assert.notEqual(train.status, 0);
  const trainError = train.stderr.trim().split('\n').at(-1)!;
  assert.match(trainError, /stepz/);
  const runsDir = join(dir, 'runs');
  const s = serve(['--runs-dir', runsDir, '--config', file, '--trainer', 'pytorch', '--python', python]);
  await refusedUpFront(s, runsDir);
  assert.ok(s.out().includes(trainError), `serve said:\n${s.out()}\ntrain said: ${trainError}`);
});

test('serve --trainer pytorch --gpus 2 with a config that cannot run data-parallel (task matrix) refuses it up front: the trainer\'s reason, non-zero, no run folder', async () => {
  const dir = tempDir();
  const file = join(dir, 'matrix.srlora.json');
  writeFileSync(file, JSON.stringify({ task: { kind: 'matrix' }, steps: 5 }));
  const runsDir = join(dir, 'runs');
  const s = serve(['--runs-dir', runsDir, '--config', file, '--trainer', 'pytorch', '--python', python, '--gpus', '2']);
  await refusedUpFront(s, runsDir);
  assert.match(s.out(), /task\.kind "matrix" cannot run data-parallel on 2 processes/);
});

test('serve --trainer pytorch --config with a device this machine does not have (cuda:99) refuses it up front: the trainer\'s line naming the field, non-zero, no run folder', async () => {
  const dir = tempDir();
  const file = join(dir, 'gpu.srlora.json');
  writeFileSync(file, JSON.stringify({ device: 'cuda:99', steps: 5 }));
  const runsDir = join(dir, 'runs');
  const s = serve(['--runs-dir', runsDir, '--config', file, '--trainer', 'pytorch', '--python', python]);
  await refusedUpFront(s, runsDir);
  assert.match(s.out(), /device "cuda:99": this (machine|PyTorch)/);
  assert.doesNotMatch(s.out(), /Traceback/);
});
