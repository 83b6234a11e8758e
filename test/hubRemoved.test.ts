/**
 * A deleted run folder, and runs this hub cannot steer (found by a new user of `srlora serve`):
 * - the hub notices its record is gone (the log tail's ENOENT), removes the run once (one log line, no retried
 *   snapshot), tells its subscribers with `removed` and lists it no more — a running run and a finished one alike;
 * - the run list says whether this hub can steer each run and why not; a command that still arrives is refused with
 *   that reason (a run started from a terminal, a run owned by another supervisor), not "no trainer connected".
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Hub } from '../src/hub/hub';
import type { HubToViewer } from '../src/protocol/messages';
import { validateHubToViewer } from '../src/protocol/validate';
import { FixtureLog } from './helpers/runFixtures';
import { sleep, tempDir, until } from './helpers/tmp';

function writeRun(root: string, runId: string, final: boolean): string {
  const dir = join(root, runId);
  mkdirSync(dir, { recursive: true });
  const log = new FixtureLog(runId).hello({ name: runId, totalSteps: 100 }).metrics(1, 5, (s) => 1 / s).state('running', 5);
  if (final) log.state('finished', 100);
  writeFileSync(join(dir, 'events.jsonl'), log.lines.join('\n') + '\n');
  return dir;
}

for (const final of [false, true]) {
  test(`a deleted ${final ? 'finished' : 'running'} run folder: removed once, subscribers told, gone from the list`, async () => {
    const root = tempDir();
    const hub = await Hub.start({ pollMs: 50 });
    const logged: string[] = [];
    hub.on('rejected', (where, error) => logged.push(`${where}: ${error}`));
    try {
      const keep = writeRun(root, 'run-a-keep', false);
      const dir = writeRun(root, 'run-b-deleted', final);
      hub.openRun('run-a-keep', keep);
      hub.openRun('run-b-deleted', dir);
      await hub.run('run-b-deleted')!.ready;
      const got: HubToViewer[] = [];
      hub.subscribe('run-b-deleted', (m) => got.push(m));
      assert.ok(await until(() => got.some((m) => m.type === 'snapshot')));
      rmSync(dir, { recursive: true, force: true });
      assert.ok(await until(() => got.some((m) => m.type === 'removed')), 'subscribers are told the run was removed');
      const removed = got.find((m) => m.type === 'removed')!;
      assert.ok(validateHubToViewer(removed).ok, 'the removed message is valid against the schema');
      assert.match((removed as { reason: string }).reason, /deleted/);
      assert.deepEqual(hub.listRuns().map((r) => r.runId), ['run-a-keep'], 'the list keeps only runs that exist');
      assert.equal(hub.closeRun('run-b-deleted', 'again'), false, 'removed once');
      await sleep(300); // several polls: nothing more is logged about it
      assert.equal(logged.filter((l) => l.startsWith('run:run-b-deleted')).length, 1, logged.join('\n'));
      assert.ok(!logged.some((l) => l.includes('snapshot failed')), logged.join('\n'));
    } finally { await hub.close(); rmSync(root, { recursive: true, force: true }); }
  });
}

test('a snapshot asked for after the record is gone removes the run instead of retrying forever', async () => {
  const root = tempDir();
  const hub = await Hub.start({ pollMs: 60_000 }); // no poll: only the snapshot can notice
  const logged: string[] = [];
  hub.on('rejected', (where, error) => logged.push(`${where}: ${error}`));
  try {
    const dir = writeRun(root, 'run-gone', false);
    hub.openRun('run-gone', dir);
    await hub.run('run-gone')!.ready;
    rmSync(dir, { recursive: true, force: true });
    const got: HubToViewer[] = [];
    hub.subscribe('run-gone', (m) => got.push(m));
    assert.ok(await until(() => got.some((m) => m.type === 'removed')), got.map((m) => m.type).join());
    await sleep(300);
    assert.equal(logged.filter((l) => l.includes('run-gone')).length, 1, logged.join('\n'));
    assert.equal(hub.listRuns().length, 0);
  } finally { await hub.close(); rmSync(root, { recursive: true, force: true }); }
});

test('the run list says whether this hub can steer a run; a refused command names the real reason', async () => {
  const root = tempDir();
  const hub = await Hub.start({ pollMs: 50 });
  try {
    const dir = writeRun(root, 'run-term', false);
    hub.openRun('run-term', dir);
    await hub.run('run-term')!.ready;
    await until(() => hub.listRuns()[0]?.state === 'running');
    const plain = hub.listRuns()[0];
    assert.deepEqual(plain.control, { canSteer: false, reason: 'no trainer connected to this hub' });
    hub.setControl('run-term', 'started from a terminal: this page follows it read-only');
    const ro = hub.listRuns()[0];
    assert.deepEqual(ro.control, { canSteer: false, reason: 'started from a terminal: this page follows it read-only' });
    assert.ok(validateHubToViewer({ v: 1, type: 'runs', runs: [ro] }).ok);
    const sent = hub.sendCommand('run-term', { kind: 'pause' });
    assert.equal(sent.ok, false);
    assert.match((sent as { error: string }).error, /started from a terminal/);
    hub.setControl('run-term', 'owned by srlora serve (pid 4242): this page follows it read-only; steer it from there');
    const other = hub.sendCommand('run-term', { kind: 'stop' });
    assert.match((other as { error: string }).error, /owned by srlora serve \(pid 4242\)/);
  } finally { await hub.close(); rmSync(root, { recursive: true, force: true }); }
});
