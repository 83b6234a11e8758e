/**
 * Ctrl+C of `srlora serve --trainer pytorch` at every point of a run's start (FINDINGS F1): before the trainer has
 * imported anything, while it loads its model, while it writes its first checkpoint. docs/protocol.md (States): a
 * Ctrl+C before the run started writes nothing and removes the new run's folder; one after leaves a run every path
 * describes the same way: interrupted, by the PyTorch trainer, resumable from a complete checkpoint.
 * The trainer is made slow at each point by test/fixtures/slow-python (it marks a file when it gets there).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { latestCompleteCheckpoint } from '../src/runfolder/checkpoints';
import { runTrainerOf } from '../src/cli/runTarget';
import { tempDir, until } from './helpers/tmp';
import { lastState, logOf } from './helpers/runLog';

const cli = join(import.meta.dirname, '../dist/cli.js');
const realPython = process.env.SRLORA_TEST_PYTHON ?? resolve('.venv/bin/python');
const slowPython = join(import.meta.dirname, 'fixtures/slow-python/python');

async function ctrlCAt(where: 'import' | 'load' | 'checkpoint' | 'stop'): Promise<{ runsDir: string; out: string; code: number | null }> {
  const base = tempDir();
  const runsDir = join(base, 'runs');
  const mark = join(base, 'mark');
  const config = join(base, 'run.srlora.json');
  writeFileSync(config, JSON.stringify({ steps: 1000, checkpointEvery: where === 'stop' ? 1000 : 2, evalEvery: 1000 })); // stop: only the stop's checkpoint
  const env: NodeJS.ProcessEnv = { ...process.env, SRLORA_TEST_REAL_PYTHON: realPython, SRLORA_TEST_SLOW: where, SRLORA_TEST_MARK: mark };
  delete env.PYTHONPATH;
  const p: ChildProcess = spawn(process.execPath, [cli, 'serve', '--runs-dir', runsDir, '--trainer', 'pytorch', '--python', slowPython, '--config', config],
    { stdio: ['ignore', 'pipe', 'pipe'], env });
  after(() => { if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL'); });
  let out = '';
  p.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  p.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  const code = new Promise<number | null>((r) => p.once('close', (c) => r(c))); // close: its output read to the end
  assert.ok(await until(() => existsSync(mark) && out.includes('SRLoRA dashboard:'), 120_000), out);
  p.kill('SIGINT');
  const exit = await code; // before reading out: what serve says while stopping comes after the signal
  return { runsDir, out, code: exit };
}

for (const where of ['import', 'load'] as const) {
  test(`Ctrl+C of serve while the PyTorch trainer is at ${where}: nothing was trained, the new run's folder is removed`, async () => {
    // Before: a folder with only a supervisor "interrupted" line (listed resumable; serve --resume called it a
    // built-in run, train --resume "not a run folder"), or only hub.json/owner.json/trainer.pid.
    const { runsDir, out, code } = await ctrlCAt(where);
    assert.equal(code, 0, out);
    assert.deepEqual(readdirSync(runsDir), [], out);
  });
}

test('Ctrl+C of serve while the PyTorch trainer writes its first checkpoint: interrupted, a PyTorch run, resumable from a complete checkpoint', async () => {
  const { runsDir, out, code } = await ctrlCAt('checkpoint');
  assert.equal(code, 0, out);
  const dir = join(runsDir, readdirSync(runsDir)[0]!);
  const last = lastState(dir);
  assert.equal(last?.state, 'interrupted', out);
  assert.equal(last?.origin, undefined, `the trainer wrote its own end: ${JSON.stringify(last)}\n${out}`);
  assert.equal(runTrainerOf(dir), 'pytorch');
  assert.ok(existsSync(join(dir, 'config.json')));
  assert.ok(latestCompleteCheckpoint(dir).dir, 'a checkpoint to continue from');
});

test('Ctrl+C of serve while a big model trains: its stop checkpoint may take longer than a few seconds, and the trainer writes it and its own end', async () => {
  // Before: serve gave a trainer 3 s after the signal, then SIGTERM and SIGKILL at 6 s, so a model whose checkpoint
  // takes longer (here 8 s, slow_train.py `stop`) was killed mid-write: the supervisor's "interrupted … killed by
  // SIGKILL" and every step since the last periodic checkpoint lost.
  const { runsDir, out, code } = await ctrlCAt('stop');
  assert.equal(code, 0, out);
  const dir = join(runsDir, readdirSync(runsDir)[0]!);
  const last = lastState(dir);
  assert.deepEqual({ state: last?.state, origin: last?.origin }, { state: 'interrupted', origin: undefined }, `${JSON.stringify(last)}\n${out}`);
  assert.equal(latestCompleteCheckpoint(dir).step, last?.step, 'checkpointed at the step it stopped');
  assert.match(out, /stopping: the trainer checkpoints first \(up to 30 s; Ctrl\+C again to leave it finishing on its own\)/);
});

test('a folder left by an older supervisor (only its "interrupted" record, no hello): every continue path says the same — it never started', () => {
  // Before: serve --resume --python: "add --trainer pytorch"; with it: "a run of the built-in trainer"; train --resume:
  // "not a run folder (no config.json)"; python --resume: the same as train.
  const dir = join(tempDir(), 'runs', '20261130-000000-srlora-left');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'events.jsonl'), `${JSON.stringify({ v: 1, type: 'state', runId: '20261130-000000-srlora-left', seq: 1, time: 1, state: 'interrupted', step: 0,
    reason: 'srlora serve was stopped (Ctrl+C, SIGINT); the trainer was killed by SIGINT without writing its final state', origin: 'supervisor', exit: { code: null, signal: 'SIGINT', stderrTail: [] } })}\n`);
  const said = `${dir} never started: its events.jsonl holds no hello (nothing was trained, there is no checkpoint): there is nothing to continue; start a new run`;
  const env = { ...process.env, PYTHONPATH: resolve('python') };
  const paths = [
    [process.execPath, cli, 'serve', '--resume', dir, '--python', realPython],
    [process.execPath, cli, 'serve', '--resume', dir, '--trainer', 'pytorch', '--python', realPython],
    [process.execPath, cli, 'train', '--resume', dir],
    [realPython, '-m', 'srlora_torch.train', '--resume', dir],
  ];
  for (const [cmd, ...args] of paths) {
    const r = spawnSync(cmd!, args, { encoding: 'utf8', env, timeout: 120_000 });
    assert.notEqual(r.status, 0, args.join(' '));
    assert.equal(r.stderr.trim().split('\n').at(-1)?.replace(/^srlora: /, ''), said, `${args.join(' ')}: ${r.stderr}`);
  }
});

test('Ctrl+C of serve while it starts a run (the folder just made, the trainer being spawned): serve ends it; no trainer outlives serve, no folder nothing can use', async () => {
  // Before (fresh8 F1, F2): serve took Ctrl+C only once the run had started, so a Ctrl+C in between ended serve on
  // the default SIGINT: the detached trainer trained on unseen, its run without an owner (a second trainer could then
  // resume it into the same log), or a folder holding only owner.json was left.
  const base = tempDir();
  const runsDir = join(base, 'runs');
  const config = join(base, 'run.srlora.json');
  writeFileSync(config, JSON.stringify({ model: { kind: 'mlp' }, steps: 100000, checkpointEvery: 5, evalEvery: 100000 }));
  const p = spawn(process.execPath, [cli, 'serve', '--runs-dir', runsDir, '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  after(() => { if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL'); });
  let out = '';
  p.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  p.stderr.on('data', (d: Buffer) => { out += d.toString(); });
  const ended = new Promise<[number | null, NodeJS.Signals | null]>((r) => p.once('close', (c, s) => r([c, s])));
  assert.ok(await until(() => existsSync(runsDir) && readdirSync(runsDir).length > 0, 60_000, 2), out); // the folder, made as the start begins
  p.kill('SIGINT');
  const [code, signal] = await ended;
  assert.deepEqual({ code, signal }, { code: 0, signal: null }, out);
  await until(() => spawnSync('pgrep', ['-f', base], { encoding: 'utf8' }).stdout.trim() === '', 5000, 100);
  const left = spawnSync('pgrep', ['-af', base], { encoding: 'utf8' }).stdout.trim(); // the trainer's command names the config in base
  assert.equal(left, '', `a process of this run outlived serve:\n${left}\n${out}`);
  for (const name of readdirSync(runsDir)) { // none, or one every path can read: its trainer's hello and a final state
    const log = logOf(join(runsDir, name));
    assert.equal(log[0]?.type, 'hello', `${name}: ${readdirSync(join(runsDir, name)).join(' ')}\n${out}`);
    assert.equal(lastState(join(runsDir, name))?.state, 'interrupted', out);
  }
});
