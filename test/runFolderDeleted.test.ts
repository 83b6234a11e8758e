/**
 * A run folder deleted under a live trainer: the supervisor says once, plainly, that it was deleted and nothing was
 * recorded (fresh-user session 5, fixb.3: "its folder is gone; not recorded: failed: the trainer exited with code 1
 * without a final state: run X: failed").
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Hub } from '../src/hub/hub';
import { RunManager } from '../src/supervisor/runManager';
import { tempDir, until } from './helpers/tmp';

const cli = join(import.meta.dirname, '../dist/cli.js');
// The supervisor may still be writing the folder's first files while the trainer starts: a single `rm -rf` then fails
// with "Directory not empty" (seen in CI), so the fake trainer repeats it until the folder is gone.
const DELETE_THEN_FAIL = 'for i in 1 2 3 4 5 6 7 8 9 10; do rm -rf "$SRLORA_RUN_DIR" 2>/dev/null; [ -e "$SRLORA_RUN_DIR" ] || break; sleep 0.1; done; echo "run X: failed" >&2; exit 1';

test('a trainer whose run folder was deleted: one plain line, naming the folder, and no garbled ending', async () => {
  const dir = tempDir();
  const hub = await Hub.start({ heartbeatMs: 60_000 });
  const runs = new RunManager({ runsDir: join(dir, 'runs'), hub, cliPath: cli, trainerCommand: DELETE_THEN_FAIL });
  const lines: string[] = [];
  runs.on('log', (_level, text) => lines.push(text));
  try {
    const run = await runs.start({ cwd: dir });
    assert.ok(await until(() => lines.some((l) => l.includes('was deleted')), 10_000), lines.join('\n'));
    const said = lines.filter((l) => l.includes('was deleted'));
    assert.deepEqual(said, [`run ${run.runId}: its folder ${run.dir} was deleted while it trained; nothing was recorded`]);
    assert.ok(!lines.some((l) => l.includes('not recorded:')), lines.join('\n'));
  } finally { await runs.dispose('stop'); await hub.close(); }
});
