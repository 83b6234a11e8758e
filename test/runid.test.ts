import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runIdOf } from '../src/runfolder/runId';
import { validateTrainerMessage } from '../src/protocol/validate';

interface Vectors { cases: { name: string; path: string; id: string }[] }
const vectors = JSON.parse(readFileSync(join(import.meta.dirname, 'vectors/runid.json'), 'utf8')) as Vectors;

test('runIdOf gives every shared vector its expected id, and each id passes the protocol\'s id check', () => {
  assert.ok(vectors.cases.length >= 10);
  for (const c of vectors.cases) {
    const id = runIdOf(c.path);
    assert.equal(id, c.id, c.name);
    const msg = { v: 1, type: 'log', runId: id, seq: 1, time: 0, level: 'info', text: 'x' };
    assert.ok(validateTrainerMessage(msg).ok, `${c.name}: ${id} is a valid runId`);
  }
});

test('distinct folder names that sanitise alike get distinct ids', () => {
  assert.notEqual(runIdOf('my run'), runIdOf('my_run'));
  assert.notEqual(runIdOf('a b'), runIdOf('a  b'));
  assert.notEqual(runIdOf('###'), runIdOf('$$$'));
});
