import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync, mkdirSync, statSync, symlinkSync, appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { Hub } from '../src/hub/hub';
import { RunManager, type ManagedRun } from '../src/supervisor/runManager';
import { CommandHandlers, parseRatio, parseThreshold, type PickItem, type Ui } from '../src/supervisor/commandHandlers';
import { applyMessage, emptyRun, foldRun, isActive as isActiveState, type RunModel } from '../src/viewmodel/runModel';
import { Throttle } from '../src/common/throttle';
import { readJsonl } from '../src/runfolder/eventLog';
import { HUB_DISCOVERY_FILE, latestCheckpoint, PID_FILE } from '../src/runfolder/runFiles';
import { processIdentity, readPidFile, sameProcess, signalTarget, writePidFile } from '../src/runfolder/pidfile';
import { acquireOwner, OWNER_FILE, readOwner } from '../src/runfolder/lock';
import { LogFollower, readSummary, SUMMARY_FILE } from '../src/runfolder/summary';
import { listRunFolders, runIdOf } from '../src/runfolder/scan';
import { PidHandle } from '../src/supervisor/trainerProcess';
import { appendSupervisorState, exitRecord, judgeEnding } from '../src/supervisor/supervisorRecord';
import type { Ack, State, TrainerMessage } from '../src/protocol/messages';
import { tempDir, until, sleep } from './helpers/tmp';
import { lastState, logOf } from './helpers/runLog';
import { assertSameState } from './helpers/views';

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

const mode = (file: string) => statSync(file).mode & 0o777;

function sleeper(): ChildProcess {
  const p = spawn('sleep', ['300'], { stdio: 'ignore' });
  after(() => { try { p.kill('SIGKILL'); } catch { /* gone */ } });
  return p;
}
/** A process this file spawned, killed when its test ends however it ends (a failed assertion included). */
function tracked<P extends ChildProcess>(p: P): P {
  after(() => { if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL'); });
  return p;
}
const alive = (pid: number) => { try { process.kill(pid, 0); return true; } catch { return false; } };

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
    assert.ok(await until(() => run.model.state === 'paused', 30_000));
    const pausedAt = appliedOrRejected(run, pauseId)!;
    assert.equal(pausedAt.status, 'applied');
    assert.equal(pausedAt.step, run.model.step);

    ui.inputs.push('0.8');
    const setId = await handlers.setThreshold();
    assert.match(ui.prompts[0].prompt, /now off/, 'the input box shows the current value');
    assert.equal(ui.prompts[0].validate('-2') !== null, true, 'the input box validates the range');
    assert.ok(await until(() => run.model.settings?.fusionThreshold === 0.8, 30_000));
    assert.equal(appliedOrRejected(run, setId)?.status, 'applied');

    ui.picks.push((items) => items.filter((i) => i.id === 'fc0' || i.id === 'fc2'));
    const recId = await handlers.recompose();
    assert.ok(await until(() => appliedOrRejected(run, recId) !== undefined, 30_000));
    const rec = readJsonl<TrainerMessage>(join(run.dir, 'events.jsonl')).events.find((m) => m.type === 'recomposition' && m.commandId === recId);
    assert.ok(rec && rec.type === 'recomposition');
    assert.deepEqual(rec.layers.map((l) => l.name), ['fc0', 'fc2']);
    assert.deepEqual(rec.rule, { kind: 'threshold', fusionThreshold: 0.8 });

    // Export Model before any checkpoint says so; after a checkpoint it exports that step (the run goes on).
    assert.equal(await handlers.exportModel(), null);
    assert.match(ui.infos.at(-1) ?? '', /has no checkpoint yet: "SRLoRA: Checkpoint" writes one/);
    handlers.checkpoint();
    assert.ok(await until(() => latestCheckpoint(run.dir) !== null, 30_000));
    const exported = await handlers.exportModel();
    assert.equal(exported?.step, Number(/step-(\d+)$/.exec(latestCheckpoint(run.dir)!)![1]));
    const from = (JSON.parse(readFileSync(join(exported!.dir, 'directions.json'), 'utf8')) as { from: { step: number } }).from;
    assert.equal(from.step, exported?.step);
    assert.ok(existsSync(join(exported!.dir, 'merged.safetensors')));

    const resumeId = handlers.resume();
    const twice = handlers.resume(); // a second resume, applied after the first: the trainer says why not
    assert.ok(await until(() => appliedOrRejected(run, twice) !== undefined, 30_000));
    assert.equal(appliedOrRejected(run, resumeId)?.status, 'applied');
    assert.equal(appliedOrRejected(run, twice)?.status, 'rejected');
    assert.match(appliedOrRejected(run, twice)?.reason ?? '', /not paused/);
    assert.ok(await until(() => run.model.state === 'running', 30_000));
    assert.ok(await handlers.stop());
    assert.ok(await until(() => run.model.state === 'stopped', 15_000), run.model.state);
    assert.equal(lastState(run.dir)?.origin ?? 'trainer', 'trainer', 'the trainer said it stopped: no supervisor record');
    await assertSameState(runs, hub, run.runId, 'stopped');

    // Continue it from its checkpoint: the same run, its log going on, until stopped again.
    const stoppedAt = run.model.step;
    assert.equal(await handlers.continueRun(undefined, async () => assert.fail('a built-in run needs no Python')), run);
    assert.ok(await until(() => run.model.state === 'running' && run.model.step > stoppedAt + 2, 30_000), `${run.model.state} ${run.model.step}`);
    assert.ok(run.model.rewinds >= 1 || run.model.stateReason === `resumed at step ${stoppedAt}`);
    assert.equal(await handlers.continueRun(undefined, async () => undefined), null);
    assert.match(ui.infos.at(-1) ?? '', /is running: it has not stopped/);
    assert.ok(await handlers.stop());
    assert.ok(await until(() => run.model.state === 'stopped', 15_000), run.model.state);
    const log = readJsonl<TrainerMessage>(join(run.dir, 'events.jsonl')).events;
    assert.deepEqual(log.map((m) => m.seq), log.map((_, i) => i + 1), 'one log, its seq continued');
    assert.equal(log.filter((m) => m.type === 'hello').length, 1);
    await assertSameState(runs, hub, run.runId, 'stopped');
  } finally {
    await runs.dispose('stop');
    await hub.close();
  }
});

test('kill -9 of the built-in trainer: a supervisor record says failed, the same in the tree, the hub\'s list and the page', async () => {
  const dir = tempDir();
  const { runs, hub, ui } = await setup();
  const failures: string[] = [];
  runs.on('failed', (_id, m) => failures.push(m));
  try {
    const run = await runs.start({ configFile: fastConfig(dir), cwd: dir });
    assert.ok(await until(() => run.model.step >= 2, 30_000));
    process.kill(run.handle!.pid, 'SIGKILL');
    assert.ok(await until(() => run.model.state === 'failed', 5000), 'failed');
    const record = lastState(run.dir)!;
    assert.equal(record.origin, 'supervisor');
    assert.equal(record.state, 'failed');
    assert.equal(record.exit?.signal, 'SIGKILL');
    assert.equal(record.seq, logOf(run.dir).length, 'the next seq, the log\'s last line');
    assert.match(record.reason ?? '', /killed by SIGKILL/);
    assert.equal(run.model.exit?.signal, 'SIGKILL', 'the tree\'s model is the log\'s fold');
    assert.match(failures[0], /SIGKILL/);
    await assertSameState(runs, hub, run.runId, 'failed');
    assert.equal(existsSync(join(run.dir, OWNER_FILE)), false, 'a run that ended has no owner');
    // The next window lists it as failed, from its log alone.
    const hub2 = await Hub.start({ heartbeatMs: 60_000 });
    const again = new RunManager({ runsDir: runs.runsDir, hub: hub2, cliPath: cli });
    try {
      again.scan();
      await assertSameState(again, hub2, run.runId, 'failed');
      assert.equal(logOf(run.dir).filter((m) => m.type === 'state' && m.origin === 'supervisor').length, 1, 'recorded once');
      const handlers = new CommandHandlers(again, ui, () => run.runId);
      assert.equal(await handlers.exportModel(), null);
      assert.match(ui.infos.at(-1) ?? '', /has no checkpoint to export from/);
      assert.equal(await handlers.continueRun(undefined, async () => undefined), null);
      assert.match(ui.infos.at(-1) ?? '', /has no checkpoint to continue from/);
    } finally { await again.dispose('stop'); await hub2.close(); }
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
    assert.equal(run.model.exit?.code, 3);
    assert.deepEqual(run.model.exit?.stderrTail, ['ModuleNotFoundError: No module named torch']);
    assert.match(run.model.stateReason ?? '', /exited with code 3 without a final state: ModuleNotFoundError: No module named torch/);
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
    assert.ok(again.owned, 'the new window owns it');
    await second.runs.stop(run.runId); // the state below says how it ended
    assert.ok(await until(() => !isActiveState(again.model.state), 15_000));
    assert.equal(again.model.state, 'stopped');
    await assertSameState(second.runs, second.hub, run.runId, 'stopped');
    const trainerLog = readJsonl<TrainerMessage>(join(run.dir, 'events.jsonl')).events.map((m) => m.seq);
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

// ---------------------------------------------------------------- issue 12 items 1-2, issue 13 items 3, 4, 6, 10, 15

/** A fake trainer that ignores SIGTERM and never writes a state: only the supervisor can say how it ended. */
const stubborn = 'trap "" TERM INT; echo "training…" >&2; while :; do sleep 0.1; done';
/** The same, once it has said hello (the run started): seq 1 of its log. */
const stubbornStarted = `printf '%s\\n' "{\\"v\\":1,\\"type\\":\\"hello\\",\\"runId\\":\\"$(basename "$SRLORA_RUN_DIR")\\",\\"seq\\":1,\\"time\\":1,\\"protocol\\":{\\"major\\":1,\\"minor\\":1},\\"method\\":\\"lora\\",\\"backend\\":{\\"name\\":\\"cpu\\",\\"device\\":\\"cpu\\"},\\"totalSteps\\":50,\\"config\\":{},\\"layers\\":[]}" > "$SRLORA_RUN_DIR/events.jsonl"; ${stubborn}`;

test('a window reload (dispose "stop") interrupts the built-in trainer: interrupted, never a green "finished"', async () => {
  const dir = tempDir();
  const { runs, hub } = await setup();
  const run = await runs.start({ configFile: fastConfig(dir), cwd: dir });
  try {
    assert.ok(await until(() => run.model.step >= 3, 30_000));
    await runs.dispose('stop');
    assert.equal(run.model.state, 'interrupted', run.model.stateReason ?? '');
    assert.equal(lastState(run.dir)?.state, 'interrupted');
    const hub2 = await Hub.start({ heartbeatMs: 60_000 });
    const again = new RunManager({ runsDir: runs.runsDir, hub: hub2, cliPath: cli });
    try {
      again.scan();
      await assertSameState(again, hub2, run.runId, 'interrupted');
    } finally { await again.dispose('stop'); await hub2.close(); }
  } finally { await hub.close(); }
});

/** A window reload (dispose 'stop') of a run whose trainer ignores SIGTERM (`trainerCommand`), once it is running:
 * the trainer is killed after the grace; returns the run and the ids the manager removed. */
async function reloadOverStubborn(trainerCommand: string): Promise<{ run: ManagedRun; removed: string[] }> {
  const dir = tempDir();
  const hub = await Hub.start({ heartbeatMs: 60_000 });
  const runs = new RunManager({ runsDir: join(dir, 'runs'), hub, cliPath: cli, trainerCommand, graceMs: 300 });
  const removed: string[] = [];
  runs.on('removed', (id) => removed.push(id));
  const run = await runs.start({ cwd: dir });
  try {
    assert.ok(await until(() => run.handle!.stderrTail().length > 0, 5000));
    const pid = run.handle!.pid;
    await runs.dispose('stop', 'the window reloaded');
    assert.equal(alive(pid), false);
    return { run, removed };
  } finally { await hub.close(); }
}

test('a trainer that ignores SIGTERM at a window reload is killed and recorded interrupted by the supervisor', async () => {
  const { run } = await reloadOverStubborn(stubbornStarted);
  const record = lastState(run.dir)!;
  assert.deepEqual({ state: record.state, origin: record.origin, signal: record.exit?.signal, seq: record.seq }, { state: 'interrupted', origin: 'supervisor', signal: 'SIGKILL', seq: 2 });
  assert.match(record.reason ?? '', /^the window reloaded; the trainer was killed by SIGKILL/);
  assert.deepEqual(record.exit?.stderrTail, ['training…']);
  assert.equal(run.model.state, 'interrupted');
});

test('a window reload before the trainer said hello (still loading; it ignores SIGTERM and is killed): the new run\'s folder is removed, nothing recorded', async () => {
  // Before (FINDINGS F1): a folder with only the supervisor's "interrupted" line — listed resumable, with nothing to resume.
  const { run, removed } = await reloadOverStubborn(stubborn);
  assert.equal(existsSync(run.dir), false);
  assert.deepEqual(removed, [run.runId]);
});

test('a trainer that exits non-zero saying "disk full" is failed with "disk full"', async () => {
  const dir = tempDir();
  const hub = await Hub.start({ heartbeatMs: 60_000 });
  const runs = new RunManager({ runsDir: join(dir, 'runs'), hub, cliPath: cli, trainerCommand: 'echo "srlora: disk full: $SRLORA_RUN_DIR/events.jsonl" >&2; exit 1' });
  try {
    const run = await runs.start({ cwd: dir });
    assert.ok(await until(() => run.model.state === 'failed', 5000));
    assert.match(run.model.stateReason ?? '', /^disk full: .*events\.jsonl \(the trainer exited with code 1\)$/);
    await assertSameState(runs, hub, run.runId, 'failed');
  } finally { await runs.dispose('stop'); await hub.close(); }
});

test('process identity: a live unrelated process named by a stale pid is never signalled; pid ≤ 1 is refused', async () => {
  const dir = tempDir();
  const p = sleeper();
  await new Promise((r) => p.once('spawn', r));
  const real = processIdentity(p.pid!)!;
  assert.ok(real && sameProcess(real));
  assert.equal(processIdentity(1), null, 'pid 1 is never an identity');
  assert.equal(processIdentity(0), null);
  const stale = { ...real, startTime: real.startTime - 1 };
  assert.equal(sameProcess(stale), false);
  assert.equal(signalTarget(stale, true), null, 'a stale record: nothing to signal');
  assert.equal(signalTarget(real, true), p.pid, 'a process not leading its own group: the pid alone, never a group');
  const handle = new PidHandle(stale, 20);
  assert.equal(handle.signal('SIGTERM'), false);
  await sleep(100);
  assert.equal(handle.alive, false, 'a pid whose identity does not match is gone, for us');
  assert.ok(alive(p.pid!), 'the unrelated process was not signalled');
  writeFileSync(join(dir, 'one.pid'), JSON.stringify({ ...real, pid: 1 }));
  assert.match((readPidFile(join(dir, 'one.pid')) as { error: string }).error, /pid 1 refused/);
  writeFileSync(join(dir, 'bare.pid'), String(p.pid));
  assert.equal(readPidFile(join(dir, 'bare.pid')).ok, false, 'a bare pid proves nothing');
  writePidFile(join(dir, 'ok.pid'), real);
  assert.equal(mode(join(dir, 'ok.pid')), 0o600);
  assert.deepEqual(readPidFile(join(dir, 'ok.pid')), { ok: true, id: real });
});

test('a stale trainer.pid naming a live unrelated process: the run is recorded failed, the process never adopted nor signalled', async () => {
  const dir = tempDir();
  const runsDir = join(dir, 'runs');
  const p = sleeper();
  await new Promise((r) => p.once('spawn', r));
  const runDir = join(runsDir, 'reused');
  mkdirSync(runDir, { recursive: true });
  const hello = { v: 1, type: 'hello', runId: 'reused', seq: 1, time: 1, protocol: { major: 1, minor: 1 }, method: 'lora', backend: { name: 'cpu', device: 'cpu' }, totalSteps: 50, config: {}, layers: [] };
  const running = { v: 1, type: 'state', runId: 'reused', seq: 2, time: 2, state: 'running', step: 7 };
  writeFileSync(join(runDir, 'events.jsonl'), `${JSON.stringify(hello)}\n${JSON.stringify(running)}\n{"v":1,"type":"metr`); // torn by the crash
  writeFileSync(join(runDir, PID_FILE), JSON.stringify({ ...processIdentity(p.pid!)!, startTime: 12345 })); // its pid, reused
  const { runs, hub } = await setup(runsDir);
  try {
    runs.scan();
    const run = runs.get('reused');
    assert.equal(run.handle, null, 'not adopted');
    await assertSameState(runs, hub, 'reused', 'failed');
    assert.match(run.model.stateReason ?? '', new RegExp(`the trainer process \\(pid ${p.pid}\\) is gone`));
    assert.equal(run.model.step, 7);
    await runs.dispose('stop');
    assert.ok(alive(p.pid!), 'the unrelated process is alive: never signalled');
    const log = readFileSync(join(runDir, 'events.jsonl'), 'utf8');
    assert.ok(log.endsWith('\n') && log.split('\n').filter(Boolean).every((l) => JSON.parse(l)), 'the torn line was cut, the record is a line of its own');
    assert.deepEqual(logOf(runDir).map((m) => m.seq), [1, 2, 3]);
  } finally { await hub.close(); }
});

test('secrets and folders are private: runs folder and run folder 0700, hub.json, trainer.pid and owner.json 0600', async () => {
  const dir = tempDir();
  const { runs, hub, runsDir } = await setup(join(dir, 'nested', 'runs'));
  try {
    const run = await runs.start({ configFile: fastConfig(dir), cwd: dir });
    assert.equal(mode(runsDir), 0o700);
    assert.equal(mode(run.dir), 0o700);
    for (const f of [HUB_DISCOVERY_FILE, PID_FILE, OWNER_FILE]) assert.equal(mode(join(run.dir, f)), 0o600, f);
  } finally { await runs.dispose('stop'); await hub.close(); }
});

test('two supervisors on one runs folder: the second follows the first\'s live run read-only, never rewrites its hub.json, never signals its trainer', async () => {
  const dir = tempDir();
  const runsDir = join(dir, 'runs');
  const a = await setup(runsDir);
  const b = await setup(runsDir);
  try {
    b.runs.watch();
    const run = await a.runs.start({ configFile: fastConfig(dir), cwd: dir });
    assert.ok(await until(() => run.model.step >= 2, 30_000));
    const discovery = readFileSync(join(run.dir, HUB_DISCOVERY_FILE), 'utf8');
    assert.ok(await until(() => b.runs.runs.get(run.runId)?.model.state === 'running', 2000), 'the second sees it within 2 s');
    const seen = b.runs.get(run.runId);
    assert.equal(seen.owned, false);
    assert.equal(seen.handle, null);
    assert.equal(await b.runs.stop(run.runId), null, 'the second cannot stop it');
    b.ui.confirms.push(true);
    await assert.rejects(async () => b.runs.delete(run.runId), /belongs to/);
    assert.ok(await until(() => seen.model.step > run.model.step - 5 && seen.model.step >= 4, 5000), 'it follows the log live');
    await b.runs.dispose('stop'); // its Ctrl+C stops only its own runs
    assert.ok(run.handle?.alive, 'the first\'s trainer runs on');
    assert.equal(readFileSync(join(run.dir, HUB_DISCOVERY_FILE), 'utf8'), discovery, 'hub.json untouched');
    assert.equal(acquireOwner(run.dir, 'probe', 'test').ok, false, 'the lock is still the first\'s, alive');
    assert.equal(readOwner(run.dir)?.pid, process.pid);
    await a.runs.dispose('stop');
    assert.equal(run.model.state, 'interrupted');
  } finally { await a.runs.dispose('stop'); await a.hub.close(); await b.hub.close(); }
});

test('a run whose owner went away and whose trainer then died is taken over and recorded failed by whoever watches (within 5 s)', async () => {
  const dir = tempDir();
  const runsDir = join(dir, 'runs');
  const a = await setup(runsDir);
  const b = await setup(runsDir);
  try {
    const run = await a.runs.start({ configFile: fastConfig(dir), cwd: dir });
    b.runs.watch();
    assert.ok(await until(() => run.model.step >= 2, 30_000));
    const pid = run.handle!.pid;
    await a.runs.dispose('detach'); // the window closed, leaving the trainer running
    assert.ok(await until(() => b.runs.runs.get(run.runId)?.owned === true, 5000), 'the watcher takes the orphaned run');
    process.kill(pid, 'SIGKILL');
    await assertSameState(b.runs, b.hub, run.runId, 'failed', 5000);
    assert.match(b.runs.get(run.runId).model.stateReason ?? '', new RegExp(`the trainer process \\(pid ${pid}\\) is gone`));
  } finally { await b.runs.dispose('stop'); await a.hub.close(); await b.hub.close(); }
});

test('a run started after the watch began (from a terminal) appears within 2 s and streams', async () => {
  const dir = tempDir();
  const runsDir = join(dir, 'runs');
  const { runs, hub } = await setup(runsDir);
  mkdirSync(runsDir, { recursive: true });
  runs.watch();
  const child = tracked(spawn(process.execPath, [cli, 'train', '--no-progress', '--config', fastConfig(dir, 60), '--runs-dir', runsDir], { stdio: 'ignore' }));
  try {
    assert.ok(await until(() => runs.runs.size === 1, 30_000));
    const run = runs.list()[0];
    assert.ok(await until(() => run.model.step >= 2, 30_000), 'its events stream');
    assert.equal(run.owned, false, 'no supervisor started it: nothing here may signal it');
    await assertSameState(runs, hub, run.runId, 'finished', 60_000);
  } finally { child.kill('SIGKILL'); await runs.dispose('stop'); await hub.close(); }
});

test('kill -9 of a run started from a terminal (no supervisor): recorded failed within 5 s by whoever watches, never owned nor signalled', async () => {
  const dir = tempDir();
  const runsDir = join(dir, 'runs');
  const { runs, hub } = await setup(runsDir);
  mkdirSync(runsDir, { recursive: true });
  runs.watch();
  const child = tracked(spawn(process.execPath, [cli, 'train', '--no-progress', '--config', fastConfig(dir, 100000), '--runs-dir', runsDir], { stdio: 'ignore' }));
  try {
    assert.ok(await until(() => runs.runs.size === 1, 30_000));
    const run = runs.list()[0];
    assert.ok(await until(() => run.model.step >= 2, 30_000), 'its events stream');
    const pid = JSON.parse(readFileSync(join(run.dir, 'trainer.pid'), 'utf8')) as { pid: number; selfStarted?: boolean };
    assert.equal(pid.pid, child.pid, 'the trainer recorded its own identity');
    assert.equal(pid.selfStarted, true);
    assert.equal(run.owned, false, 'no supervisor started it: nothing here may signal it');
    child.kill('SIGKILL');
    const t0 = Date.now();
    await assertSameState(runs, hub, run.runId, 'failed', 5_000);
    assert.ok(Date.now() - t0 <= 5_000);
    assert.match(run.model.stateReason ?? '', /gone|killed|without a final state/);
  } finally { child.kill('SIGKILL'); await runs.dispose('stop'); await hub.close(); }
});

test('odd entries in the runs folder are skipped with a warning or listed under the shared run id', async () => {
  const dir = tempDir();
  const runsDir = join(dir, 'runs');
  mkdirSync(runsDir, { recursive: true });
  const names = ['my run', 'ünïcödé', '-leading-dash', 'x'.repeat(200), 'good'];
  for (const n of names) {
    mkdirSync(join(runsDir, n));
    const hello = { v: 1, type: 'hello', runId: runIdOf(n), seq: 1, time: 1, protocol: { major: 1, minor: 1 }, method: 'lora', backend: { name: 'cpu', device: 'cpu' }, totalSteps: 5, config: {}, layers: [] };
    writeFileSync(join(runsDir, n, 'events.jsonl'), `${JSON.stringify(hello)}\n${JSON.stringify({ v: 1, type: 'state', runId: runIdOf(n), seq: 2, time: 2, state: 'finished', step: 5 })}\n`);
  }
  writeFileSync(join(runsDir, 'good', 'exit.json'), '');
  mkdirSync(join(runsDir, 'garbage-exit')); writeFileSync(join(runsDir, 'garbage-exit', 'exit.json'), '{nope');
  symlinkSync(join(dir, 'nowhere'), join(runsDir, 'dangling'));
  mkdirSync(join(runsDir, 'dir-as-log', 'events.jsonl'), { recursive: true });
  writeFileSync(join(runsDir, 'stray.txt'), 'x');
  const listing = listRunFolders(runsDir);
  assert.equal(listing.warnings.length, 2, listing.warnings.join('\n'));
  assert.match(listing.warnings.join('\n'), /"dangling": a dangling symlink/);
  assert.match(listing.warnings.join('\n'), /"dir-as-log": its events.jsonl is not a file/);
  const { runs, hub } = await setup(runsDir);
  const warnings: string[] = [];
  runs.on('log', (level, text) => { if (level === 'warn') warnings.push(text); });
  try {
    runs.scan();
    assert.equal(warnings.length, 2);
    for (const n of names) {
      const id = runIdOf(n);
      assert.match(id, /^[A-Za-z0-9][A-Za-z0-9._:-]*$/);
      assert.ok(id.length <= 128);
      await assertSameState(runs, hub, id, 'finished');
    }
    assert.match(runIdOf('my run'), /^my-run-[0-9a-f]{8}$/);
    assert.match(runIdOf('-leading-dash'), /^leading-dash-[0-9a-f]{8}$/);
    assert.equal(runs.runs.has('garbage-exit'), false, 'a folder with no log is not listed');
  } finally { await runs.dispose('stop'); await hub.close(); }
});

test('summaries: listing folds a log once, caches {byteOffset, lastSeq, model}, and then folds only what was appended', async () => {
  const dir = tempDir();
  const runsDir = join(dir, 'runs');
  const runDir = join(runsDir, 'cached');
  mkdirSync(runDir, { recursive: true });
  const base = { v: 1, runId: 'cached' };
  const lines = [
    { ...base, seq: 1, time: 1, type: 'hello', protocol: { major: 1, minor: 1 }, method: 'lora', backend: { name: 'cpu', device: 'cpu' }, totalSteps: 5000, config: {}, layers: [] },
    { ...base, seq: 2, time: 2, type: 'state', state: 'running', step: 0 },
  ];
  for (let i = 0; i < 2000; i++) lines.push({ ...base, seq: 3 + i, time: 3 + i, type: 'metrics', rows: [{ step: i + 1, loss: 1 / (i + 1), lr: 0.01, examplesPerSec: 100 }] } as never);
  lines.push({ ...base, seq: 2003, time: 9, type: 'state', state: 'stopped', step: 2000 } as never);
  writeFileSync(join(runDir, 'events.jsonl'), lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
  const first = await setup(runsDir);
  first.runs.scan();
  assert.ok(await until(() => first.runs.get('cached').model.state === 'stopped', 5000));
  await first.runs.dispose('stop'); await first.hub.close();
  const cache = readSummary<RunModel>(runDir, (v): v is RunModel => typeof v === 'object')!;
  assert.equal(cache.byteOffset, statSync(join(runDir, 'events.jsonl')).size);
  assert.equal(cache.lastSeq, 2003);
  assert.equal(cache.model.step, 2000);
  // Appended while nobody watched: the next listing folds from the offset, not from the start.
  appendFileSync(join(runDir, 'events.jsonl'), JSON.stringify({ ...base, seq: 2004, time: 10, type: 'log', level: 'info', text: 'x' }) + '\n');
  const f = new LogFollower<RunModel>({ file: join(runDir, 'events.jsonl'), init: () => emptyRun('cached'), apply: (m, v) => applyMessage(m, v as TrainerMessage), lastSeq: (m) => m.lastSeq }, cache);
  const r = f.readSome(1 << 20);
  assert.equal(f.model.lastSeq, 2004);
  assert.equal(f.model.step, 2000, 'the cached fold, carried forward');
  assert.ok(r.changed && !r.more);
  // A cache that does not match its log (the log was replaced) is dropped and the log refolded.
  writeFileSync(join(runDir, 'events.jsonl'), JSON.stringify(lines[0]) + '\n');
  const g = new LogFollower<RunModel>({ file: join(runDir, 'events.jsonl'), init: () => emptyRun('cached'), apply: (m, v) => applyMessage(m, v as TrainerMessage), lastSeq: (m) => m.lastSeq }, cache);
  g.catchUpSync();
  assert.equal(g.model.lastSeq, 1);
  assert.equal(g.model.state, 'starting');
  writeFileSync(join(runDir, SUMMARY_FILE), '{garbage');
  assert.equal(readSummary(runDir, (_v): _v is RunModel => true), null);
});

test('srlora serve: starts with odd entries and exits 0 on Ctrl+C; a runs folder it cannot read is a non-zero exit', async () => {
  const dir = tempDir();
  const runsDir = join(dir, 'runs');
  mkdirSync(runsDir);
  symlinkSync(join(dir, 'nowhere'), join(runsDir, 'dangling'));
  mkdirSync(join(runsDir, 'empty-exit')); writeFileSync(join(runsDir, 'empty-exit', 'exit.json'), '');
  const serve = tracked(spawn(process.execPath, [cli, 'serve', '--runs-dir', runsDir], { stdio: ['ignore', 'pipe', 'pipe'] }));
  let out = '';
  serve.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  serve.stderr.on('data', (d: Buffer) => { out += d.toString(); });
  const code = new Promise<number | null>((r) => serve.once('exit', (c) => r(c)));
  assert.ok(await until(() => /SRLoRA dashboard: http/.test(out), 20_000), out);
  assert.match(out, /dangling/);
  serve.kill('SIGINT');
  assert.equal(await code, 0);
  writeFileSync(join(dir, 'a-file'), 'x');
  const bad = tracked(spawn(process.execPath, [cli, 'serve', '--runs-dir', join(dir, 'a-file')], { stdio: 'ignore' }));
  assert.notEqual(await new Promise<number | null>((r) => bad.once('exit', (c) => r(c))), 0);
});

test('kill -9 of srlora serve mid-run: the trainer finishes while no hub runs; the next supervisor takes the run over and shows it finished everywhere', async () => {
  const dir = tempDir();
  const runsDir = join(dir, 'runs');
  const serve = tracked(spawn(process.execPath, [cli, 'serve', '--runs-dir', runsDir, '--config', fastConfig(dir, 400)], { stdio: ['ignore', 'pipe', 'pipe'] }));
  let out = '';
  serve.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  serve.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  const gone = new Promise((r) => serve.once('exit', r));
  assert.ok(await until(() => /started run (\S+) in (\S+)/.test(out), 20_000), out);
  const [, runId, runDir] = /started run (\S+) in (\S+)/.exec(out)!;
  assert.ok(await until(() => logOf(runDir).some((m) => m.type === 'metrics'), 30_000), out);
  const owner = readOwner(runDir);
  assert.equal(owner?.by, 'srlora serve');
  serve.kill('SIGKILL');
  await gone;
  assert.ok(await until(() => lastState(runDir)?.state === 'finished', 60_000), 'the trainer finished on its own, with no hub');
  const { runs, hub } = await setup(runsDir);
  try {
    runs.scan();
    await assertSameState(runs, hub, runId, 'finished');
    assert.equal(logOf(runDir).filter((m) => m.type === 'state' && m.origin === 'supervisor').length, 0, 'nothing to add: the trainer said it');
  } finally { await runs.dispose('stop'); await hub.close(); }
});

test('kill -9 of srlora serve, then of its trainer: whoever lists the folder next takes the stale lock and records the run failed', async () => {
  const dir = tempDir();
  const runsDir = join(dir, 'runs');
  const serve = tracked(spawn(process.execPath, [cli, 'serve', '--runs-dir', runsDir, '--config', fastConfig(dir)], { stdio: ['ignore', 'pipe', 'pipe'] }));
  let out = '';
  serve.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  const gone = new Promise((r) => serve.once('exit', r));
  assert.ok(await until(() => /started run (\S+) in (\S+)/.test(out), 20_000), out);
  const [, runId, runDir] = /started run (\S+) in (\S+)/.exec(out)!;
  assert.ok(await until(() => logOf(runDir).some((m) => m.type === 'metrics'), 30_000));
  serve.kill('SIGKILL');
  await gone;
  const pid = (readPidFile(join(runDir, PID_FILE)) as { ok: true; id: { pid: number } }).id.pid;
  process.kill(pid, 'SIGKILL');
  assert.ok(await until(() => !alive(pid), 5000));
  const { runs, hub } = await setup(runsDir);
  try {
    runs.scan();
    await assertSameState(runs, hub, runId, 'failed');
    assert.match(runs.get(runId).model.stateReason ?? '', new RegExp(`the trainer process \\(pid ${pid}\\) is gone`));
    assert.equal(existsSync(join(runDir, OWNER_FILE)), false, 'the stale lock was taken, then released');
  } finally { await runs.dispose('stop'); await hub.close(); }
});

test('Continue Run is offered for stopped, interrupted and failed runs only, and needs a complete checkpoint', async () => {
  const dir = tempDir();
  const runsDir = join(dir, 'runs');
  const mk = (id: string, state: string) => {
    mkdirSync(join(runsDir, id, 'checkpoints', 'step-5'), { recursive: true });
    writeFileSync(join(runsDir, id, 'checkpoints', 'step-5', 'state.json'), '{}'); // half-written: no COMPLETE.json
    const hello = { v: 1, type: 'hello', runId: id, seq: 1, time: 1, protocol: { major: 1, minor: 1 }, method: 'lora', backend: { name: 'cpu', device: 'cpu' }, totalSteps: 50, config: {}, layers: [] };
    writeFileSync(join(runsDir, id, 'events.jsonl'), `${JSON.stringify(hello)}\n${JSON.stringify({ v: 1, type: 'state', runId: id, seq: 2, time: 2, state, step: 7 })}\n`);
  };
  mk('done', 'finished');
  mk('cut', 'interrupted');
  const { runs, handlers, ui, hub } = await setup(runsDir);
  try {
    runs.scan();
    assert.equal(await handlers.continueRun('done', async () => undefined), null);
    assert.match(ui.infos.at(-1) ?? '', /is finished: every step is done/);
    assert.equal(await handlers.continueRun('cut', async () => undefined), null);
    assert.match(ui.infos.at(-1) ?? '', /has no complete checkpoint to continue from \(step 5: /);
    await assert.rejects(runs.continueRun('cut'), /no complete checkpoint/);
  } finally { await runs.dispose('stop'); await hub.close(); }
});

test('Ctrl+C of srlora serve interrupts the run it started: interrupted (resumable), never finished', async () => {
  const dir = tempDir();
  const runsDir = join(dir, 'runs');
  const serve = tracked(spawn(process.execPath, [cli, 'serve', '--runs-dir', runsDir, '--config', fastConfig(dir)], { stdio: ['ignore', 'pipe', 'pipe'] }));
  let out = '';
  serve.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  const code = new Promise<number | null>((r) => serve.once('exit', (c) => r(c)));
  assert.ok(await until(() => /started run (\S+) in (\S+)/.test(out), 20_000), out);
  const [, runId, runDir] = /started run (\S+) in (\S+)/.exec(out)!;
  assert.ok(await until(() => logOf(runDir).some((m) => m.type === 'metrics'), 30_000));
  serve.kill('SIGINT');
  assert.equal(await code, 0);
  assert.equal(lastState(runDir)?.state, 'interrupted');
  const { runs, hub } = await setup(runsDir);
  try {
    runs.scan();
    await assertSameState(runs, hub, runId, 'interrupted');
  } finally { await runs.dispose('stop'); await hub.close(); }
});

// ---------------------------------------------------------------- no orphaned trainers (session 4)

/** Runs test/fixtures/leaky-trainer.fixture.ts in a child `node --test`; resolves the trainer's identity once known. */
function leakyTest(mode: 'fail' | 'hang'): { child: ChildProcess; identity: Promise<{ pid: number; pgid: number }>; exited: Promise<void> } {
  const report = join(tempDir(), 'trainer.json');
  const env: NodeJS.ProcessEnv = { ...process.env, LEAK_REPORT: report, LEAK_MODE: mode };
  delete env.NODE_TEST_CONTEXT; // a test file of its own, not a subtest reporting to this runner
  const child = spawn(process.execPath, ['--import', 'tsx', '--test', join(import.meta.dirname, 'fixtures/leaky-trainer.fixture.ts')], { env, stdio: 'ignore' });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  after(() => { try { child.kill('SIGKILL'); } catch { /* gone */ } });
  const identity = (async () => {
    assert.ok(await until(() => existsSync(report) && readFileSync(report, 'utf8').length > 0, 60_000), 'the fixture started its trainer');
    return JSON.parse(readFileSync(report, 'utf8')) as { pid: number; pgid: number };
  })();
  return { child, identity, exited };
}
const groupAlive = (pgid: number) => { try { process.kill(-pgid, 0); return true; } catch { return false; } };
/** Ends a group this test file's fixture left (so that a failing check does not leave it running either). */
const reap = (pgid: number) => { try { process.kill(-pgid, 'SIGKILL'); } catch { /* gone */ } };

test('a test that fails after starting a trainer leaves no process of it behind (its temp folder\'s teardown ends the group)', async () => {
  const { identity, exited, child } = leakyTest('fail');
  const id = await identity;
  try {
    // Before the fix the test process never ended (the trainer's pipes held it) and, once killed, left the trainer
    // running with ppid 1. Now the failing test's teardown kills the trainer's process group, so the file ends.
    const ended = await Promise.race([exited.then(() => true), sleep(30_000).then(() => false)]);
    if (!ended) child.kill('SIGKILL');
    await until(() => !groupAlive(id.pgid), 5000);
    assert.equal(groupAlive(id.pgid), false, 'the trainer (a process group ignoring SIGTERM) is gone');
    assert.ok(ended, 'the failing test file ended on its own');
  } finally { reap(id.pgid); }
});

test('a test process interrupted (SIGTERM, SIGINT: a timeout, Ctrl+C) while its trainer runs takes the trainer with it', async () => {
  const { identity, exited, child } = leakyTest('hang');
  const id = await identity;
  try {
    child.kill('SIGTERM');
    await Promise.race([exited, sleep(15_000)]);
    await until(() => !groupAlive(id.pgid), 5000);
    assert.equal(groupAlive(id.pgid), false, 'the trainer (a process group ignoring SIGTERM) is gone');
  } finally { reap(id.pgid); }
});

test('an untrusted workspace launches no trainer: Start and Continue Run refuse with a clear message, no run folder made', async () => {
  const dir = tempDir();
  const runsDir = join(dir, 'runs');
  const hub = await Hub.start({ heartbeatMs: 60_000 });
  const marker = join(dir, 'launched');
  const runs = new RunManager({ runsDir, hub, cliPath: cli, trainerCommand: `touch ${marker}`, trusted: () => false });
  try {
    await assert.rejects(runs.start({ cwd: dir }), /workspace is not trusted.*no trainer is started/i);
    mkdirSync(join(runsDir, 'cut', 'checkpoints'), { recursive: true });
    const hello = { v: 1, type: 'hello', runId: 'cut', seq: 1, time: 1, protocol: { major: 1, minor: 1 }, method: 'lora', backend: { name: 'cpu', device: 'cpu' }, totalSteps: 50, config: {}, layers: [] };
    writeFileSync(join(runsDir, 'cut', 'events.jsonl'), `${JSON.stringify(hello)}\n${JSON.stringify({ v: 1, type: 'state', runId: 'cut', seq: 2, time: 2, state: 'interrupted', step: 7 })}\n`);
    runs.scan();
    await assert.rejects(runs.continueRun('cut'), /workspace is not trusted/i);
    await sleep(200);
    assert.equal(existsSync(marker), false, 'nothing was run');
    assert.deepEqual(listRunFolders(runsDir).runs.map((r) => r.runId), ['cut'], 'no run folder made');
  } finally { await runs.dispose('stop'); await hub.close(); }
});

test('a failure reason keeps the useful stderr line: banners, notices and progress lines are dropped, the error line kept', () => {
  const banner = '============================';
  const tfjs = 'Hi, looks like you are running TensorFlow.js in Node.js. To speed things up dramatically, install our node backend, visit https://github.com/tensorflow/tfjs-node for more details.';
  const killed = judgeEnding(exitRecord(null, 'SIGKILL', [banner, tfjs, banner, 'run 20261130-srlora-ab12 → /home/u/.srlora/runs/20261130-srlora-ab12', 'srlora on wasm (CPU); digits (rot90), 8000 train / 2000 eval; 6 adapted layers; schedule [150, 300]']), 4242, null);
  assert.equal(killed.reason, 'the trainer was killed by SIGKILL without a final state');
  const oom = judgeEnding(exitRecord(null, 'SIGKILL', ['Traceback (most recent call last):', '  File "train.py", line 3, in <module>', 'torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB', banner]), 1, null);
  assert.equal(oom.reason, 'the trainer was killed by SIGKILL without a final state: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB');
  const long = judgeEnding(exitRecord(1, null, [`RuntimeError: ${'x'.repeat(5000)}`]), 1, null);
  assert.ok(long.reason.length <= 400, `short: ${long.reason.length}`);
  assert.match(long.reason, /^the trainer exited with code 1 without a final state: RuntimeError: x+…$/);
  const plain = judgeEnding(exitRecord(3, null, ['ModuleNotFoundError: No module named torch']), 1, null);
  assert.equal(plain.reason, 'the trainer exited with code 3 without a final state: ModuleNotFoundError: No module named torch');
});

test('commands sent before the trainer has connected wait for it (at most 8) and are delivered in order with the ids their callers got (seen in the e2e: τ from the palette right after a start)', async () => {
  const dir = tempDir();
  const { runs, hub } = await setup();
  try {
    const run = await runs.start({ configFile: fastConfig(dir), cwd: dir });
    assert.equal(hub.run(run.runId)?.trainer ?? null, null, 'sent while the trainer is still starting');
    const pause = runs.command(run.runId, { kind: 'pause' });
    const set = runs.command(run.runId, { kind: 'set', learningRate: 0.0005 });
    assert.ok(pause.ok && set.ok, JSON.stringify([pause, set]));
    const bad = runs.command(run.runId, { kind: 'set', learningRat: 1 } as unknown as Parameters<typeof runs.command>[1]);
    assert.equal(bad.ok, false, 'a bad command is refused at once, not held');
    const acks = () => logOf(run.dir).filter((m): m is Ack => m.type === 'ack' && m.status === 'applied');
    assert.ok(await until(() => acks().length >= 2, 60_000), 'both applied once the trainer connected');
    assert.deepEqual(acks().slice(0, 2).map((a) => a.commandId), [pause.commandId, set.commandId], 'in order, by the ids returned');
    assert.ok(await until(() => run.model.state === 'paused', 5000));
  } finally { await runs.dispose('stop'); await hub.close(); }
});

test('commands held for a trainer that never connects: at most 8, then each reported undelivered when the wait ends', async () => {
  const dir = tempDir();
  const hub = await Hub.start({ heartbeatMs: 60_000 });
  const runs = new RunManager({ runsDir: join(dir, 'runs'), hub, cliPath: cli, trainerCommand: stubborn, graceMs: 300, earlyCommandWaitMs: 300 });
  const refused: [string, string][] = [];
  runs.on('commandRefused', (_runId, id, message) => refused.push([id, message]));
  try {
    const run = await runs.start({ cwd: dir });
    const held = Array.from({ length: 8 }, () => runs.command(run.runId, { kind: 'checkpoint' }));
    assert.ok(held.every((r) => r.ok), JSON.stringify(held));
    const ninth = runs.command(run.runId, { kind: 'pause' });
    assert.equal(ninth.ok, false);
    assert.match(ninth.ok ? '' : ninth.error, /trainer \(pid \d+\) is still starting and 8 commands already wait for it; try again in a moment/);
    assert.ok(await until(() => refused.length === 8, 10_000), JSON.stringify(refused));
    assert.deepEqual(refused.map(([id]) => id), held.map((r) => (r.ok ? r.commandId : '')));
    assert.match(refused[0][1], /command checkpoint was not delivered: its trainer did not connect within 0\.3 s/);
  } finally { await runs.dispose('stop'); await hub.close(); }
});

// ---------------------------------------------------------------- a launcher's ranks outlive it (fresh6 fixsup.1)

/** A torchrun-like launcher: it starts its "rank 0" in a session of its own (as torch.distributed.elastic does), and
 * on SIGINT forwards it and exits at once; the rank then takes a while (its checkpoint) before it writes its own
 * `interrupted` state. */
function launcherWithRank(dir: string): string {
  const rank = join(dir, 'rank.mjs');
  writeFileSync(rank, `
import { appendFileSync } from 'node:fs';
const file = process.env.SRLORA_RUN_DIR + '/events.jsonl';
const runId = process.env.SRLORA_RUN_DIR.split('/').pop();
const put = (seq, m) => appendFileSync(file, JSON.stringify({ v: 1, runId, seq, time: Date.now(), ...m }) + '\\n');
put(1, { type: 'hello', protocol: { major: 1, minor: 1 }, method: 'srlora', backend: { name: 'pytorch', device: 'cpu' }, totalSteps: 100, config: {}, layers: [] });
put(2, { type: 'state', state: 'running', step: 0 });
put(3, { type: 'state', state: 'paused', step: 16 });
process.on('SIGINT', () => setTimeout(() => { put(4, { type: 'state', state: 'interrupted', step: 16 }); process.exit(0); }, 1500));
setInterval(() => {}, 1000);
`);
  return `setsid ${JSON.stringify(process.execPath)} ${JSON.stringify(rank)} & R=$!; trap 'kill -INT $R; exit 130' INT; echo launched >&2; while :; do sleep 0.1; done`;
}

test('Ctrl+C of a launcher whose ranks outlive it: the supervisor waits for the ranks and reads their final state; it never writes a second record with the same seq', async () => {
  const dir = tempDir();
  const hub = await Hub.start({ heartbeatMs: 60_000 });
  const runs = new RunManager({ runsDir: join(dir, 'runs'), hub, cliPath: cli, trainerCommand: launcherWithRank(dir), graceMs: 10_000 });
  const run = await runs.start({ cwd: dir });
  try {
    assert.ok(await until(() => run.model.state === 'paused', 10_000), run.model.state);
    await runs.dispose('stop', 'srlora serve was stopped (Ctrl+C, SIGINT)', 'SIGINT');
    const states = logOf(run.dir).filter((m): m is State => m.type === 'state');
    const seqs = logOf(run.dir).map((m) => m.seq);
    assert.deepEqual(seqs, [...new Set(seqs)], 'no seq used twice');
    assert.deepEqual(states.map((s) => [s.seq, s.state, s.origin ?? 'trainer']), [[2, 'running', 'trainer'], [3, 'paused', 'trainer'], [4, 'interrupted', 'trainer']]);
    assert.equal(run.model.state, 'interrupted');
  } finally { await hub.close(); }
});

test('appendSupervisorState never reuses a seq: lines the caller has not folded make it write nothing; a torn last line is cut', () => {
  const dir = tempDir();
  const file = join(dir, 'events.jsonl');
  const a = JSON.stringify({ v: 1, type: 'log', runId: 'r', seq: 1, time: 0, level: 'info', text: 'a' }) + '\n';
  const b = JSON.stringify({ v: 1, type: 'state', runId: 'r', seq: 2, time: 0, state: 'interrupted', step: 3 }) + '\n';
  const body = { state: 'failed' as const, step: 3, reason: 'x', exit: exitRecord(1, null, []) };
  writeFileSync(file, a + b);
  assert.equal(appendSupervisorState(file, 'r', 1, Buffer.byteLength(a), body), null);
  assert.equal(readFileSync(file, 'utf8'), a + b, 'untouched');
  writeFileSync(file, a + '{"v":1,"type":"sta');
  assert.equal(appendSupervisorState(file, 'r', 1, Buffer.byteLength(a), body)?.seq, 2);
  assert.deepEqual(logOf(dir).map((m) => m.seq), [1, 2]);
});
