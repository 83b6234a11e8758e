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
import { killTrainersUnder } from '../helpers/tmp';

const root = join(import.meta.dirname, '../..');
const codeServer = join(root, '.cache/code-server/node_modules/.bin/code-server');
const vsix = join(root, `srlora-studio-${(JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version}.vsix`);
const shots = join(root, 'test-results/e2e');
/** The repository's Python with torch (scripts/python-env.sh makes .venv; CI's python phase runs it first). */
const python = process.env.SRLORA_TEST_PYTHON ?? join(root, '.venv/bin/python');
const T = mkdtempSync(join(tmpdir(), 'srlora-e2e-'));
const userSettings = join(T, 'ud', 'User', 'settings.json');
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
  // The palette lists the commands registered when it opens: on a loaded machine the extension's may come later, so
  // an empty answer is retried with a fresh palette.
  const input = page.locator('.quick-input-widget input');
  for (let attempt = 1; ; attempt++) {
    await page.keyboard.press('F1');
    await input.waitFor({ state: 'visible', timeout: 10_000 });
    await input.fill(`>${title}`);
    try {
      await page.locator('.quick-input-list .monaco-list-row', { hasText: title }).first().waitFor({ timeout: 10_000 });
      break;
    } catch (e) {
      if (attempt >= 4) throw e;
      await page.keyboard.press('Escape');
    }
  }
  await input.press('Enter');
  if (then) await then(page);
}

function dashboard(): FrameLocator {
  return page.frameLocator('iframe.webview.ready >> visible=true').frameLocator('#active-frame');
}

/** Picks the row of the open quick pick whose text matches (typing it first, so it is the first row). */
async function pickRow(text: string, timeout = 15_000): Promise<void> {
  const input = page.locator('.quick-input-widget input');
  await input.waitFor({ state: 'visible', timeout });
  await page.locator('.quick-input-list .monaco-list-row', { hasText: text }).first().waitFor({ timeout });
  await input.fill(text);
  await page.locator('.quick-input-list .monaco-list-row', { hasText: text }).first().waitFor({ timeout: 5000 });
  await input.press('Enter');
}

/** The one run folder not in `known` (the run just started). */
function newRunFolder(known: string[] = []): string {
  const runs = join(workspace, '.srlora/runs');
  const dirs = (existsSync(runs) ? readdirSync(runs) : []).map((n) => join(runs, n)).filter((p) => !known.includes(p));
  assert.equal(dirs.length, 1, `one new run folder in ${runs}: ${dirs.join(', ')}`);
  return dirs[0];
}

const events = (dir: string) => readJsonl<TrainerMessage>(join(dir, 'events.jsonl')).events;
const stepOf = async (d: FrameLocator) => Number(/step (\d+)\//.exec((await d.locator('.facts').textContent()) ?? '')?.[1] ?? 0);

before(async () => {
  assert.ok(existsSync(codeServer), 'code-server is installed by scripts/install-code-server.sh (npm run test:e2e does it)');
  assert.ok(existsSync(vsix), `${vsix} is built by npm run package (npm run test:e2e does it)`);
  assert.ok(existsSync(python), `${python}: a Python with torch (scripts/python-env.sh makes .venv)`);
  mkdirSync(shots, { recursive: true });
  mkdirSync(join(workspace, '.vscode'), { recursive: true });
  mkdirSync(join(T, 'ud', 'User'), { recursive: true });
  writeFileSync(userSettings, JSON.stringify({
    'workbench.startupEditor': 'none', 'workbench.tips.enabled': false, 'security.workspace.trust.enabled': false,
    'extensions.autoCheckUpdates': false, 'extensions.autoUpdate': false, 'telemetry.telemetryLevel': 'off',
    'workbench.colorTheme': 'Default Dark Modern', 'srlora.python.path': python,
  }));
  // A small PyTorch run: the MLP on the built-in digits (CPU), long enough to steer.
  writeFileSync(join(workspace, 'pytorch.srlora.json'), JSON.stringify({ method: 'srlora', model: { kind: 'mlp' }, steps: 5000, importanceEvery: 10 }));
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
  killTrainersUnder(T, 6); // a trainer the extension host could not end (it was killed with code-server) ends here
  rmSync(T, { recursive: true, force: true });
});

test('end to end in VS Code 1.100 (code-server): a PyTorch run from Start Run… steered from the dashboard; the demo; compare, metrics, theme, reload', async (t) => {
  t.after(() => { if (t.signal.aborted) console.log(logs()); });
  try {
    await shot('workbench');
    // 1. Start Run… → the PyTorch config → the PyTorch trainer (srlora.python.path = the repo's .venv python).
    await palette('SRLoRA: Start Run…');
    await pickRow('pytorch.srlora.json');
    await pickRow('PyTorch', 120_000); // the probe imports torch first
    const d = dashboard();
    await d.locator('.facts').filter({ hasText: /step [1-9]\d*\// }).waitFor({ timeout: 120_000 });
    const dir = newRunFolder();
    const hello = events(dir).find((e) => e.type === 'hello');
    assert.ok(hello && hello.type === 'hello' && hello.backend.name === 'pytorch', `a PyTorch run: ${JSON.stringify(hello && hello.type === 'hello' ? hello.backend : null)}`);
    await shot('pytorch-running');

    // 2. Pause from the dashboard: the trainer acknowledges at a step, the log says paused.
    await d.getByRole('button', { name: 'Pause the run', exact: true }).click();
    await d.locator('ul.commands li', { hasText: /^Pause — applied at step \d+/ }).waitFor({ timeout: 30_000 });
    assert.ok(events(dir).some((e) => e.type === 'state' && e.state === 'paused'), 'paused in events.jsonl');

    // 3. τ from the dashboard's rule panel: applied, in force, and the trainer's ack carries it.
    await d.locator('vscode-textfield[aria-label="Fusion threshold τ value"] input').fill('0.9');
    await d.getByRole('button', { name: 'Apply the fusion rule to the run' }).click();
    await d.locator('p.muted', { hasText: 'In force: τ = 0.9' }).waitFor({ timeout: 30_000 });
    assert.ok(events(dir).some((e) => e.type === 'ack' && e.status === 'applied' && e.settings?.fusionThreshold === 0.9), 'τ = 0.9 acknowledged in events.jsonl');
    await shot('pytorch-threshold');

    // 4. Force a recomposition: a forced recomposition in the log and a new row in the page.
    const forcedBefore = await d.locator('tbody tr.forced').count();
    await d.getByRole('button', { name: /recompose all layers now/i }).click();
    await d.locator('ul.commands li', { hasText: /^Recompose all layers — applied at step \d+/ }).waitFor({ timeout: 30_000 });
    await d.locator(`tbody tr.forced >> nth=${forcedBefore}`).waitFor({ timeout: 10_000 });
    const forced = events(dir).find((e) => e.type === 'recomposition' && e.trigger === 'forced');
    assert.ok(forced && forced.type === 'recomposition' && forced.rule.kind === 'threshold', 'forced, under the τ in force');

    // 5. The metrics panel: a chart per scalar the trainer sends, each with points.
    const metrics = d.locator('section.metrics section.chart-panel');
    await metrics.first().waitFor({ timeout: 10_000 });
    assert.ok(await metrics.count() >= 2, 'learning rate and examples/s at least');
    assert.match(await d.locator('section.metrics canvas[aria-label*="Learning rate" i]').first().getAttribute('aria-label') ?? '', /[1-9]\d* points?/);

    // 6. Stop asks first (srlora.dashboard.confirmStop); turned off in the settings, the open page stops at once
    //    (settings apply without a reload).
    await d.getByRole('button', { name: 'Stop the run', exact: true }).click();
    await d.getByRole('button', { name: 'Cancel stopping' }).click();
    await palette('Preferences: Open Settings (UI)');
    await page.locator('.settings-editor').waitFor({ timeout: 15_000 });
    await page.keyboard.type('srlora.dashboard.confirmStop'); // the search box has the focus
    const box = page.locator('.settings-editor .setting-item-bool .setting-value-checkbox').first();
    await box.waitFor({ timeout: 15_000 });
    await box.click();
    await page.locator('.settings-editor .setting-item-bool .setting-value-checkbox:not(.checked)').first().waitFor({ timeout: 10_000 });
    await palette('SRLoRA: Open Dashboard'); // back to the run's page (revealed, not a second one)
    await d.locator('body[data-confirm-stop="false"]').waitFor({ state: 'attached', timeout: 30_000 });
    await d.locator('.badge', { hasText: 'paused' }).waitFor({ timeout: 30_000 });
    await d.getByRole('button', { name: 'Stop the run', exact: true }).click();
    await d.locator('.badge', { hasText: 'stopped' }).waitFor({ timeout: 60_000 });
    assert.ok(events(dir).some((e) => e.type === 'state' && e.state === 'stopped'), 'stopped by the user: not finished');
    assert.ok(readdirSync(join(dir, 'checkpoints')).some((c) => /^step-\d+$/.test(c)), 'a checkpoint');
    const finalStep = await stepOf(d);
    const rows = await d.locator('tbody tr').count();
    await shot('pytorch-stopped');

    // 7. The built-in demo from the palette streams; τ from the palette reaches it.
    await palette('SRLoRA: Start Demo Run');
    await d.locator('.facts').filter({ hasText: /step [1-9]\d*\/1500/ }).waitFor({ timeout: 120_000 });
    const demoDir = newRunFolder([dir]);
    // The trainer's link to the hub comes up while it trains: until then the palette says it is still starting
    // (a message, nothing sent), so the command is given again until the run acknowledges it.
    const acked = () => events(demoDir).some((e) => e.type === 'ack' && e.status === 'applied' && e.settings?.fusionThreshold === 0.8);
    for (let attempt = 1; !acked(); attempt++) {
      await palette('SRLoRA: Set Fusion Threshold…', async (p) => {
        const box = p.locator('.quick-input-widget input');
        await box.waitFor({ state: 'visible' });
        await p.locator('.quick-input-message', { hasText: /now off/ }).waitFor({ timeout: 10_000 });
        await box.fill('0.8');
        if (attempt === 1) await shot('demo-threshold-typed');
        await box.press('Enter'); // on the box itself: a live dashboard may hold the page's focus
      });
      for (let i = 0; i < 30 && !acked(); i++) await page.waitForTimeout(500);
      if (!acked() && attempt >= 3) assert.fail(`τ from the palette not acknowledged: ${JSON.stringify(events(demoDir).filter((m) => m.type === 'ack'))}`);
    }
    await d.locator('p.muted', { hasText: 'In force: τ = 0.8' }).waitFor({ timeout: 30_000 });
    assert.ok(events(demoDir).some((e) => e.type === 'ack' && e.status === 'applied' && e.settings?.fusionThreshold === 0.8));

    // 8. Compare Runs…: both runs, one row each in the compare table, the differing config fields as columns.
    // Opened again if its rows stay hidden (seen once in 3 runs at 06f3b92: the pick lost its focus to the live
    // dashboard and was hidden, so nothing could be clicked); each try is a fresh pick with nothing checked.
    for (let attempt = 1; ; attempt++) {
      try {
        await palette('SRLoRA: Compare Runs…', async (p) => {
          const rows = p.locator('.quick-input-list .monaco-list-row');
          await rows.nth(1).waitFor({ timeout: 10_000 });
          await rows.nth(0).click(); // a click checks a row of a multi-select pick
          await rows.nth(1).click();
          await p.locator('.quick-input-widget', { hasText: '2 Selected' }).waitFor({ timeout: 10_000 });
          await p.locator('.quick-input-widget input[type="text"], .quick-input-widget input:not([type])').first().press('Enter');
        });
        break;
      } catch (e) {
        if (attempt >= 3) throw e;
        await page.keyboard.press('Escape');
      }
    }
    const compare = dashboard().locator('table.compare');
    await compare.locator('tbody tr >> nth=1').waitFor({ timeout: 30_000 });
    assert.equal(await compare.locator('tbody tr').count(), 2);
    const head = (await compare.locator('thead').textContent()) ?? '';
    assert.match(head, /model\.kind/, `the differing field model.kind is a column: ${head}`);
    await shot('compare');

    // 9. Theme switch: the page follows (light body, dark text: readable), and back.
    const bodyClass = () => dashboard().locator('body').getAttribute('class');
    assert.match(await bodyClass() ?? '', /vscode-dark/);
    await palette('Preferences: Toggle between Light/Dark Themes');
    await dashboard().locator('body.vscode-light').waitFor({ timeout: 15_000 });
    // Colours read in the page, luminance computed here (a function passed to evaluate must not define functions).
    const colours = await dashboard().locator('body').evaluate((b) => [getComputedStyle(b).color, getComputedStyle(b).backgroundColor]);
    const lum = (c: string) => { const [r, g, bl] = (c.match(/\d+(\.\d+)?/g) ?? ['0', '0', '0']).map(Number); return (0.2126 * r + 0.7152 * g + 0.0722 * bl) / 255; };
    const contrast = { fg: lum(colours[0]), bg: lum(colours[1]), colours };
    assert.ok(contrast.bg > 0.6 && contrast.fg < 0.4, `light page, dark text: ${JSON.stringify(contrast)}`);
    await shot('light-theme');
    await palette('Preferences: Toggle between Light/Dark Themes');
    await dashboard().locator('body.vscode-dark').waitFor({ timeout: 15_000 });

    // 10. Reload the window: the demo is interrupted (resumable); the stopped PyTorch run is listed with its history.
    await palette('Developer: Reload Window');
    await page.locator('.monaco-workbench').waitFor({ timeout: 60_000 });
    await page.waitForTimeout(8000);
    await palette('SRLoRA: Focus on Runs View');
    await page.locator('.monaco-list-row', { hasText: /interrupted · \d+\/1500/ }).first().waitFor({ timeout: 30_000 });
    assert.ok(events(demoDir).some((e) => e.type === 'state' && e.state === 'interrupted'), 'a reload interrupts the demo');
    await page.locator('.monaco-list-row', { hasText: /stopped · \d+\/\d+/ }).first().click(); // a click opens its dashboard
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
