/**
 * A built-in run whose resume dies before its trainer starts is recorded (a new user's finding, session 7): with every
 * checkpoint's state.json unreadable (its marker and hashes right: another program's file, a bug's), `srlora train
 * --resume` printed `…/step-4: unknown checkpoint format undefined` and left the run `interrupted` with no reason,
 * still offered as resumable. Now the run's log gains `failed`, reason `could not resume: <the file and field>`, as
 * the PyTorch trainer's does (python/tests/test_resume_failure.py), and the trainer.pid it wrote is gone.
 * Also: the PyTorch-only fields device and bf16 given to the built-in trainer are said, not silently dropped.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './helpers/tmp';

const cli = join(import.meta.dirname, '../dist/cli.js');
type Msg = { type: string; seq: number; step?: number; state?: string; reason?: string; time: number; runId: string; v: number };
const logOf = (dir: string): Msg[] => readFileSync(join(dir, 'events.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Msg);

/** A real 6-step run cut back to how Ctrl+C after step 4 leaves one: checkpoints 2 and 4, last state interrupted. */
function interruptedAt4(): string {
  const runs = join(tempDir(), 'runs');
  const r = spawnSync(process.execPath, [cli, 'train', '--runs-dir', runs, '--steps', '6', '--checkpoint-every', '2', '--eval-every', '3', '--no-progress'], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr);
  const dir = join(runs, readdirSync(runs)[0]);
  const log = logOf(dir);
  const cut = log.findIndex((m) => m.type === 'checkpoint' && m.step === 4);
  const kept = log.slice(0, cut + 1);
  const last = kept.at(-1)!;
  kept.push({ v: 1, type: 'state', runId: last.runId, seq: last.seq + 1, time: last.time + 1, state: 'interrupted', step: 4, reason: 'interrupted by SIGINT' });
  writeFileSync(join(dir, 'events.jsonl'), kept.map((m) => `${JSON.stringify(m)}\n`).join(''));
  rmSync(join(dir, 'checkpoints', 'step-6'), { recursive: true });
  rmSync(join(dir, 'export'), { recursive: true, force: true });
  return dir;
}

/** Replaces a checkpoint's state.json and rewrites its marker to match: verified, but not this trainer's content. */
function unreadableState(dir: string, step: number, text: string): void {
  const cp = join(dir, 'checkpoints', `step-${step}`);
  writeFileSync(join(cp, 'state.json'), text);
  const marker = JSON.parse(readFileSync(join(cp, 'COMPLETE.json'), 'utf8')) as { files: Record<string, { bytes: number; sha256: string }> };
  for (const rel of Object.keys(marker.files)) {
    const data = readFileSync(join(cp, rel));
    marker.files[rel] = { bytes: data.length, sha256: createHash('sha256').update(data).digest('hex') };
  }
  writeFileSync(join(cp, 'COMPLETE.json'), JSON.stringify(marker));
}

test('a built-in resume whose checkpoint does not load ends the run failed, naming the file and field', () => {
  const dir = interruptedAt4();
  const before = logOf(dir);
  unreadableState(dir, 2, '{"garbage": true}');
  unreadableState(dir, 4, '{"garbage": true}');
  const r = spawnSync(process.execPath, [cli, 'train', '--resume', dir, '--no-progress'], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 1, r.stderr);
  const file = join(dir, 'checkpoints', 'step-4', 'state.json');
  assert.match(r.stderr, new RegExp(`${file.replace(/[/.]/g, '\\$&')}: /format: expected 1`));
  const after = logOf(dir);
  assert.deepEqual(after.slice(0, before.length), before);
  assert.deepEqual(after.map((m) => m.seq), after.map((_, i) => i + 1));
  const last = after.at(-1)!;
  assert.deepEqual([last.type, last.state, last.step], ['state', 'failed', 4]);
  // each checkpoint tried, newest first, each named with its file and field (none reads: the run has none to resume)
  assert.ok(last.reason?.startsWith('could not resume: ') && last.reason.includes(`${file}: /format: expected 1 (this trainer's checkpoint format), got null`), last.reason);
  assert.ok(last.reason?.includes('checkpoints/step-2/state.json: /format: expected 1'), last.reason);
  assert.ok(!existsSync(join(dir, 'trainer.pid')), 'no pid file naming a process that is gone');
});

test('a built-in resume whose newest checkpoint does not read continues from the next older one, saying why (as the PyTorch trainer does)', () => {
  const dir = interruptedAt4();
  unreadableState(dir, 4, '{"garbage": true}');
  const r = spawnSync(process.execPath, [cli, 'train', '--resume', dir, '--no-progress'], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /not resuming from \S+step-4: \S+step-4\/state\.json: \/format: expected 1/);
  const rewind = logOf(dir).find((m) => m.type === 'rewind') as unknown as { step: number; checkpoint: string };
  assert.deepEqual([rewind.step, rewind.checkpoint], [2, 'checkpoints/step-2']);
  assert.equal(logOf(dir).at(-1)!.state, 'finished');
});

test('a state.json that is not JSON is named, not only the parser\'s word', () => {
  const dir = interruptedAt4();
  unreadableState(dir, 2, 'garbage');
  unreadableState(dir, 4, 'garbage');
  const r = spawnSync(process.execPath, [cli, 'train', '--resume', dir, '--no-progress'], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 1, r.stderr);
  assert.match(logOf(dir).at(-1)!.reason ?? '', /^could not resume: .*step-4\/state\.json: not a checkpoint's JSON \(/);
});

test('the built-in trainer says it does not act on the PyTorch trainer\'s device and bf16, rather than drop them silently', () => {
  const runs = join(tempDir(), 'runs');
  const r = spawnSync(process.execPath, [cli, 'train', '--runs-dir', runs, '--steps', '2', '--device', 'cuda', '--bf16', 'true', '--no-progress'], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /device cuda and bf16: the PyTorch trainer's \(--trainer pytorch\); this built-in trainer runs on \S+ \(.*\) in float32/);
  const warn = logOf(join(runs, readdirSync(runs)[0])).find((m) => m.type === 'log' && /device cuda and bf16/.test((m as unknown as { text: string }).text));
  assert.ok(warn, 'in the run\'s record too');
  const plain = spawnSync(process.execPath, [cli, 'train', '--runs-dir', join(tempDir(), 'runs'), '--steps', '1', '--no-progress'], { encoding: 'utf8', timeout: 120_000 });
  assert.doesNotMatch(plain.stderr, /PyTorch trainer's/);
});
