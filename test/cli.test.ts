/** The command line's conventions: --help on every command, --version, did-you-mean, one runs folder, the summary. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { tempDir } from './helpers/tmp';
import { FixtureLog } from './helpers/runFixtures';
import { recompositionsCount, trainingSummary } from '../src/cli/summary';
import { didYouMean } from '../src/cli/usage';

const root = join(import.meta.dirname, '..');
const cli = (args: string[], cwd: string) => spawnSync(process.execPath, [join(root, 'dist/cli.js'), ...args], { cwd, encoding: 'utf8', timeout: 120_000 });

test('--help on every subcommand prints its usage, exits 0 and does nothing (init --help wrote a file named --help)', () => {
  const dir = tempDir();
  for (const cmd of ['train', 'init', 'export', 'serve', 'conformance']) {
    for (const flag of ['--help', '-h']) {
      const r = cli([cmd, flag], dir);
      assert.equal(r.status, 0, `${cmd} ${flag}: ${r.stderr}`);
      assert.match(r.stdout, new RegExp(`^usage: srlora ${cmd}`), cmd);
    }
  }
  assert.deepEqual(readdirSync(dir), [], 'nothing written');
});

test('--version prints the package version', () => {
  const r = cli(['--version'], tempDir());
  assert.equal(r.status, 0);
  assert.match(r.stdout, /^srlora \d+\.\d+\.\d+\n$/);
});

test('a mistyped command, option or config-field flag names it and suggests the closest', () => {
  const dir = tempDir();
  const cases: [string[], RegExp][] = [
    [['trian'], /unknown command "trian" \(did you mean train\?\)/],
    [['export', '--chekpoint', 'x', 'y'], /export: unknown option --chekpoint \(did you mean --checkpoint\?\)/],
    [['train', '--stepz', '5'], /train: unknown flag --stepz: neither a train option nor a config field \(did you mean --steps\?\)/],
    [['train', '--fusion-treshold', '1'], /did you mean --fusion-threshold\?/],
    [['conformance', '--chek', 'x'], /conformance: unknown option --chek \(did you mean --check\?\)/],
    [['init', '--force'], /init: unknown option --force/],
  ];
  for (const [args, want] of cases) {
    const r = cli(args, dir);
    assert.notEqual(r.status, 0, args.join(' '));
    assert.match(r.stderr, want, args.join(' '));
  }
  assert.deepEqual(readdirSync(dir), [], 'nothing written');
  assert.equal(didYouMean('--zzzzzz', ['--steps', '--config']), null, 'no suggestion when nothing is close');
});

test('train writes into .srlora/runs (where serve, --resume and export read) and ends with a summary; --resume of a finished run redoes nothing', () => {
  const dir = tempDir();
  const r = cli(['train', '--steps', '12', '--no-progress', '--model.kind', 'mlp', '--eval-every', '6', '--checkpoint-every', '0'], dir);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(existsSync(join(dir, '.srlora/runs')), 'the default runs folder');
  assert.ok(!existsSync(join(dir, 'runs')), 'not ./runs');
  assert.match(r.stderr, /✓ .* — finished, step 12\/12/);
  assert.match(r.stderr, /train loss +final \d/);
  assert.match(r.stderr, new RegExp(`run folder +${escapeRe(join(dir, '.srlora/runs'))}/\\S+`), 'absolute');
  // Continuing a finished run: every step, the final checkpoint and the export are done; nothing is redone or rewritten.
  const runDir = join(dir, '.srlora/runs', readdirSync(join(dir, '.srlora/runs'))[0]);
  const log = readFileSync(join(runDir, 'events.jsonl'), 'utf8');
  const exported = statSync(join(runDir, 'export', 'merged.safetensors')).mtimeMs;
  const again = cli(['train', '--resume', runDir, '--no-progress'], dir);
  assert.equal(again.status, 0, again.stderr);
  assert.match(again.stderr, /is finished \(step 12\/12\): every step is done, nothing to continue/);
  assert.match(again.stderr, new RegExp(`export +${escapeRe(runDir)}/export\n`), 'the summary says where the export is, absolute');
  assert.equal(readFileSync(join(runDir, 'events.jsonl'), 'utf8'), log, 'its log untouched');
  assert.equal(statSync(join(runDir, 'export', 'merged.safetensors')).mtimeMs, exported, 'its export not rewritten');
  // fresh6 fixsup.2: export takes a run id in the runs folder, as serve --resume does (before: "… is not a run folder").
  const id = basename(runDir);
  const byId = cli(['export', id], dir);
  assert.equal(byId.status, 0, byId.stderr);
  assert.match(byId.stdout, new RegExp(`exported step 12 of ${runDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} →`));
  const elsewhere = cli(['export', id, '--runs-dir', join(dir, '.srlora/runs')], tempDir());
  assert.equal(elsewhere.status, 0, elsewhere.stderr);
  const unknown = cli(['export', 'no-such-run'], dir);
  assert.notEqual(unknown.status, 0);
  assert.match(unknown.stderr, /export: no run "no-such-run" in \S+\.srlora\/runs/);
});

test('train --help lists every config field of the generated schema, with its default or allowed values', () => {
  const r = cli(['train', '--help'], tempDir());
  assert.equal(r.status, 0, r.stderr);
  const schema = JSON.parse(readFileSync(join(root, 'media/run-config.schema.json'), 'utf8')) as { properties: Record<string, unknown> };
  const kebab = (s: string) => s.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
  for (const f of Object.keys(schema.properties).filter((k) => k !== '$schema')) assert.match(r.stdout, new RegExp(`\\n  --${kebab(f)}\\b`), `--${kebab(f)}`);
  assert.match(r.stdout, /--fusion-threshold .*default null/);
  assert.match(r.stdout, /--method .*lora \| pissa \| srlora/);
  assert.match(r.stdout, /--task\.kind /, 'nested fields by their dotted flag');
});

test('a bad config reports every error on one line, nested typos with a did-you-mean from their own object', () => {
  const dir = tempDir();
  const run = (config: object) => {
    writeFileSync(join(dir, 'bad.srlora.json'), JSON.stringify(config));
    const r = cli(['train', '--config', 'bad.srlora.json', '--no-progress'], dir);
    assert.notEqual(r.status, 0);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    return lines[0];
  };
  const all = run({ r: 0, stepz: 5, fusionRatio: 3 });
  assert.match(all, /bad\.srlora\.json.*: 3 errors: /);
  for (const want of [/\/stepz: unknown field \(did you mean "steps"\?\)/, /\/r: .*got 0/, /\/fusionRatio: .*got 3/]) assert.match(all, want);
  assert.match(run({ task: { kind: 'tabular', trian: 'a.csv' } }), /\/task\/trian: unknown field \(did you mean "train"\?\)/);
  const model = run({ model: { knd: 'mlp' } });
  assert.match(model, /\/model\/knd: unknown field \(did you mean "kind"\?\)/);
  assert.doesNotMatch(model, /did you mean "model"/);
  assert.deepEqual(readdirSync(dir), ['bad.srlora.json'], 'no run folder');
});

test('the summary keeps one value per step after a rewind and counts every recomposition, saying how many fused nothing', () => {
  const dir = tempDir();
  const run = new FixtureLog('sum').hello({ name: 'summed', totalSteps: 20, srlora: { schedule: [10], minSlotAge: 1, rule: { kind: 'ratio', fusionRatio: 0.5 } } })
    .state('running', 0).metrics(1, 12, () => 0.01).recomposition(11, true).evalAt(10, 0.5, 0.9)
    .state('interrupted', 12).rewind(8).state('running', 8).metrics(9, 20, (s) => 1 + 1 / s).recomposition(10, true).recomposition(15, false, 'forced')
    .evalAt(10, 0.7, 0.8).evalAt(20, 0.6, 0.85).state('finished', 20).writeTo(dir);
  const s = trainingSummary(run, dir);
  assert.match(s, /^✓ summed — finished, step 20\/20/);
  assert.match(s, /train loss +final 1\.0500 +best 0\.0100/, 'steps 1..8 of the first attempt stay (0.01); 9..20 are the resumed ones');
  assert.match(s, /eval loss +final 0\.6000 +best 0\.6000/, 'the first attempt\'s step-10 eval (0.5) was replaced');
  assert.match(s, /eval accuracy +final 0\.8500 +best 0\.8500/);
  assert.match(s, /recompositions +2 \(2 pairs fused, 1 fused nothing\)\n/, 'as the page and summary.json count them, the label said once');
});

test('both trainers\' summaries count recompositions in the same words (shared vectors; the label is not repeated)', () => {
  const vectors = JSON.parse(readFileSync(join(root, 'test/vectors/summary/recompositions.json'), 'utf8')) as { cases: { recompositions: number; pairsFused: number; fusedNothing: number; text: string }[] };
  for (const c of vectors.cases) assert.equal(recompositionsCount(c.recompositions, c.pairsFused, c.fusedNothing), c.text);
  assert.ok(vectors.cases.every((c) => !/recomposition/.test(c.text)));
});

test('npm run demo is long enough to steer (4,500 ViT steps: minutes, a recomposition every ~640 steps) unless --steps says otherwise', () => {
  const demo = (args: string[]) => {
    const r = spawnSync(process.execPath, [join(root, 'scripts/demo.mjs'), ...args], { cwd: root, encoding: 'utf8', env: { ...process.env, SRLORA_DEMO_DRY_RUN: '1' } });
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as string[];
  };
  const serve = demo([]);
  assert.deepEqual(serve.slice(0, 2), ['serve', '--demo']);
  assert.equal(serve[serve.indexOf('--steps') + 1], '4500');
  const headless = demo(['--headless']);
  assert.equal(headless[0], 'train');
  assert.equal(headless[headless.indexOf('--steps') + 1], '4500');
  const short = demo(['--steps', '200']);
  assert.equal(short.filter((a) => a === '--steps').length, 1, 'the user\'s --steps alone');
  assert.equal(short[short.indexOf('--steps') + 1], '200');
});

test('the summary prints every path absolute (a folder with a space: the dashboard command shell-quoted), given a relative run folder', () => {
  const dir = join(tempDir(), 'my runs');
  const run = new FixtureLog('abs').hello({ name: 'abs', totalSteps: 4 }).state('running', 0).metrics(1, 2, () => 0.5).state('interrupted', 2).writeTo(dir);
  mkdirSync(join(run, 'export'));
  writeFileSync(join(run, 'export', 'merged.safetensors'), '');
  const s = trainingSummary(basename(run), dir);
  assert.match(s, new RegExp(`\\n  run folder +${escapeRe(run)}\\n`), s);
  assert.match(s, new RegExp(`\\n  export +${escapeRe(join(run, 'export'))}\\n`), s);
  assert.match(s, new RegExp(`\\n  dashboard +srlora serve --runs-dir ${escapeRe(`'${dir}'`)}\\n`), s);
});

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

test('both trainers\' end summaries have one layout: the shared vectors (python/tests/test_cli_lines.py holds the PyTorch trainer\'s to them; FINDINGS F10: eval on one line, continue/dashboard in the other order there)', async () => {
  const { mkdirSync: mkdir, writeFileSync: write, readFileSync: read } = await import('node:fs');
  const { join: j } = await import('node:path');
  const { tempDir: tmp } = await import('./helpers/tmp');
  const v = JSON.parse(read(j(import.meta.dirname, 'vectors/summary/summaries.json'), 'utf8')) as { cli: { node: string; cli: string }; cases: { name: string; checkpoint: boolean; export: boolean; events: object[]; summary: string }[] };
  const runs = j(tmp(), 'runs');
  for (const [i, c] of v.cases.entries()) {
    const dir = j(runs, `run-${i}`);
    mkdir(dir, { recursive: true });
    if (c.checkpoint) {
      mkdir(j(dir, 'checkpoints/step-20'), { recursive: true });
      write(j(dir, 'checkpoints/step-20/state.pt'), 'abc');
      write(j(dir, 'checkpoints/step-20/COMPLETE.json'), JSON.stringify({ step: 20, files: { 'state.pt': { bytes: 3, sha256: '0'.repeat(64) } } }));
    }
    if (c.export) { mkdir(j(dir, 'export'), { recursive: true }); write(j(dir, 'export/merged.safetensors'), 'x'); }
    write(j(dir, 'events.jsonl'), c.events.map((e, k) => JSON.stringify({ v: 1, runId: `run-${i}`, seq: k + 1, time: 1_790_000_000_000 + k * 7000, ...e })).join('\n') + '\n');
    assert.equal(trainingSummary(dir, '/', v.cli), c.summary.replaceAll('RUNS', runs).replaceAll('RUN', dir), c.name);
  }
});
