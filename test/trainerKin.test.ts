/**
 * A trainer's end waits for the descendants it started (a launcher's ranks: session 6), but not for ever (a review's
 * finding): a process it leaves running — a daemon, a stuck rank — held the run open, its end never recorded.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChildTrainer, type ExitInfo } from '../src/supervisor/trainerProcess';
import { tempDir } from './helpers/tmp';

test('a trainer that exits leaving a process running ends once the wait for its descendants runs out', async () => {
  const before = ChildTrainer.kinWaitMaxMs;
  ChildTrainer.kinWaitMaxMs = 1500;
  // the leader lives long enough to be listed with its child (every second), then exits; its child sleeps on
  const t = await ChildTrainer.spawn({ command: 'sh', args: ['-c', 'sleep 60 & sleep 2.5; exit 0'], env: process.env, cwd: tempDir() });
  try {
    const ended = await new Promise<ExitInfo | 'timeout'>((resolve) => {
      const timer = setTimeout(() => resolve('timeout'), 20_000);
      t.once('exit', (info) => { clearTimeout(timer); resolve(info); });
    });
    assert.notEqual(ended, 'timeout', 'the end waited on the sleeping child');
    assert.deepEqual(ended, { code: 0, signal: null });
  } finally {
    ChildTrainer.kinWaitMaxMs = before;
    try { process.kill(-t.pid, 'SIGKILL'); } catch { /* the group we started is gone */ }
  }
});
