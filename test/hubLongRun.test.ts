/**
 * Issue 12 item 7: a long run's record opens and keeps streaming with bounded memory. A generated events.jsonl of
 * SRLORA_BIG_LOG_MB (default 128; 1024 for the 1 GB case) with metrics every step and an importance snapshot
 * (16 layers × 64 slots) every 20 steps: the hub folds it, streams a viewer's snapshot in parts (importance thinned
 * to a bounded count, the newest kept), then streams what is appended. Memory is measured with process.memoryUsage.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, closeSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Hub } from '../src/hub/hub';
import { IMPORTANCE_NEWEST, IMPORTANCE_OLDER } from '../src/hub/runChannel';
import { tempDir, until } from './helpers/tmp';

const RUN = 'run-long';
const MB = Number(process.env.SRLORA_BIG_LOG_MB ?? 128);
const T0 = 1_800_000_000_000;

function gc(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}
const used = () => { const m = process.memoryUsage(); return m.heapUsed + m.arrayBuffers; };

/** Writes the log in 8 MB writes; returns the last seq, the step and how many importance snapshots it holds. */
function writeBigLog(file: string, bytes: number): { seq: number; step: number; importance: number } {
  const fd = openSync(file, 'w');
  const layers = Array.from({ length: 16 }, (_, l) => ({
    name: `layer.${l}.attn.q`, S: Array.from({ length: 64 }, (_, i) => ((i * 7 + l) % 13) * 1e-4),
    sHat: Array.from({ length: 64 }, (_, i) => ((i * 5 + l) % 11) / 10), age: Array.from({ length: 64 }, () => 100),
    direction: Array.from({ length: 64 }, (_, i) => i), p: 64, rTarget: 64,
  }));
  let seq = 1;
  let written = 0;
  let chunk: string[] = [JSON.stringify({
    v: 1, type: 'hello', runId: RUN, seq, time: T0, protocol: { major: 1, minor: 1 }, method: 'srlora', backend: { name: 'cpu', device: 'cpu' },
    totalSteps: 100_000_000, config: {}, layers: layers.map((l) => ({ name: l.name, shape: [256, 256], r: 64, rTarget: 64 })),
  })];
  let size = chunk[0].length;
  let step = 0;
  let importance = 0;
  while (written + size < bytes) {
    step++;
    const m = JSON.stringify({ v: 1, type: 'metrics', runId: RUN, seq: ++seq, time: T0 + seq, rows: [{ step, loss: 1 / step, lr: 1e-3, examplesPerSec: 1000 }] });
    chunk.push(m);
    size += m.length + 1;
    if (step % 20 === 0) {
      const imp = JSON.stringify({ v: 1, type: 'importance', runId: RUN, seq: ++seq, time: T0 + seq, step, layers });
      chunk.push(imp);
      size += imp.length + 1;
      importance++;
    }
    if (size > 8 << 20) { written += writeSync(fd, chunk.join('\n') + '\n'); chunk = []; size = 0; }
  }
  if (chunk.length) writeSync(fd, chunk.join('\n') + '\n');
  closeSync(fd);
  return { seq, step, importance };
}

test(`a ${MB} MB record opens with bounded memory, its snapshot streams in parts with importance thinned, and it keeps streaming`, { timeout: 600_000 }, async () => {
  const dir = tempDir();
  const file = join(dir, 'events.jsonl');
  const { seq: lastSeq, step: lastStep, importance } = writeBigLog(file, MB << 20);
  gc();
  const base = used();
  let peak = 0;
  const sample = () => { peak = Math.max(peak, used() - base); };
  const sampler = setInterval(sample, 20);
  const hub = await Hub.start({ heartbeatMs: 60_000 });
  try {
    hub.openRun(RUN, dir);
    await hub.run(RUN)!.ready;
    assert.equal(hub.run(RUN)!.lastSeq, lastSeq);
    assert.equal(hub.listRuns()[0].step, lastStep);
    gc();
    const afterOpen = used() - base;
    // The snapshot: parts, each handed on and dropped, as the page's host does.
    let parts = 0;
    let firsts = 0;
    let events = 0;
    let kept = 0;
    let lastImportanceStep = 0;
    let prev = 0;
    let ordered = true;
    let done = false;
    let truncated = false;
    const live: number[] = [];
    const off = hub.subscribe(RUN, (m) => {
      sample();
      if (m.type === 'snapshot') {
        parts++;
        if (!m.continued) firsts++;
        truncated = m.truncated;
        for (const e of m.events) {
          if (e.seq <= prev) ordered = false;
          prev = e.seq;
          events++;
          if (e.type === 'importance') { kept++; lastImportanceStep = e.step; }
        }
        if (!m.more) done = true;
      } else if (m.type === 'event') live.push(m.event.seq);
    });
    assert.ok(await until(() => done, 300_000), 'the snapshot completes');
    assert.equal(firsts, 1);
    assert.ok(parts > 10, `${parts} parts`);
    assert.ok(ordered, 'in seq order');
    assert.ok(truncated);
    assert.ok(kept <= IMPORTANCE_NEWEST + IMPORTANCE_OLDER + 1, `${kept} of ${importance} importance snapshots kept`);
    assert.equal(lastImportanceStep, Math.floor(lastStep / 20) * 20, 'the newest importance snapshot is kept');
    assert.equal(events, lastSeq - (importance - kept), 'every other record, once');
    // It keeps streaming.
    for (let i = 1; i <= 5; i++) appendFileSync(file, JSON.stringify({ v: 1, type: 'metrics', runId: RUN, seq: lastSeq + i, time: T0, rows: [{ step: lastStep + i, loss: 0.1, lr: 1e-3, examplesPerSec: 1 }] }) + '\n');
    assert.ok(await until(() => live.length === 5, 10_000));
    assert.deepEqual(live, [1, 2, 3, 4, 5].map((i) => lastSeq + i));
    off();
    clearInterval(sampler);
    console.log(`# ${MB} MB record (${lastSeq} records, ${importance} importance snapshots): held after open ${(afterOpen / 2 ** 20).toFixed(1)} MiB, peak ${(peak / 2 ** 20).toFixed(1)} MiB above the start; ${parts} snapshot parts, ${kept} importance kept`);
    assert.ok(afterOpen < 32 << 20, `the open run holds ${(afterOpen / 2 ** 20).toFixed(1)} MiB`);
    assert.ok(peak < 160 << 20, `peak ${(peak / 2 ** 20).toFixed(1)} MiB above the start`);
  } finally {
    clearInterval(sampler);
    await hub.close();
  }
});
