/**
 * The extension's hub and run manager with a real PyTorch run (Debian's python3-torch on CPU, launched as a user's
 * `srlora.trainer.command` would be): paused, τ changed, a forced recomposition, stopped.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Hub } from '../src/hub/hub';
import { RunManager } from '../src/supervisor/runManager';
import { probePython, pytorchCommand, pytorchResumeCommand, resumeRanks } from '../src/supervisor/pythonTrainer';
import { readJsonl } from '../src/runfolder/eventLog';
import { readSafetensors } from '../src/runfolder/safetensors';
import { execFileSync } from 'node:child_process';
import { selectBackend } from '../src/trainer/engine/backend';
import { Rng } from '../src/trainer/rng';
import { DIGITS_FILE, loadDigits, SPLIT_SEED, splitDigits } from '../src/trainer/data/digits';
import { loadTabular } from '../src/trainer/data/tabular';
import { architectureFor, evaluate, TrainableModel } from '../src/trainer/models/model';
import type { Ack, TrainerMessage } from '../src/protocol/messages';
import { tempDir, until } from './helpers/tmp';
import { assertSameState } from './helpers/views';

const python = process.env.SRLORA_TEST_PYTHON ?? resolve('.venv/bin/python');
const pkg = join(import.meta.dirname, '../python');
const root = join(import.meta.dirname, '..');

test('the PyTorch trainer is found and described, or its import error is reported exactly', async () => {
  const ok = await probePython(python, { PYTHONPATH: pkg });
  assert.ok(ok.ok, ok.ok ? '' : ok.error);
  if (ok.ok) assert.match(ok.label, /^PyTorch · (CPU|CUDA · .+)$/);
  const missing = await probePython(python, { PYTHONPATH: '/nonexistent' });
  assert.equal(missing.ok, false);
  if (!missing.ok) assert.match(missing.error, /No module named 'srlora_torch'/);
  const noPython = await probePython('/nonexistent/python3', {});
  assert.equal(noPython.ok, false);
  if (ok.ok) assert.ok(Number.isInteger(ok.gpus) && ok.gpus >= 0, 'the probe counts the GPUs Start Run… offers');
});

test('more than one GPU launches torch\'s own launcher (torchrun) from the same Python; a continued run keeps its ranks', () => {
  assert.equal(pytorchCommand('/py/bin/python', 1), '"/py/bin/python" -m srlora_torch.train --config ${config}');
  assert.equal(pytorchCommand('/py/bin/python', 2), '"/py/bin/python" -m srlora_torch.launch --standalone --nproc_per_node=2 -m srlora_torch.train --config ${config}');
  assert.equal(pytorchResumeCommand('/py/bin/python', 4), '"/py/bin/python" -m srlora_torch.launch --standalone --nproc_per_node=4 -m srlora_torch.train --resume ${runDir}');
  assert.equal(resumeRanks(4, 2), 2, 'no more ranks than GPUs now');
  assert.equal(resumeRanks(2, 8), 2);
  assert.equal(resumeRanks(2, 0), 2, 'a CPU (gloo) run keeps its ranks');
  assert.equal(resumeRanks(1, 0), 1);
});

test('the PyTorch trainer sees the built-in task exactly as the built-in trainer does: the same random stream, eval split, transforms and base models', async () => {
  await selectBackend('auto');
  const snippet = [
    'import json, torch',
    'from srlora_torch import digits',
    'r = digits.Rng(7)',
    'out = {"rng": [r.next() for _ in range(5)], "evalHead": digits.split(10000)[1][:20], "acc": {}}',
    'for t in ("upright", "rot90"):',
    '    x, y = digits.load_digits(t); ev = digits.split(len(y))[1]',
    '    for k in ("mlp", "vit"):',
    '        with torch.no_grad(): out["acc"][k + "/" + t] = (digits.base_model(k)(x[ev]).argmax(1) == y[ev]).float().mean().item()',
    'print(json.dumps(out))',
  ].join('\n');
  const py = JSON.parse(execFileSync(python, ['-c', snippet], { env: { ...process.env, PYTHONPATH: pkg }, encoding: 'utf8' })) as { rng: number[]; evalHead: number[]; acc: Record<string, number> };
  const rng = new Rng(7);
  assert.deepEqual(py.rng, Array.from({ length: 5 }, () => rng.next()));
  const idx = Int32Array.from({ length: 10_000 }, (_, i) => i);
  new Rng(SPLIT_SEED).shuffle(idx);
  assert.deepEqual(py.evalHead, Array.from(idx.subarray(0, 20)));
  for (const t of ['upright', 'rot90'] as const) {
    const { eval: ev } = splitDigits(loadDigits(join(root, DIGITS_FILE), t));
    for (const k of ['mlp', 'vit'] as const) {
      const model = new TrainableModel(architectureFor(k), readSafetensors(join(root, `media/models/${k}.safetensors`)).tensors);
      const { accuracy } = evaluate((x) => model.forward(x), ev.features, ev.labels, ev.dim, 10);
      assert.ok(Math.abs(accuracy - py.acc[`${k}/${t}`]) <= 1 / ev.n + 1e-9, `${k}/${t}: ${accuracy} here, ${py.acc[`${k}/${t}`]} in PyTorch`);
    }
  }
  assert.ok(py.acc['vit/upright'] > 0.9 && py.acc['vit/rot90'] < 0.2, 'pretrained upright; rotated is the task');
});

test('your own data reads the same in both trainers: values, labels, the held-out 20 %, and the errors', () => {
  const dir = tempDir();
  const csv = join(dir, 'd.csv'), jsonl = join(dir, 'd.jsonl'), bad = join(dir, 'bad.csv');
  writeFileSync(csv, 'x1, label ,x2\n0.25,1,-3e-2\n 7 ,0,1.5\n\n4,2,0.125\n');
  writeFileSync(jsonl, '{"features":[1,2.5],"label":1}\n\n{"features":[-4,0],"label":0}\n');
  writeFileSync(bad, 'a,label\n1,0\n,1\n');
  const snippet = [
    'import json, sys',
    'from srlora_torch import tabular',
    'out = {}',
    'for f in sys.argv[1:3]:',
    '    x, y = tabular.load_tabular(f)',
    '    out[f] = {"x": x.flatten().tolist(), "y": y.tolist()}',
    'out["heldOut"] = tabular.held_out(23, 5)[1]',
    'try:',
    '    tabular.load_tabular(sys.argv[3])',
    'except ValueError as e:',
    '    out["error"] = str(e)',
    'print(json.dumps(out))',
  ].join('\n');
  const py = JSON.parse(execFileSync(python, ['-c', snippet, csv, jsonl, bad], { env: { ...process.env, PYTHONPATH: pkg }, encoding: 'utf8' })) as Record<string, { x: number[]; y: number[] }> & { heldOut: number[]; error: string };
  for (const f of [csv, jsonl]) {
    const d = loadTabular(f);
    assert.deepEqual(py[f].x, Array.from(d.features), f);
    assert.deepEqual(py[f].y, Array.from(d.labels), f);
  }
  const idx = Int32Array.from({ length: 23 }, (_, i) => i);
  new Rng(5 + 7).shuffle(idx);
  assert.deepEqual(py.heldOut, Array.from(idx.subarray(0, Math.max(1, Math.floor(23 / 5)))));
  assert.throws(() => loadTabular(bad), (e: Error) => e.message === py.error);
  assert.match(py.error, /bad\.csv:3: column "a" is not a number: ""/);
});

test('a real PyTorch run under the extension\'s hub: pause, τ, forced recomposition, stop', async () => {
  const dir = tempDir();
  const hub = await Hub.start({ heartbeatMs: 60_000 });
  process.env.PYTHONPATH = pkg;
  const runs = new RunManager({ runsDir: join(dir, 'runs'), hub, cliPath: '', trainerCommand: `${python} -m srlora_torch.train --steps 100000`, graceMs: 5000 });
  try {
    const run = await runs.start({ cwd: dir, runId: 'torch-run' });
    assert.ok(await until(() => run.model.step >= 3, 60_000), `started: ${run.handle?.stderrTail().join('\n')}`);
    assert.equal(run.model.backend, 'pytorch · CPU');
    assert.equal(run.model.pytorch, true);
    const acked = (id: string) => until(() => readJsonl<TrainerMessage>(join(run.dir, 'events.jsonl')).events.some((m) => m.type === 'ack' && m.commandId === id && m.status !== 'received'), 20_000);
    const ackOf = (id: string) => readJsonl<TrainerMessage>(join(run.dir, 'events.jsonl')).events.find((m): m is Ack => m.type === 'ack' && m.commandId === id && m.status !== 'received')!;
    const send = async (body: Parameters<RunManager['command']>[1]) => {
      const r = runs.command(run.runId, body);
      assert.ok(r.ok, JSON.stringify(r));
      const id = (r as { commandId: string }).commandId;
      assert.ok(await acked(id), `${body.kind} acknowledged`);
      return ackOf(id);
    };
    const pause = await send({ kind: 'pause' });
    assert.equal(pause.status, 'applied');
    assert.ok(await until(() => run.model.state === 'paused', 10_000));
    const set = await send({ kind: 'set', fusionThreshold: 1.1 });
    assert.equal(set.settings?.fusionThreshold, 1.1);
    const bad = await send({ kind: 'recompose', layers: ['nope'] });
    assert.match(bad.reason ?? '', /not adapted: nope/);
    const rec = await send({ kind: 'recompose' });
    assert.equal(rec.status, 'applied');
    const event = readJsonl<TrainerMessage>(join(run.dir, 'events.jsonl')).events.find((m) => m.type === 'recomposition' && m.trigger === 'forced');
    assert.ok(event && event.type === 'recomposition');
    assert.deepEqual(event.rule, { kind: 'threshold', fusionThreshold: 1.1 });
    assert.ok(event.layers.every((l) => l.preservationError < 1e-5));
    await send({ kind: 'resume' });
    await runs.stop(run.runId);
    assert.ok(await until(() => run.model.state === 'stopped', 20_000), run.model.state);
    assert.ok(existsSync(join(run.dir, 'checkpoints')));
    await assertSameState(runs, hub, run.runId, 'stopped');
    // Its export is the built-in trainer's format: our own safetensors reader takes it, one ΔW per adapted layer.
    const hello = readJsonl<TrainerMessage>(join(run.dir, 'events.jsonl')).events.find((m) => m.type === 'hello');
    const delta = readSafetensors(join(run.dir, 'export', 'delta.safetensors'));
    assert.ok(hello?.type === 'hello');
    assert.deepEqual(Object.keys(delta.tensors).sort(), hello.layers.map((l) => `${l.name}.weight`).sort());
    for (const l of hello.layers) assert.deepEqual(delta.tensors[`${l.name}.weight`].shape, l.shape);
    const merged = readSafetensors(join(run.dir, 'export', 'merged.safetensors'));
    assert.equal(merged.metadata.method, 'srlora');
    assert.ok(Object.keys(merged.tensors).some((k) => k.endsWith('attn.q.weight')) && !Object.keys(merged.tensors).some((k) => /\.(A|B|U|S|V|W)$/.test(k)));

    // Continued from its checkpoint by the PyTorch trainer's --resume: the same run goes on, under the same hub.
    const stoppedAt = run.model.step;
    await assert.rejects(runs.continueRun(run.runId), /is a PyTorch run: it needs a Python with torch/);
    await runs.continueRun(run.runId, pytorchResumeCommand(python));
    assert.ok(await until(() => run.model.state === 'running' && run.model.step > stoppedAt + 2, 60_000), `${run.model.state} ${run.model.step}: ${run.handle?.stderrTail().join('\n')}`);
    await runs.stop(run.runId);
    assert.ok(await until(() => run.model.state === 'stopped', 20_000), run.model.state);
    const all = readJsonl<TrainerMessage>(join(run.dir, 'events.jsonl')).events;
    assert.deepEqual(all.map((m) => m.seq), all.map((_, i) => i + 1));
    await assertSameState(runs, hub, run.runId, 'stopped');
  } finally {
    await runs.dispose('stop');
    await hub.close();
  }
});

test('the PyTorch link survives a hub restart: rediscovers it, resends, and the hub log ends complete', async () => {
  const dir = tempDir();
  const runsDir = join(dir, 'runs');
  process.env.PYTHONPATH = pkg;
  const command = `${python} -m srlora_torch.train --steps 100000`;
  const hubA = await Hub.start({ heartbeatMs: 60_000 });
  const first = new RunManager({ runsDir, hub: hubA, cliPath: '', trainerCommand: command });
  const run = await first.start({ cwd: dir, runId: 'torch-reattach' });
  assert.ok(await until(() => run.model.step >= 3, 60_000));
  await first.dispose('detach'); // the window goes away; the trainer keeps training
  await hubA.close();
  await new Promise((r) => setTimeout(r, 500));
  const hubB = await Hub.start({ heartbeatMs: 60_000 });
  const second = new RunManager({ runsDir, hub: hubB, cliPath: '', trainerCommand: command, graceMs: 5000 });
  try {
    second.scan();
    const again = second.get('torch-reattach');
    assert.ok(again.handle?.alive, 'reattached to the live PyTorch trainer');
    assert.ok(await until(() => hubB.run('torch-reattach')?.trainer !== null && (hubB.run('torch-reattach')?.trainer ?? null) !== null, 20_000), 'it reconnected to the new hub');
    await second.stop('torch-reattach');
    assert.ok(await until(() => again.model.state === 'stopped', 20_000), `${again.model.state}: ${again.model.stateReason} ${JSON.stringify(again.model.exit)}`);
    const trainer = readJsonl<TrainerMessage>(join(again.dir, 'events.jsonl')).events.map((m) => m.seq);
    assert.deepEqual(trainer, trainer.map((_, i) => i + 1));
    await assertSameState(second, hubB, 'torch-reattach', 'stopped');
  } finally {
    await second.dispose('stop');
    await hubB.close();
  }
});

test('kill -9 of a PyTorch trainer: a supervisor record says failed, the same in the tree, the hub\'s list and the page', async () => {
  const dir = tempDir();
  const hub = await Hub.start({ heartbeatMs: 60_000 });
  process.env.PYTHONPATH = pkg;
  const runs = new RunManager({ runsDir: join(dir, 'runs'), hub, cliPath: '', trainerCommand: `exec ${python} -m srlora_torch.train --steps 100000` });
  try {
    const run = await runs.start({ cwd: dir, runId: 'torch-killed' });
    assert.ok(await until(() => run.model.step >= 3, 60_000), `started: ${run.handle?.stderrTail().join('\n')}`);
    process.kill(run.handle!.pid, 'SIGKILL');
    assert.ok(await until(() => run.model.state === 'failed', 5000), run.model.state);
    const log = readJsonl<TrainerMessage>(join(run.dir, 'events.jsonl')).events;
    const record = log.at(-1)!;
    assert.ok(record.type === 'state' && record.origin === 'supervisor' && record.exit?.signal === 'SIGKILL', JSON.stringify(record));
    assert.deepEqual(log.map((m) => m.seq), log.map((_, i) => i + 1), 'the record has the next seq');
    assert.match(run.model.stateReason ?? '', /killed by SIGKILL/);
    await assertSameState(runs, hub, run.runId, 'failed');
  } finally {
    await runs.dispose('stop');
    await hub.close();
  }
});
