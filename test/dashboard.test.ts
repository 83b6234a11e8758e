/**
 * The dashboard in headless Chromium (Debian's chromium through playwright-core) against `srlora serve` with a real
 * trainer. Screenshots go to test-results/.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'node:http';
import { chromium, type Browser, type Page } from 'playwright-core';
import { WebSocket } from 'ws';
import { until } from './helpers/tmp';

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
  const config = join(dir, 'dash.srlora.json');
  writeFileSync(config, JSON.stringify({ name: 'dashboard-test', model: { kind: 'mlp' }, steps: 100000, r: 4, rTarget: 64, evalEvery: 50, checkpointEvery: 0, importanceEvery: 2, fusionRatio: 0.25, minSlotAge: 1 }));
  server = spawn(process.execPath, [join(root, 'dist/cli.js'), 'serve', '--runs-dir', join(dir, 'runs'), '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  server.stdout!.on('data', (d) => (out += d));
  server.stderr!.on('data', (d) => (out += d));
  assert.ok(await until(() => /SRLoRA dashboard: (\S+)/.test(out), 20_000), out);
  url = /SRLoRA dashboard: (\S+)/.exec(out)![1];
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'] });
  page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
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
  const inked = await page.locator('.chart-wrap canvas').evaluate((c: HTMLCanvasElement) => {
    const d = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
    return n;
  });
  assert.ok(inked > 1000, `chart pixels ${inked}`);
  await page.screenshot({ path: join(shots, 'dashboard-running.png'), fullPage: true });
});

test('the heatmap has layers × r cells', async () => {
  await page.waitForFunction(() => document.querySelector('canvas.heatmap')?.getAttribute('data-cells') !== null, null, { timeout: 20_000 });
  const canvas = page.locator('canvas.heatmap');
  assert.equal(await canvas.getAttribute('data-layers'), '3');
  assert.equal(await canvas.getAttribute('data-slots'), '4');
  assert.equal(await canvas.getAttribute('data-cells'), '12');
  assert.match((await canvas.getAttribute('aria-label')) ?? '', /3 layers × 4 slots/);
});

test('Pause: the trainer acks paused at a step and the page shows it; Resume runs on', async () => {
  await page.getByRole('button', { name: /pause or resume/i }).click();
  await commandLine(/^Pause — applied at step \d+/).waitFor({ timeout: 15_000 });
  await page.waitForFunction(() => document.querySelector('.badge')?.textContent === 'paused', null, { timeout: 10_000 });
  const at = await stepShown();
  await page.waitForTimeout(700);
  assert.equal(await stepShown(), at, 'no steps while paused');
  await page.screenshot({ path: join(shots, 'dashboard-paused.png'), fullPage: true });
  await page.getByRole('button', { name: /pause or resume/i }).click();
  await commandLine(/^Resume — applied at step/).waitFor({ timeout: 15_000 });
  await page.waitForFunction(() => document.querySelector('.badge')?.textContent === 'running', null, { timeout: 10_000 });
});

test('a threshold change previews the exact count, is applied by the trainer, and shows in force', async () => {
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
  const forcedRows = () => page.locator('tbody tr.forced').count();
  const before = await forcedRows();
  await page.getByRole('button', { name: /recompose all layers now/i }).click();
  await commandLine(/^Recompose all layers — applied at step \d+/).waitFor({ timeout: 15_000 });
  await page.waitForFunction((n) => document.querySelectorAll('tbody tr.forced').length > n, before, { timeout: 10_000 });
  assert.ok((await forcedRows()) >= before + 3, 'one row per layer');
  await page.screenshot({ path: join(shots, 'dashboard-recomposed.png'), fullPage: true });
});

test('compare: ?runs=A,B overlays both runs on one loss chart, each named with its method', async () => {
  const ids = readdirSync(join(dir, 'runs')).sort();
  assert.equal(ids.length, 2, `runs: ${ids.join(', ')}`);
  const compareUrl = new URL(url);
  compareUrl.searchParams.set('runs', ids.join(','));
  const p2 = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  p2.on('pageerror', (e) => pageErrors.push(e.message));
  try {
    await p2.goto(compareUrl.href); // the token becomes a cookie; the runs stay in the URL
    assert.equal(new URL(p2.url()).searchParams.get('runs'), ids.join(','));
    const chart = p2.locator('.chart-wrap canvas');
    await p2.waitForFunction(() => /baseline \(lora\), 30 steps/.test(document.querySelector('.chart-wrap canvas')?.getAttribute('aria-label') ?? ''), null, { timeout: 20_000 });
    assert.equal(await chart.getAttribute('data-runs'), '2');
    assert.match((await chart.getAttribute('aria-label')) ?? '', /dashboard-test \(srlora\), [1-9]\d* steps, last loss \d/);
    assert.match((await p2.locator('h1.run-name').textContent()) ?? '', /^Compare: .*(baseline.*dashboard-test|dashboard-test.*baseline)/);
    await p2.screenshot({ path: join(shots, 'dashboard-compare.png'), fullPage: true });
  } finally { await p2.close(); }
});

test('the page raised no errors (CSP violations included)', () => {
  assert.deepEqual(pageErrors, []);
});
