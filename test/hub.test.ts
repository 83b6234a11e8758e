import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { join, resolve } from 'node:path';
import { appendFileSync, readdirSync, writeFileSync } from 'node:fs';
import { WebSocket } from 'ws';
import { Hub } from '../src/hub/hub';
import { readJsonl } from '../src/runfolder/eventLog';
import { foldRun } from '../src/viewmodel/runModel';
import { EventRecorder } from '../src/trainer/link/recorder';
import { HubLink } from '../src/trainer/link/hubLink';
import type { HubMessage, HubToViewer, TrainerMessage } from '../src/protocol/messages';
import { tempDir, until, sleep } from './helpers/tmp';

const RUN = 'run-test';
/** A trainer presents the same hello on every connection (a different one is another run's). */
const HELLO_TIME = Date.now();

function hello(runId = RUN, seq = 1) {
  return {
    v: 1, type: 'hello', runId, seq, time: HELLO_TIME, protocol: { major: 1, minor: 0 }, method: 'srlora',
    backend: { name: 'cpu', device: 'cpu' }, totalSteps: 100, config: {}, layers: [{ name: 'l0', shape: [4, 4], r: 2, rTarget: 4 }],
  };
}
const log = (seq: number, text = `line ${seq}`) => ({ v: 1, type: 'log', runId: RUN, seq, time: Date.now(), level: 'info', text });

/** Opens a raw trainer socket and collects what the hub sends. */
async function rawTrainer(hub: Hub, token: string, headers: Record<string, string> = {}) {
  const ws = new WebSocket(`${hub.url}/trainer`, { headers: { Authorization: `Bearer ${token}`, ...headers } });
  const got: HubMessage[] = [];
  ws.on('message', (d) => got.push(JSON.parse(d.toString()) as HubMessage));
  await new Promise<void>((res, rej) => { ws.once('open', () => res()); ws.once('error', rej); });
  return { ws, got };
}

/** A raw trainer socket that has said hello and been welcomed. */
async function greetedTrainer(hub: Hub, token: string) {
  const t = await rawTrainer(hub, token);
  t.ws.send(JSON.stringify(hello()));
  assert.ok(await until(() => t.got.some((m) => m.type === 'welcome')));
  return t;
}

/** The HTTP status and body of an upgrade attempt that the hub refuses. */
function upgradeStatus(hub: Hub, path: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(hub.httpOrigin + path);
    const req = request({
      host: u.hostname, port: u.port, path, headers: {
        Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==', ...headers,
      },
    });
    req.on('response', (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('upgrade', (res, socket) => { socket.destroy(); resolve({ status: res.statusCode ?? 101, body: '' }); });
    req.on('error', reject);
    req.end();
  });
}

/** Subscribes in-process; `seqs()` is what the subscriber holds (parts appended, a new snapshot replaces). */
function collect(hub: Hub, runId = RUN) {
  const held: TrainerMessage[] = [];
  const all: HubToViewer[] = [];
  let complete = false;
  const off = hub.subscribe(runId, (m) => {
    all.push(m);
    if (m.type === 'snapshot') {
      if (!m.continued) held.length = 0;
      held.push(...m.events);
      complete = !m.more;
    } else if (m.type === 'event') held.push(m.event);
  });
  return { off, held, all, seqs: () => held.map((e) => e.seq), complete: () => complete };
}

async function startHub(dir: string, opts = {}) {
  const hub = await Hub.start({ heartbeatMs: 60_000, ...opts });
  const { token } = hub.openRun(RUN, dir);
  return { hub, token };
}

test('binds to loopback and refuses missing or wrong tokens with 401 and nothing else', async () => {
  const { hub, token } = await startHub(tempDir());
  try {
    assert.match(hub.url, /^ws:\/\/127\.0\.0\.1:\d+$/);
    const none = await upgradeStatus(hub, '/trainer', {});
    assert.equal(none.status, 401);
    assert.equal(none.body, '');
    const wrong = await upgradeStatus(hub, '/trainer', { Authorization: `Bearer ${token.slice(0, -2)}xx` });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.body, '');
    const viewerWithRunToken = await upgradeStatus(hub, '/viewer', { Authorization: `Bearer ${token}` });
    assert.equal(viewerWithRunToken.status, 401, 'a run token is not a viewer token');
    const ok = await upgradeStatus(hub, '/trainer', { Authorization: `Bearer ${token}` });
    assert.equal(ok.status, 101);
  } finally { await hub.close(); }
});

test('a browser Origin that is not the dashboard\'s own is refused with 403, even with the token', async () => {
  const { hub, token } = await startHub(tempDir(), { allowedOrigins: ['http://127.0.0.1:9999'] });
  try {
    const foreign = await upgradeStatus(hub, '/viewer', { Origin: 'https://evil.example', 'Sec-WebSocket-Protocol': `srlora.v1, srlora.token.${hub.viewerToken}` });
    assert.equal(foreign.status, 403);
    const foreignTrainer = await upgradeStatus(hub, '/trainer', { Origin: 'https://evil.example', Authorization: `Bearer ${token}` });
    assert.equal(foreignTrainer.status, 403);
    const own = await upgradeStatus(hub, '/viewer', { Origin: 'http://127.0.0.1:9999', 'Sec-WebSocket-Protocol': `srlora.v1, srlora.token.${hub.viewerToken}` });
    assert.equal(own.status, 101);
  } finally { await hub.close(); }
});

test('an oversize frame closes that connection with 1009; the run and other connections go on', async () => {
  const dir = tempDir();
  const { hub, token } = await startHub(dir, { maxPayload: 64 * 1024 });
  try {
    const t = await greetedTrainer(hub, token);
    const closed = new Promise<number>((r) => t.ws.once('close', (code) => r(code)));
    t.ws.send(JSON.stringify(log(2, 'x'.repeat(100 * 1024))));
    assert.equal(await closed, 1009);
    // The same run reconnects and continues where the hub's log ends.
    const t2 = await rawTrainer(hub, token);
    t2.ws.send(JSON.stringify(hello()));
    assert.ok(await until(() => t2.got.some((m) => m.type === 'welcome')));
    const welcome = t2.got.find((m) => m.type === 'welcome');
    assert.equal(welcome?.type === 'welcome' && welcome.received, 1);
    t2.ws.send(JSON.stringify(log(2)));
    assert.ok(await until(() => hub.run(RUN)!.lastSeq === 2));
    t2.ws.close();
  } finally { await hub.close(); }
});

test('invalid JSON and schema-invalid messages get error replies while the run goes on; a persistent offender is closed with 1008', async () => {
  const dir = tempDir();
  const { hub, token } = await startHub(dir, { maxInvalid: 5 });
  try {
    const t = await greetedTrainer(hub, token);
    t.ws.send('{not json');
    t.ws.send(JSON.stringify({ ...log(2), level: 'loud' }));
    t.ws.send(JSON.stringify(log(2)));
    assert.ok(await until(() => hub.run(RUN)!.lastSeq === 2 && t.got.filter((m) => m.type === 'error').length >= 2));
    const errors = t.got.filter((m) => m.type === 'error');
    assert.equal(errors.length, 2);
    assert.equal(errors[0].type === 'error' && errors[0].code, 'invalid-json');
    assert.ok(errors[1].type === 'error' && errors[1].code === 'invalid-message' && /level/.test(errors[1].message));
    const c = collect(hub);
    assert.ok(await until(() => c.complete()));
    assert.deepEqual(c.seqs(), [1, 2], 'only valid messages are delivered');
    c.off();
    const closed = new Promise<number>((r) => t.ws.once('close', (code) => r(code)));
    for (let i = 0; i < 10; i++) t.ws.send('garbage');
    assert.equal(await closed, 1008);
  } finally { await hub.close(); }
});

test('out-of-order seq is refused with the hub\'s position; duplicates from a resend are ignored', async () => {
  const dir = tempDir();
  const { hub, token } = await startHub(dir);
  try {
    const t = await greetedTrainer(hub, token);
    t.ws.send(JSON.stringify(log(2)));
    t.ws.send(JSON.stringify(log(2)));
    t.ws.send(JSON.stringify(log(5)));
    assert.ok(await until(() => t.got.some((m) => m.type === 'error' && m.code === 'out-of-order')));
    assert.ok(await until(() => t.got.some((m) => m.type === 'received' && m.received === 2)));
    const c = collect(hub);
    assert.ok(await until(() => c.complete()));
    assert.deepEqual(c.seqs(), [1, 2]);
    c.off();
    t.ws.close();
  } finally { await hub.close(); }
});

test('a subscriber gets the snapshot, then every new message once, in order', async () => {
  const dir = tempDir();
  const { hub, token } = await startHub(dir);
  try {
    const t = await greetedTrainer(hub, token);
    t.ws.send(JSON.stringify(log(2)));
    assert.ok(await until(() => hub.run(RUN)!.lastSeq === 2));
    const c = collect(hub);
    assert.ok(await until(() => c.complete()));
    assert.equal(c.all[0].type, 'snapshot');
    assert.deepEqual(c.seqs(), [1, 2]);
    for (let s = 3; s <= 6; s++) t.ws.send(JSON.stringify(log(s)));
    assert.ok(await until(() => c.seqs().length === 6));
    assert.deepEqual(c.all.slice(1).map((m) => m.type === 'event' && m.event.seq), [3, 4, 5, 6]);
    c.off();
    t.ws.close();
  } finally { await hub.close(); }
});

test('a flood of 10,000 commands from a dashboard is bounded and the hub keeps answering', async () => {
  const dir = tempDir();
  const { hub, token } = await startHub(dir, { commandRate: 20, commandBurst: 40, maxInFlight: 64 });
  try {
    const t = await greetedTrainer(hub, token);
    const viewer = new WebSocket(`${hub.url}/viewer`, [`srlora.v1`, `srlora.token.${hub.viewerToken}`]);
    const results: HubToViewer[] = [];
    viewer.on('message', (d) => results.push(JSON.parse(d.toString()) as HubToViewer));
    await new Promise<void>((r) => viewer.once('open', () => r()));
    for (let i = 0; i < 10_000; i++) {
      viewer.send(JSON.stringify({ v: 1, type: 'command', requestId: `r${i}`, runId: RUN, command: { kind: 'set', fusionThreshold: 0.5 } }));
    }
    const answered = () => results.filter((m) => m.type === 'commandResult').length;
    assert.ok(await until(() => answered() === 10_000, 20_000), `answered ${answered()}`);
    const forwarded = results.filter((m) => m.type === 'commandResult' && m.commandId).length;
    const limited = results.filter((m) => m.type === 'commandResult' && /rate limited/.test(m.error ?? '')).length;
    assert.ok(forwarded <= 64, `forwarded ${forwarded}`);
    assert.ok(limited >= 9_900, `rate limited ${limited}`);
    const commandsAtTrainer = () => t.got.filter((m) => m.type === 'command').length;
    assert.ok(await until(() => commandsAtTrainer() === forwarded), `${commandsAtTrainer()} of ${forwarded} reached the trainer`);
    await sleep(50);
    assert.equal(commandsAtTrainer(), forwarded, 'and no more');
    // Still answering: the trainer's messages are stored and a new subscriber gets its snapshot.
    t.ws.send(JSON.stringify(log(2)));
    assert.ok(await until(() => hub.run(RUN)!.lastSeq === 2));
    viewer.send(JSON.stringify({ v: 1, type: 'subscribe', runId: RUN }));
    assert.ok(await until(() => results.some((m) => m.type === 'snapshot')));
    // Once the trainer acknowledges, in-flight room frees up for new commands.
    const ids = t.got.filter((m) => m.type === 'command').map((m) => (m.type === 'command' ? m.id : ''));
    ids.forEach((id, i) => t.ws.send(JSON.stringify({ v: 1, type: 'ack', runId: RUN, seq: 3 + i, time: Date.now(), commandId: id, status: 'applied', step: 1 })));
    assert.ok(await until(() => hub.run(RUN)!.inFlight.size === 0));
    assert.ok(hub.sendCommand(RUN, { kind: 'pause' }).ok);
    viewer.close();
    t.ws.close();
  } finally { await hub.close(); }
});

/** A dashboard connection (the viewer token as a subprotocol) that records what the hub sends it. */
async function rawViewer(hub: Hub, opts: { autoPong?: boolean } = {}) {
  const ws = new WebSocket(`${hub.url}/viewer`, ['srlora.v1', `srlora.token.${hub.viewerToken}`], opts);
  const got: HubToViewer[] = [];
  let closed = false;
  ws.on('message', (d) => got.push(JSON.parse(d.toString()) as HubToViewer));
  ws.on('close', () => { closed = true; });
  await new Promise<void>((res, rej) => { ws.once('open', () => res()); ws.once('error', rej); });
  return { ws, got, closed: () => closed };
}

test('the heartbeat ends a connection that stops answering pings and keeps one that answers', async () => {
  const { hub, token } = await startHub(tempDir(), { heartbeatMs: 100 });
  try {
    const silent = await rawViewer(hub, { autoPong: false });
    const live = await rawViewer(hub);
    const t = await greetedTrainer(hub, token);
    assert.ok(await until(() => silent.closed(), 2000), 'a viewer that never answers is terminated');
    await sleep(400); // four more beats
    assert.equal(live.ws.readyState, WebSocket.OPEN);
    assert.equal(t.ws.readyState, WebSocket.OPEN, 'the trainer (ws answers pings) stays');
    live.ws.close();
    t.ws.close();
  } finally { await hub.close(); }
});

test('a viewer that stops reading is dropped to a snapshot instead of buffering the run; it catches up complete and in order', async () => {
  const dir = tempDir();
  const { hub, token } = await startHub(dir, { slowViewerBytes: 256 << 10 });
  try {
    const t = await greetedTrainer(hub, token);
    const v = await rawViewer(hub);
    v.ws.send(JSON.stringify({ v: 1, type: 'subscribe', runId: RUN }));
    assert.ok(await until(() => v.got.some((m) => m.type === 'snapshot')));
    // Stop reading (ws has no public pause): the kernel buffers fill, then the hub's send buffer for this viewer.
    const socket = (v.ws as unknown as { _socket: import('node:net').Socket })._socket;
    socket.pause();
    const n = 3000;
    const text = 'x'.repeat(4000); // 3000 × 4 KB = 12 MB, past loopback's socket buffers
    for (let s = 2; s <= n + 1; s++) t.ws.send(JSON.stringify(log(s, `${s} ${text}`)));
    assert.ok(await until(() => hub.run(RUN)!.lastSeq === n + 1, 20_000));
    socket.resume();
    const snapshots = () => v.got.filter((m) => m.type === 'snapshot');
    assert.ok(await until(() => snapshots().length === 2, 20_000), 'a fresh snapshot once it drained');
    t.ws.send(JSON.stringify(log(n + 2)));
    assert.ok(await until(() => v.got.some((m) => m.type === 'event' && m.event.seq === n + 2)));
    // What it saw: snapshot 1, the events sent before it fell behind (in order), snapshot 2 with everything, then live.
    const [i1, i2] = v.got.flatMap((m, i) => (m.type === 'snapshot' ? [i] : []));
    const before = v.got.slice(i1 + 1, i2).filter((m) => m.type === 'event').map((m) => (m.type === 'event' ? m.event.seq : 0));
    assert.deepEqual(before, before.map((_, i) => 2 + i), 'contiguous up to the drop');
    assert.ok(before.length < n, `dropped to a snapshot after ${before.length} of ${n} events, not buffered them all`);
    const snap = v.got[i2];
    assert.deepEqual(snap.type === 'snapshot' && snap.events.map((e) => e.seq), Array.from({ length: n + 1 }, (_, i) => i + 1));
    const after = v.got.slice(i2 + 1).filter((m) => m.type === 'event').map((m) => (m.type === 'event' ? m.event.seq : 0));
    assert.deepEqual(after, [n + 2]);
    v.ws.close();
    t.ws.close();
  } finally { await hub.close(); }
});

test('commands are validated before they reach the trainer', async () => {
  const { hub, token } = await startHub(tempDir());
  try {
    assert.match((hub.sendCommand(RUN, { kind: 'pause' }) as { error: string }).error, /no trainer connected/);
    const t = await greetedTrainer(hub, token);
    const bad = hub.sendCommand(RUN, { kind: 'set', fusionRatio: 0 });
    assert.equal(bad.ok, false);
    assert.match((bad as { error: string }).error, /fusionRatio/);
    assert.match((hub.sendCommand('nope', { kind: 'pause' }) as { error: string }).error, /unknown run/);
    const good = hub.sendCommand(RUN, { kind: 'recompose', layers: ['l0'] });
    assert.ok(good.ok);
    assert.ok(await until(() => t.got.some((m) => m.type === 'command' && m.command.kind === 'recompose')));
    t.ws.close();
  } finally { await hub.close(); }
});

test('hub killed mid-stream, a new hub on the same run folder: the link resends and every seq is stored exactly once, in order', async () => {
  const dir = tempDir();
  let { hub, token } = await startHub(dir);
  let endpoint = { url: hub.url, token };
  const recorder = new EventRecorder(RUN, dir, true);
  recorder.emit({
    type: 'hello', protocol: { major: 1, minor: 0 }, method: 'srlora', backend: { name: 'cpu', device: 'cpu' }, totalSteps: 2000, config: {},
    layers: [{ name: 'l0', shape: [4, 4], r: 2, rTarget: 4 }],
  });
  const link = new HubLink(recorder, { endpoint, discover: () => endpoint, onCommand: () => {}, minBackoffMs: 20, maxBackoffMs: 200 });
  link.start();
  assert.ok(await until(() => link.connected));
  let step = 0;
  const emitSome = async (n: number) => {
    for (let i = 0; i < n; i++) {
      step++;
      recorder.emit({ type: 'metrics', rows: [{ step, loss: 1 / step, lr: 1e-3, examplesPerSec: 100 }] });
      if (i % 50 === 0) await sleep(1);
    }
  };
  await emitSome(500);
  await hub.close(); // killed mid-stream: in-flight frames are lost with it
  await emitSome(300); // the trainer keeps training while no hub is there
  ({ hub, token } = await startHub(dir));
  endpoint = { url: hub.url, token };
  await emitSome(200);
  assert.ok(await link.flush(10_000), 'the new hub confirmed everything');
  link.close();
  recorder.close();
  const delivered: number[] = [];
  hub.on('message', (_r, m) => delivered.push(m.seq));
  const c = collect(hub);
  assert.ok(await until(() => c.complete() && c.seqs().length === 1001));
  await hub.close();
  const expected = Array.from({ length: 1001 }, (_, i) => i + 1);
  assert.deepEqual(c.seqs(), expected, 'every seq once, in order');
  assert.deepEqual(readJsonl<TrainerMessage>(recorder.file).events.map((m) => m.seq), expected);
  assert.deepEqual(readdirSync(dir).sort(), ['events.jsonl'], 'the hub keeps no second copy in the run folder');
});

// ------------------------------------------------------------------ the record of truth (issue 12 items 1, 5, 7; issue 13 items 3, 7)

const line = (m: object) => JSON.stringify(m) + '\n';
const state = (seq: number, s: string, extra: object = {}) => ({ v: 1, type: 'state', runId: RUN, seq, time: HELLO_TIME + seq, state: s, step: seq, ...extra });
const metrics = (seq: number, step: number) => ({ v: 1, type: 'metrics', runId: RUN, seq, time: HELLO_TIME + seq, rows: [{ step, loss: 1 / step, lr: 1e-3, examplesPerSec: 10 }] });

test('a run whose trainer is not connected streams live from its events.jsonl: torn tail re-read when complete, bad lines skipped with their line number', async () => {
  const dir = tempDir();
  const file = join(dir, 'events.jsonl');
  writeFileSync(file, line(hello()) + line(state(2, 'running')));
  const { hub } = await startHub(dir, { pollMs: 50 });
  const problems: string[] = [];
  hub.on('rejected', (_w, e) => problems.push(e));
  try {
    await hub.run(RUN)!.ready;
    assert.equal(hub.listRuns()[0].state, 'running');
    assert.equal(hub.listRuns()[0].dir, resolve(dir), 'the run list names its folder: a page\'s continue hint gives the real path (fresh6 fixres.2)');
    const c = collect(hub);
    assert.ok(await until(() => c.complete()));
    assert.deepEqual(c.seqs(), [1, 2]);
    // A terminal trainer appends: the viewer gets it without any socket.
    appendFileSync(file, line(metrics(3, 3)));
    assert.ok(await until(() => c.seqs().length === 3), 'appended lines stream live');
    // A torn write: half a line now, the rest later. Nothing is delivered until it is complete, then exactly once.
    const next = line(metrics(4, 4));
    appendFileSync(file, next.slice(0, 20));
    await sleep(200);
    assert.deepEqual(c.seqs(), [1, 2, 3]);
    appendFileSync(file, next.slice(20));
    assert.ok(await until(() => c.seqs().length === 4));
    // A line that is not a record (garbage, a 5,000-deep nesting) is skipped and reported with its line number.
    appendFileSync(file, '{garbage\n' + '['.repeat(5000) + ']'.repeat(5000) + '\n' + line(metrics(5, 5)));
    assert.ok(await until(() => c.seqs().length === 5));
    assert.deepEqual(c.seqs(), [1, 2, 3, 4, 5]);
    assert.ok(problems.some((p) => p.includes('events.jsonl:5:')), problems.join('\n'));
    assert.ok(problems.some((p) => p.includes('events.jsonl:6:') && /nested deeper/.test(p)), problems.join('\n'));
    // A supervisor's state record appended after the trainer died: every view folds it the same way.
    appendFileSync(file, line(state(6, 'failed', { reason: 'process vanished', origin: 'supervisor' })));
    assert.ok(await until(() => hub.listRuns()[0].state === 'failed'));
    const fromFile = foldRun(RUN, readJsonl<TrainerMessage>(file).events);
    assert.equal(fromFile.state, 'failed');
    assert.deepEqual(hub.run(RUN)!.model, fromFile, 'the hub\'s model is the one reducer over the record');
    assert.deepEqual(readdirSync(dir), ['events.jsonl'], 'the hub writes nothing in the run folder');
    c.off();
  } finally { await hub.close(); }
});

test('a run opened after it finished while no hub ran shows the record\'s state, not an old copy', async () => {
  const dir = tempDir();
  const file = join(dir, 'events.jsonl');
  writeFileSync(file, line(hello()) + line(state(2, 'running')) + line(metrics(3, 5)));
  writeFileSync(join(dir, 'hub-events.jsonl'), line(hello()) + line(state(2, 'running'))); // a stale copy from an old hub
  appendFileSync(file, line(state(4, 'finished')));
  const { hub } = await startHub(dir);
  try {
    await hub.run(RUN)!.ready;
    assert.equal(hub.listRuns()[0].state, 'finished');
    assert.equal(hub.listRuns()[0].step, 5);
  } finally { await hub.close(); }
});

test('socket and record are merged by seq: each seq once, in order, whichever comes first', async () => {
  const dir = tempDir();
  const file = join(dir, 'events.jsonl');
  const { hub, token } = await startHub(dir, { pollMs: 20 });
  const delivered: number[] = [];
  hub.on('message', (_r, m) => delivered.push(m.seq));
  try {
    const h = hello();
    writeFileSync(file, line(h));
    const t = await rawTrainer(hub, token);
    t.ws.send(JSON.stringify(h));
    assert.ok(await until(() => t.got.some((m) => m.type === 'welcome')));
    for (let s = 2; s <= 200; s++) {
      const m = metrics(s, s);
      // As a trainer does (record first, then the socket), but some only in the file and some only on the socket.
      if (s % 7 !== 0) appendFileSync(file, line(m));
      if (s % 5 !== 0) t.ws.send(JSON.stringify(m));
      if (s % 7 === 0) appendFileSync(file, line(m)); // the file a little behind the socket
      if (s % 20 === 0) await sleep(5);
    }
    assert.ok(await until(() => delivered.length >= 200 && hub.run(RUN)!.lastSeq === 200), `${delivered.length}`);
    await sleep(100);
    assert.deepEqual(delivered, Array.from({ length: 200 }, (_, i) => i + 1));
    t.ws.close();
  } finally { await hub.close(); }
});

test('divergence is never accepted silently: a socket message that differs from the record is refused; a record that differs from what the socket delivered wins', async () => {
  const dir = tempDir();
  const file = join(dir, 'events.jsonl');
  writeFileSync(file, line(hello()) + line(metrics(2, 2)) + line(metrics(3, 3)));
  const { hub, token } = await startHub(dir, { pollMs: 20 });
  const problems: string[] = [];
  hub.on('rejected', (_w, e) => problems.push(e));
  try {
    await hub.run(RUN)!.ready;
    const t = await greetedTrainer(hub, token);
    // seq 3 resent with different content (a second writer, or a trainer resumed after a power cut): refused.
    t.ws.send(JSON.stringify(metrics(3, 99)));
    assert.ok(await until(() => t.got.some((m) => m.type === 'error' && m.code === 'divergent' && m.refSeq === 3)));
    assert.equal(hub.run(RUN)!.model.step, 3, 'the record\'s content stands');
    // The same content again is a plain duplicate: no error.
    const errorsBefore = t.got.filter((m) => m.type === 'error').length;
    t.ws.send(JSON.stringify(metrics(3, 3)));
    t.ws.send(JSON.stringify(metrics(4, 4)));
    assert.ok(await until(() => hub.run(RUN)!.lastSeq === 4));
    await sleep(50);
    assert.equal(t.got.filter((m) => m.type === 'error').length, errorsBefore);
    // The socket delivered 4 (step 4) first; the record then says seq 4 is something else: the record wins.
    const c = collect(hub);
    assert.ok(await until(() => c.complete()));
    appendFileSync(file, line(metrics(4, 40)));
    assert.ok(await until(() => hub.run(RUN)!.model.step === 40), `step ${hub.run(RUN)!.model.step}`);
    assert.ok(problems.some((p) => /differs from what the trainer's connection delivered/.test(p)), problems.join('\n'));
    assert.ok(await until(() => c.complete() && c.held.at(-1)?.type === 'metrics' && (c.held.at(-1) as { rows: { step: number }[] }).rows[0].step === 40));
    assert.deepEqual(c.seqs(), [1, 2, 3, 4], 'a fresh snapshot from the record replaced what the viewer held');
    c.off();
    t.ws.close();
  } finally { await hub.close(); }
});

test('a record rewritten under the hub (shrunk) is re-read from the start and viewers get a fresh snapshot', async () => {
  const dir = tempDir();
  const file = join(dir, 'events.jsonl');
  writeFileSync(file, line(hello()) + line(metrics(2, 2)) + line(metrics(3, 3)) + line(state(4, 'finished')));
  const { hub } = await startHub(dir, { pollMs: 20 });
  try {
    await hub.run(RUN)!.ready;
    assert.equal(hub.run(RUN)!.state, 'finished');
    const c = collect(hub);
    assert.ok(await until(() => c.complete() && c.seqs().length === 4));
    writeFileSync(file, line(hello()) + line(metrics(2, 2)));
    assert.ok(await until(() => hub.run(RUN)!.lastSeq === 2 && hub.run(RUN)!.state === 'starting'));
    assert.ok(await until(() => c.complete() && c.seqs().length === 2));
    c.off();
  } finally { await hub.close(); }
});

test('a trainer whose messages the hub already read from its record still hears `received` (its link can flush)', async () => {
  const dir = tempDir();
  const file = join(dir, 'events.jsonl');
  const { hub, token } = await startHub(dir, { pollMs: 20 });
  try {
    writeFileSync(file, line(hello()));
    const t = await rawTrainer(hub, token);
    t.ws.send(JSON.stringify(hello()));
    assert.ok(await until(() => t.got.some((m) => m.type === 'welcome')));
    // The record runs ahead: the hub reads 2..50 from the file before the socket brings them.
    const msgs = Array.from({ length: 49 }, (_, i) => JSON.stringify(log(i + 2)));
    for (const m of msgs) appendFileSync(file, m + '\n');
    assert.ok(await until(() => hub.run(RUN)!.lastSeq === 50));
    for (const m of msgs) t.ws.send(m);
    assert.ok(await until(() => t.got.some((m) => m.type === 'received' && m.received === 50)), 'received 50');
    assert.ok(!t.got.some((m) => m.type === 'error'), 'the same content is no divergence');
    t.ws.close();
  } finally { await hub.close(); }
});

test('in-process viewers (VS Code\'s panel) hear the run list change: the trainer connecting makes the run steerable', async () => {
  // The panel used to get the run list once, at subscribe: a page opened before its trainer connected kept every
  // control disabled ("no trainer connected to this hub") for the whole run.
  const dir = tempDir();
  const { hub, token } = await startHub(dir);
  const heard: { runId: string; canSteer: boolean | undefined }[][] = [];
  const off = hub.onRuns((runs) => heard.push(runs.map((r) => ({ runId: r.runId, canSteer: r.control?.canSteer }))));
  try {
    const t = await greetedTrainer(hub, token);
    assert.ok(await until(() => heard.some((l) => l.some((r) => r.runId === RUN && r.canSteer === true))), JSON.stringify(heard));
    t.ws.close();
    assert.ok(await until(() => (heard.at(-1) ?? []).some((r) => r.runId === RUN && r.canSteer === false)), 'and not steerable once it is gone');
    off();
    const n = heard.length;
    await greetedTrainer(hub, token).then((t2) => t2.ws.close());
    await sleep(200);
    assert.equal(heard.length, n, 'nothing heard after unsubscribing');
  } finally { off(); await hub.close(); }
});
