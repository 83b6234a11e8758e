import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { validateLinkMessage, validateTrainerMessage, validateCommandBody } from '../src/protocol/validate';
import { protocolJsonSchemaText } from '../src/protocol/jsonSchema';
import { runConfigJsonSchemaText } from '../src/trainer/config/runConfig';

const dir = join(import.meta.dirname, 'vectors/protocol');
const load = (kind: string) =>
  readdirSync(join(dir, kind)).filter((f) => f.endsWith('.json')).map((f) => ({ f, value: JSON.parse(readFileSync(join(dir, kind, f), 'utf8')) as unknown }));

test('every valid protocol vector is accepted', () => {
  const cases = load('valid');
  assert.ok(cases.length >= 20);
  for (const { f, value } of cases) {
    const r = validateLinkMessage(value);
    assert.ok(r.ok, `${f}: ${r.ok ? '' : r.error}`);
  }
});

test('every invalid protocol vector is rejected with a specific reason', () => {
  const cases = load('invalid');
  assert.ok(cases.length >= 20);
  for (const { f, value } of cases) {
    const r = validateLinkMessage(value);
    assert.equal(r.ok, false, `${f} was accepted`);
    if (!r.ok) assert.match(r.error, /\S/, f);
  }
});

test('errors name the offending field', () => {
  const r = validateTrainerMessage({ v: 1, type: 'metrics', runId: 'r', seq: 1, time: 0, rows: [{ step: 1, loss: 'x', lr: 0, examplesPerSec: 0 }] });
  assert.equal(r.ok, false);
  if (!r.ok) assert.match(r.error, /\/rows\/0\/loss/);
  const c = validateCommandBody({ kind: 'set', fusionRatio: 2 });
  assert.equal(c.ok, false);
  if (!c.ok) assert.match(c.error, /fusionRatio/);
});

test('docs/protocol.schema.json is generated from src/protocol and up to date (npm run gen:schema)', () => {
  const onDisk = readFileSync(join(import.meta.dirname, '../docs/protocol.schema.json'), 'utf8');
  assert.equal(onDisk, protocolJsonSchemaText());
  const python = readFileSync(join(import.meta.dirname, '../python/srlora_torch/protocol.schema.json'), 'utf8');
  assert.equal(python, protocolJsonSchemaText(), 'the copy in the Python package');
});

test('media/run-config.schema.json (editor validation of *.srlora.json) and the PyTorch trainer\'s copy are up to date', () => {
  assert.equal(readFileSync(join(import.meta.dirname, '../media/run-config.schema.json'), 'utf8'), runConfigJsonSchemaText());
  assert.equal(readFileSync(join(import.meta.dirname, '../python/srlora_torch/run-config.schema.json'), 'utf8'), runConfigJsonSchemaText());
});
