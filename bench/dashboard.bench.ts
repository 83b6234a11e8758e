/**
 * npm run bench:dashboard — the real page in headless Chromium (Debian's, software rendering), fed through the real
 * hub by a synthetic trainer: 1,000,000 loss steps first, then 20 s of live stream at 10 Hz (100 new steps and a
 * 64 layers × 64 slots importance snapshot every 100 ms). Reports the p50/p95/p99 interval between animation frames
 * during the live stream and the JS heap after a garbage collection. The viewport (1,400 × 3,200) shows every panel at
 * once: the page draws no canvas that is off screen. BENCH_VIEWPORT=WxH another window; BENCH_TRACE=1 the renderer
 * main thread's time per trace event and its tasks in CPU time; BENCH_PROFILE=1 a CPU profile's self times.
 */
import { join } from 'node:path';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { WebSocket } from 'ws';
import { chromium } from 'playwright-core';
import { Hub } from '../src/hub/hub';
import { pageHandler } from '../src/serve/pageServer';
import { percentile, writeResult } from './common';

const TOTAL_STEPS = Number(process.env.BENCH_STEPS ?? 1_000_000), LAYERS = 64, SLOTS = 64, LIVE_SECONDS = 20;
const RUN = 'bench-dashboard';

async function main(): Promise<void> {
  const root = join(import.meta.dirname, '..');
  const dir = mkdtempSync(join(tmpdir(), 'srlora-dash-bench-'));
  let handler: ReturnType<typeof pageHandler> | null = null;
  const hub = await Hub.start({ onHttpRequest: (q, s) => void handler?.(q, s), heartbeatMs: 60_000 });
  handler = pageHandler(root, hub.viewerToken);
  hub.allowOrigin(hub.httpOrigin);
  const { token } = hub.openRun(RUN, join(dir, RUN));
  const ws = new WebSocket(`${hub.url}/trainer`, { headers: { Authorization: `Bearer ${token}` } });
  await new Promise<void>((r) => ws.once('open', () => r()));
  let seq = 0;
  const env = (type: string) => ({ v: 1, type, runId: RUN, seq: ++seq, time: Date.now() });
  // As a real trainer: each message goes to the run's record (events.jsonl) first, then to the socket. The hub
  // holds at most 64 MiB of socket messages ahead of the record and leaves the rest for the file to bring; a
  // trainer that wrote no record (this bench before) left every viewer's snapshot stopped at ~376,000 steps.
  mkdirSync(join(dir, RUN), { recursive: true });
  const fd = openSync(join(dir, RUN, 'events.jsonl'), 'a');
  const send = (m: object) => { const line = JSON.stringify(m); writeSync(fd, line + '\n'); return new Promise<void>((r) => ws.send(line, () => r())); };
  await send({
    ...env('hello'), protocol: { major: 1, minor: 1 }, name: 'dashboard bench', method: 'srlora', backend: { name: 'synthetic', device: 'none' },
    totalSteps: TOTAL_STEPS * 2, config: { r: SLOTS, rTarget: 4 * SLOTS, fusionRatio: 0.5, importanceEvery: 10, evalEvery: 1000, learningRate: 1e-3, fusionThreshold: null, minSlotAge: 10 },
    layers: Array.from({ length: LAYERS }, (_, i) => ({ name: `blocks.${i >> 3}.layer${i & 7}`, shape: [256, 256], r: SLOTS, rTarget: 4 * SLOTS })),
    srlora: { schedule: [TOTAL_STEPS / 2, TOTAL_STEPS * 1.5], minSlotAge: 10, rule: { kind: 'ratio', fusionRatio: 0.5 } },
  });
  await send({ ...env('state'), state: 'running', step: 0 });
  let step = 0;
  const rows = (n: number) => Array.from({ length: n }, () => { step++; return {
    step, loss: 2 / Math.sqrt(step) + 0.05 * Math.random(), lr: 1e-3, examplesPerSec: 5000 + 100 * Math.random(),
    // Six scalar charts live: loss, lr, examples/s and these three named scalars.
    scalars: { gradNorm: 1 + Math.random(), mem_MiB: 900 + step / 1e4, cpu_pct: 50 + 10 * Math.random() },
  }; });
  const importance = () => ({
    ...env('importance'), step,
    layers: Array.from({ length: LAYERS }, (_, i) => {
      const S = Array.from({ length: SLOTS }, () => Math.random() * 1e-5);
      const mean = S.reduce((a, b) => a + b, 0) / SLOTS;
      return { name: `blocks.${i >> 3}.layer${i & 7}`, S, sHat: S.map((x) => x / mean), age: Array(SLOTS).fill(50), direction: Array.from({ length: SLOTS }, (_, k) => k), p: SLOTS, rTarget: 4 * SLOTS,
        stepBoost: S.map(() => 0.5 + Math.random()) };
    }),
  });
  // The effective-rank chart live too: a deltaRank (64 layers) with every 10,000 steps' eval.
  const deltaRank = () => ({ ...env('deltaRank'), step, layers: Array.from({ length: LAYERS }, (_, i) => ({ name: `blocks.${i >> 3}.layer${i & 7}`, effectiveRank: SLOTS * (1 + step / TOTAL_STEPS) * (0.8 + 0.4 * Math.random()), norm: 1 })) });
  while (step < TOTAL_STEPS) {
    await send({ ...env('metrics'), rows: rows(1000) });
    if (step % 10_000 === 0) await send(deltaRank());
  }
  await send(importance());
  console.log(`preloaded ${step} steps into the hub`);

  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox', '--disable-gpu'] });
  // What this machine gives any page now: 5 s of animation frames of an empty page (on a busy machine even these
  // are late, and the page's numbers below mean little beside them).
  const blank = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  await blank.setContent('<html><body>baseline</body></html>');
  await blank.evaluate(`(() => { window.frames_ = []; let last = performance.now(); const tick = (t) => { window.frames_.push(t - last); last = t; requestAnimationFrame(tick); }; requestAnimationFrame(tick); })()`);
  await new Promise((r) => setTimeout(r, 5000));
  const baseline = ((await blank.evaluate('window.frames_')) as number[]).slice(5).sort((a, b) => a - b);
  await blank.close();
  console.log(`an empty page's frames: p50 ${percentile(baseline, 50).toFixed(1)} ms, p95 ${percentile(baseline, 95).toFixed(1)} ms`);
  // Every panel on screen at once (the page draws no canvas that is off screen, so a smaller viewport would measure
  // fewer charts); BENCH_VIEWPORT=1400x1000 measures a laptop-sized window.
  const [vw, vh] = (process.env.BENCH_VIEWPORT ?? '1400x3200').split('x').map(Number);
  const page = await browser.newPage({ viewport: { width: vw, height: vh } });
  page.on('pageerror', (e) => console.error(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') console.error(`page ${m.type()}: ${m.text().slice(0, 300)}`); });
  await page.goto(`${hub.httpOrigin}/?token=${hub.viewerToken}&run=${RUN}`);
  // Snapshots the page is sent (a first part each): one on load; more means it fell behind and was dropped to a
  // fresh snapshot (the hub's drop-to-snapshot), which at 1,000,000 steps costs a whole reload.
  let snapshots = 0, subscribes = 0;
  page.on('websocket', (w) => {
    w.on('framereceived', (f) => { const t = String(f.payload).slice(0, 200); if (t.includes('"type":"snapshot"') && !t.includes('"continued":true')) snapshots++; });
    w.on('framesent', (f) => { if (String(f.payload).includes('"type":"subscribe"')) subscribes++; });
  });
  await page.goto(`${hub.httpOrigin}/?run=${RUN}&profile`); // the token is a cookie now; profile: per-view timings
  const loadStart = Date.now();
  // Progress while it loads (a load that stalls says where: the steps the page holds, the parts still arriving).
  const progress = setInterval(() => {
    void page.evaluate("document.querySelector('.facts')?.textContent ?? ''").then((t) => console.log(`  ${((Date.now() - loadStart) / 1000).toFixed(0)} s: ${String(t).slice(0, 120)}`), () => {});
  }, 10_000);
  await page.waitForFunction((n) => new RegExp(`step ${n}/`).test(document.querySelector('.facts')?.textContent ?? ''), TOTAL_STEPS, { timeout: 600_000 }).finally(() => clearInterval(progress));
  const loadSeconds = (Date.now() - loadStart) / 1000;
  console.log(`the page loaded the snapshot in ${loadSeconds.toFixed(1)} s (${subscribes} subscribe, ${snapshots} snapshot sent)`);
  const snapshotsAtLoad = snapshots;
  const pageHeight = (await page.evaluate('document.documentElement.scrollHeight')) as number;
  console.log(`the page holds the 1,000,000 steps (page ${vw} × ${pageHeight} px in a ${vw} × ${vh} viewport); streaming live for ${LIVE_SECONDS} s`);
  // A string, not a function: tsx would wrap a function with helpers that do not exist in the page.
  // Where the main thread's time goes: every long animation frame (> 50 ms by Chromium's definition) with the
  // scripts it ran, and with BENCH_PROFILE=1 a sampled CPU profile of the live stream (test-results/dashboard.cpuprofile).
  await page.evaluate(`(() => {
    window.loaf_ = [];
    try {
      new PerformanceObserver((l) => { for (const e of l.getEntries()) window.loaf_.push({ duration: e.duration, blocking: e.blockingDuration, render: e.renderStart ? e.startTime + e.duration - e.renderStart : 0,
        scripts: (e.scripts || []).map((s) => ({ invoker: s.invoker, type: s.invokerType, ms: s.duration, fn: s.sourceFunctionName, forcedLayout: s.forcedStyleAndLayoutDuration })) }); })
        .observe({ type: 'long-animation-frame', buffered: false });
    } catch { /* no LoAF in this browser */ }
  })()`);
  const profiler = process.env.BENCH_PROFILE ? await page.context().newCDPSession(page) : null;
  // BENCH_TRACE=1: a Chromium trace of the live stream; the renderer main thread's time by kind of work.
  if (process.env.BENCH_TRACE) await browser.startTracing(page, { path: join(root, 'test-results/dashboard-trace.json'), categories: ['devtools.timeline', 'disabled-by-default-devtools.timeline', 'blink', 'cc', 'v8'] });
  if (profiler) { await profiler.send('Profiler.enable'); await profiler.send('Profiler.setSamplingInterval', { interval: 200 }); await profiler.send('Profiler.start'); }
  await page.evaluate(`(() => {
    window.frames_ = [];
    let last = performance.now();
    const tick = (t) => { window.frames_.push(t - last); last = t; requestAnimationFrame(tick); };
    requestAnimationFrame(tick);
  })()`);
  const end = Date.now() + LIVE_SECONDS * 1000;
  while (Date.now() < end) {
    await send({ ...env('metrics'), rows: rows(100) });
    await send(importance());
    if (step % 1000 === 0) await send(deltaRank());
    await new Promise((r) => setTimeout(r, 100));
  }
  const frames = ((await page.evaluate('window.frames_')) as number[]).slice(5).sort((a, b) => a - b);
  let traceSummary: Record<string, number> | null = null;
  if (process.env.BENCH_TRACE) {
    const buf = await browser.stopTracing();
    const events = (JSON.parse(buf.toString()) as { traceEvents: { name: string; ph: string; ts: number; dur?: number; tdur?: number; pid: number; tid: number; args?: { name?: string } }[] }).traceEvents;
    const main = events.find((e) => e.name === 'thread_name' && e.args?.name === 'CrRendererMain' && events.some((x) => x.pid === e.pid && x.name === 'FunctionCall'));
    // Self time per event name on the page's main thread (complete events, nested ones subtracted from their parent).
    const ev = events.filter((e) => main && e.pid === main.pid && e.tid === main.tid && e.ph === 'X' && e.dur !== undefined).sort((a, b) => a.ts - b.ts || b.dur! - a.dur!);
    // Wall time (dur) and thread CPU time (tdur: what a busy machine does not inflate).
    const selfMs = new Map<string, [number, number]>();
    const add = (name: string, wall: number, cpu: number) => { const v = selfMs.get(name) ?? [0, 0]; v[0] += wall / 1000; v[1] += cpu / 1000; selfMs.set(name, v); };
    const stack: { end: number; name: string }[] = [];
    let topCpu = 0;
    for (const e of ev) {
      while (stack.length && stack[stack.length - 1].end <= e.ts) stack.pop();
      const parent = stack[stack.length - 1];
      if (parent) add(parent.name, -e.dur!, -(e.tdur ?? 0)); else topCpu += (e.tdur ?? 0) / 1000;
      add(e.name, e.dur!, e.tdur ?? 0);
      stack.push({ end: e.ts + e.dur!, name: e.name });
    }
    // The page's own work per task in CPU time, which a busy machine does not inflate: on an idle core a task (or
    // two in one frame) over 16.7 ms drops a frame whatever the load here.
    const tasks = ev.filter((e, i) => e.tdur !== undefined && !ev.slice(Math.max(0, i - 50), i).some((p) => p.ts + p.dur! > e.ts && p.ts <= e.ts)).map((e) => e.tdur! / 1000).sort((a, b) => a - b);
    traceSummary = { mainThreadCpuMs: +topCpu.toFixed(0), tasks: tasks.length, taskCpuP50Ms: +percentile(tasks, 50).toFixed(2), taskCpuP99Ms: +percentile(tasks, 99).toFixed(2), taskCpuMaxMs: +(tasks[tasks.length - 1] ?? 0).toFixed(1), tasksOver8Ms: tasks.filter((t) => t > 8).length, tasksOver16Ms: tasks.filter((t) => t > 16.7).length };
    console.log('main-thread tasks (CPU):', JSON.stringify(traceSummary));
    console.log(`renderer main thread: ${topCpu.toFixed(0)} ms CPU in ${LIVE_SECONDS} s; self time by trace event (wall ms / CPU ms), top 30:`);
    for (const [n, [w, c]] of [...selfMs].sort((a, b) => b[1][1] - a[1][1]).slice(0, 30)) console.log(`  ${w.toFixed(0).padStart(6)} ${c.toFixed(0).padStart(6)}  ${n}`);
  }
  if (profiler) {
    const { profile } = await profiler.send('Profiler.stop') as { profile: { nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount?: number }[]; samples: number[]; timeDeltas: number[] } };
    writeFileSync(join(root, 'test-results/dashboard.cpuprofile'), JSON.stringify(profile));
    const self = new Map<string, number>();
    const byId = new Map(profile.nodes.map((n) => [n.id, n]));
    profile.samples.forEach((id, k) => {
      const f = byId.get(id)!.callFrame;
      const name = `${f.functionName || '(anon)'} ${f.url.split('/').pop()}:${f.lineNumber}`;
      self.set(name, (self.get(name) ?? 0) + (profile.timeDeltas[k + 1] ?? 0) / 1000);
    });
    console.log('self time (ms) over the live stream, top 40:');
    for (const [n, ms] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 40)) console.log(`  ${ms.toFixed(0).padStart(6)}  ${n}`);
  }
  const loaf = (await page.evaluate('window.loaf_')) as { duration: number; blocking: number; render: number; scripts: { invoker: string; type: string; ms: number; fn: string; forcedLayout: number }[] }[];
  const byInvoker = new Map<string, { n: number; ms: number }>();
  for (const f of loaf) for (const s of f.scripts) { const k = `${s.type} ${s.invoker}`.slice(0, 80); const e = byInvoker.get(k) ?? { n: 0, ms: 0 }; e.n++; e.ms += s.ms; byInvoker.set(k, e); }
  console.log(`long animation frames: ${loaf.length}, total ${loaf.reduce((a, f) => a + f.duration, 0).toFixed(0)} ms (render/paint ${loaf.reduce((a, f) => a + f.render, 0).toFixed(0)} ms); scripts in them:`);
  for (const [k, e] of [...byInvoker].sort((a, b) => b[1].ms - a[1].ms).slice(0, 12)) console.log(`  ${e.ms.toFixed(0).padStart(6)} ms ${String(e.n).padStart(4)}×  ${k}`);
  const timings = (await page.evaluate('window.srloraTimings')) as [string, number][];
  const perView: Record<string, { renders: number; meanMs: number; p95Ms: number }> = {};
  for (const name of new Set(timings.map(([n]) => n))) {
    const t = timings.filter(([n]) => n === name).map(([, ms]) => ms).sort((a, b) => a - b);
    perView[name] = { renders: t.length, meanMs: +(t.reduce((a, b) => a + b, 0) / t.length).toFixed(2), p95Ms: +percentile(t, 95).toFixed(2) };
  }
  console.log('render time per view:', JSON.stringify(perView));
  console.log(`snapshots during the live stream: ${snapshots - snapshotsAtLoad}`);
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('HeapProfiler.collectGarbage');
  await cdp.send('Performance.enable');
  const metrics = (await cdp.send('Performance.getMetrics')).metrics;
  const heapMB = (metrics.find((m) => m.name === 'JSHeapUsedSize')?.value ?? NaN) / 2 ** 20;
  // The series live in typed arrays, whose backing stores are outside the JS heap's used size: count them too.
  const usage = (await cdp.send('Runtime.getHeapUsage')) as { usedSize: number; backingStorageSize?: number };
  const backingMB = (usage.backingStorageSize ?? NaN) / 2 ** 20;
  await page.screenshot({ path: join(root, 'test-results/bench-dashboard.png') });
  const p50 = percentile(frames, 50), p95 = percentile(frames, 95), p99 = percentile(frames, 99);
  console.log(`frames ${frames.length}: p50 ${p50.toFixed(1)} ms, p95 ${p95.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms; JS heap ${heapMB.toFixed(1)} MB + array buffers ${backingMB.toFixed(1)} MB`);
  await browser.close();
  ws.close();
  closeSync(fd);
  await hub.close();
  rmSync(dir, { recursive: true, force: true });
  writeResult('dashboard', {
    command: 'npm run bench:dashboard', browser: 'Debian chromium, headless, --disable-gpu (software rendering)',
    viewport: `${vw}x${vh}`, pageHeight, steps: step, layers: LAYERS, slots: SLOTS, liveSeconds: LIVE_SECONDS, liveRate: '100 steps + one 64×64 importance snapshot every 100 ms',
    frameIntervalMs: { count: frames.length, p50: +p50.toFixed(2), p95: +p95.toFixed(2), p99: +p99.toFixed(2) }, goalP95Ms: 17,
    emptyPageFrameIntervalMs: { count: baseline.length, p50: +percentile(baseline, 50).toFixed(2), p95: +percentile(baseline, 95).toFixed(2) }, charts: 'loss, lr, examples/s, gradNorm, mem_MiB, cpu_pct (six scalar charts) + effective rank (deltaRank every 1,000 live steps) + step boost (every snapshot) + fused pairs + heatmap + slot history',
    renderTimePerView: perView, snapshotLoadSeconds: +loadSeconds.toFixed(1), loadAverage: (await import('node:os')).loadavg().map((x) => +x.toFixed(1)), jsHeapMB: +heapMB.toFixed(1), arrayBuffersMB: +backingMB.toFixed(1), heapWithArrayBuffersMB: +(heapMB + backingMB).toFixed(1), goalHeapMB: 150,
    snapshotsDuringLive: snapshots - snapshotsAtLoad, ...(traceSummary ? { mainThread: traceSummary } : {}),
  });
}

void main();
