/**
 * The dashboard in headless Chromium (Debian's chromium through playwright-core) against `srlora serve` with a real
 * trainer. Screenshots go to test-results/.
 */
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'node:http';
import { chromium, type Browser, type Page } from 'playwright-core';
import { WebSocket } from 'ws';
import { until } from './helpers/tmp';
import { FixtureLog } from './helpers/runFixtures';
import { SCALARS } from '../src/protocol/scalars';

const root = join(import.meta.dirname, '..');
const shots = join(root, 'test-results');
const CHROMIUM = '/usr/bin/chromium';
let server: ChildProcess;
let dir = '';
let url = '';
let browser: Browser;
let page: Page;
const pageErrors: string[] = [];

function httpGet(target: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    request(target, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject).end();
  });
}

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: .ci/run installs Debian's chromium`);
  mkdirSync(shots, { recursive: true });
  dir = mkdtempSync(join(tmpdir(), 'srlora-dash-')); // not tempDir(): its cleanup would run when this hook ends
  // A finished LoRA run first, for the compare view (the live run below is the other).
  const base = join(dir, 'base.srlora.json');
  writeFileSync(base, JSON.stringify({ name: 'baseline', method: 'lora', model: { kind: 'mlp' }, steps: 30, r: 4, evalEvery: 10, checkpointEvery: 0 }));
  const trained = spawnSync(process.execPath, [join(root, 'dist/cli.js'), 'train', '--config', base, '--runs-dir', join(dir, 'runs'), '--no-progress'], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(trained.status, 0, trained.stderr);
  // Runs recorded by hand, listed before the live run (older runs present): a resumed run whose log rewinds, and
  // runs that ended without finishing.
  const runsDir = join(dir, 'runs');
  new FixtureLog('fixture-resumed').hello({ name: 'resumed', totalSteps: 30, config: { steps: 30, batchSize: 32, output: '/tmp/out' }, srlora: { schedule: [12, 24], minSlotAge: 7, rule: { kind: 'ratio', fusionRatio: 0.5 } } })
    .state('running', 0).metrics(1, 20, (s) => 10 + s, (s) => ({ scalars: { 'gradNorm': s } })).importance(10).evalAt(10, 5, 0.5)
    .recomposition(12, true).recomposition(15, false, 'forced').importance(15).evalAt(20, 4, 0.6)
    .state('interrupted', 20, 'SIGTERM').rewind(10).state('running', 10)
    .metrics(11, 24, (s) => 1 / s, (s) => ({ scalars: { 'gradNorm': 100 + s } })).recomposition(12, true).evalAt(20, 0.5, 0.9)
    .ack('c-palette', 'received', null).ack('c-palette', 'applied', 24).recomposition(24, false, 'forced', 'c-palette') // Recompose Now from the palette: no pair old enough under the ratio rule
    .metrics(25, 30, (s) => 1 / s, (s) => ({ scalars: { 'gradNorm': 100 + s } })).evalAt(30, 0.25, 0.95)
    .state('finished', 30).writeTo(runsDir);
  FixtureLog.dynamics('fixture-dynamics').writeTo(runsDir); // protocol 1.2: ages, stepBoost, deltaRank
  showcaseRun().writeTo(runsDir);
  pytorchRun().writeTo(runsDir);
  sparseRun().writeTo(runsDir);
  // Losses that are 0 at every third step (log-y hides them), with a first-step spike (the y range ignores it).
  // Its config as the PyTorch trainer records it: fields the built-in trainer does not state (backend, baseModel,
  // data, name, torch, globalBatchSize), steps (the steps column shows it), and a long path both state. Two DDP ranks
  // at 16 per rank: the same global batch (32) as fixture-resumed's single process.
  new FixtureLog('fixture-zeros').hello({ name: 'zeros', totalSteps: 60, worldSize: 2, config: {
    learningRate: 0.1, backend: 'torch', baseModel: 'distilbert-base-uncased', data: '/home/user/data/spam/train.csv', name: 'zeros', torch: '2.11.0',
    batchSize: 16, globalBatchSize: 32, steps: 60, output: `/home/user/projects/srlora/${'deeply/nested/'.repeat(8)}runs/zeros/export`,
  } }).state('running', 0)
    .metrics(1, 60, (s) => (s === 1 ? 500 : s % 3 === 0 ? 0 : 1 + 1 / s)).state('finished', 60).writeTo(runsDir);
  // FRESH8 F6: a run that failed at step 2 (learning rate 1e9): one training row, the step-0 eval, no snapshot.
  new FixtureLog('fixture-onepoint').hello({ name: 'one-point', totalSteps: 40 }).state('running', 0).evalAt(0, 2.3, 0.1)
    .metrics(1, 1, () => 9.1295, () => ({ lr: 1e9, scalars: { grad_norm: 3.5, 'process/rss_MiB': 690 } }))
    .state('failed', 1, 'loss is NaN at step 2').writeTo(runsDir);
  for (const state of ['stopped', 'interrupted', 'failed']) {
    new FixtureLog(`fixture-${state}`).hello({ name: `ended-${state}`, totalSteps: 100 }).state('running', 0).metrics(1, 5, (s) => 1 / s).importance(5)
      .state(state, 5, state === 'failed' ? 'loss is NaN at step 6' : undefined).writeTo(runsDir);
  }
  const config = join(dir, 'dash.srlora.json');
  writeFileSync(config, JSON.stringify({ name: 'dashboard-test', model: { kind: 'mlp' }, steps: 100000, r: 4, rTarget: 64, evalEvery: 50, checkpointEvery: 0, importanceEvery: 2, fusionRatio: 0.25, minSlotAge: 1 }));
  server = spawn(process.execPath, [join(root, 'dist/cli.js'), 'serve', '--runs-dir', join(dir, 'runs'), '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  server.stdout!.on('data', (d) => (out += d));
  server.stderr!.on('data', (d) => (out += d));
  assert.ok(await until(() => /SRLoRA dashboard: (\S+)/.test(out), 20_000), out);
  url = /SRLoRA dashboard: (\S+)/.exec(out)![1];
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'] });
  page = await (await browser.newContext({ viewport: { width: 1400, height: 1000 } })).newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(m.text()); });
  await page.goto(url);
});

after(async () => {
  await browser?.close();
  server?.kill('SIGTERM');
  await new Promise((r) => server?.once('exit', r));
  rmSync(dir, { recursive: true, force: true });
});

// Each test checks the pages it used raised nothing (CSP violations included): a summary test at the end checked
// only what the tests before it had run, and nothing when run alone.
afterEach(() => { assert.deepEqual(pageErrors.splice(0), [], 'the page raised no errors'); });

/**
 * The shared page once it shows the live run running, past its first steps, with an importance snapshot (the heatmap
 * has cells): what every test on the shared page needs, so each passes alone (--test-name-pattern) or in any order.
 */
async function livePage(): Promise<Page> {
  await page.waitForFunction(() => /step [1-9]\d*\//.test(document.querySelector('.facts')?.textContent ?? '')
    && document.querySelector('.badge')?.textContent === 'running'
    && Number(document.querySelector('canvas.heatmap')?.getAttribute('data-cells') ?? 0) > 0, null, { timeout: 30_000 });
  return page;
}

/**
 * A run whose sparse series the y fit must show whole (fresh user, session 6): 32 pairs fused at ages 285–290 by
 * the schedule, then a forced recomposition fusing one pair 187 steps old (the fit drew it under an axis starting at
 * 200); exactly two evals (drawn as dots only, half off the chart's edges).
 */
function sparseRun(): FixtureLog {
  const layers = Array.from({ length: 16 }, (_, i) => `blocks.${i >> 2}.m${i & 3}`);
  const f = new FixtureLog('fixture-sparse').add('hello', {
    protocol: { major: 1, minor: 2 }, name: 'sparse', method: 'srlora', backend: { name: 'fixture', device: 'cpu' }, totalSteps: 800,
    config: { r: 4, rTarget: 16, fusionRatio: 0.5, fusionThreshold: null, importanceEvery: 5, evalEvery: 100, learningRate: 0.01, seed: 3 },
    layers: layers.map((n) => ({ name: n, shape: [32, 32], r: 4, rTarget: 16 })),
    srlora: { schedule: [290, 580], minSlotAge: 28, rule: { kind: 'ratio', fusionRatio: 0.5 } },
  }, 0).state('running', 0);
  // An eval before any training, far above the training losses: the Loss chart must not take its range from it.
  f.add('eval', { step: 0, loss: 20, metrics: { accuracy: 0.1 } }, 0);
  const fuse = (step: number, trigger: 'schedule' | 'forced', age: (li: number) => number | null) => f.add('recomposition', {
    step, trigger, rule: { kind: 'ratio', fusionRatio: 0.5 }, outputChange: 3e-8,
    layers: layers.map((n, li) => {
      const a = age(li);
      return a === null ? { name: n, slots: [], scores: [], oldDirections: [], newDirections: [], exhausted: false, deltaNorm: 0, preservationError: 0, p: 5 }
        : { name: n, slots: [0], scores: [1e-5], oldDirections: [0], newDirections: [4], exhausted: false, deltaNorm: 0.05, preservationError: 4e-8, p: 5, ages: [a] };
    }),
  }, 0);
  for (let step = 1; step <= 760; step++) {
    f.add('metrics', { rows: [{ step, loss: 2 * Math.exp(-step / 90) + 0.1, lr: 0.01, examplesPerSec: 800 }] }, 100);
    if (step === 290) fuse(step, 'schedule', (li) => 285 + (li % 6));
    if (step === 580) fuse(step, 'schedule', (li) => 285 + (li % 6));
    if (step === 757) fuse(step, 'forced', (li) => (li === 0 ? 187 : null));
    if (step === 100 || step === 200) f.add('eval', { step, loss: 1 / step, metrics: { accuracy: step / 250 } }, 0);
  }
  return f.state('stopped', 760);
}

/**
 * What a practitioner meets on a real run (session 7): every named scalar of the shared table (a CUDA run's and a CPU
 * run's), recompositions, a resume (interrupted at 60, rewound to its checkpoint at 50) and, last, an eval under way
 * that began 12 s before the page opened (protocol 1.3 `evaluating`; its eval has not come).
 */
function showcaseRun(): FixtureLog {
  const f = new FixtureLog('fixture-showcase');
  f.time = Date.now() - 400_000;
  const scalars = (s: number, attempt: number) => ({ scalars: {
    grad_norm: 2 / Math.sqrt(s) + 0.05 * attempt, 'process/rss_MiB': 900 + 3 * s, 'process/cpu_pct': 180 + (s % 7) * 5,
    'gpu/allocated_MiB': 5200 + 2 * s, 'gpu/reserved_MiB': 8192, 'gpu/peak_MiB': 6100 + 2 * s, 'gpu/util_pct': 85 + (s % 5) * 2,
  } });
  // as a 1.2+ trainer sends them: deltaRank with every eval, stepBoost in every snapshot
  const evalAt = (step: number, loss: number, acc: number) => f.evalAt(step, loss, acc).add('deltaRank', { step, layers: ['l0', 'l1'].map((name, i) => ({ name, effectiveRank: 1 + step / (25 + 10 * i), norm: 0.01 * step })) }, 0);
  const snapshot = (step: number, ages: number[]) => f.add('importance', { step, layers: ['l0', 'l1'].map((name, i) => ({
    name, S: [1, 2, 3, 4].map((x) => x * (1 + i)), sHat: [0.4, 0.8, 1.2, 1.6], age: ages, direction: [0, 1, 2, 3], p: 4, rTarget: 16,
    stepBoost: ages.map((a) => (a < 5 ? 2.5 : 0.5)) })) });
  const loss = (s: number) => 2 * Math.exp(-s / 40) + 0.3 + 0.04 * Math.sin(s);
  f.hello({ name: 'showcase', totalSteps: 200, config: { evalEvery: 20 }, srlora: { schedule: [30, 60, 90], minSlotAge: 10, rule: { kind: 'ratio', fusionRatio: 0.5 } } })
    .state('running', 0);
  evalAt(0, 2.3, 0.1);
  f.metrics(1, 20, loss, (s) => scalars(s, 0));
  snapshot(10, [10, 10, 10, 10]); snapshot(20, [20, 20, 20, 20]);
  evalAt(20, 1.4, 0.55);
  f.metrics(21, 30, loss, (s) => scalars(s, 0)).recomposition(30, true);
  snapshot(30, [0, 30, 30, 30]);
  f.metrics(31, 60, loss, (s) => scalars(s, 0));
  snapshot(40, [10, 40, 40, 40]);
  evalAt(40, 1.1, 0.68);
  f.state('interrupted', 60, 'SIGTERM').rewind(50).state('running', 50, 'resumed at step 50');
  f.metrics(51, 60, (s) => loss(s) - 0.02, (s) => scalars(s, 1)).recomposition(60, true);
  snapshot(60, [0, 60, 60, 60]);
  evalAt(60, 0.9, 0.74);
  f.metrics(61, 80, (s) => loss(s) - 0.02, (s) => scalars(s, 1));
  snapshot(70, [10, 70, 70, 70]); snapshot(80, [20, 80, 80, 80]);
  return f.add('evaluating', { step: 80 }, Date.now() - 12_000 - f.time);
}

/**
 * A PyTorch run as a new user met it (FINDINGS session 7, pt-part0.png): named scalars (grad_norm, process/cpu_pct,
 * process/rss_MiB), 12 layers recomposed every 42 steps — after the first, every layer fuses again the pair the
 * previous recomposition re-initialised (age 42), one layer an original pair (84) — an eval every 20 steps, a resume
 * (interrupted at 110, rewound to its checkpoint at 100), then a non-finite loss at step 181 (failed).
 */
function pytorchRun(): FixtureLog {
  const layers = Array.from({ length: 12 }, (_, i) => `encoder.layer.${i >> 1}.attention.${i & 1 ? 'value' : 'query'}`);
  const f = new FixtureLog('fixture-pt').add('hello', {
    protocol: { major: 1, minor: 3 }, name: 'distilbert-spam', method: 'srlora', backend: { name: 'torch', device: 'cpu' }, totalSteps: 300,
    config: { r: 4, rTarget: 16, fusionRatio: 0.5, fusionThreshold: null, importanceEvery: 5, evalEvery: 20, learningRate: 0.003, seed: 1, baseModel: 'distilbert-base-uncased', backend: 'torch' },
    layers: layers.map((n) => ({ name: n, shape: [768, 768], r: 4, rTarget: 16 })),
    srlora: { schedule: [42, 84, 126, 168, 210, 252], minSlotAge: 10, rule: { kind: 'ratio', fusionRatio: 0.5 }, fusionSelect: 'least-important' },
  }, 0).state('running', 0);
  const since = layers.map(() => [0, 0, 0, 0]);
  const dir = layers.map(() => [0, 1, 2, 3]), next = layers.map(() => 4);
  const snapshot = (step: number) => f.add('importance', { step, layers: layers.map((name, li) => {
    const age = since[li].map((t) => step - t);
    return { name, S: age.map((a, k) => (1 + k) * 1e-4 * Math.min(1, (a + 1) / 30)), sHat: age.map((a, k) => [0.3, 0.8, 1.2, 1.7][k] * Math.min(1, (a + 1) / 30) + 0.1), age, direction: dir[li], p: next[li], rTarget: 16 };
  }) }, 0);
  const recompose = (step: number) => f.add('recomposition', { step, trigger: 'schedule', rule: { kind: 'ratio', fusionRatio: 0.5 }, outputChange: 2e-7,
    layers: layers.map((name, li) => {
      // the youngest pair (re-initialised by the previous recomposition), or, in layer 0 at 84, an original one
      const k = step === 42 ? 0 : li === 0 && step === 84 ? 1 : 0;
      const ages = [step - since[li][k]], oldDirections = [dir[li][k]], newDirections = [next[li]++];
      dir[li][k] = newDirections[0]; since[li][k] = step;
      return { name, slots: [k], scores: [1e-5], oldDirections, newDirections, exhausted: false, deltaNorm: 0.04, preservationError: 3e-8, p: next[li], ages };
    }) }, 0);
  const loss = (s: number) => 0.7 * Math.exp(-s / 60) + 0.12 + 0.05 * Math.sin(s * 1.7);
  const row = (s: number, attempt: number) => ({ step: s, loss: loss(s), lr: 0.003, examplesPerSec: 300 + 250 * Math.sin(s) ** 2, scalars: {
    grad_norm: 14 / Math.sqrt(s) + 1.5 + Math.abs(Math.sin(s * 3)), 'process/cpu_pct': 50 + 45 * Math.abs(Math.sin(s / 7)), 'process/rss_MiB': 692 + 10 * (1 - Math.exp(-s / 30)) + attempt } });
  const steps = (from: number, to: number, attempt: number) => {
    for (let s = from; s <= to; s++) {
      f.add('metrics', { rows: [row(s, attempt)] }, 400);
      if (s % 5 === 0) snapshot(s);
      if (s % 42 === 0) recompose(s);
      if (s % 20 === 0) f.add('eval', { step: s, loss: loss(s) + 0.05, metrics: { accuracy: 0.95 - 0.85 * Math.exp(-s / 40) } }, 0);
    }
  };
  f.add('eval', { step: 0, loss: 0.9, metrics: { accuracy: 0.1 } }, 0);
  steps(1, 110, 0);
  f.state('interrupted', 110, 'received SIGINT').rewind(100).state('running', 100, 'resumed at step 100');
  steps(101, 180, 1);
  return f.state('failed', 180, 'loss is NaN at step 181');
}

const facts = () => page.locator('.facts').textContent();
const stepShown = async () => Number(/step (\d+)\//.exec((await facts()) ?? '')?.[1] ?? 0);
const commandLine = (label: RegExp) => page.locator('ul.commands li', { hasText: label }).first();

test('a page without the token gets nothing: 401 for the page and its script, and no socket', async () => {
  const origin = new URL(url).origin;
  for (const path of ['/', '/dist/webview.js', '/media/dashboard.css']) {
    const r = await httpGet(origin + path);
    assert.equal(r.status, 401, path);
    assert.doesNotMatch(r.body, /script|srlora\.v1/);
  }
  assert.equal((await httpGet(`${origin}/?token=wrong`)).status, 401);
  const status = await new Promise<number>((resolve) => {
    const ws = new WebSocket(`${origin.replace('http', 'ws')}/viewer`, ['srlora.v1'], { headers: { Origin: origin } });
    ws.on('unexpected-response', (_q, res) => resolve(res.statusCode ?? 0));
    ws.on('open', () => resolve(101));
  });
  assert.equal(status, 401);
});

test('loss points arrive and the header follows the run', async () => {
  await page.waitForFunction(() => /step [1-9]\d*\//.test(document.querySelector('.facts')?.textContent ?? ''), null, { timeout: 30_000 });
  const s1 = await stepShown();
  await page.waitForFunction((s) => Number(/step (\d+)\//.exec(document.querySelector('.facts')?.textContent ?? '')?.[1] ?? 0) > s + 5, s1, { timeout: 20_000 });
  assert.match((await page.locator('h1.run-name').textContent()) ?? '', /dashboard-test/);
  assert.equal(await page.locator('.badge').textContent(), 'running');
  // The chart drew something: its canvas is not blank.
  const inked = await page.locator('section[aria-label="Loss"] canvas').evaluate((c: HTMLCanvasElement) => {
    const d = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
    return n;
  });
  assert.ok(inked > 1000, `chart pixels ${inked}`);
  await page.screenshot({ path: join(shots, 'dashboard-running.png'), fullPage: true });
});

test('the heatmap has layers × r cells', async () => {
  await livePage();
  const canvas = page.locator('canvas.heatmap');
  assert.equal(await canvas.getAttribute('data-layers'), '3');
  assert.equal(await canvas.getAttribute('data-slots'), '4');
  assert.equal(await canvas.getAttribute('data-cells'), '12');
  assert.match((await canvas.getAttribute('aria-label')) ?? '', /3 layers × 4 slots/);
});

/** What the browser page's run picker shows (its face) and holds (its value). */
const picker = (p: Page) => p.locator('vscode-single-select.run-select').evaluate((el: HTMLElement & { value: string }) =>
  ({ value: el.value, face: el.shadowRoot?.querySelector('.select-face')?.textContent?.trim() ?? '' }));

test('Pause: the trainer acks paused at a step and the page shows it; Resume runs on', async () => {
  await livePage();
  const liveId = new URL(page.url()).searchParams.get('run');
  assert.ok(liveId, page.url());
  assert.deepEqual((await picker(page)).value, liveId);
  await page.getByRole('button', { name: 'Pause the run', exact: true }).click();
  await commandLine(/^Pause — applied at step \d+/).waitFor({ timeout: 15_000 });
  // The button says what it will do next: its label and accessible name follow the run's state.
  await page.getByRole('button', { name: 'Resume the run', exact: true }).waitFor({ timeout: 10_000 });
  assert.equal((await page.getByRole('button', { name: 'Resume the run', exact: true }).textContent())?.trim(), 'Resume');
  await page.waitForFunction(() => document.querySelector('.badge')?.textContent === 'paused', null, { timeout: 10_000 });
  // The run list changed (the live run is paused now): the picker still shows and holds the live run, not the
  // first (older, ended) run of the list.
  await page.waitForFunction(() => /paused/.test((document.querySelector('vscode-single-select.run-select') as HTMLElement | null)?.shadowRoot?.querySelector('.select-face')?.textContent ?? ''), null, { timeout: 10_000 }).catch(() => undefined);
  const shown = await picker(page);
  assert.equal(shown.value, liveId);
  assert.match(shown.face, /^dashboard-test \(srlora, paused\)/);
  assert.doesNotMatch(await facts() ?? '', /ex\/s|ETA/, 'a paused run shows no stale examples/s or ETA');
  const at = await stepShown();
  await page.waitForTimeout(700);
  assert.equal(await stepShown(), at, 'no steps while paused');
  await page.screenshot({ path: join(shots, 'dashboard-paused.png'), fullPage: true });
  await page.getByRole('button', { name: 'Resume the run', exact: true }).click();
  await commandLine(/^Resume — applied at step/).waitFor({ timeout: 15_000 });
  await page.getByRole('button', { name: 'Pause the run', exact: true }).waitFor({ timeout: 10_000 });
  await page.waitForFunction(() => document.querySelector('.badge')?.textContent === 'running', null, { timeout: 10_000 });
});

test('a threshold change previews the exact count, is applied by the trainer, and shows in force', async () => {
  await livePage();
  const preview = page.locator('.preview');
  await page.locator('vscode-radio[value="threshold"]').click();
  const field = page.locator('vscode-textfield[aria-label="Fusion threshold τ value"] input');
  await field.fill('0');
  await page.waitForFunction(() => /^0 pairs/.test(document.querySelector('.preview')?.textContent ?? ''));
  await field.fill('1000');
  await page.waitForFunction(() => /^(\d+) pairs/.test(document.querySelector('.preview')?.textContent ?? '') && !/^0 pairs/.test(document.querySelector('.preview')?.textContent ?? ''));
  const many = Number(/^(\d+) pairs/.exec((await preview.textContent()) ?? '')![1]);
  assert.ok(many > 0 && many <= 12, `preview ${many}`);
  await field.fill('1.25');
  await page.getByRole('button', { name: /apply the fusion rule/i }).click();
  await commandLine(/^Set τ = 1.25, γ = 0.25 — applied at step \d+/).waitFor({ timeout: 15_000 });
  await page.waitForFunction(() => /In force: τ = 1.25/.test(document.body.textContent ?? ''), null, { timeout: 10_000 });
  await page.screenshot({ path: join(shots, 'dashboard-threshold.png'), fullPage: true });
});

test('Recompose now: a new forced row in the recomposition log', async () => {
  await livePage();
  const forcedRows = () => page.locator('tbody tr.forced').count();
  const before = await forcedRows();
  await page.getByRole('button', { name: /recompose all layers now/i }).click();
  await commandLine(/^Recompose all layers — applied at step \d+/).waitFor({ timeout: 15_000 });
  await page.waitForFunction((n) => document.querySelectorAll('tbody tr.forced').length > n, before, { timeout: 10_000 });
  assert.ok((await forcedRows()) >= before + 3, 'one row per layer');
  await page.screenshot({ path: join(shots, 'dashboard-recomposed.png'), fullPage: true });
});

test('compare: ?runs=A,B overlays both runs on one loss chart, each named with its method', async () => {
  const liveIds = () => readdirSync(join(dir, 'runs')).filter((id) => !id.startsWith('fixture-')).sort();
  await until(() => liveIds().length >= 2, 20_000, 100); // the baseline and the live run (started by serve)
  const ids = liveIds();
  assert.equal(ids.length, 2, `runs: ${ids.join(', ')}`);
  const compareUrl = new URL(url);
  compareUrl.searchParams.set('runs', ids.join(','));
  const p2 = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  p2.on('pageerror', (e) => pageErrors.push(e.message));
  try {
    await p2.goto(compareUrl.href); // the token becomes a cookie; the runs stay in the URL
    assert.equal(new URL(p2.url()).searchParams.get('runs'), ids.join(','));
    const chart = p2.locator('section[aria-label="Loss"] canvas');
    // Both runs drawn: the finished baseline's 30 points, and the live run's once it has trained (run alone, this
    // test can get here before the live run's first step).
    await p2.waitForFunction(() => /baseline \(lora\), 30 points/.test(document.querySelector('section[aria-label="Loss"] canvas')?.getAttribute('aria-label') ?? '')
      && /dashboard-test \(srlora\), [1-9]\d* points/.test(document.querySelector('section[aria-label="Loss"] canvas')?.getAttribute('aria-label') ?? ''), null, { timeout: 30_000 });
    assert.equal(await chart.getAttribute('data-runs'), '2');
    assert.match((await chart.getAttribute('aria-label')) ?? '', /dashboard-test \(srlora\), [1-9]\d* points, last \d/);
    assert.match((await p2.locator('h1.run-name').textContent()) ?? '', /^Compare: .*(baseline.*dashboard-test|dashboard-test.*baseline)/);
    // Comparing, every chart names whose line is whose, also where only one run has data yet (the live run's evals)
    await p2.waitForFunction(() => [...document.querySelectorAll('.metrics-grid section canvas')].every((c) => c.getAttribute('data-legend') === '1')
      && document.querySelectorAll('.metrics-grid section canvas[data-legend]').length > 0, null, { timeout: 15_000 });
    await p2.screenshot({ path: join(shots, 'dashboard-compare.png'), fullPage: true });
  } finally { await p2.close(); }
});

/** A second page on the same server, at ?run=ID (the token is a cookie by now). */
async function openRun(id: string): Promise<Page> {
  const u = new URL(url);
  u.search = `?run=${encodeURIComponent(id)}`;
  const p = await page.context().newPage(); // the same context: it holds the token's cookie
  p.on('pageerror', (e) => pageErrors.push(e.message));
  p.on('console', (m) => { if (m.type() === 'error') pageErrors.push(m.text()); });
  await p.goto(u.href);
  return p;
}

async function download(p: Page, panel: string, button: string): Promise<string> {
  const [file] = await Promise.all([p.waitForEvent('download'), p.locator(`section[aria-label="${panel}"]`).getByRole('button', { name: button, exact: true }).click()]);
  const chunks: Buffer[] = [];
  for await (const c of (await file.createReadStream())) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

test('a resumed run (rewind in its log) shows one value per step: one curve, no repeated CSV rows, the later recompositions dropped', async () => {
  const p = await openRun('fixture-resumed');
  try {
    await p.waitForFunction(() => /step 30\/30/.test(document.querySelector('.facts')?.textContent ?? ''), null, { timeout: 15_000 });
    await p.waitForFunction(() => /resumed \(srlora\), 30 points, last 0\.03333/.test(document.querySelector('section[aria-label="Loss"] canvas')?.getAttribute('aria-label') ?? ''), null, { timeout: 5_000 });
    const metrics = (await download(p, 'Loss', 'Save the metrics as CSV')).trim().split('\n');
    assert.match(metrics[0], /^step,time,relativeSeconds,loss,lr,examplesPerSec,gradNorm$/);
    const steps = metrics.slice(1).map((l) => Number(l.split(',')[0]));
    assert.deepEqual(steps, Array.from({ length: 30 }, (_, i) => i + 1), 'steps 1..30 once each');
    const row15 = metrics[15].split(',');
    assert.equal(Number(row15[3]), 1 / 15, 'step 15 holds the resumed value, not the first attempt\'s');
    assert.equal(Number(row15[6]), 115);
    const evals = (await download(p, 'Loss', 'Save the evals as CSV')).trim().split('\n');
    assert.deepEqual(evals.map((l) => l.split(',').slice(0, 1)[0]), ['step', '10', '20', '30']);
    assert.match(evals[0], /^step,time,relativeSeconds,loss,accuracy$/);
    // The first attempt's step-12 and step-15 recompositions were dropped; the resumed run's step 12 counts once, and
    // the forced one at step 24 that fused nothing counts too, said so.
    assert.match((await p.locator('.facts').textContent()) ?? '', /· 2 recompositions, 1 fused nothing ·/);
    assert.equal(await p.locator('section[aria-label="Recompositions"] tbody tr').count(), 4, 'one row per layer of the two recompositions');
    // The palette's Recompose Now fused nothing: the commands list and the table say so, and the count includes it
    // (as summary.json and the terminal count it), saying it fused nothing.
    assert.match((await p.locator('ul.commands').textContent()) ?? '', /Recompose all layers — applied at step 24 — fused nothing \(no pair old enough \(age ≥ 7 steps\)\)/);
    assert.equal(await p.locator('ul.commands li.ok').count(), 0, 'not a green applied');
    assert.match((await p.locator('section[aria-label="Recompositions"]').textContent()) ?? '', /2 recompositions, 1 fused nothing/);
    assert.equal(await p.locator('section[aria-label="Recompositions"] tbody tr.empty').count(), 2);
    // The trainer stated its min slot age (7): the page shows it, and never recomputes it from the config.
    assert.match((await p.locator('.facts').textContent()) ?? '', /min slot age 7/);
  } finally { await p.close(); }
});

for (const state of ['stopped', 'interrupted', 'failed']) {
  test(`a ${state} run does not look live or successful: no preview, no editable rule, no examples/s, controls off`, async () => {
    const p = await openRun(`fixture-${state}`);
    try {
      await p.waitForFunction((s) => document.querySelector('.badge')?.textContent === s, state, { timeout: 15_000 });
      const badge = p.locator('.badge');
      assert.equal(await badge.getAttribute('class'), `badge state-${state}`);
      assert.equal(await badge.evaluate((b) => getComputedStyle(b, '::before').content), 'none', 'no success check');
      const f = (await p.locator('.facts').textContent()) ?? '';
      assert.doesNotMatch(f, /ex\/s|ETA/);
      if (state === 'failed') assert.match(f, /loss is NaN at step 6/);
      assert.doesNotMatch((await p.locator('.preview').textContent()) ?? '', /would fuse/);
      assert.match((await p.locator('.preview').textContent()) ?? '', new RegExp(`^This run (was )?${state}: `)); // not "The run is failed" (FRESH8 F6)
      for (const sel of ['vscode-radio[value="threshold"]', 'vscode-textfield[aria-label="Fusion threshold τ value"]', 'vscode-textfield[aria-label="Fusion ratio γ"]']) {
        assert.equal(await p.locator(sel).evaluate((e: HTMLElement & { disabled: boolean }) => e.disabled), true, sel);
      }
      for (const name of [/^pause the run/i, /recompose all layers now/i, /^stop/i, /checkpoint/i]) {
        assert.equal(await p.getByRole('button', { name }).first().evaluate((e: HTMLElement & { disabled: boolean }) => e.disabled), true, String(name));
      }
    } finally { await p.close(); }
  });
}

test('a log from before protocol 1.1 (no hello.srlora): the page says the schedule and min slot age are unknown', async () => {
  const p = await openRun('fixture-stopped');
  try {
    await p.waitForFunction(() => /min slot age unknown/.test(document.querySelector('.facts')?.textContent ?? ''), null, { timeout: 15_000 });
  } finally { await p.close(); }
});

test('a mistyped run id in the URL says so, with every control disabled (not "Loading…" forever)', async () => {
  const p = await openRun('no-such-run');
  try {
    await p.waitForFunction(() => /No run named “no-such-run”/.test(document.querySelector('h1.run-name')?.textContent ?? ''), null, { timeout: 15_000 });
    assert.equal(await p.locator('.badge').textContent(), 'not found');
    const disabled = await p.locator('[role=toolbar] vscode-button').evaluateAll((bs) => bs.map((b) => (b as HTMLElement & { disabled: boolean }).disabled));
    assert.ok(disabled.length >= 5 && disabled.every(Boolean), JSON.stringify(disabled));
  } finally { await p.close(); }
});

test('τ and γ validate as the palette does: -1.5, a lone - and γ = 2 are errors, preview nothing, cannot be applied', async () => {
  await livePage();
  const tau = page.locator('vscode-textfield[aria-label="Fusion threshold τ value"] input');
  const gamma = page.locator('vscode-textfield[aria-label="Fusion ratio γ"] input');
  const apply = page.getByRole('button', { name: /apply the fusion rule/i });
  const disabled = () => apply.evaluate((b: HTMLElement & { disabled: boolean }) => b.disabled);
  for (const bad of ['-1.5', '-', 'abc']) {
    await tau.fill(bad);
    await page.waitForFunction(() => /^τ: Enter a number ≥ 0/.test(document.querySelector('.field-error')?.textContent ?? ''));
    assert.equal(await disabled(), true, bad);
    assert.doesNotMatch((await page.locator('.preview').textContent()) ?? '', /would fuse/, bad);
  }
  await tau.fill('0.5');
  await gamma.fill('2');
  await page.waitForFunction(() => /^γ: Enter a number in \(0, 1\]/.test(document.querySelector('.field-error')?.textContent ?? ''));
  assert.equal(await disabled(), true);
  await gamma.fill('0.25');
  await page.waitForFunction(() => (document.querySelector('.field-error')?.textContent ?? '') === '' && /would fuse/.test(document.querySelector('.preview')?.textContent ?? ''));
  assert.equal(await disabled(), false);
  await page.getByRole('button', { name: /revert to the rule in force/i }).click();
});

test('the commands list survives a reload (it is the run\'s acks), with the labels this page sent', async () => {
  await livePage();
  // Commands of this test's own (a τ no other test sends; pauses counted), not whatever earlier tests sent.
  const pauses = () => page.locator('ul.commands li', { hasText: /^Pause — applied at step \d+/ }).count();
  const before = await pauses();
  await page.getByRole('button', { name: 'Pause the run', exact: true }).click();
  await page.getByRole('button', { name: 'Resume the run', exact: true }).waitFor({ timeout: 15_000 });
  await page.waitForFunction((n) => [...document.querySelectorAll('ul.commands li')].filter((li) => /^Pause — applied at step \d+/.test(li.textContent ?? '')).length > n, before, { timeout: 15_000 });
  await page.getByRole('button', { name: 'Resume the run', exact: true }).click();
  await page.getByRole('button', { name: 'Pause the run', exact: true }).waitFor({ timeout: 15_000 });
  await page.locator('vscode-textfield[aria-label="Fusion threshold τ value"] input').fill('1.37');
  await page.locator('vscode-textfield[aria-label="Fusion ratio γ"] input').fill('0.25');
  await page.getByRole('button', { name: /apply the fusion rule/i }).click();
  await commandLine(/^Set τ = 1.37, γ = 0.25 — applied at step \d+/).waitFor({ timeout: 15_000 });
  await page.reload();
  await commandLine(/^Set τ = 1.37, γ = 0.25 — applied at step \d+/).waitFor({ timeout: 15_000 });
  await commandLine(/^Resume — applied at step \d+/).waitFor({ timeout: 5_000 });
  assert.equal(await pauses(), before + 1, 'the pause this test sent, once');
});

test('Stop asks first, saying what the browser user can do later; Cancel keeps the run going', async () => {
  await livePage();
  await page.getByRole('button', { name: 'Stop the run', exact: true }).click();
  const bar = page.getByRole('alertdialog', { name: 'Confirm stop' });
  await bar.waitFor({ state: 'visible' });
  const question = (await bar.textContent()) ?? '';
  assert.doesNotMatch(question, /Continue Run/, 'a VS Code command, not something the browser page offers');
  // the line runs as printed: the Node.js that ran the trainer and its dist/cli.js (hello.launch), not VS Code's
  // ELECTRON_RUN_AS_NODE, which the supervisor sets for plain Node too
  assert.ok(question.includes(`run ${process.execPath} `) && /\/dist\/cli\.js train --resume \//.test(question), question);
  await bar.getByRole('button', { name: 'Cancel stopping' }).click();
  await bar.waitFor({ state: 'hidden' });
  // The run goes on (a stop sent anyway would show as its ack and end the steps; the badge alone changes late).
  const at = await stepShown();
  await page.waitForFunction((s) => Number(/step (\d+)\//.exec(document.querySelector('.facts')?.textContent ?? '')?.[1] ?? 0) > s + 3, at, { timeout: 20_000 });
  assert.equal(await page.locator('.badge').textContent(), 'running');
  assert.equal(await page.locator('ul.commands li', { hasText: /^Stop/ }).count(), 0, 'no stop sent');
});

test('heatmap rows are reachable and selectable by keyboard', async () => {
  await livePage();
  const rows = page.getByRole('listbox', { name: /Layers/ });
  await rows.focus();
  await page.keyboard.press('ArrowDown');
  await page.keyboard.press('Space');
  await page.waitForFunction(() => document.querySelectorAll('.layer-rows [aria-selected="true"]').length === 1);
  assert.equal(await page.locator('.layer-rows [aria-selected="true"]').textContent(), await page.locator('.layer-rows li').nth(1).textContent(), 'the second row');
  assert.match((await page.getByRole('button', { name: /recompose the selected layers/i }).textContent()) ?? '', /Recompose 1 selected/);
  await page.keyboard.press('Space'); // unselect again
});

test('every button has an accessible name', async () => {
  await livePage(); // every panel shows the live run (its buttons are there)
  const unnamed = await page.locator('vscode-button').evaluateAll((bs) => bs.filter((b) => !(b.getAttribute('aria-label') ?? b.textContent ?? '').trim()).length);
  assert.equal(unnamed, 0);
});

test('issue 15: each named scalar the built-in trainer sends gets its panel, titled from the shared table, its name as sent beside the title, its unit in the chart\'s label', async () => {
  // The baseline was trained by `srlora train` (before()): its rows carry the shared list's builtin names.
  const id = readdirSync(join(dir, 'runs')).find((n) => /-lora-/.test(n));
  assert.ok(id, 'the baseline run folder');
  const p = await openRun(id);
  try {
    const names = SCALARS.filter((x) => x.trainers.includes('builtin'));
    assert.ok(names.length >= 3);
    for (const s of names) {
      await p.waitForFunction(([name, title, unit]) => {
        const label = document.querySelector(`section[data-metric="scalar:${name}"] canvas`)?.getAttribute('aria-label') ?? '';
        return new RegExp(`^${title.replace(/[().]/g, '\\$&')} chart: baseline \\(lora\\), \\d+ points?, last [-+0-9.e]+${unit ? ` ${unit}` : ''}$`).test(label);
      }, [s.name, s.title, s.unit], { timeout: 15_000 });
      const heading = p.locator(`section[data-metric="scalar:${s.name}"] h2`);
      assert.equal(await heading.locator('code.metric-key').textContent(), s.name, 'the name as sent, for people who grep logs');
      assert.equal(await heading.evaluate((el) => el.firstChild?.textContent), s.title);
      assert.equal(await heading.getAttribute('title'), `${s.name}: ${s.description}`);
      assert.equal(await p.locator(`section[data-metric="scalar:${s.name}"]`).getAttribute('aria-label'), s.title);
      // one line: no legend that repeats the heading
      assert.equal(await p.locator(`section[data-metric="scalar:${s.name}"] canvas`).getAttribute('data-legend'), '0');
    }
  } finally {
    await p.close();
  }
});

test('metric panels: one per scalar (lr, examples/s, named scalars, eval metrics); the choice persists across a reload', async () => {
  const p = await openRun('fixture-resumed');
  try {
    const titles = () => p.locator('.metrics-grid section').evaluateAll((ss) => ss.map((x) => x.getAttribute('aria-label')));
    await p.waitForFunction(() => document.querySelectorAll('.metrics-grid section').length === 5, null, { timeout: 15_000 });
    assert.deepEqual(await titles(), ['Learning rate', 'Examples/s', 'gradNorm', 'Eval accuracy', 'Eval loss']);
    // gradNorm is not in the shared table (a user's or a newer trainer's scalar): its chart is titled by its name alone
    assert.equal(await p.locator('section[data-metric="scalar:gradNorm"] h2').textContent(), 'gradNorm');
    await p.waitForFunction(() => /gradNorm chart: resumed \(srlora\), 30 points, last 130/.test(document.querySelector('section[data-metric="scalar:gradNorm"] canvas')?.getAttribute('aria-label') ?? ''));
    // The chooser is @vscode-elements' multi-select: open it, untick gradNorm, close it.
    const toggle = async (title: string) => {
      await p.locator('vscode-multi-select.chooser .select-face').click();
      await p.locator('vscode-multi-select.chooser li.option', { hasText: title }).click();
      await p.keyboard.press('Escape');
    };
    await toggle('gradNorm');
    await p.waitForFunction(() => document.querySelectorAll('.metrics-grid section').length === 4);
    await p.reload();
    await p.waitForFunction(() => document.querySelectorAll('.metrics-grid section').length === 4, null, { timeout: 15_000 });
    assert.deepEqual(await titles(), ['Learning rate', 'Examples/s', 'Eval accuracy', 'Eval loss']);
    assert.deepEqual(await p.locator('vscode-multi-select.chooser').evaluate((el: HTMLElement & { value: string[] }) => [...el.value]),
      ['lr', 'examplesPerSec', 'eval:accuracy', 'eval:loss'], 'the chooser shows the persisted choice');
    await toggle('gradNorm'); // back as it was for later pages
    await p.waitForFunction(() => document.querySelectorAll('.metrics-grid section').length === 5);
  } finally { await p.close(); }
});

test('log-y says how many points ≤ 0 it hides and fits the smallest positive value; the y range ignores a first-step spike; relative time starts at 0', async () => {
  const p = await openRun('fixture-zeros');
  try {
    const canvas = p.locator('section[aria-label="Loss"] canvas');
    await p.waitForFunction(() => /zeros \(srlora\), 60 points/.test(document.querySelector('section[aria-label="Loss"] canvas')?.getAttribute('aria-label') ?? ''), null, { timeout: 15_000 });
    assert.ok(Number(await canvas.getAttribute('data-y-max')) < 10, `linear y max ${await canvas.getAttribute('data-y-max')} (the 500 at step 1 must not set it)`);
    assert.equal(Number(await canvas.getAttribute('data-y-min')), 0, 'losses ≥ 0: no negative y axis');
    await p.locator('section[aria-label="Loss"] vscode-checkbox').click(); // log y
    await p.waitForFunction(() => /log y hides 20 points ≤ 0/.test(document.querySelector('section[aria-label="Loss"] .chart-note')?.textContent ?? ''));
    const yMin = Number(await canvas.getAttribute('data-y-min'));
    // The axis starts at the labelled tick under it (niceAxis): 0.9 for 1.0167 less its padding.
    assert.ok(yMin >= 0.9 && yMin <= 1.0167, `log y min ${yMin}: about the smallest positive loss (1 + 1/60)`);
    await p.locator('section[aria-label="Loss"] vscode-checkbox').click(); // back to linear (the choice persists)
    const axis = (v: string) => p.locator('section[aria-label="Loss"] vscode-single-select').evaluate((el: HTMLElement & { value: string }, value) => { el.value = value; el.dispatchEvent(new Event('change')); }, v);
    await axis('relative');
    await p.waitForFunction(() => document.querySelector('section[aria-label="Loss"] canvas')?.getAttribute('data-x-min') === '0');
    await axis('wall');
    await p.waitForFunction(() => Number(document.querySelector('section[aria-label="Loss"] canvas')?.getAttribute('data-x-min')) === Date.UTC(2026, 10, 1, 12, 0, 3));
    await axis('step');
  } finally { await p.close(); }
});

test('compare: a runs table with final/best metrics and the config fields that differ', async () => {
  const p = await openRun('fixture-resumed,fixture-zeros'.split(',')[0]);
  try {
    await p.goto(p.url().replace(/\?run=[^&]*/, '?runs=fixture-resumed,fixture-zeros'));
    const table = p.locator('section[aria-label="Compared runs"] table');
    await p.waitForFunction(() => document.querySelectorAll('section[aria-label="Compared runs"] tbody tr').length === 2, null, { timeout: 15_000 });
    const head = await table.locator('thead th').allTextContents();
    assert.deepEqual(head.slice(0, 4), ['run', 'method', 'state', 'steps']);
    assert.ok(head.includes('learningRate'), head.join('|'));
    assert.ok(!head.includes('r'), 'equal fields are not listed');
    // Only fields both runs state are compared; the one-sided ones are named apart, never a "–" column. The backend is
    // the hellos' (both 'fixture · cpu': equal, so no column), not the config's request that only one run states.
    for (const f of ['backend', 'baseModel', 'data', 'name', 'torch', 'globalBatchSize']) assert.ok(!head.includes(f), `${f} is stated by one run only: ${head.join('|')}`);
    assert.match((await p.locator('section[aria-label="Compared runs"] .one-sided').textContent()) ?? '', /only some of these runs.*: baseModel, data, torch$/);
    // 32 in one process vs 2 ranks × 16: the same global batch, so no batch column ("32 vs 16" lied); the world size differs
    assert.ok(!head.includes('batchSize') && !head.includes('global batch'), head.join('|'));
    const ws = head.indexOf('world size');
    assert.ok(ws > 0, `world size is a column: ${head.join('|')}`);
    assert.deepEqual(await table.locator('tbody tr').evaluateAll((rows, i) => rows.map((r) => r.children[i].textContent), ws), ['1', '2']);
    // the recompositions table is the first run's and says so
    assert.match((await p.locator('section[aria-label="Recompositions"] .row .muted').first().textContent()) ?? '', /^resumed \(the first compared run\): /);
    assert.equal(new Set(head).size, head.length, `no column twice: ${head.join('|')}`);
    assert.equal(head.filter((c) => c === 'steps').length, 1);
    // The long path is cut, whole in its title, and the table stays inside its section (scrolling there).
    const output = table.locator('tbody tr').nth(1).locator('td[title*="deeply/nested"]');
    assert.equal(await output.count(), 1);
    assert.ok(((await output.textContent()) ?? '').length <= 40, 'the cell is cut');
    assert.match((await output.getAttribute('title')) ?? '', /\/runs\/zeros\/export$/);
    const fits = await p.evaluate(() => {
      const s = document.querySelector('section[aria-label="Compared runs"]')!.getBoundingClientRect();
      return { section: s.right, page: document.documentElement.clientWidth, scroll: document.documentElement.scrollWidth };
    });
    assert.ok(fits.section <= fits.page && fits.scroll <= fits.page, JSON.stringify(fits));
    // Every column can be seen: the table fits its section, or it says that it scrolls (the scrollbar can be hidden).
    const wrap = await p.locator('section[aria-label="Compared runs"] .compare-wrap').evaluate((w) => ({ scroll: w.scrollWidth, client: w.clientWidth }));
    const more = p.locator('section[aria-label="Compared runs"] .compare-more');
    assert.ok(wrap.scroll <= wrap.client || await more.isVisible(), `the table (${wrap.scroll} px) is cut at ${wrap.client} px with no word of it`);
    // At 1400 px the table fits, so the checks above could not fail: at a narrow width (a VS Code editor split in
    // two) it is wider than its section, must scroll inside it (not the page) and say so.
    await p.setViewportSize({ width: 640, height: 1000 });
    await p.waitForFunction(() => { const w = document.querySelector('section[aria-label="Compared runs"] .compare-wrap'); return !!w && w.scrollWidth > w.clientWidth + 1; }, null, { timeout: 5_000 })
      .catch(() => assert.fail('at 640 px the compare table should be wider than its section: this test no longer tests the overflow'));
    await more.waitFor({ state: 'visible', timeout: 5_000 }).catch(() => assert.fail('the table is cut at 640 px with no word of it'));
    assert.match((await more.textContent()) ?? '', /scroll it sideways/);
    const narrow = await p.evaluate(() => {
      const s = document.querySelector('section[aria-label="Compared runs"]')!.getBoundingClientRect();
      return { section: s.right, page: document.documentElement.clientWidth, scroll: document.documentElement.scrollWidth };
    });
    assert.ok(narrow.section <= narrow.page && narrow.scroll <= narrow.page, `at 640 px the section or the page is wider than the window: ${JSON.stringify(narrow)}`);
    await p.screenshot({ path: join(shots, 'dashboard-compare-narrow.png'), fullPage: true });
    await p.setViewportSize({ width: 1400, height: 1000 });
    const first = await table.locator('tbody tr').first().textContent();
    assert.match(first ?? '', /resumed.*finished.*30\/30/);
    assert.match((await p.locator('section[aria-label="Loss"] canvas').getAttribute('aria-label')) ?? '', /resumed \(srlora\).*; zeros \(srlora\)/);
    await p.screenshot({ path: join(shots, 'dashboard-compare-table.png'), fullPage: true });
  } finally { await p.close(); }
});

test('the browser page follows prefers-color-scheme: a switch redraws the charts in the new colours', async () => {
  const p = await openRun('fixture-resumed');
  try {
    await p.emulateMedia({ colorScheme: 'dark' });
    const canvas = p.locator('section[aria-label="Loss"] canvas');
    await p.waitForFunction(() => document.querySelector('section[aria-label="Loss"] canvas')?.getAttribute('data-fg') === '#cccccc', null, { timeout: 15_000 });
    await p.screenshot({ path: join(shots, 'dashboard-dark.png'), fullPage: true });
    await p.emulateMedia({ colorScheme: 'light' });
    await p.waitForFunction(() => document.querySelector('section[aria-label="Loss"] canvas')?.getAttribute('data-fg') === '#3b3b3b', null, { timeout: 5_000 });
    assert.equal(await p.evaluate(() => getComputedStyle(document.body).backgroundColor), 'rgb(255, 255, 255)');
    assert.equal(await canvas.getAttribute('data-fg'), '#3b3b3b');
    await p.screenshot({ path: join(shots, 'dashboard-light.png'), fullPage: true });
  } finally { await p.close(); }
});

test('the browser page picks runs to compare with a multi-select (no URL editing)', async () => {
  const p = await openRun('fixture-resumed');
  try {
    await p.waitForFunction(() => /step 30\/30/.test(document.querySelector('.facts')?.textContent ?? ''), null, { timeout: 15_000 });
    const select = p.locator('vscode-multi-select[aria-label="Runs to compare"]');
    await p.waitForFunction(() => document.querySelectorAll('vscode-multi-select[aria-label="Runs to compare"] vscode-option').length >= 3);
    await select.evaluate((el: HTMLElement & { value: string[] }) => { el.value = ['fixture-resumed', 'fixture-dynamics']; });
    await p.getByRole('button', { name: 'Compare the chosen runs' }).click();
    await p.waitForFunction(() => /^Compare: resumed · dynamics/.test(document.querySelector('h1.run-name')?.textContent ?? ''), null, { timeout: 10_000 });
    await p.waitForFunction(() => document.querySelectorAll('section[aria-label="Compared runs"] tbody tr').length === 2);
    // The URL names the choice (it stayed ?run=fixture-resumed): a reload shows the same comparison.
    assert.equal(new URL(p.url()).search, '?runs=fixture-resumed,fixture-dynamics');
    await p.reload();
    await p.waitForFunction(() => /^Compare: resumed · dynamics/.test(document.querySelector('h1.run-name')?.textContent ?? ''), null, { timeout: 10_000 });
    await p.locator('vscode-single-select[aria-label="Run"]').evaluate((el: HTMLElement & { value: string }) => { el.value = 'fixture-zeros'; el.dispatchEvent(new Event('change')); });
    await p.waitForFunction(() => new URL(location.href).search === '?run=fixture-zeros', null, { timeout: 10_000 });
  } finally { await p.close(); }
});

test('compare: the step boost shows the first run\'s, named, as the heatmap does; a plain URL afterwards shows one run, not the last comparison (the URL is the truth)', async () => {
  // A context of its own: the page's saved state is this tab's alone (the shared page saves its own run there).
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  const p = await context.newPage();
  p.on('pageerror', (e) => pageErrors.push(e.message));
  try {
    const u = new URL(url); // serve's URL names its live run: the token alone is the plain URL
    u.searchParams.delete('run');
    const plain = u.href;
    u.searchParams.set('runs', 'fixture-dynamics,fixture-resumed,bogus');
    await p.goto(u.href);
    await p.waitForFunction(() => /No run named “bogus”/.test(document.querySelector('.facts')?.textContent ?? ''), null, { timeout: 15_000 });
    const boost = p.locator('section[data-metric="boost"]');
    await boost.scrollIntoViewIfNeeded();
    await p.waitForFunction(() => /dynamics \(srlora\), 60 points/.test(document.querySelector('section[data-metric="boost"] canvas')?.getAttribute('aria-label') ?? ''), null, { timeout: 15_000 });
    assert.match((await boost.locator('.chart-note').textContent()) ?? '', /^showing dynamics \(the first compared run\)$/);
    assert.match((await p.locator('section[aria-label="Importance"]').textContent()) ?? '', /showing dynamics \(the first compared run\)/, 'as the heatmap says it');
    assert.match((await p.locator('section[aria-label="Slot history"]').textContent()) ?? '', /showing dynamics \(the first compared run\); time runs/, 'the slot history is the first run\'s too');
    await p.locator('.dynamics').screenshot({ path: join(shots, 'dashboard-compare-dynamics.png') });
    await p.goto(plain); // the dashboard's URL with the token only
    await p.waitForFunction(() => /step \d+\//.test(document.querySelector('.facts')?.textContent ?? ''), null, { timeout: 15_000 });
    assert.doesNotMatch((await p.locator('h1.run-name').textContent()) ?? '', /^Compare/);
    assert.doesNotMatch((await p.locator('.facts').textContent()) ?? '', /bogus/);
    assert.equal(await p.locator('section[aria-label="Compared runs"]').isVisible(), false);
  } finally { await context.close(); }
});

test('compare: an unknown id is named, and the badge counts the runs shown (?runs=A,nope said "2 runs" over one row)', async () => {
  const p = await openRun('fixture-resumed');
  try {
    await p.goto(p.url().replace(/\?run=[^&]*/, '?runs=fixture-resumed,nope'));
    await p.waitForFunction(() => /No run named “nope”/.test(document.querySelector('.facts')?.textContent ?? ''), null, { timeout: 15_000 });
    assert.equal(await p.locator('.badge').textContent(), '1 run');
    assert.equal(await p.locator('section[aria-label="Compared runs"] tbody tr').count(), 1);
  } finally { await p.close(); }
});

test('a page load subscribes once (one snapshot per run, not two)', async () => {
  const p = await page.context().newPage();
  let subscribes = 0, snapshots = 0;
  p.on('websocket', (w) => {
    w.on('framesent', (f) => { if (String(f.payload).includes('"type":"subscribe"')) subscribes++; });
    w.on('framereceived', (f) => { const t = String(f.payload).slice(0, 200); if (t.includes('"type":"snapshot"') && !t.includes('"continued":true')) snapshots++; });
  });
  try {
    const u = new URL(url);
    u.search = '?run=fixture-resumed';
    await p.goto(u.href);
    await p.waitForFunction(() => /step 30\/30/.test(document.querySelector('.facts')?.textContent ?? ''), null, { timeout: 15_000 });
    await p.waitForTimeout(1000); // a second subscribe would have brought a second snapshot by now
    assert.equal(subscribes, 1);
    assert.equal(snapshots, 1);
  } finally { await p.close(); }
});

test('a sparse series is fitted whole: a fused pair far below the others is inside the y axis (log-y too, labelled with round ticks); two evals are a line, their dots inside the x axis', async () => {
  const p = await openRun('fixture-sparse');
  try {
    const fused = p.locator('section[data-metric="fusions"] canvas');
    await p.waitForFunction(() => /sparse \(srlora\), 33 points, last 187/.test(document.querySelector('section[data-metric="fusions"] canvas')?.getAttribute('aria-label') ?? ''), null, { timeout: 15_000 });
    await p.waitForFunction(() => Number(document.querySelector('section[data-metric="fusions"] canvas')?.getAttribute('data-draws')) > 0);
    const yMin = Number(await fused.getAttribute('data-y-min')), yMax = Number(await fused.getAttribute('data-y-max'));
    assert.ok(yMin < 187 && yMax > 290, `the fused-pairs y axis ${yMin}..${yMax} holds every age, 187 to 290`);
    // The Loss chart's evals share the training loss's outlier-aware range: the step-0 eval (20) does not set it.
    const lossMax = Number(await p.locator('section[aria-label="Loss"] canvas').first().getAttribute('data-y-max'));
    assert.ok(lossMax > 2 && lossMax < 5, `the Loss chart's y axis top ${lossMax} follows the training losses (0.1..2.1), not the step-0 eval's 20`);
    for (const key of ['eval:accuracy', 'eval:loss']) {
      const c = p.locator(`section[data-metric="${key}"] canvas`);
      await c.scrollIntoViewIfNeeded();
      await p.waitForFunction((k) => Number(document.querySelector(`section[data-metric="${k}"] canvas`)?.getAttribute('data-draws')) > 0, key);
      assert.equal(await c.getAttribute('data-joined'), '1', `${key}: its two evals are joined by a line`);
      const [lo, hi] = ((await c.getAttribute('data-axis')) ?? '').split(',').map(Number);
      assert.ok(lo < 100 && hi > 200, `${key}: the x axis ${lo}..${hi} has room for the dots at steps 100 and 200`);
    }
    await p.locator('section[aria-label="Loss"] vscode-checkbox').click(); // log y (every chart)
    await p.waitForFunction(() => Number(document.querySelector('section[data-metric="fusions"] canvas')?.getAttribute('data-y-max')) > 290
      && Number(document.querySelector('section[data-metric="fusions"] canvas')?.getAttribute('data-y-min')) < 187);
    await fused.scrollIntoViewIfNeeded();
    await p.waitForFunction(() => document.querySelector('section[data-metric="fusions"] canvas')?.getAttribute('data-log-y') === '1');
    const labels = ((await fused.getAttribute('data-y-labels')) ?? '').split('|').filter((l) => l);
    assert.ok(labels.length > 0, `the log axis is labelled: ${JSON.stringify(labels)}`);
    for (const l of labels) assert.match(l, /^[1-9]0*$/, `log-y labels are round numbers, not the axis' bounds: ${labels.join(' ')}`);
    await p.screenshot({ path: join(shots, 'dashboard-sparse.png'), fullPage: true });
    await p.locator('section[aria-label="Loss"] vscode-checkbox').click(); // back to linear (the choice persists)
  } finally { await p.close(); }
});

/** Each drawn chart's labelled y ticks (numbers) and the range its points need (data-y-fit), by section. */
async function yAxes(p: Page): Promise<{ key: string; labels: number[]; fit: number[] }[]> {
  const out: { key: string; labels: number[]; fit: number[] }[] = [];
  for (const c of await p.locator('section canvas[data-y-fit]').all()) {
    if (!(await c.isVisible())) continue;
    await c.scrollIntoViewIfNeeded();
    await p.waitForTimeout(50); // the scroll's frame draws it
    const key = await c.evaluate((e) => e.closest('section')?.getAttribute('data-metric') ?? e.closest('section')?.getAttribute('aria-label') ?? '?');
    const fit = ((await c.getAttribute('data-y-fit')) ?? '').split(',').filter((v) => v).map(Number);
    const labels = ((await c.getAttribute('data-y-labels')) ?? '').split('|').filter((l) => l).map((l) => Number(l.replace(/,/g, '')));
    out.push({ key, labels, fit });
  }
  return out;
}

test('every chart\'s y axis has a labelled tick at or below its lowest point and at or above its highest (fused pairs: ticks 50–80 over points at 42), linear and log; a chart of dots only, its x axis too', async () => {
  const p = await openRun('fixture-pt');
  try {
    await p.waitForFunction(() => /distilbert-spam \(srlora\), \d+ points, last /.test(document.querySelector('section[data-metric="fusions"] canvas')?.getAttribute('aria-label') ?? ''), null, { timeout: 15_000 });
    await p.locator('section[data-metric="fusions"] canvas').scrollIntoViewIfNeeded();
    await p.waitForFunction(() => Number(document.querySelector('section[data-metric="fusions"] canvas')?.getAttribute('data-draws')) > 0);
    // The fixture's fused ages are 42 and 84 (the data, not the chart's own fit).
    const fused = ((await p.locator('section[data-metric="fusions"] canvas').getAttribute('data-y-labels')) ?? '').split('|').map(Number);
    assert.ok(Math.min(...fused) <= 42 && Math.max(...fused) >= 84, `fused-pairs ticks ${fused.join(' ')} hold the ages 42..84`);
    // and its x axis, a chart of dots only, is labelled on both sides of its points (steps 42..168)
    const steps = ((await p.locator('section[data-metric="fusions"] canvas').getAttribute('data-x-labels')) ?? '').split('|').map(Number);
    assert.ok(Math.min(...steps) <= 42 && Math.max(...steps) >= 168, `fused-pairs x ticks ${steps.join(' ')} hold the steps 42..168`);
    for (const id of ['fixture-pt', 'fixture-sparse', 'fixture-showcase', 'fixture-dynamics']) {
      if (id !== 'fixture-pt') { await p.goto(p.url().replace(/\?run=[^&]*/, `?run=${id}`)); await p.waitForFunction(() => /step \d+\//.test(document.querySelector('.facts')?.textContent ?? ''), null, { timeout: 15_000 }); }
      for (const log of [false, true]) {
        if (log) {
          await p.locator('section[aria-label="Loss"] vscode-checkbox').click();
          await p.waitForFunction(() => document.querySelector('section[aria-label="Loss"] canvas')?.getAttribute('data-log-y') === '1');
        }
        const axes = await yAxes(p);
        assert.ok(axes.length >= 4, `${id}: ${axes.map((a) => a.key).join(' ')}`);
        for (const { key, labels, fit } of axes) {
          if (!fit.length) continue;
          assert.ok(labels.length >= 2, `${id} ${key}${log ? ' (log)' : ''}: labelled ${labels.join(' ')} ${await p.locator(`section[data-metric="${key}"] canvas`).evaluate((e) => JSON.stringify({ ...(e as HTMLElement).dataset, h: e.clientHeight }))}`);
          assert.ok(Math.min(...labels) <= fit[0] && Math.max(...labels) >= fit[1], `${id} ${key}${log ? ' (log)' : ''}: ticks ${labels.join(' ')} do not span its points ${fit.join('..')}`);
        }
        if (log) await p.locator('section[aria-label="Loss"] vscode-checkbox').click(); // back to linear (the choice persists)
      }
    }
  } finally { await p.close(); }
});

test('a PyTorch run as a user meets it (named scalars, recompositions, a resume, a failed end), alone and compared: screenshots', async () => {
  const p = await openRun('fixture-pt');
  try {
    await p.waitForFunction(() => /distilbert-spam \(srlora\), 180 points/.test(document.querySelector('section[aria-label="Loss"] canvas')?.getAttribute('aria-label') ?? ''), null, { timeout: 15_000 });
    assert.match((await p.locator('.facts').textContent()) ?? '', /step 180\/300 .* resumed 1× .*loss is NaN at step 181/);
    for (const key of ['scalar:grad_norm', 'scalar:process/cpu_pct', 'scalar:process/rss_MiB']) assert.equal(await p.locator(`section[data-metric="${key}"]`).count(), 1, key);
    for (const c of await p.locator('section canvas').all()) { await c.scrollIntoViewIfNeeded(); await p.waitForTimeout(30); }
    // No deltaRank in this run: an empty chart, whose axis had eleven labels (0, 0.1, … 1) in 100 px.
    const empty = ((await p.locator('section[data-metric="rank"] canvas').getAttribute('data-y-labels')) ?? '').split('|');
    assert.ok(empty.length >= 2 && empty.length <= 4, `the empty chart's axis: ${empty.join(' ')}`);
    await p.screenshot({ path: join(shots, 'pytorch-failed.png'), fullPage: true });
    await p.goto(p.url().replace(/\?run=[^&]*/, '?runs=fixture-pt,fixture-showcase'));
    await p.waitForFunction(() => document.querySelectorAll('section[aria-label="Compared runs"] tbody tr').length === 2, null, { timeout: 15_000 });
    // FRESH8 F7: the two runs' backends (their hellos') differ and are compared, not listed as one-sided
    const head = await p.locator('section[aria-label="Compared runs"] thead th').allTextContents();
    assert.ok(head.includes('backend'), head.join('|'));
    assert.doesNotMatch((await p.locator('section[aria-label="Compared runs"] .one-sided').textContent()) ?? '', /backend/);
    for (const c of await p.locator('section canvas').all()) { await c.scrollIntoViewIfNeeded(); await p.waitForTimeout(30); }
    await p.screenshot({ path: join(shots, 'pytorch-compare.png'), fullPage: true });
  } finally { await p.close(); }
});

test('the SRLoRA dynamics: effective rank of ΔW, fused pairs (the freshest fused again, marked), per-slot step boost', async () => {
  const p = await openRun('fixture-dynamics');
  try {
    const label = (key: string) => p.locator(`section[data-metric="${key}"] canvas`).getAttribute('aria-label');
    await p.waitForFunction(() => /dynamics \(srlora\), 12 points, last /.test(document.querySelector('section[data-metric="rank"] canvas')?.getAttribute('aria-label') ?? ''), null, { timeout: 15_000 });
    assert.match((await label('rank')) ?? '', /12 points/, 'one mean per eval');
    await p.waitForFunction(() => /dynamics \(srlora\), 60 points/.test(document.querySelector('section[data-metric="boost"] canvas')?.getAttribute('aria-label') ?? ''));
    const summary = p.locator('.fusion-summary');
    assert.match((await summary.textContent()) ?? '', /24 pairs fused in 12 selections .* 8 of 8 later selections fused only pairs the previous recomposition had just re-initialised/);
    assert.equal(await summary.evaluate((e) => e.classList.contains('warn')), true);
    const fused = p.locator('section[data-metric="fusions"] canvas');
    await p.waitForFunction(() => /dynamics \(srlora\), 8 points/.test(document.querySelector('section[data-metric="fusions"] canvas')?.getAttribute('aria-label') ?? ''));
    assert.match((await fused.getAttribute('aria-label')) ?? '', /8 points, last 75/, 'the first switch\'s 8 pairs (4 layers × 2), 75 steps old');
    // The recomposition log: each pair's age; the ones re-initialised by the previous recomposition starred.
    assert.equal(await p.locator('section[aria-label="Recompositions"] td.fresh').count(), 8);
    assert.match((await p.locator('section[aria-label="Recompositions"] td.fresh').first().textContent()) ?? '', /^75★ 75★$/);
    await p.locator('.dynamics').screenshot({ path: join(shots, 'dashboard-dynamics.png') });
  } finally { await p.close(); }
});

test('zoom: a dragged box zooms x to it and holds through redraws; a double-click resets, and a later y change is not taken for a zoom; another x axis drops the zoom', async () => {
  const p = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const sel = 'section[aria-label="Loss"]';
  const logY = () => p.locator(`${sel} vscode-checkbox`).click();
  const resetOff = () => p.locator(`${sel} vscode-button[aria-label="Reset the zoom"]`).evaluate((b: HTMLElement & { disabled: boolean }) => b.disabled);
  const axis = async () => (await p.locator(`${sel} canvas`).getAttribute('data-axis'))!.split(',').map(Number);
  const draws = () => p.locator(`${sel} canvas`).evaluate((c) => Number(c.getAttribute('data-draws') ?? 0));
  try {
    const u = new URL(url);
    u.searchParams.set('run', 'fixture-zeros');
    await p.goto(u.href);
    await p.waitForFunction(() => /zeros \(srlora\), 60 points/.test(document.querySelector('section[aria-label="Loss"] canvas')?.getAttribute('aria-label') ?? ''), null, { timeout: 15_000 });
    const whole = await axis();
    assert.ok(whole[0] <= 1 && whole[1] >= 60 && whole[1] <= 70, `the axis spans the run in round numbers: ${whole}`);
    const box = (await p.locator(`${sel} canvas`).boundingBox())!;
    const zoomBox = async () => {
      await p.mouse.move(box.x + box.width * 0.3, box.y + box.height * 0.5);
      await p.mouse.down();
      await p.mouse.move(box.x + box.width * 0.45, box.y + box.height * 0.5, { steps: 5 });
      await p.mouse.move(box.x + box.width * 0.6, box.y + box.height * 0.5, { steps: 5 });
      await p.mouse.up();
      await p.waitForFunction((s) => !(document.querySelector(`${s} vscode-button[aria-label="Reset the zoom"]`) as HTMLElement & { disabled: boolean }).disabled, sel, { timeout: 10_000 });
    };
    assert.equal(await resetOff(), true, 'nothing zoomed yet');
    await zoomBox();
    const zoomed = await axis();
    assert.ok(zoomed[0] > whole[0] && zoomed[1] < whole[1], `zoomed in: ${zoomed} within ${whole}`);
    // A redraw with another y range (log y): the zoom holds.
    let d = await draws();
    await logY();
    await p.waitForFunction(([s, n]) => Number(document.querySelector(`${s} canvas`)?.getAttribute('data-draws')) > (n as number), [sel, d] as const);
    assert.deepEqual(await axis(), zoomed, 'the zoom holds');
    assert.equal(await resetOff(), false);
    await p.locator(`${sel} canvas`).dblclick({ position: { x: box.width / 2, y: box.height / 2 } });
    await p.waitForFunction((s) => (document.querySelector(`${s} vscode-button[aria-label="Reset the zoom"]`) as HTMLElement & { disabled: boolean }).disabled, sel, { timeout: 10_000 });
    // After the reset the y range changes again (back to linear): not a zoom. chartjs-plugin-zoom's own test said
    // zoomed once a range differed from the one it stored at the first zoom (live data moves the y range).
    d = await draws();
    await logY();
    await p.waitForFunction(([s, n]) => Number(document.querySelector(`${s} canvas`)?.getAttribute('data-draws')) > (n as number), [sel, d] as const);
    assert.equal(await resetOff(), true, 'Reset zoom stays off');
    assert.deepEqual(await axis(), whole, 'the whole run again');
    // Zoomed, then another x axis: the zoom (a range of steps) means nothing in seconds. It showed an empty chart —
    // steps 18–36 read as 18–36 s, no point inside — with Reset zoom on; now the zoom is dropped and the new axis
    // spans the run. (Wall-clock ms would be further off still.)
    await zoomBox();
    assert.equal(await resetOff(), false);
    const xAxis = (v: string) => p.locator(`${sel} vscode-single-select`).evaluate((el: HTMLElement & { value: string }, value) => { el.value = value; el.dispatchEvent(new Event('change')); }, v);
    d = await draws();
    await xAxis('relative');
    await p.waitForFunction(([s, n]) => Number(document.querySelector(`${s} canvas`)?.getAttribute('data-draws')) > (n as number), [sel, d] as const);
    assert.equal(await resetOff(), true, 'Reset zoom off on the new axis');
    const seconds = await axis();
    assert.ok(seconds[0] <= 0 && seconds[1] >= 59, `the whole run in seconds since the first step (60 steps, 1 s apart): ${seconds}`);
    assert.notEqual(await p.locator(`${sel} canvas`).getAttribute('data-y-max'), '', 'points in view (the y range is set from them)');
    await xAxis('step');
    await p.waitForFunction(([s, w]) => document.querySelector(`${s} canvas`)?.getAttribute('data-axis') === w, [sel, whole.join(',')] as const);
    assert.equal(await resetOff(), true);
  } finally {
    await p.close();
  }
});

test('zoom on a live run: Ctrl+wheel zooms in and the zoom holds while points arrive; after a reset the axis follows the run', async () => {
  const p = await browser.newPage({ viewport: { width: 1400, height: 1000 } }); // its own context: the default view
  const sel = 'section[aria-label="Loss"]';
  const resetOff = () => p.locator(`${sel} vscode-button[aria-label="Reset the zoom"]`).evaluate((b: HTMLElement & { disabled: boolean }) => b.disabled);
  const axis = async () => (await p.locator(`${sel} canvas`).getAttribute('data-axis'))!.split(',').map(Number);
  const points = () => p.evaluate((s) => Number(/, (\d+) points/.exec(document.querySelector(`${s} canvas`)?.getAttribute('aria-label') ?? '')?.[1] ?? 0), sel);
  try {
    await p.goto(url); // the live run
    await p.waitForFunction((s) => /dashboard-test \(srlora\), (\d{2,}) points/.test(document.querySelector(`${s} canvas`)?.getAttribute('aria-label') ?? ''), sel, { timeout: 30_000 });
    const box = (await p.locator(`${sel} canvas`).boundingBox())!;
    const whole = await axis();
    await p.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    await p.keyboard.down('Control');
    await p.mouse.wheel(0, -300);
    await p.keyboard.up('Control');
    await p.waitForFunction((s) => !(document.querySelector(`${s} vscode-button[aria-label="Reset the zoom"]`) as HTMLElement & { disabled: boolean }).disabled, sel, { timeout: 10_000 });
    const zoomed = await axis();
    // The wheel's zoom reached the chart's zoom state 250 ms late (onZoomComplete, debounced): a live draw in between
    // put the whole axis back, and that whole axis was then held as "the zoom" (Reset on, new points off the edge).
    // The whole axis starts at a round number at or below the first step (0 here) whatever points arrive, so the
    // check does not depend on how far the run got between the reads; zoomed in about the middle, it starts later.
    assert.ok(zoomed[0] > whole[0] && zoomed[0] > 0, `zoomed in: ${zoomed} from ${whole}`);
    const n = await points();
    await p.waitForFunction(([s, k]) => Number(/, (\d+) points/.exec(document.querySelector(`${s} canvas`)?.getAttribute('aria-label') ?? '')?.[1] ?? 0) > (k as number) + 10, [sel, n] as const, { timeout: 20_000 });
    assert.deepEqual(await axis(), zoomed, 'the zoom holds while points arrive');
    assert.equal(await resetOff(), false);
    await p.locator(`${sel} canvas`).dblclick({ position: { x: box.width / 2, y: box.height / 2 } });
    await p.waitForFunction((s) => (document.querySelector(`${s} vscode-button[aria-label="Reset the zoom"]`) as HTMLElement & { disabled: boolean }).disabled, sel, { timeout: 10_000 });
    // The whole run, following it: the axis grows past where it was as steps arrive, and Reset zoom stays off.
    const after = await axis();
    await p.waitForFunction(([s, hi]) => Number(document.querySelector(`${s} canvas`)?.getAttribute('data-axis')?.split(',')[1]) > (hi as number), [sel, after[1]] as const, { timeout: 30_000 });
    assert.equal(await resetOff(), true, 'Reset zoom stays off');
  } finally {
    await p.close();
  }
});

test('an off-screen chart draws once, then not again (its label still says what it holds) until scrolled into view', async () => {
  const p = await browser.newPage({ viewport: { width: 1400, height: 500 } });
  try {
    const u = new URL(url);
    u.searchParams.set('run', 'fixture-resumed');
    await p.goto(u.href);
    const sel = 'section[data-metric="scalar:gradNorm"] canvas', loss = 'section[aria-label="Loss"] canvas';
    const draws = (s: string) => p.evaluate((q) => Number(document.querySelector(q)?.getAttribute('data-draws') ?? 0), s);
    await p.waitForFunction((s) => /gradNorm chart: resumed \(srlora\), 30 points, last 130/.test(document.querySelector(s)?.getAttribute('aria-label') ?? '') && Number(document.querySelector(s)?.getAttribute('data-draws')) === 1, sel, { timeout: 15_000 });
    assert.equal(await p.locator(sel).evaluate((c) => c.getBoundingClientRect().top > window.innerHeight * 1.5), true, 'the chart is off screen');
    // log y: every chart's view changed; the loss chart (on screen) redraws, the off-screen one waits.
    const before = await draws(loss);
    await p.locator('section[aria-label="Loss"] vscode-checkbox').click();
    await p.waitForFunction(([s, n]) => Number(document.querySelector(s as string)?.getAttribute('data-draws')) > (n as number), [loss, before] as const);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(await draws(sel), 1, 'not drawn again off screen');
    await p.locator(sel).scrollIntoViewIfNeeded();
    await p.waitForFunction((s) => Number(document.querySelector(s)?.getAttribute('data-draws') ?? 0) > 1, sel, { timeout: 5_000 });
    await p.locator('section[aria-label="Loss"] vscode-checkbox').click(); // log y off again (the choice persists)
  } finally {
    await p.close();
  }
});

test('protocol 1.3: an eval under way shows in the header, counting up, until its eval comes', async () => {
  const p = await openRun('fixture-showcase');
  try {
    const shown = p.locator('header .evaluating');
    // seconds since the eval began, from "evaluating at step 80… (since 12s)" or "(since 3m05s)" (formatDuration)
    const since = () => shown.evaluate((el) => {
      const m = /^evaluating at step 80… \(since (?:(\d+)m)?(\d+)s\)$/.exec(el.textContent ?? '');
      return m ? 60 * Number(m[1] ?? 0) + Number(m[2]) : -1;
    });
    await p.waitForFunction(() => /^evaluating at step 80…/.test(document.querySelector('header .evaluating')?.textContent ?? ''), null, { timeout: 15_000 });
    assert.ok(await shown.isVisible());
    const first = await since();
    assert.ok(first >= 12, `since ${first} s: it began 12 s before the page opened`);
    assert.doesNotMatch((await p.locator('.facts').textContent()) ?? '', /stale/, 'the eval of step 60 is not stale while the one due at 80 runs');
    let later = first; // it counts on while nothing arrives
    for (let i = 0; i < 40 && later <= first; i++) { await p.waitForTimeout(100); later = await since(); }
    assert.ok(later > first, `still since ${later} s`);
    await p.waitForTimeout(1500); // the charts' first draws
    await p.screenshot({ path: join(shots, 'shots7-showcase.png'), fullPage: true });
    await p.locator('header').screenshot({ path: join(shots, 'shots7-header-evaluating.png') });
    await p.locator('.metrics').screenshot({ path: join(shots, 'shots7-metrics.png') });
    await p.emulateMedia({ colorScheme: 'dark' });
    await p.waitForFunction(() => document.querySelector('section[aria-label="Loss"] canvas')?.getAttribute('data-fg') === '#cccccc', null, { timeout: 15_000 });
    await p.waitForTimeout(1000);
    await p.screenshot({ path: join(shots, 'shots7-showcase-dark.png'), fullPage: true });
    await p.emulateMedia({ colorScheme: 'light' });
    // Its eval comes (appended to the record, as the trainer would): the header stops saying it is under way.
    const log = join(dir, 'runs', 'fixture-showcase', 'events.jsonl');
    const last = JSON.parse(readFileSync(log, 'utf8').trim().split('\n').at(-1)!) as { seq: number; time: number };
    appendFileSync(log, JSON.stringify({ v: 1, type: 'eval', runId: 'fixture-showcase', seq: last.seq + 1, time: Date.now(), step: 80, loss: 0.8, metrics: { accuracy: 0.79 } }) + '\n');
    await p.waitForFunction(() => (document.querySelector('header .evaluating') as HTMLElement | null)?.hidden === true, null, { timeout: 15_000 });
    assert.match((await p.locator('.facts').textContent()) ?? '', /eval acc 79\.0 % at step 80/);
  } finally { await p.close(); }
});

/** How many of a canvas' pixels are coloured (a data mark: the axes, grid and labels are grey). */
const colouredPixels = (p: Page, key: string) => p.locator(`section[data-metric="${key}"] canvas`).evaluate((c: HTMLCanvasElement) => {
  const d = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 100 && Math.max(d[i], d[i + 1], d[i + 2]) - Math.min(d[i], d[i + 1], d[i + 2]) > 60) n++;
  return n;
});

test('FRESH8 F6: a run that failed at step 2 shows its one training point on every chart (a one-point line is not drawn: a dot is), and says what is true of its empty panels', async () => {
  const p = await openRun('fixture-onepoint');
  try {
    await p.waitForFunction(() => document.querySelector('.badge')?.textContent === 'failed', null, { timeout: 15_000 });
    for (const key of ['lr', 'examplesPerSec', 'scalar:grad_norm', 'scalar:process/rss_MiB']) {
      const c = p.locator(`section[data-metric="${key}"] canvas`);
      await c.scrollIntoViewIfNeeded();
      await p.waitForFunction((k) => Number(document.querySelector(`section[data-metric="${k}"] canvas`)?.getAttribute('data-draws')) > 0, key);
      await p.waitForTimeout(50);
      assert.ok(await colouredPixels(p, key) > 10, `${key}: its one point is drawn`);
    }
    // the step boost: no importance snapshot came at all (not "the trainer sent no stepBoost… in the snapshots")
    const boost = (await p.locator('section[data-metric="boost"]').textContent()) ?? '';
    assert.match(boost, /No importance snapshot yet/);
    assert.doesNotMatch(boost, /sent no stepBoost/);
    assert.match((await p.locator('.preview').textContent()) ?? '', /^This run failed: it will not be recomposed\./);
    await p.screenshot({ path: join(shots, 'dashboard-onepoint.png'), fullPage: true });
  } finally { await p.close(); }
});

test('FRESH8 F8: an eval chart\'s x axis ends near its data (no negative steps, not past the end); compare: a run\'s eval legend box differs from its smoothed line\'s; disabled primary buttons look as disabled as the others', async () => {
  const p = await openRun('fixture-pt');
  try {
    await p.waitForFunction(() => /distilbert-spam \(srlora\), 180 points/.test(document.querySelector('section[aria-label="Loss"] canvas')?.getAttribute('aria-label') ?? ''), null, { timeout: 15_000 });
    for (const key of ['eval:accuracy', 'eval:loss']) {
      const c = p.locator(`section[data-metric="${key}"] canvas`);
      await c.scrollIntoViewIfNeeded();
      await p.waitForFunction((k) => Number(document.querySelector(`section[data-metric="${k}"] canvas`)?.getAttribute('data-draws')) > 0, key);
      const [lo, hi] = ((await c.getAttribute('data-axis')) ?? '').split(',').map(Number);
      // evals at steps 0..180: a few pixels' room for the dots, not −100 or 400
      assert.ok(lo > -10 && lo <= 0 && hi >= 180 && hi <= 200, `${key}: the x axis ${lo}..${hi} for evals at 0..180`);
      const labels = ((await c.getAttribute('data-x-labels')) ?? '').split('|').map(Number);
      assert.ok(Math.min(...labels) >= 0, `${key}: no negative step labelled: ${labels.join(' ')}`);
    }
    // An ended run: Pause (primary) is disabled, and looks it: the colours of the disabled Checkpoint (secondary).
    const bg = (name: RegExp) => p.getByRole('button', { name }).first().evaluate((e) => { const b = e.shadowRoot?.querySelector('.base') ?? e; return `${(e as HTMLElement & { disabled: boolean }).disabled}:${getComputedStyle(b).backgroundColor}`; });
    assert.equal(await bg(/^pause the run/i), await bg(/checkpoint/i));
    await p.goto(p.url().replace(/\?run=[^&]*/, '?runs=fixture-pt,fixture-showcase'));
    await p.waitForFunction(() => /eval/.test(document.querySelector('section[aria-label="Loss"] canvas')?.getAttribute('data-legend-boxes') ?? '') && /smoothed/.test(document.querySelector('section[aria-label="Loss"] canvas')?.getAttribute('data-legend-boxes') ?? ''), null, { timeout: 15_000 });
    const boxes = new Map(((await p.locator('section[aria-label="Loss"] canvas').getAttribute('data-legend-boxes')) ?? '').split('|').map((b) => b.split('=') as [string, string]));
    for (const [label, box] of boxes) {
      if (!label.endsWith(' eval')) continue;
      const run = label.replace(/ eval$/, '');
      const smooth = [...boxes].find(([l]) => l.startsWith(`${run} (`) && l.endsWith(' smoothed'))?.[1];
      assert.ok(smooth, `${label}: its run's smoothed line is in the legend: ${[...boxes.keys()].join(' | ')}`);
      assert.notEqual(box, smooth, `${label}: its legend box differs from the smoothed line's`);
    }
    await p.screenshot({ path: join(shots, 'dashboard-f8-compare.png'), fullPage: true });
  } finally { await p.close(); }
});
