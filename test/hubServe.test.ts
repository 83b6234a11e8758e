/**
 * `srlora serve` as a user meets it (findings of the session-4 fresh-user pass, hub side): with no run named it shows
 * the most recently active run, not the oldest; Ctrl+C (SIGINT) is recorded as a Ctrl+C, not as SIGTERM; and a run
 * that has ended leaves no trainer.pid or hub.json behind (they name a process and a hub that are gone).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { Hub } from '../src/hub/hub';
import { RunManager } from '../src/supervisor/runManager';
import { HUB_DISCOVERY_FILE, PID_FILE } from '../src/runfolder/runFiles';
import { Store } from '../webview/store';
import type { Host, PageState } from '../webview/host';
import type { HubToViewer, RunSummary } from '../src/protocol/messages';
import { tempDir, until } from './helpers/tmp';
import { lastState, logOf } from './helpers/runLog';

const root = join(import.meta.dirname, '..');
const cli = join(root, 'dist/cli.js');
const line = (m: object) => JSON.stringify(m) + '\n';
const fastConfig = (dir: string, steps = 100_000) => {
  const file = join(dir, `quick-${steps}.srlora.json`);
  writeFileSync(file, JSON.stringify({ model: { kind: 'mlp' }, steps, evalEvery: 1000, checkpointEvery: 0, importanceEvery: 5 }));
  return file;
};

/** A finished run whose messages are dated `day` days after a fixed start. */
function pastRun(runsDir: string, name: string, day: number): void {
  const dir = join(runsDir, name);
  mkdirSync(dir, { recursive: true });
  const t = 1_790_000_000_000 + day * 86_400_000;
  const base = { v: 1, runId: name };
  writeFileSync(join(dir, 'events.jsonl'),
    line({ ...base, seq: 1, time: t, type: 'hello', protocol: { major: 1, minor: 1 }, method: 'lora', backend: { name: 'cpu', device: 'cpu' }, totalSteps: 5, config: {}, layers: [] })
    + line({ ...base, seq: 2, time: t + 1, type: 'state', state: 'running', step: 0 })
    + line({ ...base, seq: 3, time: t + 2, type: 'state', state: 'finished', step: 5 }));
}

/** Starts `srlora serve`; resolves with its URL's token once it prints the dashboard URL. */
async function serve(args: string[]) {
  const child = spawn(process.execPath, [cli, 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  assert.ok(await until(() => /SRLoRA dashboard: (http\S+)/.test(out), 30_000), out);
  const url = new URL(/SRLoRA dashboard: (http\S+)/.exec(out)![1]);
  return { child, exited, url, out: () => out };
}

test('srlora serve with no run named shows the most recently active run (not the oldest): the hub lists runs by last activity, the page takes the newest', async () => {
  const dir = tempDir();
  const runsDir = join(dir, 'runs');
  // Folder names sort by start time, as generated ids do; 'zz-imported' sorts last but was active first.
  pastRun(runsDir, '20261101-000000-lora-aaaa', 1);
  pastRun(runsDir, '20261103-000000-lora-cccc', 3);
  pastRun(runsDir, '20261102-000000-lora-bbbb', 2);
  pastRun(runsDir, 'zz-imported', 0);
  const s = await serve(['--runs-dir', runsDir]);
  const ws = new WebSocket(`ws://${s.url.host}/viewer`, { headers: { Authorization: `Bearer ${s.url.searchParams.get('token')}` } });
  const lists: RunSummary[][] = [];
  ws.on('message', (d) => { const m = JSON.parse(d.toString()) as HubToViewer; if (m.type === 'runs') lists.push(m.runs); });
  try {
    assert.ok(await until(() => lists.at(-1)?.length === 4, 30_000), JSON.stringify(lists.at(-1)));
    const runs = lists.at(-1)!;
    assert.deepEqual(runs.map((r) => r.runId), ['zz-imported', '20261101-000000-lora-aaaa', '20261102-000000-lora-bbbb', '20261103-000000-lora-cccc'], 'oldest activity first');
    // The page (the same Store the browser runs), told no run in its URL, shows what the hub's list says is newest.
    let receive: (m: HubToViewer) => void = () => {};
    let state: PageState = {};
    const host: Host = {
      kind: 'browser', send: () => {}, onMessage: (fn) => { receive = fn; }, onStatus: () => {},
      getState: () => state, setState: (st) => { state = st; },
    };
    const g = globalThis as { document?: unknown };
    g.document = { body: { dataset: {} } }; // what the Store reads of the page's DOM
    try {
      const store = new Store(host, []);
      receive({ v: 1, type: 'runs', runs });
      assert.deepEqual(store.focus, ['20261103-000000-lora-cccc']);
    } finally { delete g.document; }
  } finally {
    ws.close();
    s.child.kill('SIGINT');
    await s.exited;
  }
});

test('Ctrl+C of srlora serve: its trainer is told SIGINT, so the run\'s record says SIGINT (Ctrl+C), not SIGTERM', async () => {
  const dir = tempDir();
  const runsDir = join(dir, 'runs');
  const s = await serve(['--runs-dir', runsDir, '--config', fastConfig(dir)]);
  const [, , runDir] = /started run (\S+) in (\S+)/.exec(s.out())!;
  assert.ok(await until(() => logOf(runDir).some((m) => m.type === 'metrics'), 30_000), s.out());
  s.child.kill('SIGINT'); // what the terminal sends on Ctrl+C
  assert.equal(await s.exited, 0);
  const end = lastState(runDir);
  assert.equal(end?.state, 'interrupted');
  assert.match(end?.reason ?? '', /SIGINT/, `the record names the Ctrl+C: ${end?.reason}`);
  assert.doesNotMatch(end?.reason ?? '', /SIGTERM/);
  assert.equal(existsSync(join(runDir, PID_FILE)), false, 'no trainer.pid left: the trainer is gone');
  assert.equal(existsSync(join(runDir, HUB_DISCOVERY_FILE)), false, 'no hub.json left: serve\'s hub is gone');
});

test('a run that ends (finished, stopped, killed) leaves no trainer.pid or hub.json; a terminal run\'s own trainer.pid goes with it', async () => {
  const dir = tempDir();
  const runsDir = join(dir, 'runs');
  const hub = await Hub.start({ heartbeatMs: 60_000 });
  const runs = new RunManager({ runsDir, hub, cliPath: cli, nodePath: process.execPath, graceMs: 5000 });
  try {
    const finished = await runs.start({ configFile: fastConfig(dir, 12), cwd: dir });
    const stopped = await runs.start({ configFile: fastConfig(dir), cwd: dir });
    const killed = await runs.start({ configFile: fastConfig(dir), cwd: dir });
    for (const r of [finished, stopped, killed]) assert.ok(existsSync(join(r.dir, PID_FILE)) && existsSync(join(r.dir, HUB_DISCOVERY_FILE)), 'written while it runs');
    assert.ok(await until(() => stopped.model.step >= 2 && killed.model.step >= 2, 60_000));
    await runs.stop(stopped.runId);
    const pid = (JSON.parse(readFileSync(join(killed.dir, PID_FILE), 'utf8')) as { pid: number }).pid;
    process.kill(pid, 'SIGKILL');
    assert.ok(await until(() => finished.model.state === 'finished' && !finished.handle?.alive && killed.model.state === 'failed', 60_000),
      `${finished.model.state} ${killed.model.state}`);
    assert.ok(await until(() => !stopped.handle?.alive && !killed.handle?.alive && !finished.handle?.alive, 10_000));
    for (const r of [finished, stopped, killed]) {
      assert.equal(existsSync(join(r.dir, PID_FILE)), false, `${r.model.state}: trainer.pid removed`);
      assert.equal(existsSync(join(r.dir, HUB_DISCOVERY_FILE)), false, `${r.model.state}: hub.json removed`);
    }
  } finally {
    await runs.dispose('stop');
    await hub.close();
  }
  // A trainer started from a terminal (no supervisor) writes its own trainer.pid, and removes it when it ends.
  const runDir = join(runsDir, 'terminal-run');
  const train = spawn(process.execPath, [cli, 'train', '--config', fastConfig(dir, 12), '--no-progress'], { env: { ...process.env, SRLORA_RUN_DIR: runDir }, stdio: 'ignore' });
  assert.equal(await new Promise<number | null>((r) => train.once('exit', (c) => r(c))), 0);
  assert.equal(lastState(runDir)?.state, 'finished');
  assert.equal(existsSync(join(runDir, PID_FILE)), false, 'the terminal trainer removed its own trainer.pid');
});
