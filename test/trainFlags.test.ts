/**
 * `--fusion-threshold off` is accepted, as the page and palette call it (fresh-user session 5, fixb.4: it was refused
 * while `null` worked), and a value out of range names the range (it said "expected number | null, got -1").
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseFlags } from '../src/cli/trainCommand';
import { applyOverrides, parseRunConfig } from '../src/trainer/config/runConfig';

const configOf = (argv: string[]) => parseRunConfig(applyOverrides({}, parseFlags(argv).overrides), 'flags');

test('--fusion-threshold off (and null) means the paper\'s rule: fusionThreshold null; a number stays τ', () => {
  assert.equal(configOf(['--fusion-threshold', 'off']).fusionThreshold, null);
  assert.equal(configOf(['--fusion-threshold=off']).fusionThreshold, null);
  assert.equal(configOf(['--fusionThreshold', 'null']).fusionThreshold, null);
  assert.equal(configOf(['--fusion-threshold', '0.25']).fusionThreshold, 0.25);
  assert.equal(configOf(['--fusion-threshold', '0']).fusionThreshold, 0);
});

test('--fusion-threshold out of range or not a number says the range (≥ 0, or off)', () => {
  for (const bad of ['-1', 'fast', '', 'Infinity']) {
    assert.throws(() => configOf(['--fusion-threshold', bad]), /--fusion-threshold: .* is not a number ≥ 0 or off/, bad);
  }
});

test('a bad value from a flag names the flag as typed; one from a config file names the file and its pointer (session 7 cli.3)', async () => {
  const { configWithFlags } = await import('../src/cli/trainCommand');
  const { tempDir } = await import('./helpers/tmp');
  const { writeFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  const withFlags = (file: string | undefined, argv: string[]) => { const f = parseFlags(argv); return () => configWithFlags(file, f.overrides, f.typed); };
  assert.throws(withFlags(undefined, ['--steps', '0']), { message: '--steps: must be ≥ 1, got 0' });
  assert.throws(withFlags(undefined, ['--task.transform', 'sideways', '--fusion-ratio', '7']),
    { message: '2 errors: --task.transform: expected "rot90" | "upright", got "sideways"; --fusion-ratio: must be ≤ 1, got 7' });
  assert.throws(withFlags(undefined, ['--r', '4', '--r-target', '2']), /^Error: --r-target: 2 is below r=4/);
  assert.throws(withFlags(undefined, ['--task.kind', 'text']), /^Error: --task\.kind: "text" runs on the PyTorch trainer only/);
  const dir = tempDir();
  const file = join(dir, 'c.srlora.json');
  writeFileSync(file, JSON.stringify({ steps: 0 }));
  assert.throws(withFlags(file, []), { message: `${file}: /steps: must be ≥ 1, got 0` });
  writeFileSync(file, JSON.stringify({ rTarget: 8 }));
  assert.throws(withFlags(file, ['--r', '16']), /^Error: .*c\.srlora\.json: \/rTarget: 8 is below r=16/, 'the file\'s field, by its pointer');
});

test('config errors name what the user typed by the shared vectors (python/tests/test_cli_lines.py holds the Python side)', async () => {
  const { configErrorMessage } = await import('../src/trainer/config/runConfig');
  const { readFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { cases } = JSON.parse(readFileSync(join(import.meta.dirname, 'vectors/flags/errors.json'), 'utf8')) as { cases: { source: string; errors: string[]; flags: Record<string, string>; message: string }[] };
  for (const c of cases) assert.equal(configErrorMessage(c.source, c.errors, new Map(Object.entries(c.flags))), c.message, JSON.stringify(c));
});

test('one wording for a bad value from a flag or a file, every kind (FINDINGS F8: "Expected integer to be greater or equal to 1" here, "must be ≥ 1" in the PyTorch trainer), by the shared vectors', async () => {
  const { configWithFlags } = await import('../src/cli/trainCommand');
  const { tempDir } = await import('./helpers/tmp');
  const { readFileSync, writeFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { values } = JSON.parse(readFileSync(join(import.meta.dirname, 'vectors/flags/errors.json'), 'utf8')) as { values: { argv?: string[]; file?: object; message: string }[] };
  assert.ok(values.length >= 15);
  const file = join(tempDir(), 'c.srlora.json');
  for (const c of values) {
    if (c.file) writeFileSync(file, JSON.stringify(c.file));
    assert.throws(() => { const f = parseFlags(c.argv ?? []); configWithFlags(c.file ? file : undefined, f.overrides, f.typed); },
      { message: c.message.replaceAll('FILE', file) }, JSON.stringify(c));
  }
});

test('the config-field flags are the one schema\'s, the PyTorch trainer\'s too (FINDINGS F7), and an unknown one is one line with a did-you-mean, by the shared vectors', async () => {
  const { configFlags } = await import('../src/trainer/config/runConfig');
  const { knownFlags, unknownFlag } = await import('../src/cli/usage');
  const { readFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  const v = JSON.parse(readFileSync(join(import.meta.dirname, 'vectors/flags/flags.json'), 'utf8')) as { flags: Record<string, string>; unknown: [string, string][] };
  assert.deepEqual(Object.fromEntries(configFlags()), v.flags);
  for (const [flag, ptr] of Object.entries(v.flags)) {
    if (flag === '--task' || flag === '--model') continue;
    const { overrides } = parseFlags([flag, '1']);
    assert.equal(`/${overrides[0][0].split('.').join('/')}`, ptr, flag);
  }
  // --task.kind of another kind over the default digits task: not "/task/transform: unknown field"
  assert.deepEqual(configOf(['--task.kind', 'tabular', '--task.train', 'x.csv']).task, { kind: 'tabular', train: 'x.csv', labelColumn: 'label' });
  for (const [flag, words] of v.unknown) assert.equal(unknownFlag(flag, [...knownFlags('train'), ...configFlags().keys()]), words);
  // through the command line: one line, the flag named (the old check let --task.trian through to the schema)
  const { spawnSync } = await import('node:child_process');
  const r = spawnSync(process.execPath, [join(import.meta.dirname, '../dist/cli.js'), 'train', '--eval-evry', '5'], { encoding: 'utf8' });
  assert.equal(r.stderr, `srlora: train: ${v.unknown[0][1]}; ${process.execPath} ${join(import.meta.dirname, '../dist/cli.js')} train --help lists them\n`); // runs as printed (F6)
  assert.equal(r.status, 1);
});
