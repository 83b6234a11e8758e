/**
 * Issue 13: no request can end the hub, every size/depth/queue/rate is bounded, a live trainer is never displaced,
 * a connection closed for abuse is not read any more, and the page answers only loopback Hosts with its own cookie.
 * Every test here failed on the hub before these fixes. Loopback only; bounded counts; a seeded fuzz.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { WebSocket } from 'ws';
import { Hub, type HubOptions } from '../src/hub/hub';
import { pageHandler } from '../src/serve/pageServer';
import type { HubMessage, HubToViewer } from '../src/protocol/messages';
import { tempDir, until, sleep } from './helpers/tmp';

const RUN = 'run-hard';
const HELLO_TIME = Date.now();
const hello = () => ({
  v: 1, type: 'hello', runId: RUN, seq: 1, time: HELLO_TIME, protocol: { major: 1, minor: 1 }, method: 'srlora',
  backend: { name: 'cpu', device: 'cpu' }, totalSteps: 100, config: {}, layers: [{ name: 'l0', shape: [4, 4], r: 2, rTarget: 4 }],
});
const log = (seq: number, text = `line ${seq}`) => ({ v: 1, type: 'log', runId: RUN, seq, time: HELLO_TIME + seq, level: 'info', text });

/** A hub serving the page as `srlora serve` does (the handler's promise handed to the hub). */
async function servedHub(opts: HubOptions = {}) {
  let handler: ReturnType<typeof pageHandler> | null = null;
  const hub = await Hub.start({ heartbeatMs: 60_000, ...opts, onHttpRequest: opts.onHttpRequest ?? ((req, res) => handler?.(req, res)) });
  handler = pageHandler(process.cwd(), hub.viewerToken);
  hub.allowOrigin(hub.httpOrigin);
  const port = Number(new URL(hub.httpOrigin).port);
  return { hub, port };
}

/** Sends raw bytes, returns the status code of the first response line (0: the connection closed without one). */
function raw(port: number, text: string | Buffer): Promise<{ status: number; head: string }> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    let got = '';
    const done = () => {
      const m = /^HTTP\/1\.1 (\d{3})/.exec(got);
      resolve({ status: m ? Number(m[1]) : 0, head: got.split('\r\n\r\n')[0] });
      s.destroy();
    };
    s.setTimeout(3000, done);
    s.on('data', (d) => { got += d.toString('latin1'); if (got.includes('\r\n\r\n')) done(); });
    s.on('error', done);
    s.on('close', done);
    s.write(text);
  });
}

const get = (path: string, headers: string[] = [], host = '127.0.0.1') => `GET ${path} HTTP/1.1\r\nHost: ${host}\r\n${headers.map((h) => `${h}\r\n`).join('')}Connection: close\r\n\r\n`;
const upgrade = (path: string, headers: string[] = [], host = '127.0.0.1') => get(path, ['Upgrade: websocket', 'Connection: Upgrade', 'Sec-WebSocket-Version: 13', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==', ...headers], host);

async function stillServing(hub: Hub, port: number): Promise<void> {
  const r = await raw(port, get(`/?token=${hub.viewerToken}`));
  assert.equal(r.status, 303, 'the hub still answers');
}

test('malformed requests get 400, never end the process: "//", absolute form with a bad port, a "%" cookie (page and upgrade), a garbage request line', async () => {
  const { hub, port } = await servedHub();
  try {
    assert.equal((await raw(port, get('//'))).status, 400);
    assert.equal((await raw(port, get('http://127.0.0.1:99999/'))).status, 400);
    assert.equal((await raw(port, get('/', [`Cookie: srlora_token_${port}=%`]))).status, 400);
    assert.equal((await raw(port, get('/', ['Cookie: srlora_token=%']))).status, 401, 'another hub\'s cookie is not ours: ignored');
    assert.equal((await raw(port, upgrade('/viewer', [`Cookie: srlora_token_${port}=%`]))).status, 400);
    assert.equal((await raw(port, upgrade('//', [`Cookie: srlora_token_${port}=%E0%A4%A`]))).status, 400);
    assert.equal((await raw(port, '\x00\x01\x02 garbage\r\n\r\n')).status, 400);
    await stillServing(hub, port);
  } finally { await hub.close(); }
});

test('an exception while handling a request is a 500 for that request; the hub goes on', async () => {
  let calls = 0;
  const hub = await Hub.start({
    heartbeatMs: 60_000,
    onHttpRequest: async (req) => {
      calls++;
      if (req.url === '/sync') throw new Error('boom');
      await sleep(1);
      throw new Error('async boom');
    },
  });
  const port = Number(new URL(hub.httpOrigin).port);
  try {
    // The sync throw happens inside an async function here, so make one that throws before returning a promise too.
    assert.equal((await raw(port, get('/sync'))).status, 500);
    assert.equal((await raw(port, get('/async'))).status, 500);
    assert.equal(calls, 2);
  } finally { await hub.close(); }
  const syncHub = await Hub.start({ heartbeatMs: 60_000, onHttpRequest: () => { throw new Error('sync boom'); } });
  try {
    assert.equal((await raw(Number(new URL(syncHub.httpOrigin).port), get('/'))).status, 500);
  } finally { await syncHub.close(); }
});

/** Deterministic PRNG (mulberry32) so a failing fuzz case can be replayed. */
function rng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test('fuzz: 600 random request lines, headers, cookies and upgrades (loopback, seeded): every one answered or closed, no 500, the hub still serving', async () => {
  const { hub, port } = await servedHub();
  const seed = Number(process.env.FUZZ_SEED ?? 1312);
  const r = rng(seed);
  const pick = <T>(xs: T[]): T => xs[Math.floor(r() * xs.length)];
  const junk = (n: number) => Array.from({ length: Math.floor(r() * n) }, () => String.fromCharCode(Math.floor(r() * 256))).join('');
  const token = hub.viewerToken;
  const paths = ['/', '//', '///x', '/?token=', `/?token=${token}`, `/?token=${token}&run=%`, '/%', '/%zz', '/dist/webview.js', '/viewer', '/trainer',
    'http://127.0.0.1:99999/', 'http://[::1/', 'http://a:b@c/', '*', '/\\..\\..', `/?${'a='.repeat(500)}`, '/' + 'x'.repeat(9000), 'ftp://x/', '?', '#'];
  const cookieNames = [`srlora_token_${port}`, 'srlora_token', `srlora_token_${port}x`, '', '=', ';'];
  const values = ['%', '%E0%A4%A', token, encodeURIComponent(token), '', '%%%%', '"', '\u00ff', 'a=b=c'];
  const statuses: number[] = [];
  try {
    const cases = Array.from({ length: 600 }, () => {
      const method = pick(['GET', 'GET', 'POST', 'HEAD', 'PUT', 'OPTIONS', 'G\x00T', 'GET /', '']);
      const headers: string[] = [];
      if (r() < 0.7) headers.push(`Cookie: ${pick(cookieNames)}=${pick(values)}${r() < 0.3 ? `; ${pick(cookieNames)}=${pick(values)}` : ''}`);
      if (r() < 0.3) headers.push(`Authorization: ${pick(['Bearer ', 'Bearer %', `Bearer ${token}`, 'Basic x', junk(40)])}`);
      if (r() < 0.3) headers.push(`Origin: ${pick(['http://evil.example', hub.httpOrigin, 'null', junk(20)])}`);
      if (r() < 0.3) headers.push(`Sec-WebSocket-Protocol: ${pick(['srlora.v1', `srlora.token.${token}`, `srlora.v1, srlora.token.${token}`, ',,,', junk(30)])}`);
      if (r() < 0.2) headers.push(`${junk(10)}: ${junk(30)}`);
      const host = pick(['127.0.0.1', `127.0.0.1:${port}`, 'localhost', '[::1]', 'evil.example', '', junk(10)]);
      const target = pick(paths);
      const isUpgrade = r() < 0.4;
      const head = isUpgrade
        ? upgrade(target, headers, host).replace(/^GET/, method)
        : `${method} ${target} HTTP/1.1\r\nHost: ${host}\r\n${headers.map((h) => `${h}\r\n`).join('')}Connection: close\r\n\r\n`;
      return Buffer.from(head, 'latin1');
    });
    for (let i = 0; i < cases.length; i += 20) {
      const batch = await Promise.all(cases.slice(i, i + 20).map((c) => raw(port, c)));
      statuses.push(...batch.map((b) => b.status));
    }
    assert.ok(!statuses.includes(500), `seed ${seed}: a request made the hub throw (500 at case ${statuses.indexOf(500)})`);
    assert.ok(statuses.every((s) => s === 0 || (s >= 100 && s < 500)), `seed ${seed}: ${[...new Set(statuses)].join(',')}`);
    assert.ok(statuses.filter((s) => s === 400).length > 10, 'the fuzz reached the malformed-request paths');
    await stillServing(hub, port);
  } finally { await hub.close(); }
});

test('a non-loopback Host is refused with 403 (page and upgrade, DNS rebinding); loopback names are served', async () => {
  const { hub, port } = await servedHub();
  try {
    assert.equal((await raw(port, get(`/?token=${hub.viewerToken}`, [], `evil.example:${port}`))).status, 403);
    assert.equal((await raw(port, upgrade('/viewer', [`Sec-WebSocket-Protocol: srlora.v1, srlora.token.${hub.viewerToken}`], `evil.example:${port}`))).status, 403);
    assert.equal((await raw(port, get('/', [], ''))).status, 403);
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, '127.0.0.1']) {
      assert.equal((await raw(port, get(`/?token=${hub.viewerToken}`, [], host))).status, 303, host);
    }
    assert.equal((await raw(port, upgrade('/viewer', [`Sec-WebSocket-Protocol: srlora.v1, srlora.token.${hub.viewerToken}`], `localhost:${port}`))).status, 101);
  } finally { await hub.close(); }
});

test('the dashboard cookie is named per hub instance: two dashboards keep their own tokens', async () => {
  const a = await servedHub();
  const b = await servedHub();
  try {
    const ra = await raw(a.port, get(`/?token=${a.hub.viewerToken}`));
    const cookieA = /Set-Cookie: ([^;]+);/i.exec(ra.head)?.[1] ?? '';
    assert.ok(cookieA.startsWith(`srlora_token_${a.port}=`), cookieA);
    const rb = await raw(b.port, get(`/?token=${b.hub.viewerToken}`));
    const cookieB = /Set-Cookie: ([^;]+);/i.exec(rb.head)?.[1] ?? '';
    assert.ok(cookieB.startsWith(`srlora_token_${b.port}=`), cookieB);
    // The browser sends both cookies to both ports (cookies ignore ports): each hub reads its own.
    const both = `Cookie: ${cookieA}; ${cookieB}`;
    assert.equal((await raw(a.port, get('/', [both]))).status, 200);
    assert.equal((await raw(b.port, get('/', [both]))).status, 200);
    assert.equal((await raw(b.port, get('/', [`Cookie: ${cookieA}`]))).status, 401, 'A\'s cookie does not open B');
  } finally { await a.hub.close(); await b.hub.close(); }
});

async function trainerSocket(hub: Hub, token: string) {
  const ws = new WebSocket(`${hub.url}/trainer`, { headers: { Authorization: `Bearer ${token}` } });
  const got: HubMessage[] = [];
  let closeCode = 0;
  ws.on('message', (d) => got.push(JSON.parse(d.toString()) as HubMessage));
  ws.on('close', (c) => { closeCode = c; });
  await new Promise<void>((res, rej) => { ws.once('open', () => res()); ws.once('error', rej); });
  return { ws, got, closeCode: () => closeCode };
}

async function viewerSocket(hub: Hub) {
  const ws = new WebSocket(`${hub.url}/viewer`, ['srlora.v1', `srlora.token.${hub.viewerToken}`]);
  const got: HubToViewer[] = [];
  ws.on('message', (d) => got.push(JSON.parse(d.toString()) as HubToViewer));
  await new Promise<void>((res, rej) => { ws.once('open', () => res()); ws.once('error', rej); });
  return { ws, got };
}

test('a 10 kB, 5,000-deep frame is refused at ingest with an error; a viewer subscribing afterwards gets its snapshot and the hub survives', async () => {
  const dir = tempDir();
  const hub = await Hub.start({ heartbeatMs: 60_000 });
  const { token } = hub.openRun(RUN, dir);
  try {
    const t = await trainerSocket(hub, token);
    t.ws.send(JSON.stringify(hello()));
    assert.ok(await until(() => t.got.some((m) => m.type === 'welcome')));
    const deep = JSON.stringify({ ...log(2), text: undefined, extra: null }).replace('"extra":null', `"extra":${'['.repeat(5000)}${']'.repeat(5000)}`);
    assert.ok(deep.length > 10_000);
    t.ws.send(deep);
    assert.ok(await until(() => t.got.some((m) => m.type === 'error' && /nested deeper than 64/.test(m.message))));
    t.ws.send(JSON.stringify(log(2)));
    assert.ok(await until(() => hub.run(RUN)!.lastSeq === 2));
    const v = await viewerSocket(hub);
    v.ws.send(JSON.stringify({ v: 1, type: 'subscribe', runId: RUN }));
    assert.ok(await until(() => v.got.some((m) => m.type === 'snapshot')));
    const snap = v.got.find((m) => m.type === 'snapshot');
    assert.deepEqual(snap?.type === 'snapshot' && snap.events.map((e) => e.seq), [1, 2]);
    v.ws.close();
    t.ws.close();
  } finally { await hub.close(); }
});

test('error replies quote at most a few hundred characters of what was sent', async () => {
  const dir = tempDir();
  const hub = await Hub.start({ heartbeatMs: 60_000 });
  const { token } = hub.openRun(RUN, dir);
  try {
    const t = await trainerSocket(hub, token);
    t.ws.send(JSON.stringify(hello()));
    assert.ok(await until(() => t.got.some((m) => m.type === 'welcome')));
    t.ws.send(JSON.stringify({ ...log(2), level: 'x'.repeat(100_000) }));
    assert.ok(await until(() => t.got.some((m) => m.type === 'error')));
    const e = t.got.find((m) => m.type === 'error');
    assert.ok(e?.type === 'error' && e.message.length <= 400, `${e?.type === 'error' && e.message.length} characters`);
    const v = await viewerSocket(hub);
    v.ws.send(JSON.stringify({ v: 1, type: 'command', requestId: 'r1', runId: RUN, command: { kind: 'set', fusionRatio: 'y'.repeat(100_000) } }));
    assert.ok(await until(() => v.got.some((m) => m.type === 'commandResult' && m.requestId === 'invalid')));
    const r = v.got.find((m) => m.type === 'commandResult' && m.requestId === 'invalid');
    assert.ok(r?.type === 'commandResult' && (r.error ?? '').length <= 400, `${r?.type === 'commandResult' && r.error?.length} characters`);
    v.ws.close();
    t.ws.close();
  } finally { await hub.close(); }
});

test('a second connection with a run\'s token never displaces a live trainer; once the first is gone it is accepted', async () => {
  const dir = tempDir();
  const hub = await Hub.start({ heartbeatMs: 60_000 });
  const { token } = hub.openRun(RUN, dir);
  const rejected: string[] = [];
  hub.on('rejected', (_w, e) => rejected.push(e));
  try {
    const first = await trainerSocket(hub, token);
    first.ws.send(JSON.stringify(hello()));
    assert.ok(await until(() => first.got.some((m) => m.type === 'welcome')));
    const intruder = await trainerSocket(hub, token);
    intruder.ws.send(JSON.stringify(hello()));
    assert.ok(await until(() => intruder.closeCode() === 1008));
    assert.ok(intruder.got.some((m) => m.type === 'error' && m.code === 'already-connected'));
    assert.ok(rejected.some((e) => /already has a trainer/.test(e)), 'visible in the hub\'s log');
    assert.equal(first.ws.readyState, WebSocket.OPEN, 'the live trainer keeps its connection');
    first.ws.send(JSON.stringify(log(2)));
    assert.ok(await until(() => hub.run(RUN)!.lastSeq === 2));
    first.ws.close();
    assert.ok(await until(() => hub.run(RUN)!.trainer === null));
    const next = await trainerSocket(hub, token);
    next.ws.send(JSON.stringify(hello()));
    assert.ok(await until(() => next.got.some((m) => m.type === 'welcome')));
    next.ws.close();
  } finally { await hub.close(); }
});

test('after deciding to close a connection (1008) the hub reads nothing more from it', async () => {
  const dir = tempDir();
  const hub = await Hub.start({ heartbeatMs: 60_000, maxInvalid: 5 });
  const { token } = hub.openRun(RUN, dir);
  try {
    const t = await trainerSocket(hub, token);
    t.ws.send(JSON.stringify(hello()));
    assert.ok(await until(() => t.got.some((m) => m.type === 'welcome')));
    // In one burst: enough garbage to be closed, then 500 valid messages already on their way.
    for (let i = 0; i < 6; i++) t.ws.send('garbage');
    for (let s = 2; s <= 501; s++) t.ws.send(JSON.stringify(log(s)));
    assert.ok(await until(() => t.closeCode() !== 0));
    await sleep(200);
    assert.equal(hub.run(RUN)!.lastSeq, 1, 'no frame after the decision was stored or delivered');
  } finally { await hub.close(); }
});

test('command rate limits are per viewer token, not per connection: a second dashboard connection does not double the budget', async () => {
  const dir = tempDir();
  const hub = await Hub.start({ heartbeatMs: 60_000, commandRate: 1, commandBurst: 10, maxInFlight: 1000 });
  const { token } = hub.openRun(RUN, dir);
  try {
    const t = await trainerSocket(hub, token);
    t.ws.send(JSON.stringify(hello()));
    assert.ok(await until(() => t.got.some((m) => m.type === 'welcome')));
    const viewers = await Promise.all([viewerSocket(hub), viewerSocket(hub), viewerSocket(hub)]);
    viewers.forEach((v, j) => {
      for (let i = 0; i < 10; i++) v.ws.send(JSON.stringify({ v: 1, type: 'command', requestId: `r${j}-${i}`, runId: RUN, command: { kind: 'set', fusionThreshold: 0.5 } }));
    });
    const results = () => viewers.flatMap((v) => v.got.filter((m) => m.type === 'commandResult'));
    assert.ok(await until(() => results().length === 30));
    const forwarded = results().filter((m) => m.type === 'commandResult' && m.commandId).length;
    assert.ok(forwarded <= 12, `${forwarded} of 30 forwarded with a burst of 10`);
    viewers.forEach((v) => v.ws.close());
    t.ws.close();
  } finally { await hub.close(); }
});

function gc(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

test('1,500 subscribes from a viewer that does not read are coalesced: memory stays bounded and it ends with one complete snapshot', async () => {
  const dir = tempDir();
  // A record of ~8 MB: 1,500 uncoalesced snapshots of it would be 12 GB.
  const lines: string[] = [JSON.stringify(hello())];
  for (let s = 2; s <= 4000; s++) lines.push(JSON.stringify(log(s, `${s} ${'x'.repeat(2000)}`)));
  writeFileSync(join(dir, 'events.jsonl'), lines.join('\n') + '\n');
  const hub = await Hub.start({ heartbeatMs: 60_000, slowViewerBytes: 1 << 20 });
  hub.openRun(RUN, dir);
  try {
    await hub.run(RUN)!.ready;
    const v = await viewerSocket(hub);
    const socket = (v.ws as unknown as { _socket: import('node:net').Socket })._socket;
    gc();
    const before = process.memoryUsage();
    socket.pause();
    for (let i = 0; i < 1500; i++) v.ws.send(JSON.stringify({ v: 1, type: 'subscribe', runId: RUN }));
    await sleep(1500);
    gc();
    const during = process.memoryUsage();
    const grew = (during.heapUsed + during.arrayBuffers) - (before.heapUsed + before.arrayBuffers);
    assert.ok(grew < 64 << 20, `heap + buffers grew ${(grew / 2 ** 20).toFixed(0)} MiB`);
    socket.resume();
    const parts = () => v.got.filter((m) => m.type === 'snapshot');
    const complete = () => { const p = parts(); return p.length > 0 && p.at(-1)?.type === 'snapshot' && !p.at(-1)!.more; };
    assert.ok(await until(() => complete(), 20_000));
    await sleep(500);
    const firsts = parts().filter((m) => m.type === 'snapshot' && !m.continued).length;
    assert.ok(firsts <= 3, `${firsts} snapshots for 1,500 requests`);
    // What it holds at the end: the whole run, each seq once.
    const last = v.got.map((m, i) => (m.type === 'snapshot' && !m.continued ? i : -1)).filter((i) => i >= 0).at(-1)!;
    const seqs = v.got.slice(last).flatMap((m) => (m.type === 'snapshot' ? m.events.map((e) => e.seq) : []));
    assert.deepEqual(seqs, Array.from({ length: 4000 }, (_, i) => i + 1));
    v.ws.close();
  } finally { await hub.close(); }
});

test('the hub never creates or writes a run folder (a deleted folder stays deleted; no write of its own can fail with ENOSPC)', async () => {
  const root = tempDir();
  const dir = join(root, 'gone');
  const hub = await Hub.start({ heartbeatMs: 60_000, pollMs: 50 });
  try {
    hub.openRun(RUN, dir);
    await hub.run(RUN)!.ready;
    await sleep(150);
    assert.equal(existsSync(dir), false);
    // The folder appears later (a trainer started afterwards): it is followed.
    mkdirSync(dir);
    writeFileSync(join(dir, 'events.jsonl'), JSON.stringify(hello()) + '\n');
    assert.ok(await until(() => hub.run(RUN)!.lastSeq === 1));
  } finally { await hub.close(); }
});
