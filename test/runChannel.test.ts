/** src/hub/runChannel's run summary (the `runs` list every viewer gets) stays inside the one schema. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { RunChannel } from '../src/hub/runChannel';
import { validateHubToViewer } from '../src/protocol/validate';

test('a run folder named by a relative path: the summary states its absolute dir only when that fits the schema (4096 characters), so the runs list stays valid', () => {
  const hooks = { message: () => {}, reset: () => {}, problem: () => {} };
  // Short enough as given, too long once resolved against the working folder (the length was checked before resolve).
  const relative = 'r/'.repeat(Math.floor((4096 - 10) / 2)) + 'run';
  assert.ok(relative.length <= 4096 && resolve(relative).length > 4096);
  for (const [dir, stated] of [[relative, false], ['runs/a-run', true]] as const) {
    const channel = new RunChannel('a-run', dir, 'token', hooks, 60_000);
    try {
      const summary = channel.summary();
      assert.equal(summary.dir, stated ? resolve(dir) : undefined, dir.slice(0, 40));
      const checked = validateHubToViewer({ v: 1, type: 'runs', runs: [summary] });
      assert.ok(checked.ok, `the runs list is valid: ${checked.ok ? '' : JSON.stringify(checked.error).slice(0, 200)}`);
    } finally { channel.close(); }
  }
});
