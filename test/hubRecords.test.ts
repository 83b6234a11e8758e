/**
 * Issue 12, "done when": every events.jsonl the trainers write parses line by line with a strict JSON parser (RFC 8259:
 * no NaN/Infinity, valid UTF-8) and validates against the protocol schema — the records the hub serves as they are.
 * A representative set, made here by both trainers the way users run them: the built-in trainer under a supervisor
 * (steered through the hub, stopped, continued, interrupted, killed: supervisor records), in-process with non-finite
 * gradients and losses and after a crash with a torn last line (resume, rewind), and the PyTorch trainer from a
 * terminal (Ctrl+C, then --resume). The set must hold every trainer message type of the schema at least once.
 * validateTrainerMessage is compiled from the TypeBox definitions docs/protocol.schema.json is generated from
 * (test/protocol.test.ts keeps the two equal).
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Hub } from '../src/hub/hub';
import { RunManager } from '../src/supervisor/runManager';
import { parseRunConfig, type RunConfig } from '../src/trainer/config/runConfig';
import { TrainingRun } from '../src/trainer/process/trainingRun';
import { selectBackend } from '../src/trainer/engine/backend';
import { validateTrainerMessage } from '../src/protocol/validate';
import { TrainerMessageSchemas, type CommandBody, type TrainerMessage } from '../src/protocol/messages';
import { PID_FILE } from '../src/runfolder/runFiles';
import { tempDir, until } from './helpers/tmp';

const root = join(import.meta.dirname, '..');
const cli = join(root, 'dist/cli.js');
const python = process.env.SRLORA_TEST_PYTHON ?? resolve(root, '.venv/bin/python');
const quick = (over: Record<string, unknown> = {}): RunConfig =>
  parseRunConfig({ model: { kind: 'mlp' }, steps: 30, evalEvery: 10, checkpointEvery: 10, importanceEvery: 5, r: 4, rTarget: 12, batchSize: 16, ...over });

/** Which records were checked, from where, and the message types seen. */
const checked: string[] = [];
const typesSeen = new Set<string>();

/**
 * Every line of `file` (a trainer's events.jsonl): valid UTF-8, strict JSON, a valid trainer message of this run,
 * seq 1, 2, 3, …; the file ends with a newline (no torn line left behind). Returns the messages.
 */
function checkRecord(file: string, what: string): TrainerMessage[] {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(readFileSync(file));
  } catch (e) {
    assert.fail(`${what}: ${file} is not valid UTF-8 (${(e as Error).message})`);
  }
  assert.ok(text.endsWith('\n'), `${what}: ${file} ends with a complete line`);
  const msgs: TrainerMessage[] = [];
  text.slice(0, -1).split('\n').forEach((line, i) => {
    const where = `${what}: ${file}:${i + 1}`;
    let value: unknown;
    try { value = JSON.parse(line); } catch (e) { assert.fail(`${where}: not strict JSON (${(e as Error).message}): ${line.slice(0, 200)}`); }
    const v = validateTrainerMessage(value);
    assert.ok(v.ok, `${where}: not a valid trainer message: ${v.ok ? '' : v.error}: ${line.slice(0, 200)}`);
    const msg = (v as { value: TrainerMessage }).value;
    assert.equal(msg.seq, i + 1, `${where}: seq`);
    assert.equal(msg.runId, (msgs[0] ?? msg).runId, `${where}: runId`);
    msgs.push(msg);
    typesSeen.add(msg.type);
  });
  checked.push(`${what} (${msgs.length} records)`);
  return msgs;
}

before(async () => { await selectBackend('auto'); });

test('the built-in trainer in-process: non-finite gradients (rows flagged), then an infinite loss (failed, naming the step)', async () => {
  const dir = join(tempDir(), 'run-nonfinite');
  const run = await TrainingRun.create({
    config: quick({ steps: 30, seed: 1 }), runDir: dir, baseDir: root,
    hooks: { fault: (step) => (step === 3 ? { grad: Infinity } : step === 4 ? { grad: NaN } : step === 12 ? { loss: Infinity } : null) },
  });
  assert.equal(await run.run(), 'failed');
  const msgs = checkRecord(join(dir, 'events.jsonl'), 'built-in, non-finite');
  assert.deepEqual(msgs.flatMap((m) => (m.type === 'metrics' ? m.rows.filter((r) => r.nonFiniteGrad).map((r) => r.step) : [])), [3, 4]);
  const end = msgs.at(-1)!;
  assert.ok(end.type === 'state' && end.state === 'failed' && /loss is (inf|Infinity) at step 12/i.test(end.reason ?? ''), JSON.stringify(end));
  // And a NaN loss.
  const nan = join(tempDir(), 'run-nan');
  const r2 = await TrainingRun.create({ config: quick({ steps: 10 }), runDir: nan, baseDir: root, hooks: { fault: (s) => (s === 5 ? { loss: NaN } : null) } });
  assert.equal(await r2.run(), 'failed');
  checkRecord(join(nan, 'events.jsonl'), 'built-in, NaN loss');
});

test('the built-in trainer in-process: a crash between checkpoints, a torn last line, resume (rewind) to finished', async () => {
  const dir = join(tempDir(), 'run-crash');
  const cfg = quick({ steps: 30, seed: 4 });
  const first = await TrainingRun.create({ config: cfg, runDir: dir, baseDir: root, hooks: { atControlPoint: (step) => { if (step === 15) throw new Error('simulated crash'); } } });
  assert.equal(await first.run(), 'failed');
  appendFileSync(join(dir, 'events.jsonl'), '{"v":1,"type":"metrics","runId":"run-crash","seq":'); // a torn write
  const second = await TrainingRun.create({ config: cfg, runDir: dir, baseDir: root, resume: true });
  assert.equal(await second.run(), 'finished');
  const msgs = checkRecord(join(dir, 'events.jsonl'), 'built-in, crash + torn line + resume');
  assert.ok(msgs.some((m) => m.type === 'rewind'));
});

test('the built-in trainer under a supervisor: steered through the hub, stopped, continued, interrupted; another killed (supervisor record)', async () => {
  const dir = tempDir();
  const config = join(dir, 'quick.srlora.json');
  writeFileSync(config, JSON.stringify({ model: { kind: 'mlp' }, steps: 100_000, evalEvery: 25, checkpointEvery: 50, importanceEvery: 5 }));
  const hub = await Hub.start({ heartbeatMs: 60_000 });
  const runs = new RunManager({ runsDir: join(dir, 'runs'), hub, cliPath: cli, nodePath: process.execPath, graceMs: 5000 });
  try {
    const run = await runs.start({ configFile: config, cwd: dir });
    assert.ok(await until(() => run.model.step >= 60, 60_000), `running: ${run.handle?.stderrTail().join('\n')}`);
    const log = () => readFileSync(join(run.dir, 'events.jsonl'), 'utf8');
    const send = async (command: CommandBody) => {
      const r = runs.command(run.runId, command);
      assert.ok(r.ok, JSON.stringify(r));
      const id = (r as { commandId: string }).commandId;
      assert.ok(await until(() => new RegExp(`"commandId":"${id}","status":"(applied|rejected)"`).test(log()), 20_000), `${command.kind} acknowledged`);
    };
    await send({ kind: 'pause' });
    await send({ kind: 'set', fusionThreshold: 1.1 });
    await send({ kind: 'recompose' });
    await send({ kind: 'recompose', layers: ['nope'] }); // rejected
    await send({ kind: 'checkpoint' });
    await send({ kind: 'resume' });
    await runs.stop(run.runId);
    assert.equal(run.model.state, 'stopped');
    await runs.continueRun(run.runId);
    assert.ok(await until(() => run.model.state === 'running' && run.model.rewinds === 1, 30_000), 'continued');
    await runs.interrupt(run.runId, 'interrupted: the test');
    assert.ok(await until(() => run.model.state === 'interrupted', 20_000));
    const msgs = checkRecord(join(run.dir, 'events.jsonl'), 'built-in under a supervisor: steered, stopped, continued, interrupted');
    assert.ok(msgs.some((m) => m.type === 'ack' && m.status === 'rejected'));

    const killed = await runs.start({ configFile: config, cwd: dir });
    assert.ok(await until(() => killed.model.step >= 3, 60_000));
    process.kill(killed.handle!.pid, 'SIGKILL');
    assert.ok(await until(() => killed.model.state === 'failed', 20_000));
    const k = checkRecord(join(killed.dir, 'events.jsonl'), 'built-in, kill -9 (supervisor record)');
    const end = k.at(-1)!;
    assert.ok(end.type === 'state' && end.origin === 'supervisor' && end.exit?.signal === 'SIGKILL', JSON.stringify(end));
  } finally {
    await runs.dispose('stop');
    await hub.close();
  }
});

test('the PyTorch trainer from a terminal: Ctrl+C (interrupted), then --resume (rewind) to finished', async () => {
  const dir = tempDir();
  const runDir = join(dir, 'torch-run');
  const config = join(dir, 'torch.srlora.json');
  writeFileSync(config, JSON.stringify({ model: { kind: 'mlp' }, steps: 60, evalEvery: 30, checkpointEvery: 10, importanceEvery: 5 }));
  const env: NodeJS.ProcessEnv = { ...process.env, PYTHONPATH: join(root, 'python'), SRLORA_RUN_DIR: runDir };
  delete env.SRLORA_HUB_URL; // from a terminal: no hub
  const train = (args: string[]) => {
    const child = spawn(python, ['-m', 'srlora_torch.train', ...args], { env, cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    return { child, err: () => err, code: new Promise<number | null>((r) => child.once('exit', (c) => r(c))) };
  };
  const first = train(['--config', config]);
  const metricsRows = () => { try { return (readFileSync(join(runDir, 'events.jsonl'), 'utf8').match(/"type": ?"metrics"/g) ?? []).length; } catch { return 0; } };
  assert.ok(await until(() => metricsRows() >= 2 || first.child.exitCode !== null, 120_000), first.err());
  first.child.kill('SIGINT');
  assert.equal(await first.code, 0, first.err());
  const second = train(['--resume', runDir]);
  assert.equal(await second.code, 0, second.err());
  const msgs = checkRecord(join(runDir, 'events.jsonl'), 'PyTorch: Ctrl+C, then --resume');
  assert.deepEqual(msgs.filter((m) => m.type === 'state').map((m) => m.type === 'state' && m.state).filter((s) => s !== 'running' && s !== 'stopping'), ['interrupted', 'finished']);
  assert.ok(msgs.some((m) => m.type === 'rewind'));
  assert.equal(existsSync(join(runDir, PID_FILE)), false, 'the PyTorch trainer removed the trainer.pid it wrote when it ended');
});

test('the records checked hold every trainer message type of the protocol schema', () => {
  const all = TrainerMessageSchemas.map((s) => (s.properties.type as unknown as { const: string }).const);
  assert.deepEqual(all.filter((t) => !typesSeen.has(t)), [], `checked: ${checked.join('; ')}`);
  assert.ok(checked.length >= 6, checked.join('; '));
});
