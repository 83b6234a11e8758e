/**
 * The shared steering vectors (test/vectors/steering/README.md) run through the built-in trainer: each case's
 * script is delivered at the control points of a real TrainingRun, and the acks, states, recompositions,
 * checkpoints and rows it records must be what the case expects — the same the PyTorch trainer must produce.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseRunConfig } from '../src/trainer/config/runConfig';
import { TrainingRun } from '../src/trainer/process/trainingRun';
import { selectBackend } from '../src/trainer/engine/backend';
import { readJsonl } from '../src/runfolder/eventLog';
import { validateTrainerMessage } from '../src/protocol/validate';
import type { CommandBody, TrainerMessage } from '../src/protocol/messages';
import { tempDir } from './helpers/tmp';

const root = join(import.meta.dirname, '..');
const dir = join(root, 'test/vectors/steering');

type NonFinite = 'inf' | '-inf' | 'nan';
interface Case {
  name: string;
  config: Record<string, unknown>;
  script: ({ afterStep: number; id: string; command: CommandBody } | { afterStep: number; signal: 'SIGTERM' | 'SIGINT' })[];
  faults?: { step: number; loss?: NonFinite; grad?: NonFinite }[];
  expected: {
    hello: { srlora?: unknown };
    acks: { id: string; status: 'applied' | 'rejected'; step?: number; reason?: string[]; settings?: unknown }[];
    states: string[];
    final: { state: string; step: number; reason?: string[] };
    lastRowStep: number;
    recompositions: { step: number; trigger: string; layers: string[]; rule: unknown; slotCounts?: number[]; commandId?: string }[];
    checkpoints: number[];
    nonFiniteGradSteps: number[];
  };
}

const value = (v: NonFinite | undefined) => (v === undefined ? undefined : v === 'nan' ? NaN : v === 'inf' ? Infinity : -Infinity);

before(async () => { await selectBackend('auto'); });

const files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
test('the steering vectors exist', () => assert.ok(files.length >= 9, files.join(', ')));

for (const file of files) {
  const c = JSON.parse(readFileSync(join(dir, file), 'utf8')) as Case;
  test(`steering vector ${file}: ${c.name}`, async () => {
    const runDir = join(tempDir(), 'run');
    const run = await TrainingRun.create({
      config: parseRunConfig(c.config, file), runDir, baseDir: root,
      hooks: {
        atControlPoint: (step, r) => {
          for (const s of c.script) {
            if (s.afterStep !== step) continue;
            if ('signal' in s) r.requestStop(`received ${s.signal}`);
            else r.enqueue(s.id, s.command);
          }
        },
        fault: (step) => {
          const f = c.faults?.find((x) => x.step === step);
          return f ? { loss: value(f.loss), grad: value(f.grad) } : null;
        },
      },
    });
    const outcome = await run.run();
    const text = readFileSync(join(runDir, 'events.jsonl'), 'utf8');
    // Every line is strict JSON (JSON.parse rejects NaN/Infinity) and a valid message.
    for (const line of text.split('\n').filter(Boolean)) {
      const v = validateTrainerMessage(JSON.parse(line));
      assert.ok(v.ok, `${line.slice(0, 200)}: ${v.ok ? '' : v.error}`);
    }
    const msgs = readJsonl<TrainerMessage>(join(runDir, 'events.jsonl')).events;
    const e = c.expected;
    const hello = msgs[0];
    assert.ok(hello.type === 'hello');
    assert.deepEqual(hello.srlora, e.hello.srlora, 'hello.srlora');

    // Acks: one `received` per delivered command, then its final ack, in script order.
    const acks = msgs.filter((m) => m.type === 'ack');
    const finals = acks.filter((a) => a.status !== 'received');
    assert.deepEqual(finals.map((a) => a.commandId), e.acks.map((a) => a.id), 'final acks, in order');
    for (const want of e.acks) {
      assert.equal(acks.filter((a) => a.commandId === want.id && a.status === 'received').length, 1, `${want.id} received once`);
      const got = finals.find((a) => a.commandId === want.id)!;
      assert.equal(got.status, want.status, `${want.id}: ${got.reason ?? ''}`);
      assert.equal(got.step, want.status === 'applied' ? want.step : null, `${want.id} step`);
      for (const s of want.reason ?? []) assert.ok(got.reason?.includes(s), `${want.id} reason ${JSON.stringify(got.reason)} names ${s}`);
      if (want.settings) assert.deepEqual(got.settings, want.settings, `${want.id} settings`);
    }

    const states = msgs.filter((m) => m.type === 'state');
    assert.deepEqual(states.map((s) => s.state), e.states, 'state sequence');
    const last = states.at(-1)!;
    assert.equal(last.state, e.final.state);
    assert.equal(outcome, e.final.state);
    assert.equal(last.step, e.final.step, 'final step');
    for (const s of e.final.reason ?? []) assert.ok(last.reason?.includes(s), `final reason ${JSON.stringify(last.reason)} names ${s}`);
    assert.equal(msgs.at(-1), last, 'the final state is the last message');

    const rows = msgs.flatMap((m) => (m.type === 'metrics' ? m.rows : []));
    assert.deepEqual(rows.map((r) => r.step), Array.from({ length: e.lastRowStep }, (_, i) => i + 1), 'one row per step');
    assert.deepEqual(rows.filter((r) => r.nonFiniteGrad).map((r) => r.step), e.nonFiniteGradSteps, 'nonFiniteGrad rows');
    // Issue 15 (test/vectors/scalars.json): a finite grad_norm on every row whose gradients were finite, none on the others.
    assert.deepEqual(rows.filter((r) => r.scalars?.grad_norm === undefined).map((r) => r.step), e.nonFiniteGradSteps, 'rows without grad_norm');

    const recs = msgs.filter((m) => m.type === 'recomposition');
    assert.deepEqual(recs.map((r) => ({
      step: r.step, trigger: r.trigger, layers: r.layers.map((l) => l.name), rule: r.rule,
      ...(r.commandId ? { commandId: r.commandId } : {}),
    })), e.recompositions.map(({ slotCounts: _s, ...r }) => r), 'recompositions');
    e.recompositions.forEach((want, i) => {
      if (want.slotCounts) assert.deepEqual(recs[i].layers.map((l) => l.slots.length), want.slotCounts, `recomposition ${i} at step ${want.step}: slot counts`);
    });
    assert.deepEqual(msgs.filter((m) => m.type === 'checkpoint').map((m) => m.step), e.checkpoints, 'checkpoints');
  });
}
