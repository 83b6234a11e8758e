import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeNewRunDir } from '../src/trainer/process/trainingRun';

test('a new run never shares a folder another run already made (same second, same name)', () => {
  const runs = mkdtempSync(join(tmpdir(), 'runs-'));
  const taken = join(runs, '20260101-000000-srlora-abcd');
  mkdirSync(taken);
  writeFileSync(join(taken, 'events.jsonl'), '{"seq":1}\n');
  const made = makeNewRunDir(runs, 'srlora', taken);
  assert.notEqual(made, taken);
  assert.match(made, /-srlora-[a-z0-9]{1,4}$/);
  assert.equal(readFileSync(join(taken, 'events.jsonl'), 'utf8'), '{"seq":1}\n');
  assert.throws(() => mkdirSync(made), /EEXIST/); // it was really created
});
