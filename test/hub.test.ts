import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { WebSocket } from 'ws';
import { Hub } from '../src/hub/hub';
import { HUB_LOG_FILE } from '../src/runfolder/runFiles';
import { readJsonl } from '../src/runfolder/eventLog';
import { EventRecorder } from '../src/trainer/link/recorder';
import { HubLink } from '../src/trainer/link/hubLink';
import type { HubMessage, HubToViewer, TrainerMessage } from '../src/protocol/messages';
import { tempDir, until, sleep } from './helpers/tmp';

const RUN = 'run-test';

function hello(runId = RUN, seq = 1) {
  return {
    v: 1, type: 'hello', runId, seq, time: Date.now(), protocol: { major: 1, minor: 0 }, method: 'srlora',
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
    assert.ok(await until(() => hub.run(RUN)!.lastSeq === 2));
    const errors = t.got.filter((m) => m.type === 'error');
    assert.equal(errors.length, 2);
    assert.equal(errors[0].type === 'error' && errors[0].code, 'invalid-json');
    assert.ok(errors[1].type === 'error' && errors[1].code === 'invalid-message' && /level/.test(errors[1].message));
    const stored = readJsonl<TrainerMessage>(join(dir, HUB_LOG_FILE)).events;
    assert.deepEqual(stored.map((m) => m.seq), [1, 2], 'only valid messages are persisted');
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
    assert.deepEqual(readJsonl<TrainerMessage>(join(dir, HUB_LOG_FILE)).events.map((m) => m.seq), [1, 2]);
    t.ws.close();
  } finally { await hub.close(); }
});

test('each accepted message is persisted before viewers see it: snapshot, then deltas in order', async () => {
  const dir = tempDir();
  const { hub, token } = await startHub(dir);
  try {
    const t = await greetedTrainer(hub, token);
    t.ws.send(JSON.stringify(log(2)));
    assert.ok(await until(() => hub.run(RUN)!.lastSeq === 2));
    const seen: HubToViewer[] = [];
    const onDiskWhenSeen: number[] = [];
    const off = hub.subscribe(RUN, (m) => {
      seen.push(m);
      if (m.type === 'event') onDiskWhenSeen.push(readJsonl<TrainerMessage>(join(dir, HUB_LOG_FILE)).events.length);
    });
    assert.equal(seen[0].type, 'snapshot');
    assert.deepEqual(seen[0].type === 'snapshot' && seen[0].events.map((e) => e.seq), [1, 2]);
    for (let s = 3; s <= 6; s++) t.ws.send(JSON.stringify(log(s)));
    assert.ok(await until(() => seen.length === 5));
    assert.deepEqual(seen.slice(1).map((m) => m.type === 'event' && m.event.seq), [3, 4, 5, 6]);
    assert.deepEqual(onDiskWhenSeen, [3, 4, 5, 6]);
    off();
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
  await hub.close();
  const hubSeqs = readJsonl<TrainerMessage>(join(dir, HUB_LOG_FILE)).events.map((m) => m.seq);
  const expected = Array.from({ length: 1001 }, (_, i) => i + 1);
  assert.deepEqual(hubSeqs, expected);
  // The hub's log and the trainer's own record agree line for line.
  assert.equal(readFileSync(join(dir, HUB_LOG_FILE), 'utf8'), readFileSync(recorder.file, 'utf8'));
});
