/**
 * End to end in a real VS Code: code-server 4.100.3 (VS Code 1.100.3) with the packaged .vsix installed, driven
 * through the command palette and the dashboard webview with headless Chromium. Everything lives in a temp folder
 * (XDG dirs, user data, extensions); code-server binds to 127.0.0.1. Screenshots of each stage go to
 * test-results/e2e/; on failure the code-server and extension host logs are printed.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { chromium, type Browser, type FrameLocator, type Page } from 'playwright-core';
import { readJsonl } from '../../src/runfolder/eventLog';
import type { TrainerMessage } from '../../src/protocol/messages';

const root = join(import.meta.dirname, '../..');
const codeServer = join(root, '.cache/code-server/node_modules/.bin/code-server');
const vsix = join(root, `srlora-studio-${(JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version}.vsix`);
const shots = join(root, 'test-results/e2e');
const T = mkdtempSync(join(tmpdir(), 'srlora-e2e-'));
const workspace = join(T, 'workspace');
let server: ChildProcess;
let serverLog = '';
let browser: Browser;
let page: Page;
let base = '';

const env = { ...process.env, XDG_DATA_HOME: join(T, 'data'), XDG_CONFIG_HOME: join(T, 'config'), XDG_CACHE_HOME: join(T, 'cache') };
const csArgs = ['--extensions-dir', join(T, 'ext'), '--user-data-dir', join(T, 'ud')];

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

function logs(): string {
  const found: string[] = [];
  const walk = (d: string) => {
    if (!existsSync(d)) return;
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (/exthost|remoteexthost|SRLoRA/i.test(e.name)) found.push(`--- ${p}\n${readFileSync(p, 'utf8').slice(-6000)}`);
    }
  };
  walk(join(T, 'ud', 'logs'));
  return `--- code-server output\n${serverLog.slice(-6000)}\n${found.join('\n')}`;
}

let stage = 0;
async function shot(name: string): Promise<void> {
  await page.screenshot({ path: join(shots, `${String(++stage).padStart(2, '0')}-${name}.png`) });
}

/** Runs a command from the palette by its title. */
async function palette(title: string, then?: (p: Page) => Promise<void>): Promise<void> {
  await page.keyboard.press('F1');
  const input = page.locator('.quick-input-widget input');
  await input.waitFor({ state: 'visible', timeout: 10_000 });
  await input.fill(`>${title}`);
  await page.locator('.quick-input-list .monaco-list-row', { hasText: title }).first().waitFor({ timeout: 15_000 });
  await page.keyboard.press('Enter');
  if (then) await then(page);
}

function dashboard(): FrameLocator {
  return page.frameLocator('iframe.webview.ready').frameLocator('#active-frame');
}

function runFolder(): string {
  const runs = join(workspace, '.srlora/runs');
  const dirs = existsSync(runs) ? readdirSync(runs) : [];
  assert.equal(dirs.length, 1, `one run folder in ${runs}: ${dirs.join(', ')}`);
  return join(runs, dirs[0]);
}

before(async () => {
  assert.ok(existsSync(codeServer), 'code-server is installed by scripts/install-code-server.sh (npm run test:e2e does it)');
  assert.ok(existsSync(vsix), `${vsix} is built by npm run package (npm run test:e2e does it)`);
  mkdirSync(shots, { recursive: true });
  mkdirSync(join(workspace, '.vscode'), { recursive: true });
  mkdirSync(join(T, 'ud', 'User'), { recursive: true });
  writeFileSync(join(T, 'ud', 'User', 'settings.json'), JSON.stringify({
    'workbench.startupEditor': 'none', 'workbench.tips.enabled': false, 'security.workspace.trust.enabled': false,
    'extensions.autoCheckUpdates': false, 'extensions.autoUpdate': false, 'telemetry.telemetryLevel': 'off',
  }));
  writeFileSync(join(workspace, 'demo.srlora.json'), '// a demo config, as `srlora init` writes\n{ "method": "srlora", "model": { "kind": "vit" } }\n');
  writeFileSync(join(T, 'config.yaml'), 'auth: none\ncert: false\n');
  execFileSync(codeServer, [...csArgs, '--install-extension', vsix], { env, stdio: 'pipe' });
  const port = await freePort();
  server = spawn(codeServer, [
    '--auth', 'none', '--bind-addr', `127.0.0.1:${port}`, '--disable-telemetry', '--disable-update-check', '--disable-workspace-trust',
    '--config', join(T, 'config.yaml'), ...csArgs, workspace,
  ], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  server.stdout!.on('data', (d) => (serverLog += d));
  server.stderr!.on('data', (d) => (serverLog += d));
  base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100 && !/HTTP server listening/.test(serverLog); i++) await new Promise((r) => setTimeout(r, 200));
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'] });
  page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
  await page.goto(`${base}/?folder=${encodeURIComponent(workspace)}`);
  await page.locator('.monaco-workbench').waitFor({ timeout: 60_000 });
  await page.waitForTimeout(8000); // the remote extension host registers contributions
});

after(async () => {
  await browser?.close();
  server?.kill('SIGTERM');
  if (server) await new Promise((r) => server.once('exit', r));
  rmSync(T, { recursive: true, force: true });
});

test('end to end in VS Code 1.100 (code-server): demo run, pause, τ from the palette, recompose, stop, reload', async (t) => {
  t.after(() => { if (t.signal.aborted) console.log(logs()); });
  try {
    await shot('workbench');
    // 3. Start the demo from the palette: the dashboard opens and its loss chart gains points.
    await palette('SRLoRA: Start Demo Run');
    const d = dashboard();
    await d.locator('.facts').filter({ hasText: /step [1-9]\d*\// }).waitFor({ timeout: 120_000 });
    const stepOf = async () => Number(/step (\d+)\//.exec((await d.locator('.facts').textContent()) ?? '')?.[1] ?? 0);
    const s1 = await stepOf();
    await d.locator('.facts').filter({ hasText: new RegExp(`step (${s1 + 3}|${s1 + 4}|${s1 + 5}|[1-9]\\d{2,})/`) }).waitFor({ timeout: 60_000 });
    await shot('dashboard-running');

    // 4. Pause from the dashboard: the trainer acknowledges at a step; the Runs tree shows paused.
    await d.getByRole('button', { name: /pause or resume/i }).click();
    await d.locator('ul.commands li', { hasText: /^Pause — applied at step \d+/ }).waitFor({ timeout: 30_000 });
    await palette('SRLoRA: Focus on Runs View');
    await page.locator('.monaco-list-row', { hasText: /paused · \d+\/1500/ }).first().waitFor({ timeout: 15_000 });
    await shot('paused-tree');

    // 5. Set Fusion Threshold… from the palette: the dashboard shows the new τ, acknowledged as applied.
    await palette('SRLoRA: Set Fusion Threshold…', async (p) => {
      const box = p.locator('.quick-input-widget input');
      await box.waitFor({ state: 'visible' });
      await p.locator('.quick-input-message', { hasText: /now off/ }).waitFor({ timeout: 10_000 });
      await box.fill('0.9');
      await p.keyboard.press('Enter');
    });
    await d.locator('p.muted', { hasText: 'In force: τ = 0.9' }).waitFor({ timeout: 30_000 });
    await shot('threshold-applied');

    // 6. Recompose from the dashboard button: a new row in the recomposition log.
    const forcedBefore = await d.locator('tbody tr.forced').count();
    await d.getByRole('button', { name: /recompose all layers now/i }).click();
    await d.locator('ul.commands li', { hasText: /^Recompose all layers — applied at step \d+/ }).waitFor({ timeout: 30_000 });
    await d.locator(`tbody tr.forced >> nth=${forcedBefore}`).waitFor({ timeout: 10_000 });
    await shot('recomposed');

    // 7. Stop: the run finishes; its folder holds events.jsonl and a checkpoint.
    await d.getByRole('button', { name: 'Stop the run', exact: true }).click();
    await d.getByRole('button', { name: 'Confirm: stop the run' }).click(); // Stop asks first (srlora.dashboard.confirmStop)
    await d.locator('.badge', { hasText: 'stopped' }).waitFor({ timeout: 60_000 });
    const dir = runFolder();
    const events = readJsonl<TrainerMessage>(join(dir, 'events.jsonl')).events;
    assert.ok(events.some((e) => e.type === 'state' && e.state === 'stopped'), 'stopped by the user: not finished');
    assert.ok(events.some((e) => e.type === 'recomposition' && e.trigger === 'forced'));
    assert.ok(readdirSync(join(dir, 'checkpoints')).some((c) => /^step-\d+$/.test(c)), 'a checkpoint');
    const finalStep = await stepOf();
    const rows = await d.locator('tbody tr').count();
    await shot('stopped');

    // 8. Reload the window: the run is still listed and its dashboard comes back with the same history.
    await palette('Developer: Reload Window');
    await page.locator('.monaco-workbench').waitFor({ timeout: 60_000 });
    await page.waitForTimeout(8000);
    await page.locator('.monaco-list-row', { hasText: /stopped · \d+\/1500/ }).first().waitFor({ timeout: 30_000 });
    const again = dashboard();
    await again.locator('.badge', { hasText: 'stopped' }).waitFor({ timeout: 60_000 });
    assert.equal(await again.locator('.facts').filter({ hasText: `step ${finalStep}/` }).count(), 1, 'same step after the reload');
    assert.equal(await again.locator('tbody tr').count(), rows, 'same recomposition log after the reload');
    await shot('after-reload');
  } catch (e) {
    await shot('failure').catch(() => undefined);
    console.log(logs());
    throw e;
  }
});
