/** The continue line every hint prints runs as printed (session 7 cli.1): the interpreter and PYTHONPATH that ran a
 * PyTorch run, as its hello recorded them; one rule in both languages (test/vectors/continue/lines.json). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { tempDir, until } from './helpers/tmp';
import type { HubToViewer, RunSummary } from '../src/protocol/messages';
import { continueCommand, dashboardCommand, type PythonLaunch } from '../src/viewmodel/continueCommand';
import { trainingSummary } from '../src/cli/summary';
import { trainCommand } from '../src/cli/trainCommand';
import { exportCommand } from '../src/cli/exportCommand';

const root = join(import.meta.dirname, '..');

test('the continue line meets the shared vectors (python/tests/test_cli_lines.py holds the Python side to them)', () => {
  const { cases } = JSON.parse(readFileSync(join(root, 'test/vectors/continue/lines.json'), 'utf8')) as { cases: { runDir: string; pytorch: boolean; worldSize: number; launch?: PythonLaunch; line: string }[] };
  assert.ok(cases.some((c) => c.launch?.pythonPath));
  for (const c of cases) assert.equal(continueCommand(c.runDir, c.pytorch, c.worldSize, c.launch), c.line, JSON.stringify(c));
});

test('the dashboard line meets the shared vectors (the CLI that ran it, quoted; python/tests/test_cli_lines.py holds the Python side)', () => {
  const { serve } = JSON.parse(readFileSync(join(root, 'test/vectors/continue/lines.json'), 'utf8')) as { serve: { runsDir: string; launch?: PythonLaunch; line: string }[] };
  assert.ok(serve.some((c) => c.launch?.cli) && serve.some((c) => !c.launch));
  for (const c of serve) assert.equal(dashboardCommand(c.runsDir, c.launch), c.line, JSON.stringify(c));
});

test('the built-in trainer\'s printed "watch it" and "dashboard" lines run as printed from a fresh shell and the hub answers (FINDINGS F5/F6: `srlora` is not on a checkout\'s PATH)', async () => {
  const runs = join(tempDir(), 'my runs');
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SRLORA_')));
  const train = spawn(process.execPath, ['dist/cli.js', 'train', '--steps', '2', '--model.kind', 'mlp', '--eval-every', '100', '--no-progress', '--runs-dir', runs],
    { cwd: root, env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  train.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  assert.equal(await new Promise((done) => train.on('exit', done)), 0, stderr);
  const want = `${process.execPath} ${join(root, 'dist/cli.js')} serve --runs-dir '${runs}'`;
  assert.equal(/\(watch it: (.*)\)\n/.exec(stderr)?.[1], want, stderr);
  const line = /\n {2}dashboard +(.*)\n/.exec(stderr)?.[1];
  assert.equal(line, want, stderr);
  const serve = spawn('bash', ['-c', `exec ${line!}`], { cwd: tempDir(), env: { ...env, PATH: '/usr/bin:/bin' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  serve.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  serve.stderr.on('data', (d: Buffer) => { out += d.toString(); });
  try {
    for (let i = 0; i < 600 && !/SRLoRA dashboard: (http\S+)/.test(out) && serve.exitCode === null; i++) await new Promise((r) => setTimeout(r, 50));
    const url = /SRLoRA dashboard: (http\S+)/.exec(out)?.[1];
    assert.ok(url, out);
    // the hub answers a viewer with the run this trainer just wrote
    const u = new URL(url);
    const ws = new WebSocket(`ws://${u.host}/viewer`, { headers: { Authorization: `Bearer ${u.searchParams.get('token')}` } });
    const lists: RunSummary[][] = [];
    ws.on('message', (d: Buffer) => { const m = JSON.parse(d.toString()) as HubToViewer; if (m.type === 'runs') lists.push(m.runs); });
    try {
      assert.ok(await until(() => lists.at(-1)?.length === 1, 30_000), out);
      assert.equal(lists.at(-1)![0].runId, readdirSync(runs)[0]);
    } finally { ws.close(); }
  } finally {
    serve.kill('SIGTERM');
  }
});

test('every hint for a PyTorch run (summary, train --resume, export) names the interpreter and PYTHONPATH its hello recorded', async () => {
  const dir = join(tempDir(), 'my runs', 'r1');
  mkdirSync(join(dir, 'checkpoints', 'step-10'), { recursive: true });
  writeFileSync(join(dir, 'checkpoints', 'step-10', 'state.pt'), 'abc');
  writeFileSync(join(dir, 'checkpoints', 'step-10', 'COMPLETE.json'), JSON.stringify({ step: 10, files: { 'state.pt': { bytes: 3, sha256: '0'.repeat(64) } } }));
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ method: 'srlora', steps: 50 }));
  const launch = { python: '/home/u/proj/.venv/bin/python', pythonPath: '/home/u/proj/python' };
  const base = { v: 1, runId: 'r1', time: 1_790_000_000_000 };
  writeFileSync(join(dir, 'events.jsonl'),
    `${JSON.stringify({ ...base, seq: 1, type: 'hello', protocol: { major: 1, minor: 2 }, method: 'srlora', backend: { name: 'pytorch', device: 'cpu' }, totalSteps: 50, config: {}, layers: [], launch })}\n`
    + `${JSON.stringify({ ...base, seq: 2, type: 'state', state: 'interrupted', step: 10 })}\n`);
  const py = `PYTHONPATH=/home/u/proj/python /home/u/proj/.venv/bin/python -m`;
  const line = `${py} srlora_torch.train --resume '${dir}'`;
  assert.match(trainingSummary(dir), new RegExp(`\\n  continue +${line.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\n`));
  await assert.rejects(trainCommand(['--resume', dir]), { message: `${dir} is a run of the PyTorch trainer: continue it with ${line}` });
  await assert.rejects(exportCommand([dir]), { message: `${dir} is a PyTorch run: export it with ${py} srlora_torch.export '${dir}'` });
});

/** SIGINT `child`'s process group once its run's events satisfy `until`; its stderr when it has exited. */
async function interruptWhen(child: ChildProcess, events: () => string, until: (log: string) => boolean): Promise<{ code: number | null; stderr: string }> {
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  const exited = new Promise<number | null>((done) => child.on('exit', (code) => done(code)));
  let ended = false;
  void exited.then(() => { ended = true; });
  for (let i = 0; i < 3000 && !ended && !until(events()); i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(!ended, `it ended before it could be interrupted: ${stderr}`);
  process.kill(-child.pid!, 'SIGINT');
  return { code: await exited, stderr };
}

test('the built-in trainer\'s printed continue line runs as printed from a fresh shell elsewhere (node dist/cli.js, not a bare srlora)', async () => {
  const runs = join(tempDir(), 'my runs');
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SRLORA_')));
  const first = spawn(process.execPath, ['dist/cli.js', 'train', '--steps', '100000', '--model.kind', 'mlp', '--checkpoint-every', '0', '--eval-every', '100000', '--no-progress', '--runs-dir', runs],
    { cwd: root, env, detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
  const runDir = () => { try { const n = readdirSync(runs)[0]; return n ? join(runs, n) : null; } catch { return null; } };
  const log = (dir: string | null) => () => { try { return dir ? readFileSync(join(dir, 'events.jsonl'), 'utf8') : ''; } catch { return ''; } };
  const a = await interruptWhen(first, () => log(runDir())(), (l) => l.includes('"type":"metrics"'));
  assert.equal(a.code, 0, a.stderr);
  const dir = runDir()!;
  const line = /\n {2}continue +(.*)\n/.exec(a.stderr)?.[1];
  assert.equal(line, `${process.execPath} ${join(root, 'dist/cli.js')} train --resume '${dir}'`, a.stderr);
  const elsewhere = tempDir();
  const again = spawn('bash', ['-c', line!], { cwd: elsewhere, env: { ...env, PATH: '/usr/bin:/bin' }, detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
  const b = await interruptWhen(again, log(dir), (l) => /"type":"rewind"[\s\S]*"type":"metrics"/.test(l));
  assert.equal(b.code, 0, b.stderr);
  const states = log(dir)().trim().split('\n').map((s) => JSON.parse(s) as { type: string; state?: string }).filter((m) => m.type === 'state').map((m) => m.state);
  assert.deepEqual(states.filter((s) => s === 'interrupted').length, 2, String(states));
});
