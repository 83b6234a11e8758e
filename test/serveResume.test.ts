/**
 * `srlora serve --resume RUN_DIR_OR_ID`: a stopped or interrupted run continues under serve's own supervision, so the
 * page steers it (a run continued from a terminal with `train --resume` is only followed, read-only). Refusals say why:
 * a run running elsewhere names who runs it, an unknown id is named, a run of the other trainer gets `train --resume`'s
 * words. Before: serve had no --resume ("serve: unknown option '--resume'").
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { createHash } from 'node:crypto';
import { WebSocket } from 'ws';
import { Hub } from '../src/hub/hub';
import { RunManager } from '../src/supervisor/runManager';
import { CommandHandlers, type Ui } from '../src/supervisor/commandHandlers';
import type { HubToViewer, RunSummary } from '../src/protocol/messages';
import { tempDir, until } from './helpers/tmp';
import { lastState, logOf } from './helpers/runLog';

const cli = join(import.meta.dirname, '../dist/cli.js');
const python = process.env.SRLORA_TEST_PYTHON ?? resolve('.venv/bin/python');
const line = (m: object) => JSON.stringify(m) + '\n';

function cliProcess(args: string[]): { p: ChildProcess; out: () => string; code: Promise<number | null> } {
  const p = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  after(() => { if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL'); });
  let out = '';
  p.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  p.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  return { p, out: () => out, code: new Promise((r) => p.once('exit', (c) => r(c))) };
}

test('srlora serve --resume continues an interrupted run under its own supervision: the page can steer it; a run still running in a terminal is refused, naming its trainer', async () => {
  const dir = tempDir();
  const runsDir = join(dir, 'runs');
  const config = join(dir, 'quick.srlora.json');
  writeFileSync(config, JSON.stringify({ model: { kind: 'mlp' }, steps: 100_000, evalEvery: 1000, checkpointEvery: 0, importanceEvery: 5 }));
  // A run started from a terminal.
  const train = cliProcess(['train', '--config', config, '--runs-dir', runsDir, '--no-progress']);
  assert.ok(await until(() => existsSync(runsDir) && readdirSync(runsDir).length === 1, 30_000), train.out());
  const runId = readdirSync(runsDir)[0];
  const runDir = join(runsDir, runId);
  assert.ok(await until(() => existsSync(join(runDir, 'events.jsonl')) && logOf(runDir).some((m) => m.type === 'metrics'), 60_000), train.out());
  // While it trains there, serve will not take it: it says who runs it.
  const busy = cliProcess(['serve', '--runs-dir', runsDir, '--resume', runId]);
  assert.notEqual(await busy.code, 0, busy.out());
  assert.match(busy.out(), new RegExp(`srlora: run \\S+ is running: its trainer \\(pid ${train.p.pid}\\) was started from a terminal`), busy.out());
  // Ctrl+C in the terminal: it checkpoints and is interrupted.
  train.p.kill('SIGINT');
  await train.code;
  assert.equal(lastState(runDir)?.state, 'interrupted', train.out());
  const stepBefore = lastState(runDir)!.step;

  // Continued by serve, named by its folder (no --runs-dir: its parent is shown).
  const s = cliProcess(['serve', '--resume', runDir]);
  after(() => { if (s.p.exitCode === null) s.p.kill('SIGKILL'); });
  assert.ok(await until(() => /SRLoRA dashboard: (http\S+)/.test(s.out()), 60_000), s.out());
  assert.match(s.out(), new RegExp(`continued run ${runId} \\(interrupted at step ${stepBefore}\\) in `));
  const url = new URL(/SRLoRA dashboard: (http\S+)/.exec(s.out())![1]);
  assert.equal(url.searchParams.get('run'), runId, 'the page opens on the continued run');
  // Its trainer resumed from the checkpoint (rewind) and trains on.
  assert.ok(await until(() => logOf(runDir).some((m) => m.type === 'rewind') && logOf(runDir).some((m) => m.type === 'metrics' && m.rows.some((r) => r.step > stepBefore)), 60_000), s.out());
  const owner = JSON.parse(readFileSync(join(runDir, 'owner.json'), 'utf8')) as { by: string; pid: number };
  assert.deepEqual([owner.by, owner.pid], ['srlora serve', s.p.pid], 'serve owns the run');
  // What the page is told: the run can be steered (not read-only).
  const ws = new WebSocket(`ws://${url.host}/viewer`, { headers: { Authorization: `Bearer ${url.searchParams.get('token')}` } });
  let listed: RunSummary | undefined;
  ws.on('message', (d) => { const m = JSON.parse(d.toString()) as HubToViewer; if (m.type === 'runs') listed = m.runs.find((r) => r.runId === runId); });
  try {
    assert.ok(await until(() => listed?.control?.canSteer === true, 30_000), JSON.stringify(listed));
    assert.equal(listed?.readOnly, undefined);
  } finally { ws.close(); }
  s.p.kill('SIGINT');
  assert.equal(await s.code, 0, s.out());
  assert.equal(lastState(runDir)?.state, 'interrupted');
  assert.match(lastState(runDir)?.reason ?? '', /SIGINT/);
});

test('srlora serve --resume refuses, saying why: an unknown id (named), a run of the other trainer (the words of that trainer\'s --resume), flags that would change the run', async () => {
  const dir = tempDir();
  const runsDir = join(dir, 'runs');
  mkdirSync(runsDir);
  const unknown = cliProcess(['serve', '--runs-dir', runsDir, '--resume', 'no-such-run']);
  assert.notEqual(await unknown.code, 0);
  assert.match(unknown.out(), /srlora: --resume: no run "no-such-run" in \S+runs/);
  // A stopped run of the PyTorch trainer.
  const runDir = join(runsDir, '20261130-000000-srlora-abcd');
  mkdirSync(runDir);
  writeFileSync(join(runDir, 'config.json'), JSON.stringify({ steps: 10 }));
  const base = { v: 1, runId: '20261130-000000-srlora-abcd', time: 1_790_000_000_000 };
  writeFileSync(join(runDir, 'events.jsonl'),
    line({ ...base, seq: 1, type: 'hello', protocol: { major: 1, minor: 1 }, method: 'srlora', backend: { name: 'pytorch', device: 'cpu' }, totalSteps: 10, config: {}, layers: [], launch: { python } })
    + line({ ...base, seq: 2, type: 'state', state: 'stopped', step: 4 }));
  // Without --trainer, serve continues it with the trainer that wrote it (fresh6 fixsup.2; before: refused, "add
  // --trainer pytorch"): here it gets as far as the PyTorch trainer's Python, and refuses only for the missing checkpoint.
  const picked = cliProcess(['serve', '--runs-dir', runsDir, '--resume', '20261130-000000-srlora-abcd', '--python', python]);
  assert.notEqual(await picked.code, 0);
  assert.match(picked.out(), /PyTorch trainer: /, picked.out());
  assert.doesNotMatch(picked.out(), /is a run of the PyTorch trainer|--trainer/, picked.out());
  // An explicit --trainer builtin is refused in train --resume's words.
  const wrong = cliProcess(['serve', '--runs-dir', runsDir, '--resume', '20261130-000000-srlora-abcd', '--trainer', 'builtin']);
  assert.notEqual(await wrong.code, 0);
  const trainSays = spawnSync(process.execPath, [cli, 'train', '--resume', runDir], { encoding: 'utf8' }).stderr.trim();
  assert.match(trainSays, /is a run of the PyTorch trainer/);
  assert.ok(wrong.out().includes(trainSays), `serve: ${wrong.out()}\ntrain: ${trainSays}`);
  // …and serve's own line, which runs as printed: with the Python the run recorded (fresh8 F4: serve's default python3
  // may lack torch; before, the hint was "serve --resume DIR, without --trainer builtin").
  assert.ok(wrong.out().includes(`(or here: ${process.execPath} ${cli} serve --resume ${runDir} --python ${python})`), wrong.out());
  // A stopped run of the built-in trainer, asked of the PyTorch one: the PyTorch trainer's own words.
  const builtinDir = join(runsDir, '20261130-000000-srlora-efgh');
  mkdirSync(builtinDir);
  writeFileSync(join(builtinDir, 'config.json'), JSON.stringify({ steps: 10 }));
  writeFileSync(join(builtinDir, 'events.jsonl'),
    line({ ...base, runId: '20261130-000000-srlora-efgh', seq: 1, type: 'hello', protocol: { major: 1, minor: 1 }, method: 'srlora', backend: { name: 'cpu', device: 'cpu' }, totalSteps: 10, config: {}, layers: [] })
    + line({ ...base, runId: '20261130-000000-srlora-efgh', seq: 2, type: 'state', state: 'stopped', step: 4 }));
  const other = cliProcess(['serve', '--resume', builtinDir, '--trainer', 'pytorch', '--python', python]);
  assert.notEqual(await other.code, 0);
  assert.ok(other.out().includes(`srlora: ${builtinDir} is a run of the built-in trainer (srlora train): continue it with ${process.execPath} ${cli} train --resume ${builtinDir}`), other.out()); // its hello names no CLI: this one (F6)
  const withConfig = cliProcess(['serve', '--runs-dir', runsDir, '--resume', runDir, '--steps', '5']);
  assert.notEqual(await withConfig.code, 0);
  assert.match(withConfig.out(), /--resume continues a run as it was configured/);
  const help = spawnSync(process.execPath, [cli, 'serve', '--help'], { encoding: 'utf8' });
  assert.match(help.stdout + help.stderr, /--resume RUN/);
});

test('continuing a run another supervisor owns is refused naming that owner (what serve --resume and VS Code\'s Continue say)', async () => {
  const dir = tempDir();
  const runsDir = join(dir, 'runs');
  const hubA = await Hub.start({ heartbeatMs: 60_000 });
  const hubB = await Hub.start({ heartbeatMs: 60_000 });
  // A's trainer: a process that outlives the check (it writes nothing, so the run stays starting).
  const a = new RunManager({ runsDir, hub: hubA, cliPath: 'unused', trainerCommand: 'sleep 60', by: 'VS Code' });
  const b = new RunManager({ runsDir, hub: hubB, cliPath: 'unused', by: 'srlora serve' });
  try {
    const run = await a.start({ cwd: dir });
    b.scan();
    await assert.rejects(b.continueRun(run.runId), new RegExp(`run \\S+ is starting: it belongs to VS Code \\(pid ${process.pid}\\)`));
    await assert.rejects(a.continueRun(run.runId), /is starting: this VS Code runs it \(trainer pid \d+\)/);
    // VS Code's Continue Run says the same.
    const infos: string[] = [];
    const ui = { info: (m: string) => { infos.push(m); } } as unknown as Ui;
    assert.equal(await new CommandHandlers(b, ui, () => run.runId).continueRun(run.runId, async () => undefined), null);
    assert.match(infos.at(-1) ?? '', new RegExp(`is starting: it has not stopped \\(it belongs to VS Code \\(pid ${process.pid}\\); steer or stop it there\\)`));
  } finally {
    await a.dispose('stop');
    await b.dispose('stop');
    await hubA.close();
    await hubB.close();
  }
});

/** A PyTorch run (the shipped srlora_torch, default config) stopped by Ctrl+C after its first metrics: its folder, whose
 * last state is `interrupted` with a checkpoint. */
async function interruptedPyTorchRun(): Promise<string> {
  const runsDir = join(tempDir(), 'runs');
  const env = { ...process.env, PYTHONPATH: join(import.meta.dirname, '../python') };
  const train = spawn(python, ['-m', 'srlora_torch.train', '--steps', '100000', '--runs-dir', runsDir, '--no-progress'], { stdio: 'ignore', env });
  after(() => { if (train.exitCode === null && train.signalCode === null) train.kill('SIGKILL'); });
  const trained = new Promise((r) => train.once('exit', r));
  assert.ok(await until(() => existsSync(runsDir) && readdirSync(runsDir).length === 1, 120_000));
  const runDir = join(runsDir, readdirSync(runsDir)[0]);
  assert.ok(await until(() => existsSync(join(runDir, 'events.jsonl')) && logOf(runDir).some((m) => m.type === 'metrics'), 120_000));
  train.kill('SIGINT'); // Ctrl+C: it checkpoints and is interrupted
  await trained;
  assert.equal(lastState(runDir)?.state, 'interrupted');
  return runDir;
}

test('srlora serve --resume --trainer pytorch continues an interrupted PyTorch run (its own launcher, the shipped srlora_torch) from its checkpoint', async () => {
  const runDir = await interruptedPyTorchRun();
  const stepBefore = lastState(runDir)!.step;
  // --python as a user types it, relative to the current folder: the trainer runs in the run's folder, where it named
  // nothing (exit 127, and the run left 'interrupted' with no word of why)
  const typed = isAbsolute(python) ? `./${relative(process.cwd(), python)}` : python;
  const s = cliProcess(['serve', '--resume', runDir, '--trainer', 'pytorch', '--python', typed]);
  assert.ok(await until(() => /SRLoRA dashboard: /.test(s.out()), 120_000), s.out());
  assert.match(s.out(), /PyTorch trainer: PyTorch · /);
  // The PyTorch trainer loaded its checkpoint (rewind) and trains on past it.
  assert.ok(await until(() => logOf(runDir).some((m) => m.type === 'rewind' && m.step === stepBefore)
    && logOf(runDir).some((m) => m.type === 'metrics' && m.rows.some((r) => r.step > stepBefore)), 120_000), s.out());
  s.p.kill('SIGINT');
  assert.equal(await s.code, 0, s.out());
  assert.equal(lastState(runDir)?.state, 'interrupted');
});

test('srlora serve --resume --trainer pytorch whose checkpoint does not load: the run reads failed with the reason naming state.pt, not its old interrupted state', async () => {
  const runDir = await interruptedPyTorchRun();
  // A checkpoint whose marker and hashes are right but whose state.pt does not load (another version's, a bug's).
  const ckpt = join(runDir, 'checkpoints', readdirSync(join(runDir, 'checkpoints')).filter((d) => d.startsWith('step-')).at(-1)!);
  writeFileSync(join(ckpt, 'state.pt'), 'not a torch file');
  const marker = JSON.parse(readFileSync(join(ckpt, 'COMPLETE.json'), 'utf8')) as { files: Record<string, { bytes: number; sha256: string }> };
  marker.files['state.pt'] = { bytes: 16, sha256: createHash('sha256').update('not a torch file').digest('hex') };
  writeFileSync(join(ckpt, 'COMPLETE.json'), JSON.stringify(marker));
  const s = cliProcess(['serve', '--resume', runDir, '--trainer', 'pytorch', '--python', python]);
  assert.ok(await until(() => lastState(runDir)?.state === 'failed', 120_000), `${s.out()}\nlast state: ${JSON.stringify(lastState(runDir))}`);
  assert.match(lastState(runDir)!.reason ?? '', /^could not resume: .*state\.pt: cannot load it/);
  s.p.kill('SIGINT');
  await s.code;
});
