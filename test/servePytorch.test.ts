/**
 * `srlora serve` starts a PyTorch run as VS Code's Start Run… does (the RunManager's one launch path, the shipped
 * srlora_torch first on PYTHONPATH), and says exactly why when the Python cannot run it.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { join, resolve } from 'node:path';
import type { Hello, State } from '../src/protocol/messages';
import { tempDir, until } from './helpers/tmp';
import { logOf } from './helpers/runLog';

const cli = join(import.meta.dirname, '../dist/cli.js');
const python = process.env.SRLORA_TEST_PYTHON ?? resolve('.venv/bin/python');

function serve(args: string[]): { p: ChildProcess; out: () => string; code: Promise<number | null> } {
  // No PYTHONPATH from the test's environment: serve must put its own srlora_torch on it.
  const env = { ...process.env };
  delete env.PYTHONPATH;
  const p = spawn(process.execPath, [cli, 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  after(() => { if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL'); });
  let out = '';
  p.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  p.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  return { p, out: () => out, code: new Promise((r) => p.once('exit', (c) => r(c))) };
}

test('srlora serve --demo --trainer pytorch starts a PyTorch run (its hello says pytorch) that streams, and Ctrl+C interrupts it', async () => {
  // Before: serve could start only the built-in trainer ("serve: unknown option '--trainer'").
  const runsDir = join(tempDir(), 'runs');
  const s = serve(['--runs-dir', runsDir, '--demo', '--trainer', 'pytorch', '--python', python, '--steps', '100000']);
  assert.ok(await until(() => /started run (\S+) in (\S+)/.test(s.out()), 120_000), s.out());
  assert.match(s.out(), /PyTorch trainer: PyTorch · (CPU|CUDA · .+), torch \S+/);
  const [, , runDir] = /started run (\S+) in (\S+)/.exec(s.out())!;
  assert.ok(await until(() => logOf(runDir).some((m) => m.type === 'metrics'), 120_000), s.out());
  const hello = logOf(runDir).find((m): m is Hello => m.type === 'hello');
  assert.equal(hello?.backend.name, 'pytorch');
  assert.match(s.out(), /SRLoRA dashboard: http:\/\/127\.0\.0\.1:\d+\/\?token=\S+&run=/);
  s.p.kill('SIGINT');
  assert.equal(await s.code, 0);
  assert.equal(logOf(runDir).filter((m): m is State => m.type === 'state').at(-1)?.state, 'interrupted');
});

test('srlora serve --trainer pytorch with a Python that cannot run it: a non-zero exit naming the Python; bad flags are named', async () => {
  const runsDir = join(tempDir(), 'runs');
  const missing = serve(['--runs-dir', runsDir, '--demo', '--trainer', 'pytorch', '--python', '/nonexistent/python3']);
  assert.notEqual(await missing.code, 0);
  assert.match(missing.out(), /srlora: --trainer pytorch: \/nonexistent\/python3: /);
  const bad = serve(['--runs-dir', runsDir, '--demo', '--trainer', 'torch']);
  assert.notEqual(await bad.code, 0);
  assert.match(bad.out(), /--trainer: torch is not builtin or pytorch/);
  const stray = serve(['--runs-dir', runsDir, '--demo', '--gpus', '2']);
  assert.notEqual(await stray.code, 0);
  assert.match(stray.out(), /add --trainer pytorch/);
});
