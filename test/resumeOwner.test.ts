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
