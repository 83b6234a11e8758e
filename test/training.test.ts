import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseJsonc } from 'jsonc-parser';
import { Hub } from '../src/hub/hub';
import { readJsonl } from '../src/runfolder/eventLog';
import { readSafetensors } from '../src/runfolder/safetensors';
import { parseRunConfig, starterConfigText, type RunConfig } from '../src/trainer/config/runConfig';
import { TrainingRun } from '../src/trainer/process/trainingRun';
import { selectBackend } from '../src/trainer/engine/backend';
import type { Ack, TrainerMessage } from '../src/protocol/messages';
import { tempDir, until, sleep } from './helpers/tmp';

const root = join(import.meta.dirname, '..');
const cli = join(root, 'dist/cli.js');
const quick = (over: Record<string, unknown> = {}): RunConfig =>
  parseRunConfig({ model: { kind: 'mlp' }, steps: 40, evalEvery: 20, checkpointEvery: 20, importanceEvery: 5, r: 4, rTarget: 12, ...over });

before(async () => { await selectBackend('auto'); });

const events = (dir: string) => readJsonl<TrainerMessage>(join(dir, 'events.jsonl')).events;
const lossesOf = (msgs: TrainerMessage[]) => {
  const m = new Map<number, number>();
  for (const e of msgs) if (e.type === 'metrics') for (const r of e.rows) m.set(r.step, r.loss);
  return m;
};

test('a bad config fails before any work, naming the field, the value and what is allowed', () => {
  assert.throws(() => parseRunConfig({ r: 0 }), /\/r: must be ≥ 1, got 0/);
  assert.throws(() => parseRunConfig({ method: 'dora' }), /\/method: expected "lora" \| "pissa" \| "srlora", got "dora"/);
  assert.throws(() => parseRunConfig({ fusionTreshold: 0.5 }), /\/fusionTreshold: unknown field \(did you mean "fusionThreshold"\?\)/);
  assert.throws(() => parseRunConfig({ task: { kind: 'tabular' } }), /\/task\/train: required/);
  assert.throws(() => parseRunConfig({ r: 8, rTarget: 4 }), /rTarget.*must be ≥ r/);
  const dir = tempDir();
  const file = join(dir, 'bad.srlora.json');
  writeFileSync(file, '{ "steps": -1 }');
  let stderr = '';
  try {
    execFileSync(process.execPath, [cli, 'train', '--config', file, '--runs-dir', join(dir, 'runs')], { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
  } catch (e) {
    stderr = (e as { stderr: string }).stderr;
  }
  assert.match(stderr, /bad\.srlora\.json.*\/steps: .*got -1/);
  assert.equal(existsSync(join(dir, 'runs')), false, 'no run folder was made');
});

test('srlora init writes a commented config that parses to the defaults; flags override fields', () => {
  const parsed = parseRunConfig(parseJsonc(starterConfigText()));
  const defaults = parseRunConfig({});
  assert.deepEqual({ ...parsed, name: undefined }, { ...defaults, name: undefined });
  assert.match(starterConfigText(), /\/\/ Fusion rule/);
  const dir = tempDir();
  const out = execFileSync(process.execPath, [cli, 'init', join(dir, 'x.srlora.json')], { encoding: 'utf8' });
  assert.match(out, /wrote/);
  assert.throws(() => execFileSync(process.execPath, [cli, 'init', join(dir, 'x.srlora.json')], { stdio: 'pipe' }), /not overwriting/);
});

test('without a hub a run writes events.jsonl, checkpoints, an export, and a progress line', async () => {
  const dir = tempDir();
  const child = spawn(process.execPath, [cli, 'train', '--model.kind', 'mlp', '--steps', '30', '--eval-every', '15', '--checkpoint-every', '15', '--runs-dir', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const code = await new Promise<number | null>((r) => child.on('exit', r));
  assert.equal(code, 0, stderr);
  assert.match(stderr, /step 30\/30 {2}loss \d+\.\d+ {2}\d+ ex\/s {2}ETA 0s/);
  const runDir = join(dir, /run (\S+) →/.exec(stderr)![1]);
  const msgs = events(runDir);
  assert.deepEqual(msgs.map((m) => m.seq), msgs.map((_, i) => i + 1));
  assert.equal(msgs[0].type, 'hello');
  assert.deepEqual([...lossesOf(msgs).keys()], Array.from({ length: 30 }, (_, i) => i + 1));
  const last = msgs.at(-1);
  assert.ok(last?.type === 'state' && last.state === 'finished', 'the log ends with state finished');
  for (const f of ['config.json', 'checkpoints/step-15/state.safetensors', 'checkpoints/step-30/state.json', 'export/merged.safetensors', 'export/delta.safetensors', 'export/directions.json']) {
    assert.ok(existsSync(join(runDir, f)), f);
  }
  // Export: merged = W0 + ΔW for an adapted layer, and the run really changed it.
  const merged = readSafetensors(join(runDir, 'export/merged.safetensors')).tensors['fc1.weight'];
  const delta = readSafetensors(join(runDir, 'export/delta.safetensors')).tensors['fc1.weight'];
  const base = readSafetensors(join(root, 'media/models/mlp.safetensors')).tensors['fc1.weight'];
  let maxErr = 0, norm = 0;
  for (let i = 0; i < base.data.length; i++) { maxErr = Math.max(maxErr, Math.abs(base.data[i] + delta.data[i] - merged.data[i])); norm += delta.data[i] ** 2; }
  assert.ok(maxErr < 1e-5 && norm > 0, `max ${maxErr}, ‖ΔW‖² ${norm}`);
  const hist = JSON.parse(readFileSync(join(runDir, 'export/directions.json'), 'utf8')) as { layers: { layer: string; recompositions: unknown[] }[] };
  assert.ok(hist.layers.every((l) => l.recompositions.length > 0));

  // `srlora export` rebuilds it from the last checkpoint, byte for byte, from any working directory; and from an
  // earlier checkpoint, the model and history of that step.
  type Directions = { from?: { checkpoint: string; step: number }; layers: { layer: string; recompositions: { step: number }[] }[] };
  const original = readFileSync(join(runDir, 'export/merged.safetensors'));
  rmSync(join(runDir, 'export'), { recursive: true });
  const exportCli = (...args: string[]) => execFileSync(process.execPath, [cli, 'export', ...args], { encoding: 'utf8', cwd: tempDir(), stdio: ['ignore', 'pipe', 'pipe'] });
  assert.match(exportCli(runDir), /exported step 30 of .* → .*export/);
  assert.ok(readFileSync(join(runDir, 'export/merged.safetensors')).equals(original), 'the same merged weights as the run wrote');
  const at30 = JSON.parse(readFileSync(join(runDir, 'export/directions.json'), 'utf8')) as Directions;
  assert.deepEqual(at30.from, { checkpoint: join('checkpoints', 'step-30'), step: 30 });
  assert.deepEqual(at30.layers, (hist as Directions).layers);
  exportCli(runDir, '--checkpoint', join(runDir, 'checkpoints', 'step-15'));
  const at15 = JSON.parse(readFileSync(join(runDir, 'export/directions.json'), 'utf8')) as Directions;
  assert.equal(at15.from?.step, 15);
  const recs = (d: Directions) => d.layers.flatMap((l) => l.recompositions.map((r) => r.step));
  assert.ok(recs(at15).every((st) => st <= 15) && recs(at15).length < recs(at30).length, `${recs(at15)} vs ${recs(at30)}`);
  assert.ok(!readFileSync(join(runDir, 'export/merged.safetensors')).equals(original), 'step 15 is another model');
  assert.throws(() => exportCli(dir), /is not a run folder \(no events.jsonl or config.json\)/);
  rmSync(join(runDir, 'checkpoints'), { recursive: true });
  assert.throws(() => exportCli(runDir), /has no checkpoint to export from/);
});

test('steered through a real hub: pause (acked at a step, no spinning), τ change, forced recomposition, a rejected command, stop', async () => {
  const runDir = join(tempDir(), 'run-steer');
  const hub = await Hub.start({ heartbeatMs: 60_000 });
  const { token } = hub.openRun('run-steer', runDir);
  const got: TrainerMessage[] = [];
  hub.on('message', (_id, m) => got.push(m));
  const child = spawn(process.execPath, [cli, 'train', '--model.kind', 'mlp', '--steps', '100000', '--checkpoint-every', '0', '--eval-every', '1000', '--importance-every', '1000', '--no-progress'], {
    env: { ...process.env, SRLORA_HUB_URL: hub.url, SRLORA_TOKEN: token, SRLORA_RUN_DIR: runDir }, stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((r) => child.on('exit', r));
  const ackOf = (id: string, status: string) => got.find((m): m is Ack => m.type === 'ack' && m.commandId === id && m.status === status);
  const send = async (body: Parameters<Hub['sendCommand']>[1], final = 'applied') => {
    const r = hub.sendCommand('run-steer', body);
    assert.ok(r.ok, JSON.stringify(r));
    const id = (r as { commandId: string }).commandId;
    assert.ok(await until(() => ackOf(id, final) !== undefined || ackOf(id, 'rejected') !== undefined, 20_000), `${JSON.stringify(body)} acked; stderr: ${stderr}`);
    assert.ok(ackOf(id, 'received'), 'acknowledged as received first');
    return { id, ack: (ackOf(id, final) ?? ackOf(id, 'rejected'))! };
  };
  try {
    assert.ok(await until(() => hub.run('run-steer')!.step >= 5, 30_000), `training started; ${stderr}`);
    const pause = await send({ kind: 'pause' });
    assert.equal(pause.ack.status, 'applied');
    assert.ok(typeof pause.ack.step === 'number' && pause.ack.step >= 5);
    assert.ok(await until(() => got.some((m) => m.type === 'state' && m.state === 'paused')));
    const stepPaused = hub.run('run-steer')!.step;
    const cpu0 = cpuSeconds(child.pid!);
    await sleep(1000);
    const cpuWhilePaused = cpuSeconds(child.pid!) - cpu0;
    assert.equal(hub.run('run-steer')!.step, stepPaused, 'no step while paused');
    assert.ok(cpuWhilePaused < 0.3, `paused process used ${cpuWhilePaused.toFixed(2)} s of CPU in 1 s`);
    // fresh6 fixsup.3: a snapshot of the paused step (the scheduled ones, every 1000 steps, never came), so the page's
    // "would fuse now" preview while paused is what Recompose Now fuses.
    assert.deepEqual(got.flatMap((m) => (m.type === 'importance' && m.step > 0 ? [m.step] : [])), [stepPaused]);

    // Commands are applied while paused too, at the same step boundary.
    const set = await send({ kind: 'set', fusionThreshold: 1.0 });
    assert.equal(set.ack.status, 'applied');
    assert.equal(set.ack.settings?.fusionThreshold, 1.0);
    const bad = await send({ kind: 'recompose', layers: ['nope'] }, 'rejected');
    assert.equal(bad.ack.status, 'rejected');
    assert.match(bad.ack.reason ?? '', /not adapted: nope/);
    const rec = await send({ kind: 'recompose', layers: ['fc1'] });
    const event = got.find((m) => m.type === 'recomposition' && m.commandId === rec.id);
    assert.ok(event && event.type === 'recomposition');
    assert.equal(event.trigger, 'forced');
    assert.deepEqual(event.rule, { kind: 'threshold', fusionThreshold: 1.0 });
    assert.deepEqual(event.layers.map((l) => l.name), ['fc1']);
    assert.ok(event.layers[0].preservationError < 1e-5);
    assert.equal(event.step, stepPaused);

    const resume = await send({ kind: 'resume' });
    assert.equal(resume.ack.status, 'applied');
    assert.ok(await until(() => hub.run('run-steer')!.step > stepPaused + 3, 20_000), 'training continues');
    const stop = await send({ kind: 'stop' });
    assert.equal(stop.ack.status, 'applied');
    assert.equal(await exited, 0, stderr);
    assert.ok(await until(() => got.some((m) => m.type === 'state' && m.state === 'stopped')));
    const last = events(runDir).at(-1)!;
    assert.ok(last.type === 'state' && last.state === 'stopped', 'the stop command ends the run as stopped, not finished');
    assert.ok(events(runDir).some((m) => m.type === 'checkpoint'), 'stop wrote a checkpoint');
    assert.ok(await until(() => hub.run('run-steer')!.lastSeq === last.seq && hub.run('run-steer')!.state === 'stopped'), 'the hub has every event of the record');
  } finally {
    child.kill('SIGKILL');
    await hub.close();
  }
});

test('importance snapshots stay at ~10 per second or fewer even with importanceEvery = 1', async () => {
  const dir = join(tempDir(), 'run-rate');
  const run = await TrainingRun.create({ config: quick({ steps: 60, importanceEvery: 1, checkpointEvery: 0, evalEvery: 1000 }), runDir: dir, baseDir: root });
  const t0 = Date.now();
  assert.equal(await run.run(), 'finished');
  const secs = (Date.now() - t0) / 1000;
  const msgs = events(dir);
  const n = msgs.filter((m) => m.type === 'importance').length;
  const recs = msgs.filter((m) => m.type === 'recomposition').length;
  // +1 at the start and one forced snapshot after each recomposition.
  assert.ok(n <= Math.ceil(secs * 10) + 1 + recs, `${n} snapshots in ${secs.toFixed(2)} s`);
  assert.ok(n >= 2);
});

test('resume continues from the latest checkpoint with the losses of an uninterrupted run', async () => {
  const cfg = quick({ steps: 40, checkpointEvery: 0, seed: 3 });
  const a = join(tempDir(), 'run-a');
  assert.equal(await (await TrainingRun.create({ config: cfg, runDir: a, baseDir: root })).run(), 'finished');
  const b = join(tempDir(), 'run-b');
  const first = await TrainingRun.create({ config: cfg, runDir: b, baseDir: root });
  // Interrupt part-way (as SIGTERM does): the run checkpoints at the step boundary and ends interrupted.
  first.recorder.onEmit((m) => { if (m.type === 'metrics' && m.rows.at(-1)!.step >= 13) first.requestStop('test'); });
  assert.equal(await first.run(), 'interrupted');
  const stoppedAt = Math.max(...lossesOf(events(b)).keys());
  assert.ok(stoppedAt >= 13 && stoppedAt < 40, `stopped at ${stoppedAt}`);
  const second = await TrainingRun.create({ config: cfg, runDir: b, baseDir: root, resume: true });
  assert.equal(second.step, stoppedAt);
  assert.equal(await second.run(), 'finished');
  const la = lossesOf(events(a)), lb = lossesOf(events(b));
  for (let s = stoppedAt + 1; s <= 40; s++) assert.equal(lb.get(s), la.get(s), `step ${s}`);
  const seqs = events(b).map((m) => m.seq);
  assert.deepEqual(seqs, seqs.map((_, i) => i + 1), 'events.jsonl continues its seq');
});

test('methods: lora and pissa train; steering that needs srlora is rejected with the reason', async () => {
  for (const method of ['lora', 'pissa'] as const) {
    const dir = join(tempDir(), `run-${method}`);
    const run = await TrainingRun.create({ config: quick({ method, steps: 10 }), runDir: dir, baseDir: root });
    run.enqueue('c-1', { kind: 'recompose' });
    run.enqueue('c-2', { kind: 'set', fusionThreshold: 0.5 });
    run.enqueue('c-3', { kind: 'set', learningRate: 1e-3 });
    assert.equal(await run.run(), 'finished');
    const acks = events(dir).filter((m): m is Ack => m.type === 'ack' && m.status !== 'received');
    assert.match(acks.find((a) => a.commandId === 'c-1')!.reason ?? '', /needs method srlora/);
    assert.equal(acks.find((a) => a.commandId === 'c-2')!.status, 'rejected');
    assert.equal(acks.find((a) => a.commandId === 'c-3')!.settings?.learningRate, 1e-3);
    assert.equal(events(dir).filter((m) => m.type === 'recomposition').length, 0);
  }
});

/** utime + stime of a Linux process, in seconds. */
function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

test('Ctrl+C (SIGINT) in the CLI: checkpoint at the step boundary, state interrupted (not finished), exit 0; --resume continues to finished', async () => {
  const runDir = join(tempDir(), 'run-sigint');
  const args = ['--model.kind', 'mlp', '--steps', '200', '--batch-size', '16', '--checkpoint-every', '0', '--eval-every', '1000', '--no-progress'];
  const child = spawn(process.execPath, [cli, 'train', ...args], { env: { ...process.env, SRLORA_RUN_DIR: runDir }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((r) => child.on('exit', r));
  try {
    assert.ok(await until(() => existsSync(join(runDir, 'events.jsonl')) && lossesOf(events(runDir)).size >= 3, 60_000), stderr);
    child.kill('SIGINT');
    assert.equal(await exited, 0, stderr);
  } finally {
    child.kill('SIGKILL');
  }
  const msgs = events(runDir);
  const last = msgs.at(-1)!;
  assert.ok(last.type === 'state' && last.state === 'interrupted', JSON.stringify(last));
  assert.equal(last.reason, 'received SIGINT');
  const stoppedAt = Math.max(...lossesOf(msgs).keys());
  assert.ok(stoppedAt < 200, `interrupted at step ${stoppedAt}`);
  assert.equal(last.step, stoppedAt);
  assert.deepEqual(msgs.filter((m) => m.type === 'checkpoint').map((m) => m.step), [stoppedAt]);
  const resumed = spawnSync(process.execPath, [cli, 'train', '--resume', runDir, '--no-progress'], { encoding: 'utf8' });
  assert.equal(resumed.status, 0, resumed.stderr);
  const after = events(runDir);
  assert.ok(after.some((m) => m.type === 'rewind' && m.step === stoppedAt));
  const final = after.at(-1)!;
  assert.ok(final.type === 'state' && final.state === 'finished' && final.step === 200, JSON.stringify(final));
});
