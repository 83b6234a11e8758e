/**
 * Issue 15: every scalar gets a chart — the trainers send them. One list of names and units (src/protocol/scalars.ts),
 * held equal to test/vectors/scalars.json (which the Python tests read too); the built-in trainer's rows carry the
 * gradient norm on every row and its process memory and CPU once per metrics message.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SCALARS } from '../src/protocol/scalars';
import { readJsonl } from '../src/runfolder/eventLog';
import { parseRunConfig } from '../src/trainer/config/runConfig';
import { TrainingRun } from '../src/trainer/process/trainingRun';
import { SystemScalars } from '../src/trainer/process/systemScalars';
import { selectBackend } from '../src/trainer/engine/backend';
import type { TrainerMessage } from '../src/protocol/messages';
import { tempDir } from './helpers/tmp';

const root = join(import.meta.dirname, '..');
const vector = JSON.parse(readFileSync(join(root, 'test/vectors/scalars.json'), 'utf8')) as { scalars: unknown[] };

before(async () => { await selectBackend('auto'); });

test('the scalar list: src/protocol/scalars.ts is the vector file both trainers are held to; names fit the protocol; units are the suffix; each has its own title', () => {
  assert.deepEqual(vector.scalars, JSON.parse(JSON.stringify(SCALARS)));
  for (const s of SCALARS) {
    assert.match(s.name, /^[A-Za-z0-9_./-]+$/, s.name); // MetricsRow.scalars' key pattern
    assert.ok(s.name.length <= 64, s.name);
    const suffix = { '': null, MiB: '_MiB', '%': '_pct' }[s.unit];
    if (suffix) assert.ok(s.name.endsWith(suffix), `${s.name}: unit ${s.unit} is its suffix`);
    // a title for people (a chart's heading), not the name again, no unit in it (the axis states the unit)
    assert.ok(s.title.trim() && s.title !== s.name && !/MiB|%|_/.test(s.title), `${s.name}: title ${JSON.stringify(s.title)}`);
  }
  assert.equal(new Set(SCALARS.map((s) => s.title)).size, SCALARS.length, 'no two charts share a title');
});

test('SystemScalars: resident memory in MiB and CPU time since the previous sample in % of one core', () => {
  let cpuUs = 1_000_000, ms = 5000;
  const sys = new SystemScalars(() => cpuUs, () => ms, () => 64 * 1024 * 1024);
  cpuUs += 250_000; ms += 500; // 0.25 s of CPU in 0.5 s
  assert.deepEqual(sys.sample(), { 'process/rss_MiB': 64, 'process/cpu_pct': 50 });
  assert.deepEqual(sys.sample(), { 'process/rss_MiB': 64 }, 'no time elapsed: no CPU reading, never a non-finite one');
});

test('built-in trainer: every row carries a finite grad_norm; each metrics message its last row\'s process memory and CPU', async () => {
  const dir = join(tempDir(), 'run-scalars');
  const config = parseRunConfig({ model: { kind: 'mlp' }, steps: 30, evalEvery: 1000, checkpointEvery: 0, importanceEvery: 5, r: 4, rTarget: 12 });
  assert.equal(await (await TrainingRun.create({ config, runDir: dir, baseDir: root })).run(), 'finished');
  const msgs = readJsonl<TrainerMessage>(join(dir, 'events.jsonl')).events.filter((m) => m.type === 'metrics');
  const mine = new Set(SCALARS.filter((s) => s.trainers.includes('builtin')).map((s) => s.name));
  assert.ok(msgs.length >= 1);
  for (const m of msgs) {
    if (m.type !== 'metrics') continue;
    for (const [i, r] of m.rows.entries()) {
      const sc = r.scalars ?? {};
      for (const [k, v] of Object.entries(sc)) { assert.ok(mine.has(k), `${k} is in the shared list for builtin`); assert.ok(Number.isFinite(v)); }
      assert.ok(sc.grad_norm! > 0, `step ${r.step}: grad_norm ${sc.grad_norm}`);
      const last = i === m.rows.length - 1;
      assert.equal('process/rss_MiB' in sc, last, `step ${r.step}: system readings on the message's last row only`);
      if (last) { assert.ok(sc['process/rss_MiB'] > 1); assert.ok(sc['process/cpu_pct'] >= 0); }
    }
  }
});
