import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Hub } from '../src/hub/hub';
import { RunManager, type ManagedRun } from '../src/supervisor/runManager';
import { CommandHandlers, parseRatio, parseThreshold, type PickItem, type Ui } from '../src/supervisor/commandHandlers';
import { foldRun } from '../src/viewmodel/runModel';
import { Throttle } from '../src/common/throttle';
import { readJsonl } from '../src/runfolder/eventLog';
import { EXIT_FILE, HUB_DISCOVERY_FILE, latestCheckpoint, PID_FILE } from '../src/runfolder/runFiles';
import type { Ack, TrainerMessage } from '../src/protocol/messages';
import { tempDir, until, sleep } from './helpers/tmp';

const cli = join(import.meta.dirname, '../dist/cli.js');
const fastConfig = (dir: string, steps = 100000) => {
  const file = join(dir, 'quick.srlora.json');
  writeFileSync(file, JSON.stringify({ model: { kind: 'mlp' }, steps, evalEvery: 1000, checkpointEvery: 0, importanceEvery: 5 }));
  return file;
};

/** A fake of the few vscode.window calls the commands use: scripted answers, recorded messages. */
class FakeUi implements Ui {
  infos: string[] = [];
  errors: string[] = [];
  inputs: string[] = [];
  picks: ((items: PickItem[]) => PickItem[] | undefined)[] = [];
  confirms: boolean[] = [];
  prompts: { value: string; prompt: string; validate: (t: string) => string | null }[] = [];
  async inputBox(o: { title: string; prompt: string; value: string; validate: (t: string) => string | null }) { this.prompts.push(o); return this.inputs.shift(); }
  async pick(items: PickItem[]) { return this.picks.shift()?.(items)?.[0]; }
  async pickMany(items: PickItem[]) { return this.picks.shift()?.(items); }
  info(m: string) { this.infos.push(m); }
  async error(m: string) { this.errors.push(m); return undefined; }
  async confirm() { return this.confirms.shift() ?? false; }
}

async function setup(runsDir = join(tempDir(), 'runs')) {
  const hub = await Hub.start({ heartbeatMs: 60_000 });
  const runs = new RunManager({ runsDir, hub, cliPath: cli, nodePath: process.execPath, graceMs: 4000 });
  const ui = new FakeUi();
  let active: string | undefined;
  const handlers = new CommandHandlers(runs, ui, () => active);
  return { hub, runs, ui, handlers, runsDir, setActive: (id?: string) => { active = id; } };
}

const acksOf = (run: ManagedRun) => readJsonl<TrainerMessage>(join(run.dir, 'events.jsonl')).events.filter((m): m is Ack => m.type === 'ack');
const appliedOrRejected = (run: ManagedRun, id: string | null) => acksOf(run).find((a) => a.commandId === id && a.status !== 'received');

test('threshold and ratio inputs: "off", numbers, and clear errors', () => {
  assert.deepEqual(parseThreshold('off'), { ok: true, value: null });
  assert.deepEqual(parseThreshold(' 0.75 '), { ok: true, value: 0.75 });
  assert.equal(parseThreshold('-1').ok, false);
  assert.equal(parseThreshold('abc').ok, false);
  assert.deepEqual(parseRatio('0.25'), { ok: true, value: 0.25 });
  assert.equal(parseRatio('0').ok, false);
  assert.equal(parseRatio('1.5').ok, false);
});

test('the run model folds a run\'s messages: state, step, loss, settings, directions used', () => {
  const base = { v: 1 as const, runId: 'r', time: 1 };
  const m = foldRun('r', [
    { ...base, seq: 1, type: 'hello', protocol: { major: 1, minor: 0 }, method: 'srlora', backend: { name: 'wasm', device: 'cpu' }, totalSteps: 10, config: { fusionRatio: 0.5, importanceEvery: 10, evalEvery: 100, learningRate: 0.003, fusionThreshold: null }, layers: [{ name: 'a', shape: [4, 4], r: 2, rTarget: 4 }] },
    { ...base, seq: 2, type: 'state', state: 'running', step: 0 },
    { ...base, seq: 3, type: 'metrics', rows: [{ step: 1, loss: 2, lr: 0.003, examplesPerSec: 10 }, { step: 2, loss: 1.5, lr: 0.003, examplesPerSec: 12 }] },
    { ...base, seq: 4, type: 'recomposition', step: 2, trigger: 'forced', rule: { kind: 'ratio', fusionRatio: 0.5 }, layers: [{ name: 'a', slots: [1], scores: [0], oldDirections: [1], newDirections: [2], exhausted: false, deltaNorm: 1, preservationError: 0, p: 3 }], outputChange: null },
    { ...base, seq: 5, type: 'ack', commandId: 'c1', status: 'applied', step: 2, settings: { fusionThreshold: 1, fusionRatio: 0.5, learningRate: 0.003, importanceEvery: 10, evalEvery: 100 } },
    { ...base, seq: 5, type: 'state', state: 'failed', step: 2 }, // a duplicate seq is ignored
  ]);
  assert.equal(m.state, 'running');
  assert.equal(m.step, 2);
  assert.equal(m.loss, 1.5);
  assert.equal(m.layers[0].p, 3);
  assert.equal(m.settings?.fusionThreshold, 1);
  assert.equal(m.recompositions, 1);
  assert.equal(m.pytorch, false, 'a wasm run is the built-in trainer\'s');
});

test('throttle: a burst of schedules runs the function once, soon after', async () => {
  let n = 0;
  const t = new Throttle(50, () => n++);
  for (let i = 0; i < 100; i++) t.schedule();
  await sleep(120);
  assert.equal(n, 1);
  t.schedule();
  await sleep(120);
  assert.equal(n, 2);
});

test('commands need a run and say so clearly when there is none', async () => {
  const { handlers, ui, hub } = await setup();
  try {
    assert.equal(handlers.pause(), null);
    assert.match(ui.infos[0], /No active SRLoRA run/);
    assert.equal(await handlers.setThreshold(), null);
    assert.equal(await handlers.deleteRun('nope'), false);
    assert.match(ui.infos.at(-1)!, /No SRLoRA run is selected/);
  } finally { await hub.close(); }
});

test('integration: the real trainer, paused, τ changed, recomposed on picked layers, stopped — read back from the run folder', async () => {
  const dir = tempDir();
  const { runs, handlers, ui, hub, setActive } = await setup();
  try {
    const run = await runs.start({ configFile: fastConfig(dir), cwd: dir });
    setActive(run.runId);
    assert.ok(existsSync(join(run.dir, HUB_DISCOVERY_FILE)) && existsSync(join(run.dir, PID_FILE)));
    assert.ok(await until(() => run.model.step >= 3, 30_000), `trainer running; ${run.handle?.stderrTail().join('\n')}`);
    const pauseId = handlers.pause();
    assert.ok(await until(() => run.model.state === 'paused', 10_000));
    const pausedAt = appliedOrRejected(run, pauseId)!;
    assert.equal(pausedAt.status, 'applied');
    assert.equal(pausedAt.step, run.model.step);

    ui.inputs.push('0.8');
    const setId = await handlers.setThreshold();
    assert.match(ui.prompts[0].prompt, /now off/, 'the input box shows the current value');
    assert.equal(ui.prompts[0].validate('-2') !== null, true, 'the input box validates the range');
    assert.ok(await until(() => run.model.settings?.fusionThreshold === 0.8, 10_000));
    assert.equal(appliedOrRejected(run, setId)?.status, 'applied');

    ui.picks.push((items) => items.filter((i) => i.id === 'fc0' || i.id === 'fc2'));
    const recId = await handlers.recompose();
    assert.ok(await until(() => appliedOrRejected(run, recId) !== undefined, 10_000));
    const rec = readJsonl<TrainerMessage>(join(run.dir, 'events.jsonl')).events.find((m) => m.type === 'recomposition' && m.commandId === recId);
    assert.ok(rec && rec.type === 'recomposition');
    assert.deepEqual(rec.layers.map((l) => l.name), ['fc0', 'fc2']);
    assert.deepEqual(rec.rule, { kind: 'threshold', fusionThreshold: 0.8 });

    // Export Model before any checkpoint says so; after a checkpoint it exports that step (the run goes on).
    assert.equal(await handlers.exportModel(), null);
    assert.match(ui.infos.at(-1) ?? '', /has no checkpoint yet: "SRLoRA: Checkpoint" writes one/);
    handlers.checkpoint();
    assert.ok(await until(() => latestCheckpoint(run.dir) !== null, 10_000));
    const exported = await handlers.exportModel();
    assert.equal(exported?.step, Number(/step-(\d+)$/.exec(latestCheckpoint(run.dir)!)![1]));
    const from = (JSON.parse(readFileSync(join(exported!.dir, 'directions.json'), 'utf8')) as { from: { step: number } }).from;
    assert.equal(from.step, exported?.step);
    assert.ok(existsSync(join(exported!.dir, 'merged.safetensors')));

    const resumeId = handlers.resume();
    const twice = handlers.resume(); // a second resume, applied after the first: the trainer says why not
    assert.ok(await until(() => appliedOrRejected(run, twice) !== undefined, 10_000));
    assert.equal(appliedOrRejected(run, resumeId)?.status, 'applied');
    assert.equal(appliedOrRejected(run, twice)?.status, 'rejected');
    assert.match(appliedOrRejected(run, twice)?.reason ?? '', /not paused/);
    assert.ok(await until(() => run.model.state === 'running', 10_000));
    assert.ok(await handlers.stop());
    assert.ok(await until(() => run.model.state === 'finished', 15_000), run.model.state);
    assert.equal(run.handle?.exitInfo?.code, 0);
    assert.ok(existsSync(join(run.dir, 'export/merged.safetensors')));
    assert.deepEqual(await handlers.exportModel(), { dir: join(run.dir, 'export'), step: null }, 'a finished run: its own export');

    // Continue it from its checkpoint: the same run, its log going on, until stopped again.
    const stoppedAt = run.model.step;
    assert.equal(await handlers.continueRun(undefined, async () => assert.fail('a built-in run needs no Python')), run);
    assert.ok(await until(() => run.model.state === 'running' && run.model.step > stoppedAt + 2, 30_000), `${run.model.state} ${run.model.step}`);
    assert.equal(run.model.stateReason, `resumed at step ${stoppedAt}`);
    assert.equal(await handlers.continueRun(undefined, async () => undefined), null);
    assert.match(ui.infos.at(-1) ?? '', /is running: it has not stopped/);
    assert.ok(await handlers.stop());
    assert.ok(await until(() => run.model.state === 'finished', 15_000), run.model.state);
    const log = readJsonl<TrainerMessage>(join(run.dir, 'events.jsonl')).events;
    assert.deepEqual(log.map((m) => m.seq), log.map((_, i) => i + 1), 'one log, its seq continued');
    assert.equal(log.filter((m) => m.type === 'hello').length, 1);
    assert.ok(await until(() => readJsonl<TrainerMessage>(join(run.dir, 'hub-events.jsonl')).events.length === log.length, 5000), 'the hub has all of it');
  } finally {
    await runs.dispose('stop');
    await hub.close();
  }
});

test('a trainer killed with SIGKILL is marked failed within a second, with how it ended', async () => {
  const dir = tempDir();
  const { runs, hub, ui } = await setup();
  const failures: string[] = [];
  runs.on('failed', (_id, m) => failures.push(m));
  try {
    const run = await runs.start({ configFile: fastConfig(dir), cwd: dir });
    assert.ok(await until(() => run.model.step >= 2, 30_000));
    const t0 = Date.now();
    process.kill(run.handle!.pid, 'SIGKILL');
    assert.ok(await until(() => run.model.state === 'failed', 1000), 'failed within a second');
    assert.ok(Date.now() - t0 <= 1000);
    assert.equal(run.exit?.signal, 'SIGKILL');
    assert.match(run.model.stateReason ?? '', /killed by SIGKILL/);
    assert.match(failures[0], /SIGKILL/);
    // The next window lists it as failed, with the saved reason.
    const again = new RunManager({ runsDir: runs.runsDir, hub, cliPath: cli });
    again.scan();
    assert.equal(again.get(run.runId).model.state, 'failed');
    assert.ok(existsSync(join(run.dir, EXIT_FILE)));
    const handlers = new CommandHandlers(again, ui, () => run.runId);
    assert.equal(await handlers.exportModel(), null);
    assert.match(ui.infos.at(-1) ?? '', /has no checkpoint to export from/);
    assert.equal(await handlers.continueRun(undefined, async () => undefined), null);
    assert.match(ui.infos.at(-1) ?? '', /has no checkpoint to continue from/);
  } finally {
    await runs.dispose('stop');
    await hub.close();
  }
});

test('a trainer that cannot start is a failed run with the trainer\'s own error', async () => {
  const dir = tempDir();
  const hub = await Hub.start({ heartbeatMs: 60_000 });
  // It also shows the env contract a trainer gets: its run folder and where the built-in data and models are.
  const runs = new RunManager({ runsDir: join(dir, 'runs'), hub, cliPath: cli, assetsDir: '/opt/srlora-assets',
    trainerCommand: 'echo "$SRLORA_ASSETS $SRLORA_RUN_DIR" > env.txt; echo "ModuleNotFoundError: No module named torch" >&2; exit 3' });
  try {
    const run = await runs.start({ cwd: dir });
    assert.ok(await until(() => run.model.state === 'failed', 5000));
    assert.equal(run.exit?.code, 3);
    assert.match(run.model.stateReason ?? '', /exited with code 3: ModuleNotFoundError: No module named torch/);
    assert.equal(readFileSync(join(dir, 'env.txt'), 'utf8'), `/opt/srlora-assets ${run.dir}\n`);
  } finally { await hub.close(); }
});

test('after a window reload a still-running trainer is found again and reattached with no event lost', async () => {
  const dir = tempDir();
  const runsDir = join(dir, 'runs');
  const first = await setup(runsDir);
  const run = await first.runs.start({ configFile: fastConfig(dir, 400), cwd: dir });
  assert.ok(await until(() => run.model.step >= 3, 30_000));
  await first.runs.dispose('detach'); // window closes with onWindowClose = detach
  await first.hub.close();
  await sleep(300); // the trainer keeps training with no hub
  const second = await setup(runsDir);
  try {
    second.runs.scan();
    const again = second.runs.get(run.runId);
    assert.ok(again.handle?.alive, 'reattached to the live trainer');
    assert.ok(await until(() => second.hub.run(run.runId)?.trainer !== null, 15_000), 'the trainer reconnected to the new hub');
    await second.runs.stop(run.runId); // the state below says how it ended
    assert.ok(await until(() => again.model.state === 'finished' || again.model.state === 'failed', 15_000));
    assert.equal(again.model.state, 'finished');
    const trainerLog = readJsonl<TrainerMessage>(join(run.dir, 'events.jsonl')).events.map((m) => m.seq);
    const hubLog = readJsonl<TrainerMessage>(join(run.dir, 'hub-events.jsonl')).events.map((m) => m.seq);
    assert.deepEqual(hubLog, trainerLog, 'the hub logs hold every event, once, in order');
    assert.deepEqual(trainerLog, trainerLog.map((_, i) => i + 1));
  } finally {
    await second.runs.dispose('stop');
    await second.hub.close();
  }
});

test('past runs are listed from their folders; delete asks first and refuses a running run', async () => {
  const dir = tempDir();
  const runsDir = join(dir, 'runs');
  mkdirSync(join(runsDir, 'old-run'), { recursive: true });
  const hello = { v: 1, type: 'hello', runId: 'old-run', seq: 1, time: 1, protocol: { major: 1, minor: 0 }, method: 'lora', backend: { name: 'cpu', device: 'cpu' }, totalSteps: 5, config: {}, layers: [] };
  const done = { v: 1, type: 'state', runId: 'old-run', seq: 2, time: 2, state: 'finished', step: 5 };
  writeFileSync(join(runsDir, 'old-run', 'events.jsonl'), `${JSON.stringify(hello)}\n${JSON.stringify(done)}\n`);
  const { runs, handlers, ui, hub } = await setup(runsDir);
  try {
    runs.scan();
    assert.equal(runs.get('old-run').model.state, 'finished');
    assert.ok(hub.run('old-run'), 'its dashboard can replay it from the hub');
    ui.confirms.push(false);
    assert.equal(await handlers.deleteRun('old-run'), false);
    assert.ok(existsSync(join(runsDir, 'old-run')));
    ui.confirms.push(true);
    assert.equal(await handlers.deleteRun('old-run'), true);
    assert.equal(existsSync(join(runsDir, 'old-run')), false);
  } finally { await hub.close(); }
});
