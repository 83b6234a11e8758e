/**
 * VS Code's dashboard panels after a window reload (src/extension/dashboardPanel.ts, with the `vscode` API faked):
 * one page per set of runs, and a restored page finds its run.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { fake, installFakeVscode, Uri } from './helpers/fakeVscode';
import { Hub } from '../src/hub/hub';
import { RunManager } from '../src/supervisor/runManager';
import { FixtureLog } from './helpers/runFixtures';
import { tempDir, until } from './helpers/tmp';

installFakeVscode();

async function setup(names: string[]) {
  const runsDir = join(tempDir(), 'runs');
  const ids = names.map((name, i) => {
    const f = new FixtureLog(`2026-11-0${i + 1}-run-${name}`).hello({ name, totalSteps: 10 }).state('running', 0).metrics(1, 10, () => 1).state('finished', 10);
    f.writeTo(runsDir);
    return f.runId;
  });
  const hub = await Hub.start({ heartbeatMs: 60_000 });
  const runs = new RunManager({ runsDir, hub, cliPath: 'unused' });
  runs.scan();
  const { Dashboards } = await import('../src/extension/dashboardPanel');
  fake.reset();
  const dashboards = new Dashboards({ hub, runs, extensionUri: Uri.file('/ext') as never });
  const close = async () => { dashboards.dispose(); await runs.dispose('stop'); await hub.close(); };
  return { hub, runs, dashboards, ids, close };
}

const liveTabs = (title: string) => fake.tabs.filter((t) => t.label === title);

test('after a window reload a restored dashboard tab is not opened twice: opening its run reuses its place, a late revival gives way', async () => {
  const { runs, dashboards, ids, close } = await setup(['demo']);
  try {
    const id = ids[0];
    assert.ok(await until(() => runs.runs.get(id)?.model.state === 'finished', 5000));
    // The reload restored the run's tab; VS Code revives it only when it is first shown.
    const restored = fake.restoreTab('srlora.dashboard', 'SRLoRA: demo', { runIds: [id] });
    // The user clicks the run in the Runs view before showing that tab.
    dashboards.open([id]);
    assert.ok(await until(() => fake.panels.length === 1));
    await fake.show(restored); // the old tab, if it were still there, would now be revived
    assert.equal(liveTabs('SRLoRA: demo').length, 1, `one tab for the run: ${JSON.stringify(fake.tabs.map((t) => t.label))}`);
    assert.equal(fake.panels.filter((p) => !p.disposed).length, 1);

    // A revival that comes after this window opened the same run (another restored tab of it) gives way too.
    const again = fake.restoreTab('srlora.dashboard', 'SRLoRA: demo (old title)', { runIds: [id] });
    await fake.show(again);
    const live = fake.panels.filter((p) => !p.disposed);
    assert.equal(live.length, 1, 'the revived duplicate was disposed');
    assert.ok(live[0].reveals >= 1, 'and the open page shown instead');
    dashboards.open([id]);
    assert.equal(fake.panels.filter((p) => !p.disposed).length, 1, 'opening it again reveals it');
  } finally { await close(); }
});

test('a restored page of a run the hub has not opened yet (past runs open one at a time) gets its snapshot, not "no run named …"', async () => {
  const { hub, ids, close } = await setup(['a', 'b', 'c']);
  try {
    const oldest = ids[0];
    assert.equal(hub.run(oldest), undefined, 'the hub opens the newest first; the oldest waits its turn');
    const tab = fake.restoreTab('srlora.dashboard', 'SRLoRA: a', { runIds: [oldest] });
    await fake.show(tab);
    const panel = fake.panels[0];
    panel.receive({ v: 1, type: 'subscribe', runId: oldest });
    assert.ok(await until(() => panel.posted.some((m) => (m as { type: string }).type === 'snapshot'), 5000), JSON.stringify(panel.posted).slice(0, 300));
    assert.ok(!panel.posted.some((m) => /unknown run/.test(JSON.stringify(m))), 'never told the run is unknown');
  } finally { await close(); }
});
