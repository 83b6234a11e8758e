/** After `train --resume`: the terminal ETA uses this incarnation's rate; the summary states time trained, not wall time. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ProgressLine } from '../src/trainer/process/progress';
import { timeTrained, trainingSummary } from '../src/cli/summary';
import { readJsonl } from '../src/runfolder/eventLog';
import { EVENTS_FILE } from '../src/runfolder/runFiles';
import type { TrainerMessage } from '../src/protocol/messages';
import { FixtureLog } from './helpers/runFixtures';

test('the terminal ETA after a resume at step 642 comes from the steps this process trained, and does not shrink toward zero', () => {
  let now = 0;
  const lines: string[] = [];
  const p = new ProgressLine(4500, { write: (s: string) => lines.push(s), isTTY: true }, () => now);
  // Resumed at step 642: each step takes 300 ms here.
  for (let step = 643; step <= 700; step++) { now += 300; p.update(step, 0.5, 10); }
  const last = lines.at(-1)!;
  assert.match(last, /step 700\/4500/);
  const eta = /ETA (\d+)m(\d+)s/.exec(last);
  assert.ok(eta, last);
  const seconds = Number(eta[1]) * 60 + Number(eta[2]);
  assert.ok(Math.abs(seconds - 3800 * 0.3) <= 2, `ETA ${seconds} s for 3800 steps at 0.3 s/step: ${last}`);
  assert.doesNotMatch(lines[0], /ETA \d+s$/, 'the first line has no rate yet, so no made-up ETA');
});

test('the summary states the time trained summed over incarnations, not the idle time between an interrupt and the resume', () => {
  const dir = mkdtempSync(join(tmpdir(), 'srlora-timing-'));
  const log = new FixtureLog('timing').hello({ name: 'timed', totalSteps: 20, srlora: { schedule: [10], minSlotAge: 1, rule: { kind: 'ratio', fusionRatio: 0.5 } } })
    .state('running', 0).metrics(1, 10, () => 0.5).state('interrupted', 10);
  log.time += 3 * 3600 * 1000; // three hours before `train --resume`
  const run = log.rewind(10).state('running', 10).metrics(11, 20, () => 0.4).state('finished', 20).writeTo(dir);
  const events = readJsonl<TrainerMessage>(join(run, EVENTS_FILE)).events;
  const trained = timeTrained(events);
  const wall = (events.at(-1)!.time - events[0].time) / 1000;
  assert.ok(wall > 3 * 3600, 'the fixture spans the idle hours');
  assert.ok(trained > 0 && trained < 600, `time trained ${trained} s`);
  const s = trainingSummary(run, dir);
  assert.match(s, /step 20\/20 in \d+s trained/, s);
  assert.doesNotMatch(s, /\dh\d\dm/, 'no hours: the idle time is not time trained');
});
