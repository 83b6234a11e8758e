/**
 * The run-config schema both trainers share (issue 14): the editor's *.srlora.json schema accepts what the PyTorch
 * trainer accepts (its device / bf16 fields, the text task, Hugging Face models) and marks no field with a default as
 * required; the built-in trainer refuses the PyTorch-only kinds by name; a byte-order mark is not an error.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkAnyRunConfig, parseRunConfig, readRunConfig, runConfigJsonSchemaText } from '../src/trainer/config/runConfig';
import { loadTabular } from '../src/trainer/data/tabular';
import { tempDir } from './helpers/tmp';

type Node = { properties?: Record<string, Node & { default?: unknown }>; required?: string[]; anyOf?: Node[] };

function walk(node: unknown, visit: (n: Node) => void): void {
  if (Array.isArray(node)) { node.forEach((n) => walk(n, visit)); return; }
  if (typeof node !== 'object' || node === null) return;
  visit(node as Node);
  for (const v of Object.values(node)) walk(v, visit);
}

test('the editor schema marks no field that has a default as required (only what has none: a task\'s kind and files)', () => {
  const schema = JSON.parse(runConfigJsonSchemaText()) as Node;
  assert.equal(schema.required, undefined); // every top-level field is optional: all have defaults
  const requiredSets: string[][] = [];
  walk(schema, (n) => {
    if (!n.required || !n.properties) return;
    for (const k of n.required) assert.equal(n.properties[k]?.default, undefined, `${k} has a default but is required`);
    requiredSets.push([...n.required].sort());
  });
  // tabular and text need their train file; huggingface its folder; every union member its kind
  assert.deepEqual(requiredSets.map((r) => r.join(',')).sort(), ['kind', 'kind', 'kind', 'kind,path', 'kind,train', 'kind,train'].sort());
});

test('a PyTorch run config (text task, Hugging Face model, device, bf16) is valid for the editor and the PyTorch trainer', () => {
  const cfg = {
    task: { kind: 'text', train: 'spam/train.jsonl', eval: 'spam/eval.jsonl', textField: 'text', labelField: 'label', maxLength: 128, maxExamples: 64 },
    model: { kind: 'huggingface', path: 'models/minilm' }, device: 'cuda:0', bf16: true, method: 'srlora', targets: ['query', 'value'],
  };
  assert.equal(checkAnyRunConfig(cfg), null);
  assert.equal(checkAnyRunConfig({ task: { kind: 'text', train: 'a.csv' }, model: { kind: 'huggingface', path: 'm' } }), null);
  assert.match(checkAnyRunConfig({ ...cfg, device: 'gpu' }) ?? '', /device/);
  assert.match(checkAnyRunConfig({ ...cfg, task: { kind: 'text', train: 'a.csv', textColumn: 'x' } }) ?? '', /textColumn/);
  assert.match(checkAnyRunConfig({ ...cfg, model: { kind: 'huggingface' } }) ?? '', /path/);
  // the file the PyTorch trainer validates with is this same schema
  assert.equal(readFileSync(join(import.meta.dirname, '../python/srlora_torch/run-config.schema.json'), 'utf8'), runConfigJsonSchemaText());
});

test('the built-in trainer refuses the PyTorch trainer\'s kinds naming the PyTorch trainer, and ignores device / bf16', () => {
  assert.throws(() => parseRunConfig({ task: { kind: 'text', train: 'a.csv' } }, 'x.srlora.json'),
    /x\.srlora\.json: \/task\/kind: "text" runs on the PyTorch trainer only: start it with "SRLoRA: Start Run…" → PyTorch, or python -m srlora_torch\.train/);
  assert.throws(() => parseRunConfig({ model: { kind: 'huggingface', path: 'm' } }, 'x'), /\/model\/kind: "huggingface" runs on the PyTorch trainer only/);
  assert.throws(() => parseRunConfig({ task: { kind: 'nope' } }, 'x'), /expected "digits" \| "tabular" \(or, with the PyTorch trainer, "text" \| "transformer" \| "matrix"\)/);
  const c = parseRunConfig({ device: 'cuda', bf16: true, steps: 5 }, 'x');
  assert.equal(c.steps, 5);
});

test('a byte-order mark is accepted in a run config and in tabular CSV / JSONL (Windows editors write one)', () => {
  const dir = tempDir();
  writeFileSync(join(dir, 'a.srlora.json'), '\uFEFF{\r\n  // a comment\r\n  "steps": 7,\r\n}\r\n');
  assert.equal(readRunConfig(join(dir, 'a.srlora.json')).steps, 7);
  writeFileSync(join(dir, 'd.jsonl'), '\uFEFF{"features": [1, 2], "label": 1}\r\n{"features": [3, 4], "label": 0}\r\n');
  assert.deepEqual(Array.from(loadTabular(join(dir, 'd.jsonl')).labels), [1, 0]);
  writeFileSync(join(dir, 'd.csv'), '\uFEFFlabel,x\r\n1,2\r\n0,3\r\n');
  assert.deepEqual(Array.from(loadTabular(join(dir, 'd.csv')).labels), [1, 0]);
});
