/**
 * A run folder is movable (FINDINGS F4), as a TensorBoard logdir or a database's data folder is: a run's id is its
 * folder's (the shared rule, test/vectors/runid.json), and every line of the folder's events.jsonl is that run's,
 * whatever id the line was written under. Before: `serve --resume COPY` mixed two ids in one log, the hub skipped the
 * old lines (the page: "? · ?", no history) and rejected the trainer's resend of them ("this connection belongs to run
 * c2"), so nothing could be steered. Here a run of each trainer is renamed or copied, continued by serve, and the page
 * (the hub's snapshot and events, folded by the one reducer) shows the whole history and steers it.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { WebSocket } from 'ws';
import { runIdOf } from '../src/runfolder/runId';
import { applyMessage, emptyRun, type RunModel } from '../src/viewmodel/runModel';
import type { HubToViewer, RunSummary, TrainerMessage } from '../src/protocol/messages';
import { tempDir, until } from './helpers/tmp';
import { lastState, logOf } from './helpers/runLog';

const cli = join(import.meta.dirname, '../dist/cli.js');
const python = process.env.SRLORA_TEST_PYTHON ?? resolve('.venv/bin/python');

function proc(command: string, args: string[], env: NodeJS.ProcessEnv = process.env): { p: ChildProcess; out: () => string; code: Promise<number | null> } {
  const p = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  after(() => { if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL'); });
  let out = '';
  p.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  p.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  return { p, out: () => out, code: new Promise((r) => p.once('exit', (c) => r(c))) };
}

/** An interrupted run of `trainer` started from a terminal in runsDir (trained a few steps, checkpointed on Ctrl+C). */
async function interruptedRun(trainer: 'builtin' | 'pytorch', base: string, runsDir: string): Promise<string> {
  const config = join(base, 'quick.srlora.json');
  writeFileSync(config, JSON.stringify({ ...(trainer === 'builtin' ? { model: { kind: 'mlp' } } : {}), steps: 100_000, evalEvery: 1000, checkpointEvery: 0, importanceEvery: 5 }));
  const t = trainer === 'builtin'
    ? proc(process.execPath, [cli, 'train', '--config', config, '--runs-dir', runsDir, '--no-progress'])
    : proc(python, ['-m', 'srlora_torch.train', '--config', config, '--runs-dir', runsDir, '--no-progress'], { ...process.env, PYTHONPATH: resolve('python') });
  assert.ok(await until(() => existsSync(runsDir) && readdirSync(runsDir).length === 1, 60_000), t.out());
  const dir = join(runsDir, readdirSync(runsDir)[0]);
  assert.ok(await until(() => existsSync(join(dir, 'events.jsonl')) && logOf(dir).some((m) => m.type === 'metrics'), 120_000), t.out());
  t.p.kill('SIGINT');
  await t.code;
  assert.equal(lastState(dir)?.state, 'interrupted', t.out());
  return dir;
}

async function movedRunContinues(trainer: 'builtin' | 'pytorch', how: 'rename' | 'copy'): Promise<void> {
  const base = tempDir();
  const runsDir = join(base, 'runs');
  const orig = await interruptedRun(trainer, base, runsDir);
  const stepBefore = lastState(orig)!.step;
  const moved = join(runsDir, `my ${how} of it`); // the id is the shared rule's: my-copy-of-it-<8 hex>
  if (how === 'copy') cpSync(orig, moved, { recursive: true }); else renameSync(orig, moved);
  const id = runIdOf(moved);
  const s = proc(process.execPath, [cli, 'serve', '--resume', moved, ...(trainer === 'pytorch' ? ['--python', python] : [])]);
  assert.ok(await until(() => /SRLoRA dashboard: (http\S+)/.test(s.out()), 120_000), s.out());
  const url = new URL(/SRLoRA dashboard: (http\S+)/.exec(s.out())![1]);
  assert.equal(url.searchParams.get('run'), id);
  // The page: the hub's snapshot and events folded by the one reducer.
  const ws = new WebSocket(`ws://${url.host}/viewer`, { headers: { Authorization: `Bearer ${url.searchParams.get('token')}` } });
  let page: RunModel = emptyRun(id);
  const steps = new Set<number>();
  const fold = (e: TrainerMessage) => { applyMessage(page, e); if (e.type === 'metrics') for (const r of e.rows) steps.add(r.step); };
  let listed: RunSummary | undefined;
  const results: HubToViewer[] = [];
  ws.on('message', (d) => {
    const m = JSON.parse(d.toString()) as HubToViewer;
    if (m.type === 'runs') listed = m.runs.find((r) => r.runId === id);
    else if (m.type === 'snapshot' && m.runId === id) { if (!m.continued) { page = emptyRun(id); steps.clear(); } m.events.forEach(fold); }
    else if (m.type === 'event' && m.runId === id) fold(m.event);
    else if (m.type === 'commandResult') results.push(m);
  });
  try {
    await new Promise((r) => ws.once('open', r));
    ws.send(JSON.stringify({ v: 1, type: 'subscribe', runId: id }));
    const whole = () => page.method !== null && page.rewinds >= 1 && steps.has(1) && [...steps].some((st) => st > stepBefore);
    assert.ok(await until(whole, 120_000), `${s.out()}\npage: ${JSON.stringify({ method: page.method, backend: page.backend, rewinds: page.rewinds, steps: [...steps].slice(0, 5), step: page.step })}`);
    assert.equal(page.pytorch, trainer === 'pytorch');
    assert.ok(await until(() => listed?.control?.canSteer === true, 60_000), `${JSON.stringify(listed)}\n${s.out()}`);
    ws.send(JSON.stringify({ v: 1, type: 'command', requestId: 'r-1', runId: id, command: { kind: 'pause' } }));
    assert.ok(await until(() => page.state === 'paused', 60_000), `${s.out()}\n${JSON.stringify(results)}`);
    assert.doesNotMatch(s.out(), /rejected trainer/);
  } finally { ws.close(); }
  s.p.kill('SIGINT');
  assert.equal(await s.code, 0, s.out());
  assert.equal(lastState(moved)?.state, 'interrupted');
  // The new lines are the folder's run's; the trainer said where the run came from.
  assert.ok(logOf(moved).filter((m) => m.seq > 0).slice(-3).every((m) => m.runId === id));
  assert.ok(logOf(moved).some((m) => m.type === 'log' && m.text.includes(`recorded as run ${runIdOf(orig)}`)), 'the trainer says the run was moved');
  if (how === 'copy') assert.equal(lastState(orig)?.state, 'interrupted', 'the original is untouched');
}

test('a renamed run of the built-in trainer continues under serve: the page shows its whole history and steers it', () => movedRunContinues('builtin', 'rename'));
test('a copied run of the built-in trainer continues under serve: the page shows its whole history and steers it', () => movedRunContinues('builtin', 'copy'));
test('a copied run of the PyTorch trainer continues under serve: the page shows its whole history and steers it', () => movedRunContinues('pytorch', 'copy'));
test('a renamed run of the PyTorch trainer continues under serve: the page shows its whole history and steers it', () => movedRunContinues('pytorch', 'rename'));
