/**
 * The built-in trainer under faults (issues 12.3–12.5, 13.5, 13.7–13.9, 13.14): checkpoints with a completion marker
 * and checksums, resume that falls back past a torn or corrupt checkpoint and says why, a torn events.jsonl, a crash
 * between checkpoints, non-finite numbers, disk full, a run folder deleted under a live trainer, and bad files in a
 * config — each failing with a message that names the file (and field).
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { parseRunConfig, readRunConfig, type RunConfig } from '../src/trainer/config/runConfig';
import { TrainingRun } from '../src/trainer/process/trainingRun';
import { selectBackend } from '../src/trainer/engine/backend';
import { SRLoRAEngine } from '../src/trainer/engine/engine';
import { readJsonl } from '../src/runfolder/eventLog';
import { checkpointDir, COMPLETE_MARKER, latestCompleteCheckpoint, verifyCheckpoint, writeCheckpoint } from '../src/runfolder/checkpoints';
import { latestCheckpoint } from '../src/runfolder/runFiles';
import { EventRecorder, NonFiniteError } from '../src/trainer/link/recorder';
import { Hub } from '../src/hub/hub';
import type { TrainerMessage } from '../src/protocol/messages';
import { tempDir, until } from './helpers/tmp';

const root = join(import.meta.dirname, '..');
const cli = join(root, 'dist/cli.js');
const quick = (over: Record<string, unknown> = {}): RunConfig =>
  parseRunConfig({ model: { kind: 'mlp' }, steps: 30, evalEvery: 1000, checkpointEvery: 10, importanceEvery: 5, r: 4, rTarget: 12, batchSize: 16, ...over });
const events = (dir: string) => readJsonl<TrainerMessage>(join(dir, 'events.jsonl')).events;
/** The latest loss per step: what every view keeps after a rewind. */
const lossesOf = (msgs: TrainerMessage[]) => {
  const m = new Map<number, number>();
  for (const e of msgs) {
    if (e.type === 'rewind') for (const s of [...m.keys()]) if (s > e.step) m.delete(s);
    if (e.type === 'metrics') for (const r of e.rows) m.set(r.step, r.loss);
  }
  return m;
};
/** Every line of a run's events.jsonl parses with a strict JSON parser. */
const strictLines = (dir: string) => {
  const text = readFileSync(join(dir, 'events.jsonl'), 'utf8');
  for (const line of text.split('\n').filter(Boolean)) JSON.parse(line);
};

before(async () => { await selectBackend('auto'); });

test('a checkpoint folder carries COMPLETE.json with each file\'s size and sha256; verification names what is wrong', () => {
  const run = tempDir();
  const dir = writeCheckpoint(run, 7, (tmp) => {
    writeFileSync(join(tmp, 'a.bin'), Buffer.from([1, 2, 3]));
    mkdirSync(join(tmp, 'sub'));
    writeFileSync(join(tmp, 'sub/b.json'), '{}');
  });
  assert.equal(dir, checkpointDir(run, 7));
  const marker = JSON.parse(readFileSync(join(dir, COMPLETE_MARKER), 'utf8')) as { step: number; files: Record<string, { bytes: number; sha256: string }> };
  assert.equal(marker.step, 7);
  assert.deepEqual(marker.files['a.bin'], { bytes: 3, sha256: '039058c6f2c0cb492c533b0a4d14ef77cc0f78abccced5287d84a1a2011cfb81' });
  assert.equal(marker.files['sub/b.json'].bytes, 2);
  assert.deepEqual(verifyCheckpoint(dir), { ok: true, step: 7 });
  // A flipped byte: same size, other hash.
  writeFileSync(join(dir, 'a.bin'), Buffer.from([1, 2, 4]));
  assert.deepEqual(verifyCheckpoint(dir, { hashes: false }), { ok: true, step: 7 }, 'sizes alone cannot see it');
  assert.match((verifyCheckpoint(dir) as { reason: string }).reason, /a\.bin does not match its sha256/);
  writeFileSync(join(dir, 'a.bin'), Buffer.from([1, 2]));
  assert.match((verifyCheckpoint(dir) as { reason: string }).reason, /a\.bin has 2 bytes, COMPLETE\.json says 3/);
  rmSync(join(dir, 'sub/b.json'));
  writeFileSync(join(dir, 'a.bin'), Buffer.from([1, 2, 3]));
  assert.match((verifyCheckpoint(dir) as { reason: string }).reason, /sub\/b\.json is missing/);
  rmSync(join(dir, COMPLETE_MARKER));
  assert.match((verifyCheckpoint(dir) as { reason: string }).reason, /no COMPLETE\.json/);
  writeFileSync(join(dir, COMPLETE_MARKER), '{"step": 7, "fi');
  assert.match((verifyCheckpoint(dir) as { reason: string }).reason, /COMPLETE\.json is unreadable/);
  // Writing step 7 again replaces the broken folder instead of keeping it.
  writeCheckpoint(run, 7, (tmp) => writeFileSync(join(tmp, 'a.bin'), 'x'));
  assert.deepEqual(verifyCheckpoint(dir), { ok: true, step: 7 });
  // No temporary folder is left behind.
  assert.deepEqual(readJsonl(join(run, 'none')).events, []);
});

test('latestCompleteCheckpoint takes the newest verified folder and lists the newer ones it skipped, with why', () => {
  const run = tempDir();
  for (const s of [10, 20, 30]) writeCheckpoint(run, s, (tmp) => writeFileSync(join(tmp, 'state.bin'), `state ${s}`));
  mkdirSync(join(run, 'checkpoints/step-40')); // a half-written folder (no marker)
  writeFileSync(join(run, 'checkpoints/step-40/state.bin'), 'half');
  const flip = join(checkpointDir(run, 30), 'state.bin');
  const b = readFileSync(flip); b[0] ^= 1; writeFileSync(flip, b);
  const choice = latestCompleteCheckpoint(run);
  assert.equal(choice.dir, checkpointDir(run, 20));
  assert.equal(choice.step, 20);
  assert.deepEqual(choice.skipped.map((s) => s.step), [40, 30]);
  assert.match(choice.skipped[0].reason, /no COMPLETE\.json/);
  assert.match(choice.skipped[1].reason, /sha256/);
  // The cheap question (can this run continue?) checks sizes: the flipped byte is left to the trainer's resume.
  assert.equal(latestCheckpoint(run), checkpointDir(run, 30));
  assert.equal(latestCompleteCheckpoint(tempDir()).dir, null);
});

test('resume after a crash between checkpoints and a torn last line: rewind to the checkpoint, then the losses of an uninterrupted run, one value per step', async () => {
  const cfg = quick({ steps: 30, checkpointEvery: 10, seed: 4 });
  const a = join(tempDir(), 'run-a');
  assert.equal(await (await TrainingRun.create({ config: cfg, runDir: a, baseDir: root })).run(), 'finished');
  const b = join(tempDir(), 'run-b');
  const first = await TrainingRun.create({
    config: cfg, runDir: b, baseDir: root,
    hooks: { atControlPoint: (step) => { if (step === 15) throw new Error('simulated crash'); } },
  });
  assert.equal(await first.run(), 'failed');
  assert.ok(lossesOf(events(b)).has(15), 'steps after the checkpoint were logged before the crash');
  appendFileSync(join(b, 'events.jsonl'), '{"v":1,"type":"metrics","runId":"run-b","seq":'); // a torn write
  const logs: string[] = [];
  const second = await TrainingRun.create({ config: cfg, runDir: b, baseDir: root, resume: true, onLog: (l) => logs.push(l) });
  assert.equal(second.step, 10);
  assert.equal(await second.run(), 'finished');
  strictLines(b);
  const msgs = events(b);
  assert.deepEqual(msgs.map((m) => m.seq), msgs.map((_, i) => i + 1), 'seq continues after the cut torn line');
  const rewinds = msgs.filter((m) => m.type === 'rewind');
  assert.equal(rewinds.length, 1);
  assert.deepEqual({ step: rewinds[0].step, checkpoint: rewinds[0].checkpoint }, { step: 10, checkpoint: join('checkpoints', 'step-10') });
  assert.equal(rewinds[0].incarnation, second.incarnation);
  const la = lossesOf(events(a)), lb = lossesOf(msgs);
  assert.deepEqual([...lb.keys()].sort((x, y) => x - y), Array.from({ length: 30 }, (_, i) => i + 1));
  for (let s = 1; s <= 30; s++) assert.equal(lb.get(s), la.get(s), `step ${s}`);
  // The export's direction history: one entry per recomposition step (those of steps 11–15 were logged twice).
  type Dir = { layers: { layer: string; recompositions: { step: number }[] }[] };
  const hb = JSON.parse(readFileSync(join(b, 'export/directions.json'), 'utf8')) as Dir;
  const ha = JSON.parse(readFileSync(join(a, 'export/directions.json'), 'utf8')) as Dir;
  assert.deepEqual(hb.layers, ha.layers);
  const recSteps = msgs.filter((m) => m.type === 'recomposition').map((m) => m.step);
  assert.ok(recSteps.length > new Set(recSteps).size, `the log holds a recomposition twice (${recSteps}): the test exercises the dedup`);
});

test('resume skips a half-written and a corrupt newer checkpoint, says why, and continues from the older one', async () => {
  const cfg = quick({ steps: 30, checkpointEvery: 10, seed: 2 });
  const a = join(tempDir(), 'run-a');
  assert.equal(await (await TrainingRun.create({ config: cfg, runDir: a, baseDir: root })).run(), 'finished');
  const la = lossesOf(events(a));
  // step-30: a flipped byte in state.safetensors; step-20: half written (the marker never came).
  const f = join(a, 'checkpoints/step-30/state.safetensors');
  const buf = readFileSync(f); buf[buf.length - 3] ^= 0x40; writeFileSync(f, buf);
  rmSync(join(a, 'checkpoints/step-20', COMPLETE_MARKER));
  truncateSync(join(a, 'checkpoints/step-20/state.safetensors'), 100);
  const logs: string[] = [];
  const again = await TrainingRun.create({ config: cfg, runDir: a, baseDir: root, resume: true, onLog: (l) => logs.push(l) });
  assert.equal(again.step, 10);
  // the folder's absolute path, as every path the terminal shows
  assert.ok(logs.some((l) => l.startsWith(`not resuming from ${join(a, 'checkpoints/step-30')}: state.safetensors does not match its sha256`)), logs.join('\n'));
  assert.ok(logs.some((l) => l.startsWith(`not resuming from ${join(a, 'checkpoints/step-20')}: no ${COMPLETE_MARKER}`)), logs.join('\n'));
  assert.equal(await again.run(), 'finished');
  const msgs = events(a);
  const warn = msgs.filter((m) => m.type === 'log' && m.level === 'warn' && m.text.startsWith('not resuming'));
  assert.equal(warn.length, 2, 'the skipped checkpoints are in the record too');
  assert.equal(msgs.filter((m) => m.type === 'rewind').at(-1)!.step, 10);
  const lb = lossesOf(msgs);
  for (let s = 11; s <= 30; s++) assert.equal(lb.get(s), la.get(s), `step ${s}`);
  assert.deepEqual(verifyCheckpoint(join(a, 'checkpoints/step-30')), { ok: true, step: 30 }, 'the corrupt checkpoint was rewritten');
  // With no complete checkpoint at all, resume refuses and says why.
  for (const s of [10, 20, 30]) rmSync(join(a, `checkpoints/step-${s}`, COMPLETE_MARKER));
  await assert.rejects(TrainingRun.create({ config: cfg, runDir: a, baseDir: root, resume: true }), /has no complete checkpoint to resume from \(checkpoints\/step-30: no COMPLETE\.json/);
});

test('non-finite gradients skip the optimiser update and the importance EMAs; the step, ages and schedule go on', async () => {
  const W0 = Float32Array.from({ length: 30 }, (_, i) => Math.sin(i + 1));
  const T = tf.tensor2d(Float32Array.from({ length: 30 }, (_, i) => Math.cos(i)), [6, 5]);
  const engine = new SRLoRAEngine([{ name: 'l', W0, out: 6, in: 5 }], {
    method: 'srlora', r: 2, alpha: 2, totalSteps: 10, optimizer: { type: 'adam', lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8 }, seed: 1,
  });
  const l = engine.layers[0];
  const loss = () => tf.tidy(() => tf.mean(tf.square(tf.sub(l.forward(tf.eye(5)), tf.transpose(T)))) as tf.Scalar);
  engine.optimizeStep(loss);
  const snap = () => ({ A: Array.from(l.A.dataSync()), B: Array.from(l.B.dataSync()), S: Array.from(l.pairScores()), t: engine.optimizer.t });
  const before = snap();
  for (const fault of [Infinity, NaN]) {
    const r = engine.optimizeStep(loss, fault);
    assert.equal(r.nonFiniteGrad, true);
    assert.equal(r.gradNorm, null, 'no grad_norm for a step whose gradients are not finite');
    assert.ok(Number.isFinite(r.loss));
    assert.deepEqual(snap(), before, 'A, B, the EMAs (S) and the optimiser step are untouched');
  }
  assert.equal(engine.step, 3);
  assert.deepEqual(Array.from(l.age), [3, 3]);
  const { grads } = tf.variableGrads(loss, engine.trainableVariables);
  const want = Math.sqrt(Object.values(grads).reduce((a, g) => a + Array.from(g.dataSync()).reduce((b, x) => b + x * x, 0), 0));
  tf.dispose(grads);
  const ok = engine.optimizeStep(loss);
  assert.equal(ok.nonFiniteGrad, false);
  assert.ok(ok.gradNorm !== null && Math.abs(ok.gradNorm - want) <= 1e-5 * want, `gradNorm ${ok.gradNorm}, want ${want}`);
  assert.ok(snap().S.every(Number.isFinite) && snap().t === before.t + 1);
  // A non-finite loss changes nothing at all, not even the step.
  const bad = engine.optimizeStep(() => tf.tidy(() => tf.add(loss(), NaN) as tf.Scalar));
  assert.ok(Number.isNaN(bad.loss));
  assert.equal(engine.step, 4);
  const rec = engine.recompose('forced');
  assert.ok(rec.layers[0].scores.every(Number.isFinite), 'recomposition works on finite scores');
  engine.dispose();
  T.dispose();
});

test('no message holding NaN or Infinity is written: the recorder refuses it, naming the field', () => {
  const dir = tempDir();
  const rec = new EventRecorder('r', dir);
  rec.emit({ type: 'hello', protocol: { major: 1, minor: 1 }, method: 'lora', backend: { name: 'x', device: 'y' }, totalSteps: 1, config: {}, layers: [] });
  assert.throws(() => rec.emit({ type: 'metrics', rows: [{ step: 1, loss: Infinity, lr: 0.1, examplesPerSec: 1 }] }), (e) => e instanceof NonFiniteError && /metrics \/rows\/0\/loss is not a finite number/.test(e.message));
  assert.throws(() => rec.emit({ type: 'eval', step: 1, loss: 1, metrics: { accuracy: NaN } }), /\/metrics\/accuracy/);
  rec.emit({ type: 'log', level: 'info', text: 'still writing' });
  rec.close();
  strictLines(dir);
  assert.deepEqual(readJsonl<TrainerMessage>(join(dir, 'events.jsonl')).events.map((m) => m.type), ['hello', 'log']);
});

test('disk full on events.jsonl (an injected ENOSPC): the run fails naming the file, with its hub link closed', async () => {
  const hub = await Hub.start({ heartbeatMs: 60_000 });
  const runDir = join(tempDir(), 'run-full');
  const { token } = hub.openRun('run-full', runDir);
  const logs: string[] = [];
  let armed = false;
  const run = await TrainingRun.create({
    config: quick({ steps: 20 }), runDir, baseDir: root, hub: { url: hub.url, token }, onLog: (l) => logs.push(l),
    hooks: { atControlPoint: (step) => { if (step === 6) armed = true; } },
  });
  const writer = (run.recorder as unknown as { writer: { appendLine: (l: string) => void } }).writer;
  const append = writer.appendLine.bind(writer);
  writer.appendLine = (line) => {
    if (armed) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    append(line);
  };
  try {
    assert.equal(await run.run(), 'failed');
    assert.ok(logs.some((l) => l === `disk full: ${join(runDir, 'events.jsonl')}`), logs.join('\n'));
    assert.equal(run.link?.connected, false, 'the link is closed');
    strictLines(runDir);
  } finally {
    await hub.close();
  }
});

const canMountTmpfs = spawnSync('unshare', ['-rm', 'sh', '-c', 'mount -t tmpfs -o size=64k tmpfs /mnt'], { stdio: 'ignore' }).status === 0;

test('disk full for real (a 600 KiB tmpfs): the CLI trainer exits non-zero with "disk full: FILE" even with a hub connected', { skip: canMountTmpfs ? false : 'cannot mount a tmpfs here (needs user namespaces); the injected ENOSPC test covers the trainer' }, async () => {
  const hub = await Hub.start({ heartbeatMs: 60_000 });
  const runsDir = tempDir();
  const runDir = join(runsDir, 'run-tmpfs');
  mkdirSync(runDir);
  const { token } = hub.openRun('run-tmpfs', runDir);
  const child = spawn('unshare', ['-rm', 'sh', '-c', `mount -t tmpfs -o size=600k tmpfs "$0" && exec "${process.execPath}" "${cli}" train --model.kind mlp --steps 200 --checkpoint-every 5 --no-progress`, runDir], {
    env: { ...process.env, SRLORA_HUB_URL: hub.url, SRLORA_TOKEN: token, SRLORA_RUN_DIR: runDir }, stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  try {
    const code = await new Promise<number | null>((r) => child.on('exit', r));
    assert.equal(code, 1, stderr);
    assert.match(stderr, new RegExp(`disk full: ${runDir}/\\S+`));
    assert.doesNotMatch(stderr, /\n\s+at /, 'no stack trace');
    assert.ok(await until(() => hub.run('run-tmpfs') !== undefined && hub.run('run-tmpfs')!.step > 0, 5000), 'the hub saw the run train');
  } finally {
    child.kill('SIGKILL');
    await hub.close();
  }
});

test('a run folder deleted under a live trainer: the run fails loudly and the folder is not re-created', async () => {
  const runDir = join(tempDir(), 'run-deleted');
  const logs: string[] = [];
  const run = await TrainingRun.create({
    config: quick({ steps: 20, checkpointEvery: 10 }), runDir, baseDir: root, onLog: (l) => logs.push(l),
    hooks: { atControlPoint: (step) => { if (step === 4) rmSync(runDir, { recursive: true }); } },
  });
  assert.equal(await run.run(), 'failed');
  assert.ok(logs.some((l) => l.includes(`the run folder ${runDir} was deleted while the run was training`)), logs.join('\n'));
  assert.equal(existsSync(runDir), false, 'no partial folder re-created (no checkpoint, no export)');
});

test('with checkpointEvery 0 a deleted run folder is noticed between checkpoints (a time cadence), not only at the end', async () => {
  const runDir = join(tempDir(), 'run-deleted-no-checkpoints');
  const logs: string[] = [];
  const run = await TrainingRun.create({
    config: quick({ steps: 200, checkpointEvery: 0 }), runDir, baseDir: root, onLog: (l) => logs.push(l), folderCheckMs: 0,
    hooks: { atControlPoint: (step) => { if (step === 4) rmSync(runDir, { recursive: true }); } },
  });
  assert.equal(await run.run(), 'failed');
  assert.equal(run.step, 4, 'it stopped training at the check after the deletion, not at the end of its 200 steps');
  assert.ok(logs.some((l) => l.includes(`the run folder ${runDir} was deleted while the run was training`)), logs.join('\n'));
  assert.equal(existsSync(runDir), false, 'no partial folder re-created');
});

test('the CLI trainer with --checkpoint-every 0 whose run folder is deleted exits 1 with the documented message, without re-creating it', { timeout: 120_000 }, async () => {
  const runDir = join(tempDir(), 'run-cli-deleted');
  const child = spawn(process.execPath, [cli, 'train', '--model.kind', 'mlp', '--steps', '10000000', '--checkpoint-every', '0', '--eval-every', '1000000', '--no-progress'], {
    env: { ...process.env, SRLORA_RUN_DIR: runDir, SRLORA_HUB_URL: '' }, stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((r) => child.on('exit', r));
  try {
    assert.ok(await until(() => existsSync(join(runDir, 'events.jsonl')) && readFileSync(join(runDir, 'events.jsonl'), 'utf8').includes('"metrics"'), 60_000, 200), `it trains: ${stderr}`);
    rmSync(runDir, { recursive: true });
    // Without the cadence it would train its 10 million steps: the test's timeout would end it, failing.
    assert.equal(await exited, 1, stderr);
    assert.match(stderr, new RegExp(`the run folder ${runDir} was deleted while the run was training`));
    assert.doesNotMatch(stderr, /\n\s+at /, 'no stack trace');
    assert.equal(existsSync(runDir), false, 'no partial folder re-created');
  } finally {
    child.kill('SIGKILL');
  }
});

test('a run folder replaced by another one: the run fails instead of writing into the new folder', async () => {
  const runDir = join(tempDir(), 'run-replaced');
  const logs: string[] = [];
  const run = await TrainingRun.create({
    config: quick({ steps: 12, checkpointEvery: 0 }), runDir, baseDir: root, onLog: (l) => logs.push(l),
    hooks: { atControlPoint: (step) => { if (step === 3) { rmSync(runDir, { recursive: true }); mkdirSync(runDir); } } },
  });
  assert.equal(await run.run(), 'failed');
  assert.ok(logs.some((l) => l.includes('was replaced by another folder')), logs.join('\n'));
  assert.equal(existsSync(join(runDir, 'checkpoints')), false);
});

test('bad files in a config: every error names the field and the file, reads a bounded amount, and leaves no run folder', async () => {
  const d = tempDir();
  const runDir = join(d, 'runs', 'x');
  const fails = async (over: Record<string, unknown>, pattern: RegExp) => {
    await assert.rejects(TrainingRun.create({ config: quick(over), runDir, baseDir: d }), (e: Error) => {
      assert.match(e.message, pattern);
      assert.ok(e.message.length < 600, `a short message (${e.message.length} characters)`);
      return true;
    });
    assert.equal(existsSync(runDir), false, `${JSON.stringify(over)}: no run folder left`);
  };
  mkdirSync(join(d, 'weights.safetensors'));
  await fails({ model: { kind: 'mlp', weights: 'weights.safetensors' } }, /^\/model\/weights: .*weights\.safetensors is a directory/);
  writeFileSync(join(d, 'nul.safetensors'), Buffer.alloc(4096));
  await fails({ model: { kind: 'mlp', weights: 'nul.safetensors' } }, /^\/model\/weights: .*nul\.safetensors: not a safetensors file/);
  await fails({ model: { kind: 'mlp', weights: 'missing.safetensors' } }, /^\/model\/weights: base model .*missing\.safetensors not found/);
  // A 1 GiB CSV (sparse: no disk used) is refused by its size before it is read.
  writeFileSync(join(d, 'big.csv'), 'a,label\n');
  truncateSync(join(d, 'big.csv'), 2 ** 30);
  await fails({ task: { kind: 'tabular', train: 'big.csv' } }, /^\/task\/train: .*big\.csv is 1024 MiB; the built-in trainer reads data files up to 256 MiB/);
  mkdirSync(join(d, 'dir.csv'));
  await fails({ task: { kind: 'tabular', train: 'dir.csv' } }, /^\/task\/train: .*dir\.csv: is a directory/);
  writeFileSync(join(d, 'ok.csv'), 'a,label\n1,0\n2,1\n3,0\n4,1\n5,0\n');
  await fails({ task: { kind: 'tabular', train: 'ok.csv', eval: 'nope.csv' } }, /^\/task\/eval: .*nope\.csv: no such file/);
  writeFileSync(join(d, 'long.csv'), `a,label\n${'9'.repeat(100_000)}x,0\n`);
  await fails({ task: { kind: 'tabular', train: 'long.csv' } }, /long\.csv:2: column "a" is not a number: "9{40}…"/);
});

test('srlora export refuses a corrupt checkpoint instead of exporting it silently', async () => {
  const runDir = join(tempDir(), 'run-export');
  assert.equal(await (await TrainingRun.create({ config: quick({ steps: 10, checkpointEvery: 5 }), runDir, baseDir: root })).run(), 'finished');
  const f = join(runDir, 'checkpoints/step-10/state.safetensors');
  const buf = readFileSync(f); buf[buf.length - 1] ^= 1; writeFileSync(f, buf);
  const r = spawnSync(process.execPath, [cli, 'export', runDir, '--checkpoint', join(runDir, 'checkpoints/step-10')], { encoding: 'utf8' });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /step-10: state\.safetensors does not match its sha256/);
  const ok = spawnSync(process.execPath, [cli, 'export', runDir, '--checkpoint', join(runDir, 'checkpoints/step-5')], { encoding: 'utf8' });
  assert.equal(ok.status, 0, ok.stderr);
});

test('a bad config file: a directory, 2 MiB of NUL bytes, a huge value — one short line naming the file (and field)', () => {
  const d = tempDir();
  const short = (fn: () => unknown, pattern: RegExp) => assert.throws(fn, (e: Error) => {
    assert.match(e.message, pattern);
    assert.ok(e.message.length < 400, `${e.message.length} characters`);
    return true;
  });
  mkdirSync(join(d, 'dir.srlora.json'));
  short(() => readRunConfig(join(d, 'dir.srlora.json')), /dir\.srlora\.json: is a directory/);
  writeFileSync(join(d, 'nul.srlora.json'), Buffer.alloc(2 << 20));
  short(() => readRunConfig(join(d, 'nul.srlora.json')), /nul\.srlora\.json: is 2097152 bytes; a run config is at most 1048576 bytes/);
  writeFileSync(join(d, 'small-nul.srlora.json'), Buffer.alloc(100));
  short(() => readRunConfig(join(d, 'small-nul.srlora.json')), /small-nul\.srlora\.json: not a text file/);
  writeFileSync(join(d, 'long.srlora.json'), JSON.stringify({ name: 'n'.repeat(100_000) }));
  short(() => readRunConfig(join(d, 'long.srlora.json')), /long\.srlora\.json: \/name: must have at most 200 characters, got 100000$/); // its length, not the value
  short(() => readRunConfig(join(d, 'missing.srlora.json')), /missing\.srlora\.json: no such file/);
});
