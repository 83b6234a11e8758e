/**
 * Resume never runs two trainers on one run (fresh-user session 6, fixres.1): `srlora train --resume RUN` accepted a
 * run that serve, VS Code or another terminal was training, and two trainers appended to one events.jsonl. Every
 * resume path follows one rule (src/runfolder/lock.ts resumeRefusalOf; python/srlora_torch/ownership.py is its twin);
 * test/vectors/ownership/resume.json holds both languages to it.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ownerAlive, parseOwner, resumeRefusalOf } from '../src/runfolder/lock';
import { parsePidText, processIdentity, readPidFile, type ProcessIdentity } from '../src/runfolder/pidfile';
import { trainCommand } from '../src/cli/trainCommand';
import { tempDir } from './helpers/tmp';

interface Case { name: string; ownerJson: string | null; trainerPid: string | null; alive: number[]; launchedBy: string | null; refusal: string | null }
const vectors = JSON.parse(readFileSync(join(import.meta.dirname, 'vectors/ownership/resume.json'), 'utf8')) as { runDir: string; selfPid: number; cases: Case[] };

test('resumeRefusalOf gives every shared vector its refusal (or none)', () => {
  assert.ok(vectors.cases.length >= 15);
  for (const c of vectors.cases) {
    const pid = c.trainerPid === null ? null : parsePidText(c.trainerPid, 'trainer.pid');
    const got = resumeRefusalOf(vectors.runDir, {
      owner: c.ownerJson === null ? null : parseOwner(c.ownerJson), trainer: pid?.ok ? pid.id : null,
      alive: (r: ProcessIdentity) => c.alive.includes(r.pid), launchedBy: c.launchedBy, selfPid: vectors.selfPid,
    });
    assert.equal(got, c.refusal, c.name);
  }
});

/** A live process that is not this one, and its identity (a stand-in for another trainer or supervisor). */
function otherProcess(): ProcessIdentity {
  const p = spawn('sleep', ['60'], { stdio: 'ignore' });
  after(() => { p.kill('SIGKILL'); });
  const id = processIdentity(p.pid!);
  assert.ok(id && ownerAlive(id), 'the stand-in process is alive');
  return id;
}

test('srlora train --resume refuses a run that a live supervisor owns, naming it', async () => {
  const run = join(tempDir(), 'r-owned');
  const other = otherProcess();
  mkdirSync(run);
  writeFileSync(join(run, 'owner.json'), JSON.stringify({ ...other, instance: 'abc', by: 'srlora serve', since: 1 }));
  await assert.rejects(trainCommand(['--resume', run, '--no-progress']), new RegExp(`^Error: run ${run} belongs to srlora serve \\(pid ${other.pid}\\)`));
  assert.ok(!existsSync(join(run, 'trainer.pid')), 'a refused resume does not take the run');
});

test('srlora train --resume refuses a run whose trainer (started from a terminal) is alive, naming its pid', async () => {
  const run = join(tempDir(), 'r-terminal');
  const other = otherProcess();
  mkdirSync(run);
  writeFileSync(join(run, 'trainer.pid'), JSON.stringify({ ...other, selfStarted: true }));
  await assert.rejects(trainCommand(['--resume', run, '--no-progress']), new RegExp(`^Error: run ${run} is being trained by pid ${other.pid}, started from a terminal`));
  const pid = readPidFile(join(run, 'trainer.pid'));
  assert.ok(pid.ok && pid.id.pid === other.pid, 'the live trainer keeps its trainer.pid');
});

test('fixres.2: the hints that continue a 2-rank PyTorch run give the launcher on 2 processes and the real path', async () => {
  const root = tempDir();
  const dir = join(root, '20261130-050000-srlora-abcd');
  mkdirSync(dir);
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ method: 'srlora', steps: 50, targets: null }));
  const base = { v: 1, runId: '20261130-050000-srlora-abcd', time: 1_790_000_000_000 };
  writeFileSync(join(dir, 'events.jsonl'),
    `${JSON.stringify({ ...base, seq: 1, type: 'hello', protocol: { major: 1, minor: 1 }, method: 'srlora', backend: { name: 'pytorch', device: 'cpu' }, totalSteps: 50, config: {}, layers: [], worldSize: 2 })}\n`
    + `${JSON.stringify({ ...base, seq: 2, type: 'state', state: 'interrupted', step: 10 })}\n`);
  const launch = `python -m srlora_torch.launch --standalone --nproc_per_node=2 -m srlora_torch.train --resume ${dir}`;
  const cwd = process.cwd();
  process.chdir(root);
  try {
    await assert.rejects(trainCommand(['--resume', '20261130-050000-srlora-abcd']), { message: `${dir} is a run of the PyTorch trainer: continue it with ${launch}` });
  } finally { process.chdir(cwd); }
  const { trainingSummary } = await import('../src/cli/summary');
  completeCheckpoint(dir, 10);
  assert.match(trainingSummary(dir), new RegExp(`continue\\s+${launch.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\n`));
  const { continueCommand } = await import('../src/viewmodel/continueCommand');
  assert.equal(continueCommand("/runs/it's here", true, 1), `python -m srlora_torch.train --resume '/runs/it'"'"'s here'`);
});

/** checkpoints/step-N with one file and its completion marker (sizes; the summary does not hash). */
function completeCheckpoint(dir: string, step: number): void {
  const cp = join(dir, 'checkpoints', `step-${step}`);
  mkdirSync(cp, { recursive: true });
  writeFileSync(join(cp, 'state.bin'), 'abc');
  writeFileSync(join(cp, 'COMPLETE.json'), JSON.stringify({ step, files: { 'state.bin': { bytes: 3, sha256: '0'.repeat(64) } } }));
}

test('fixres.3: a failed run with no complete checkpoint is not offered a continue line (a resume would refuse it)', async () => {
  const dir = join(tempDir(), 'r-failed');
  mkdirSync(join(dir, 'checkpoints', 'step-20'), { recursive: true }); // half-written: no marker
  const base = { v: 1, runId: 'r-failed', time: 1_790_000_000_000 };
  writeFileSync(join(dir, 'events.jsonl'),
    `${JSON.stringify({ ...base, seq: 1, type: 'hello', protocol: { major: 1, minor: 1 }, method: 'srlora', backend: { name: 'cpu', device: 'cpu' }, totalSteps: 50, config: {}, layers: [] })}\n`
    + `${JSON.stringify({ ...base, seq: 2, type: 'state', state: 'failed', step: 20, reason: 'loss is NaN at step 20' })}\n`);
  const { trainingSummary } = await import('../src/cli/summary');
  const text = trainingSummary(dir);
  assert.doesNotMatch(text, /--resume/, text);
  assert.match(text, /continue\s+not possible: no complete checkpoint to resume from/);
  completeCheckpoint(dir, 10);
  assert.match(trainingSummary(dir), new RegExp(`continue\\s+srlora train --resume ${dir}\\n`));
});
