/**
 * `srlora serve`'s page (headless Chromium) with runs it cannot steer and runs whose folder is deleted:
 * - a run started from a terminal (its own trainer.pid, selfStarted) is followed read-only: Pause, Recompose, Stop
 *   and the rule's Apply are disabled and the page says why;
 * - deleting the shown run's folder: the default page (no ?run=) moves to an existing run instead of "Loading…",
 *   a page told the run (?run=) says it was removed, and serve logs the removal once, never 'snapshot failed'.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { sleep, until } from './helpers/tmp';
import { FixtureLog } from './helpers/runFixtures';
import { writeOwnPidFile } from '../src/runfolder/pidfile';

const root = join(import.meta.dirname, '..');
const CHROMIUM = '/usr/bin/chromium';
let server: ChildProcess;
let dir = '';
let runsDir = '';
let url = '';
let out = '';
let browser: Browser;

function fixture(runId: string, name: string, t0: number, final: boolean): string {
  const log = new FixtureLog(runId);
  log.time = t0;
  log.hello({ name, totalSteps: 100, srlora: { schedule: [50], minSlotAge: 1, rule: { kind: 'ratio', fusionRatio: 0.5 } } })
    .state('running', 0).metrics(1, 5, (s) => 1 / s).importance(5);
  if (final) log.state('finished', 100);
  return log.writeTo(runsDir);
}

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing`);
  assert.ok(existsSync(join(root, 'dist/cli.js')), 'npm run build first');
  dir = mkdtempSync(join(tmpdir(), 'srlora-dash-serve-'));
  runsDir = join(dir, 'runs');
  const now = Date.now();
  fixture('older-run', 'older', now - 3_600_000, true);
  fixture('explicit-run', 'explicit', now - 1_800_000, false);
  // Started from a terminal: this test process is its (live) self-started trainer. The newest: the default page's pick.
  writeOwnPidFile(join(fixture('terminal-run', 'terminal', now - 60_000, false), 'trainer.pid'));
  server = spawn(process.execPath, [join(root, 'dist/cli.js'), 'serve', '--runs-dir', runsDir], { stdio: ['ignore', 'pipe', 'pipe'] });
  server.stdout!.on('data', (d) => (out += d));
  server.stderr!.on('data', (d) => (out += d));
  assert.ok(await until(() => /SRLoRA dashboard: (\S+)/.test(out), 20_000), out);
  url = /SRLoRA dashboard: (\S+)/.exec(out)![1];
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--no-first-run'] });
});

after(async () => {
  await browser?.close();
  server?.kill('SIGTERM');
  await new Promise((r) => server?.once('exit', r));
  rmSync(dir, { recursive: true, force: true });
});

const heading = (p: Page) => p.locator('h1.run-name').textContent();
const disabled = (p: Page, name: RegExp) => p.getByRole('button', { name }).first().evaluate((e: HTMLElement & { disabled: boolean }) => e.disabled);

test('a run started from a terminal: steering is off and the page says why; deleting its folder moves the default page to an existing run', async () => {
  const ctx = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  const p = await ctx.newPage();
  await p.goto(url); // no run named: the page picks the newest active run
  await p.waitForFunction(() => /started from a terminal: this page follows it read-only/.test(document.querySelector('.facts')?.textContent ?? ''), null, { timeout: 20_000 });
  assert.match((await heading(p)) ?? '', /terminal/);
  for (const name of [/^pause the run/i, /recompose all layers now/i, /^stop/i, /checkpoint/i]) assert.equal(await disabled(p, name), true, String(name));
  assert.equal(await p.locator('vscode-textfield[aria-label="Fusion ratio γ"]').evaluate((e: HTMLElement & { disabled: boolean }) => e.disabled), true);

  // A page told the run by name, for the other deletion below.
  const named = await ctx.newPage();
  await named.goto(new URL('/?run=explicit-run', url).href);
  await named.waitForFunction(() => /explicit/.test(document.querySelector('h1.run-name')?.textContent ?? ''), null, { timeout: 20_000 });

  rmSync(join(runsDir, 'terminal-run'), { recursive: true, force: true });
  await p.waitForFunction(() => /explicit/.test(document.querySelector('h1.run-name')?.textContent ?? ''), null, { timeout: 20_000 });
  assert.doesNotMatch((await p.locator('select, vscode-single-select').first().textContent().catch(() => '')) ?? '', /terminal-run/);

  rmSync(join(runsDir, 'explicit-run'), { recursive: true, force: true });
  await named.waitForFunction(() => /Run “explicit-run” was removed/.test(document.querySelector('h1.run-name')?.textContent ?? ''), null, { timeout: 20_000 });
  assert.match((await named.locator('.facts').textContent()) ?? '', /deleted/);
  // The default page moves on again, to the one run left.
  await p.waitForFunction(() => /older/.test(document.querySelector('h1.run-name')?.textContent ?? ''), null, { timeout: 20_000 });
  await sleep(1500); // several polls: serve logs each removal once and never retries a snapshot of a missing log
  assert.doesNotMatch(out, /snapshot failed/);
  assert.equal(out.match(/run:terminal-run: removed/g)?.length, 1, out);
  assert.equal(out.match(/run:explicit-run: removed/g)?.length, 1, out);
  await ctx.close();
});

test('serve says a refused request once (a Host that is not loopback): its two listeners printed http and server refusals twice', async () => {
  const { request } = await import('node:http');
  const u = new URL(url);
  const status = await new Promise<number>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: Number(u.port), path: '/', headers: { Host: `evil.example:${u.port}` } }, (res) => { res.resume(); resolve(res.statusCode ?? 0); });
    req.on('error', reject);
    req.end();
  });
  assert.equal(status, 403);
  assert.ok(await until(() => out.includes('evil.example'), 5000), out);
  await sleep(300);
  assert.equal(out.match(/evil\.example/g)?.length, 1, out);
});
