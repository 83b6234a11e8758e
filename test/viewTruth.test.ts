/**
 * Issue 15's correctness gaps: what the Runs view, the hub's run list and the dashboard page say about one run comes
 * from the one reducer (src/viewmodel/runModel.ts) and its helpers, so they cannot disagree: whether the run can be
 * steered (steerControl), the eval with its step (evalFact), the ETA (etaSeconds).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import { Hub } from '../src/hub/hub';
import { RunManager, type ManagedRun } from '../src/supervisor/runManager';
import { applyMessage, emptyRun, etaSeconds, foldRun, steerControl, type RunModel } from '../src/viewmodel/runModel';
import { runContextValue, runDescription, runTooltip } from '../src/extension/runsTreeText';
import type { HubToViewer, RunControl, TrainerMessage } from '../src/protocol/messages';
import { FixtureLog } from './helpers/runFixtures';
import { tempDir, until } from './helpers/tmp';

const cli = join(import.meta.dirname, '../dist/cli.js');
/** A trainer process that never writes its record nor connects (the test writes the record for it). */
const silent = 'trap "" TERM INT; while :; do sleep 0.1; done';

const modelOf = (f: FixtureLog): RunModel => foldRun(f.runId, f.lines.map((l) => JSON.parse(l) as TrainerMessage));
/** The fields of a ManagedRun the Runs view's words read. */
const treeRun = (model: RunModel, owned = true): ManagedRun => ({ runId: model.runId, dir: '/runs/x', model, owned, loading: false }) as unknown as ManagedRun;

/**
 * The three places that offer steering, side by side: the Runs view (its menu's context value and RunManager.control),
 * the hub's run list (what the browser page and VS Code's panel are sent), and a page (the hub's snapshot folded with
 * the one reducer, the list's facts about the trainer applied by the one rule, as webview/store.ts does).
 */
async function threeViews(runs: RunManager, hub: Hub, runId: string): Promise<{ tree: RunControl & { menu: string }; hub: RunControl; page: RunControl }> {
  let page = emptyRun(runId);
  let loaded = false;
  const off = hub.subscribe(runId, (msg) => {
    if (msg.type === 'snapshot') {
      if (!msg.continued) page = emptyRun(runId);
      for (const e of msg.events) applyMessage(page, e);
      loaded ||= !msg.more;
    } else if (msg.type === 'event') applyMessage(page, msg.event);
  });
  try {
    await until(() => loaded, 5000);
    const summary = hub.listRuns().find((r) => r.runId === runId);
    assert.ok(summary?.control, 'the hub lists the run with its control');
    const run = runs.get(runId);
    const control = runs.control(runId);
    return {
      tree: { ...control, menu: runContextValue(run, control) },
      hub: summary.control,
      page: steerControl(page, { connected: summary.connected, readOnly: summary.readOnly ?? null }),
    };
  } finally { off(); }
}

test('whether a run can be steered is one rule over one record: the Runs view, the hub\'s list and the page agree before and after its trainer connects', async () => {
  // Before: the Runs view offered Pause and the steering menu for any running run this window owned (context value
  // run.running) while the hub's list, and so the page, said "no trainer connected to this hub" and refused.
  const dir = tempDir();
  const hub = await Hub.start({ heartbeatMs: 60_000 });
  const runs = new RunManager({ runsDir: join(dir, 'runs'), hub, cliPath: cli, trainerCommand: silent, graceMs: 300, earlyCommandWaitMs: 60_000 });
  let trainer: WebSocket | null = null;
  try {
    const run = await runs.start({ cwd: dir });
    // The record says the run is running; its trainer has not connected to this hub.
    const f = new FixtureLog(run.runId).hello({ name: 'r', totalSteps: 100 }).state('running', 0).metrics(1, 3, () => 1);
    appendFileSync(join(run.dir, 'events.jsonl'), `${f.lines.join('\n')}\n`);
    assert.ok(await until(() => run.model.state === 'running' && hub.run(run.runId)?.model.step === 3, 10_000));
    const before = await threeViews(runs, hub, run.runId);
    const off = { canSteer: false, reason: 'no trainer connected to this hub' };
    assert.deepEqual(before, { tree: { ...off, menu: 'run.running.nosteer' }, hub: off, page: off });
    assert.match(runTooltip(run, runs.control(run.runId)), /running \(steering off: no trainer connected to this hub\)/);

    // Its trainer connects (the same hello it wrote): every view offers steering.
    const { token } = hub.openRun(run.runId, run.dir);
    trainer = new WebSocket(`${hub.url}/trainer`, { headers: { Authorization: `Bearer ${token}` } });
    const welcomed = new Promise<void>((resolve) => trainer!.on('message', (d) => { if (/"welcome"/.test(String(d))) resolve(); }));
    await new Promise<void>((resolve, reject) => { trainer!.once('open', () => resolve()); trainer!.once('error', reject); });
    trainer.send(f.lines[0]);
    await welcomed;
    const on = await threeViews(runs, hub, run.runId);
    assert.deepEqual(on, { tree: { canSteer: true, menu: 'run.running' }, hub: { canSteer: true }, page: { canSteer: true } });

    // It says it is stopping: no view offers steering any more, for the same reason.
    const stopping = new FixtureLog(run.runId);
    stopping.lines.push(JSON.stringify({ v: 1, type: 'state', runId: run.runId, seq: f.lines.length + 1, time: Date.now(), state: 'stopping', step: 3, reason: 'stopped by the user' }));
    appendFileSync(join(run.dir, 'events.jsonl'), `${stopping.lines[0]}\n`); // the trainer writes its record, then sends
    trainer.send(stopping.lines[0]);
    assert.ok(await until(() => run.model.state === 'stopping' && hub.run(run.runId)?.model.state === 'stopping', 10_000));
    const ending = await threeViews(runs, hub, run.runId);
    const no = { canSteer: false, reason: 'the run is stopping' };
    assert.deepEqual(ending, { tree: { ...no, menu: 'run.stopping' }, hub: no, page: no });
    const refused = hub.sendCommand(run.runId, { kind: 'pause' });
    assert.deepEqual(refused, { ok: false, error: `run ${run.runId} cannot be steered from here: the run is stopping` }, 'the hub forwards by the same rule');
  } finally { trainer?.close(); await runs.dispose('stop'); await hub.close(); }
});

test('a run another supervisor owns is read-only in every view, with the reason its supervisor gave', () => {
  const f = new FixtureLog('ro').hello({ name: 'ro', totalSteps: 100 }).state('running', 0);
  const m = modelOf(f);
  const reason = 'owned by srlora serve (pid 4242): this page follows it read-only; steer it from there';
  const control = steerControl(m, { connected: false, readOnly: reason });
  assert.deepEqual(control, { canSteer: false, reason });
  assert.equal(runContextValue(treeRun(m, false), control), 'run.running.viewed');
  assert.match(runTooltip(treeRun(m, false), control), /steering off: owned by srlora serve \(pid 4242\)/);
  // An ended run is not steerable whatever is connected, and says so.
  const ended = modelOf(f.state('finished', 100));
  assert.deepEqual(steerControl(ended, { connected: true, readOnly: null }), { canSteer: false, reason: 'the run is finished' });
});

test('the Runs view\'s tooltip gives the eval with the step it was measured at, and says when it is stale', () => {
  // Before: "| eval accuracy | 88.4 % |" with no step: an accuracy from step 10 read as current at step 95.
  const f = new FixtureLog('ev').hello({ name: 'ev', totalSteps: 100 }).state('running', 0).metrics(1, 10, () => 1).evalAt(10, 0.5, 0.884);
  const control: RunControl = { canSteer: true };
  assert.match(runTooltip(treeRun(modelOf(f)), control), /\| eval \| eval acc 88\.4 % at step 10 \|/);
  f.metrics(11, 95, () => 1);
  assert.match(runTooltip(treeRun(modelOf(f)), control), /\| eval \| eval acc 88\.4 % at step 10 \(stale: 85 steps old\) \|/);
  assert.match(runTooltip(treeRun(modelOf(new FixtureLog('none').hello({ name: 'n', totalSteps: 10 }))), control), /\| eval \| – \|/);
});

test('the one ETA (runModel.etaSeconds) leaves out paused time and the time before a resume; the page and the Runs view show it', async () => {
  // Before: runModel.etaSeconds took (latest message time − first message time) / step, counting a 10-minute pause
  // (and a resume's downtime) as training; the page had its own, separate computation.
  const f = new FixtureLog('eta').hello({ name: 'eta', totalSteps: 100 }).state('running', 0).metrics(1, 10, () => 1); // 1 s a step
  f.add('state', { state: 'paused', step: 10 }, 0);
  f.add('state', { state: 'running', step: 10 }, 600_000);
  f.metrics(11, 20, () => 1);
  const m = modelOf(f);
  // 20 steps in 20 s of training (the pause left out): 80 steps left at 1 s a step.
  assert.equal(etaSeconds(m), 80);
  assert.match(runDescription(treeRun(m)), /^running · 20\/100 · loss 1\.0000 · ETA 1m20s$/);
  const { RunData } = await import('../webview/runData');
  const r = new RunData('eta');
  for (const l of f.lines) r.apply(JSON.parse(l) as TrainerMessage);
  assert.equal(r.etaSeconds(), 80, 'the page shows the same ETA');
  // Paused: no ETA. A resume starts a new stretch: the hours the run spent interrupted are not its pace.
  f.add('state', { state: 'paused', step: 20 }, 0);
  assert.equal(etaSeconds(modelOf(f)), null);
  f.add('state', { state: 'interrupted', step: 20 }, 1000);
  f.rewind(20);
  f.add('state', { state: 'running', step: 20 }, 3 * 3600_000);
  f.metrics(21, 30, () => 1, () => ({}));
  assert.equal(etaSeconds(modelOf(f)), 70, '10 steps in 10 s since the resume: 70 steps left');
});

test('a command held for a trainer that never connects reaches the page as refused, with the reason (not "sent" for ever)', async () => {
  // Before: the panel answered the page once (forwarded, with its command id) and the page dropped the entry; the
  // RunManager's later "was not delivered" went to a VS Code notification only, so the page never said it failed.
  const { PageCommands } = await import('../src/extension/pageCommands');
  const dir = tempDir();
  const hub = await Hub.start({ heartbeatMs: 60_000 });
  const runs = new RunManager({ runsDir: join(dir, 'runs'), hub, cliPath: cli, trainerCommand: silent, graceMs: 300, earlyCommandWaitMs: 300 });
  const posted: HubToViewer[] = [];
  const pageCommands = new PageCommands(runs, (m) => posted.push(m), (id) => id === shown);
  let shown = '';
  try {
    const run = await runs.start({ cwd: dir });
    shown = run.runId;
    pageCommands.command({ v: 1, type: 'command', requestId: 'q1', runId: run.runId, command: { kind: 'pause' } });
    const palette = runs.command(run.runId, { kind: 'checkpoint' }); // the palette's, for the run the page shows
    assert.ok(palette.ok);
    const first = posted[0];
    assert.ok(first.type === 'commandResult' && first.requestId === 'q1' && first.commandId && first.error === undefined, JSON.stringify(first));
    assert.ok(await until(() => posted.length === 3, 10_000), JSON.stringify(posted));
    const refusals = posted.slice(1) as Extract<HubToViewer, { type: 'commandResult' }>[];
    assert.deepEqual(refusals.map((m) => [m.requestId, m.commandId]), [['q1', first.commandId], [palette.commandId, palette.commandId]]);
    assert.match(refusals[0].error ?? '', /command pause was not delivered: its trainer did not connect within 0\.3 s/);

    // The page: the entry says "sent" while it waits, then "refused: …"; the palette's refusal is listed too.
    const handlers: ((m: HubToViewer) => void)[] = [];
    const host = { kind: 'vscode' as const, send: () => {}, onMessage: (fn: (m: HubToViewer) => void) => handlers.push(fn), onStatus: () => {}, getState: () => ({}), setState: () => {} };
    (globalThis as { document?: unknown }).document = { body: { dataset: {} } };
    const { Store } = await import('../webview/store');
    const store = new Store(host, [run.runId]);
    store.runList = [{ runId: run.runId, state: 'running', step: 0, totalSteps: 10, connected: false }];
    store.runs.set(run.runId, new (await import('../webview/runData')).RunData(run.runId));
    store.command('Pause', { kind: 'pause' });
    const deliver = (m: HubToViewer) => { for (const fn of handlers) fn(m); };
    deliver(first);
    assert.deepEqual(store.pending.map((c) => [c.label, c.status]), [['Pause', 'sent']]);
    for (const m of refusals) deliver(m);
    assert.deepEqual(store.pending.map((c) => [c.label, c.status.replace(/: run .*?: /, ': ')]), [
      ['Checkpoint', 'refused: command checkpoint was not delivered: its trainer did not connect within 0.3 s'],
      ['Pause', 'refused: command pause was not delivered: its trainer did not connect within 0.3 s'],
    ]);
  } finally { pageCommands.dispose(); await runs.dispose('stop'); await hub.close(); }
});

test('a sent command leaves the page\'s pending list once the run\'s record acknowledges it (its log tells the rest)', async () => {
  const handlers: ((m: HubToViewer) => void)[] = [];
  const host = { kind: 'browser' as const, send: () => {}, onMessage: (fn: (m: HubToViewer) => void) => handlers.push(fn), onStatus: () => {}, getState: () => ({}), setState: () => {} };
  (globalThis as { document?: unknown }).document = { body: { dataset: {} } };
  const { Store } = await import('../webview/store');
  const store = new Store(host, ['ack']);
  const deliver = (m: HubToViewer) => { for (const fn of handlers) fn(m); };
  const f = new FixtureLog('ack').hello({ name: 'a', totalSteps: 10 }).state('running', 0);
  deliver({ v: 1, type: 'snapshot', runId: 'ack', truncated: false, events: f.lines.map((l) => JSON.parse(l) as TrainerMessage) });
  store.command('Pause', { kind: 'pause' });
  deliver({ v: 1, type: 'commandResult', requestId: store.pending[0].requestId, commandId: 'c-1' });
  assert.equal(store.pending[0].status, 'sent');
  f.ack('c-1', 'received', 0);
  deliver({ v: 1, type: 'event', runId: 'ack', event: JSON.parse(f.lines.at(-1)!) as TrainerMessage });
  assert.equal(store.pending.length, 0);
  assert.equal(store.sentLabels.get('c-1'), 'Pause', 'the log\'s entry keeps the label');
  // One the trainer never acknowledged before the run ended (it died with the command unread) does not stay "sent".
  store.command('Checkpoint', { kind: 'checkpoint' });
  deliver({ v: 1, type: 'commandResult', requestId: store.pending[0].requestId, commandId: 'c-2' });
  f.state('failed', 0, 'the trainer exited (SIGKILL)');
  deliver({ v: 1, type: 'event', runId: 'ack', event: JSON.parse(f.lines.at(-1)!) as TrainerMessage });
  assert.deepEqual(store.pending.map((c) => [c.label, c.status]), [['Checkpoint', 'not acknowledged: the run is failed']]);
});

test('a page states its runs at once (VS Code restores a dashboard tab after a reload from that state, and dropped one without it)', async () => {
  const states: unknown[] = [];
  const host = { kind: 'vscode' as const, send: () => {}, onMessage: () => {}, onStatus: () => {}, getState: () => ({}), setState: (s: unknown) => { states.push(s); } };
  (globalThis as { document?: unknown }).document = { body: { dataset: {} } };
  const { Store } = await import('../webview/store');
  new Store(host, ['run-a']);
  assert.deepEqual((states.at(-1) as { runIds?: string[] } | undefined)?.runIds, ['run-a']);
});
