/**
 * Issue 12 item 7, the hub's side: opening a long run's record costs little and holds little. A channel starts from
 * the run's summary.json (the one reducer's model up to a byte offset, as the run manager writes it) when it still
 * fits the log, and reads only what follows; a summary that does not fit is ignored and the log folded from byte 0.
 * Either way viewers get the same snapshot, and a trainer's resent old seq is still compared with the record. What a
 * channel holds per run is bounded by bytes, not by a count of (possibly 28 KB) records.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, copyFileSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { WebSocket } from 'ws';
import { Hub } from '../src/hub/hub';
import { readJsonl } from '../src/runfolder/eventLog';
import { LogFollower, SUMMARY_FILE, writeSummary } from '../src/runfolder/summary';
import { validateTrainerMessage } from '../src/protocol/validate';
import { applyMessage, emptyRun, foldRun, type RunModel } from '../src/viewmodel/runModel';
import type { HubMessage, TrainerMessage } from '../src/protocol/messages';
import { tempDir, until } from './helpers/tmp';

const RUN = 'run-open';
const T0 = 1_800_000_000_000;
const line = (m: object) => JSON.stringify(m) + '\n';
const hello = () => ({
  v: 1, type: 'hello', runId: RUN, seq: 1, time: T0, protocol: { major: 1, minor: 1 }, method: 'srlora', backend: { name: 'cpu', device: 'cpu' },
  totalSteps: 100_000, config: {}, layers: [0, 1, 2, 3].map((i) => ({ name: `l${i}`, shape: [16, 16], r: 4, rTarget: 8 })),
});
const metrics = (seq: number, step: number) => ({ v: 1, type: 'metrics', runId: RUN, seq, time: T0 + seq, rows: [{ step, loss: 1 / step, lr: 1e-3, examplesPerSec: 10 }] });
const importance = (seq: number, step: number, slots = 8, layers = 4) => ({
  v: 1, type: 'importance', runId: RUN, seq, time: T0 + seq, step,
  layers: Array.from({ length: layers }, (_, l) => ({
    name: `l${l}`, S: Array.from({ length: slots }, (_, i) => ((i * 7 + l + step) % 13) * 1e-4), sHat: Array.from({ length: slots }, (_, i) => ((i + step) % 11) / 10),
    age: Array.from({ length: slots }, () => step), direction: Array.from({ length: slots }, (_, i) => i), p: 4, rTarget: 8,
  })),
});
const logMsg = (seq: number) => ({ v: 1, type: 'log', runId: RUN, seq, time: T0 + seq, level: 'info', text: `line ${seq} ${'x'.repeat(100)}` });

/** Lines seq from..to: metrics every seq, an importance snapshot every other. */
function records(from: number, to: number): string {
  let text = '';
  for (let seq = from; seq <= to; seq++) text += line(seq % 2 ? importance(seq, seq) : metrics(seq, seq));
  return text;
}

/** summary.json as the run manager writes it: the one reducer over the log, up to where it was read. */
function summarise(dir: string): void {
  const f = new LogFollower<RunModel>({
    file: join(dir, 'events.jsonl'), init: () => emptyRun(RUN),
    apply: (m, value) => { const v = validateTrainerMessage(value); if (!v.ok) throw new Error(v.error); applyMessage(m, v.value); },
    lastSeq: (m) => m.lastSeq,
  });
  f.catchUpSync();
  writeSummary(dir, f.toCache((m) => ({ ...m, latestImportance: null })));
}

/** The snapshot a viewer ends up holding (parts appended), and the parts' truncated flag. */
async function snapshotOf(hub: Hub): Promise<{ events: TrainerMessage[]; truncated: boolean }> {
  const events: TrainerMessage[] = [];
  let truncated = false;
  let done = false;
  const off = hub.subscribe(RUN, (m) => {
    if (m.type !== 'snapshot') return;
    if (!m.continued) events.length = 0;
    events.push(...m.events);
    truncated = m.truncated;
    done = !m.more;
  });
  assert.ok(await until(() => done, 60_000), 'the snapshot completes');
  off();
  return { events, truncated };
}

async function openHub(dir: string) {
  const hub = await Hub.start({ heartbeatMs: 60_000, pollMs: 50 });
  const problems: string[] = [];
  hub.on('rejected', (_w, e) => problems.push(e));
  hub.openRun(RUN, dir);
  await hub.run(RUN)!.ready;
  return { hub, problems };
}

/** A record with a garbage line and a repeated seq early on, 1,200 records, then a summary of it. (A line written
 * under another run id is no longer bad: a run folder is movable, its lines are its run's — test/runMoved.test.ts.) */
function summarisedRun(): { dir: string; file: string } {
  const dir = tempDir();
  const file = join(dir, 'events.jsonl');
  writeFileSync(file, line(hello()) + records(2, 40) + '{garbage\n' + line(metrics(40, 40)) + records(41, 1200));
  summarise(dir);
  return { dir, file };
}

test('a run with a fitting summary.json opens from its byte offset: the part before is not read again, the model is the whole record\'s, the snapshot the same as a full read', async () => {
  const { dir, file } = summarisedRun();
  appendFileSync(file, records(1201, 1300) + line({ v: 1, type: 'state', runId: RUN, seq: 1301, time: T0 + 1301, state: 'paused', step: 1300 }));
  // The same record without a summary: read from byte 0.
  const cold = tempDir();
  copyFileSync(file, join(cold, 'events.jsonl'));
  const a = await openHub(dir);
  const b = await openHub(cold);
  try {
    assert.ok(!a.problems.some((p) => /skipped/.test(p)), `read from the summary's offset, the early bad lines are not read again: ${a.problems.join('\n')}`);
    assert.equal(b.problems.filter((p) => /skipped/.test(p)).length, 2, b.problems.join('\n'));
    const whole = foldRun(RUN, readJsonl<TrainerMessage>(file).events.filter((e, i, all) => i === 0 || e.seq > all[i - 1].seq));
    assert.deepEqual(a.hub.run(RUN)!.model, whole, 'the summary\'s model plus the rest is the one reducer over the whole record');
    assert.deepEqual(b.hub.run(RUN)!.model, whole);
    // the same record in two folders: the same list but for each run's own folder
    const listed = (h: typeof a.hub, folder: string) => h.listRuns().map((r) => { assert.equal(r.dir, folder); return { ...r, dir: '' }; });
    assert.deepEqual(listed(a.hub, dir), listed(b.hub, cold));
    const sa = await snapshotOf(a.hub);
    const sb = await snapshotOf(b.hub);
    assert.ok(sb.truncated, '650 importance snapshots are thinned');
    assert.deepEqual(sa, sb, 'the same snapshot (importance thinned alike, bad lines left out) whichever way the run was opened');
    assert.ok(!sa.events.some((e) => e.runId !== RUN));
    // Both go on streaming what is appended.
    appendFileSync(file, line(metrics(1302, 1301)));
    appendFileSync(join(cold, 'events.jsonl'), line(metrics(1302, 1301)));
    assert.ok(await until(() => a.hub.run(RUN)!.lastSeq === 1302 && b.hub.run(RUN)!.lastSeq === 1302));
    assert.deepEqual(a.hub.run(RUN)!.model, b.hub.run(RUN)!.model);
  } finally {
    await a.hub.close();
    await b.hub.close();
  }
});

test('a summary.json that does not fit its log (offset not at a line boundary, past the end, another inode, another run) is ignored: the log is read from byte 0', async () => {
  const cases: Array<[string, (dir: string, file: string) => void]> = [
    ['offset inside a line', (dir) => {
      const c = JSON.parse(readFileSync(join(dir, SUMMARY_FILE), 'utf8')) as { byteOffset: number };
      writeFileSync(join(dir, SUMMARY_FILE), JSON.stringify({ ...c, byteOffset: c.byteOffset - 3 }));
    }],
    ['log shorter than the offset', (_dir, file) => writeFileSync(file, readFileSync(file).subarray(0, statSync(file).size - 5000))],
    ['log replaced (another inode)', (_dir, file) => { copyFileSync(file, `${file}.new`); renameSync(`${file}.new`, file); }],
    ['another run\'s summary', (dir) => {
      const c = JSON.parse(readFileSync(join(dir, SUMMARY_FILE), 'utf8')) as { model: RunModel };
      writeFileSync(join(dir, SUMMARY_FILE), JSON.stringify({ ...c, model: { ...c.model, runId: 'another-run' } }));
    }],
  ];
  for (const [what, spoil] of cases) {
    const { dir, file } = summarisedRun();
    spoil(dir, file);
    const { hub, problems } = await openHub(dir);
    try {
      assert.equal(problems.filter((p) => /skipped/.test(p)).length, 2, `${what}: read from byte 0\n${problems.join('\n')}`);
      const whole = foldRun(RUN, readJsonl<TrainerMessage>(file).events.filter((e) => e.runId === RUN));
      assert.deepEqual(hub.run(RUN)!.model, whole, what);
    } finally {
      await hub.close();
    }
  }
});

test('a trainer resending an old seq (no longer in the hub\'s memory, or before the summary\'s offset) is compared with the record: the same is a duplicate, different is refused', async () => {
  for (const withSummary of [false, true]) {
    const dir = tempDir();
    const file = join(dir, 'events.jsonl');
    let text = line(hello());
    for (let seq = 2; seq <= 3000; seq++) text += line(logMsg(seq));
    writeFileSync(file, text);
    if (withSummary) summarise(dir);
    const { hub } = await openHub(dir);
    const ws = new WebSocket(`${hub.url}/trainer`, { headers: { Authorization: `Bearer ${hub.openRun(RUN, dir).token}` } });
    const got: HubMessage[] = [];
    ws.on('message', (d) => got.push(JSON.parse(d.toString()) as HubMessage));
    try {
      await new Promise<void>((res, rej) => { ws.once('open', () => res()); ws.once('error', rej); });
      ws.send(JSON.stringify(hello()));
      assert.ok(await until(() => got.some((m) => m.type === 'welcome')), 'the same hello is the run\'s');
      for (const seq of [5, 1500, 2999]) ws.send(JSON.stringify(logMsg(seq))); // the same content: duplicates
      ws.send(JSON.stringify({ ...logMsg(7), text: 'something else' }));
      ws.send(JSON.stringify({ ...logMsg(1501), text: 'something else' }));
      assert.ok(await until(() => got.filter((m) => m.type === 'error').length >= 2));
      await new Promise((r) => setTimeout(r, 100));
      const errors = got.filter((m) => m.type === 'error');
      assert.deepEqual(errors.map((m) => m.type === 'error' && [m.code, m.refSeq]), [['divergent', 7], ['divergent', 1501]], `summary ${withSummary}: ${JSON.stringify(errors)}`);
    } finally {
      ws.close();
      await hub.close();
    }
  }
});

function gc(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}
const used = () => { const m = process.memoryUsage(); return m.heapUsed + m.arrayBuffers; };

test('an open run holds little however large its records: 1,000 importance snapshots of 48 layers × 32 slots (~28 KB each)', async () => {
  const dir = tempDir();
  const file = join(dir, 'events.jsonl');
  writeFileSync(file, line(hello()));
  for (let seq = 2; seq <= 2000; seq += 100) {
    let text = '';
    for (let s = seq; s < seq + 100; s++) text += line(s % 2 ? importance(s, s, 32, 48) : metrics(s, s));
    appendFileSync(file, text);
  }
  assert.ok(statSync(file).size > 25e6, `${statSync(file).size} bytes`);
  const hub = await Hub.start({ heartbeatMs: 60_000 });
  try {
    gc();
    const base = used();
    hub.openRun(RUN, dir);
    await hub.run(RUN)!.ready;
    assert.equal(hub.run(RUN)!.lastSeq, 2001);
    gc();
    const held = used() - base;
    assert.ok(held < 8 << 20, `the open run holds ${(held / 2 ** 20).toFixed(1)} MiB`);
  } finally {
    await hub.close();
  }
});
