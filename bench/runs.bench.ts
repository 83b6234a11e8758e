/**
 * `npm run bench:runs`: what listing past runs costs the extension host at activation (issue 12.7). Builds 20 runs of
 * 100 MB each (mostly importance snapshots, as a long RoBERTa-size run writes them) under .cache/bench-runs, then in a
 * fresh process per case starts a hub and a RunManager and runs what activation runs (scan, then watch), until every
 * run is folded by the RunManager and open on the hub (its channel caught up with its log: what a dashboard needs). Measured: the longest the event loop was blocked (perf_hooks.monitorEventLoopDelay, and the
 * synchronous scan itself) and peak RSS, against the same with an empty runs folder. Cases: `cold` (no summaries: the
 * logs are folded in the background, in slices) and `warm` (the summaries the cold case left).
 * Goal: activationBlockMs ≤ 300, memory ≤ 100 MB above the empty case. Results: bench/results/runs.json.
 */
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, rmSync, statSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { execFileSync } from 'node:child_process';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { loadavg } from 'node:os';
import { writeResult } from './common';

const RUNS = Number(process.env.BENCH_RUNS ?? 20);
const RUN_MB = Number(process.env.BENCH_RUN_MB ?? 100);
const root = resolve(import.meta.dirname, '../.cache/bench-runs');

/** One run's log: hello, running, then metrics and ~28 KB importance snapshots up to `mb` MB, then stopped. */
function buildRun(dir: string, runId: string, mb: number): void {
  mkdirSync(dir, { recursive: true });
  const layers = Array.from({ length: 48 }, (_, i) => ({ name: `encoder.layer.${i >> 2}.attention.${['q', 'k', 'v', 'o'][i & 3]}`, shape: [768, 768], r: 8, rTarget: 32 }));
  const fd = openSync(join(dir, 'events.jsonl'), 'w');
  let seq = 0;
  const line = (body: Record<string, unknown>) => `${JSON.stringify({ v: 1, runId, seq: ++seq, time: 1_700_000_000_000 + seq, ...body })}\n`;
  writeSync(fd, line({ type: 'hello', protocol: { major: 1, minor: 1 }, method: 'srlora', backend: { name: 'pytorch', device: 'CPU' }, totalSteps: 1_000_000, config: { fusionRatio: 0.5, importanceEvery: 10, evalEvery: 100, learningRate: 0.001 }, layers }));
  writeSync(fd, line({ type: 'state', state: 'running', step: 0 }));
  const scores = Array.from({ length: 32 }, (_, i) => Math.round(1e6 * Math.abs(Math.sin(i + 1))) / 1e6);
  const importanceLayers = layers.map((l) => ({ name: l.name, S: scores, sHat: scores, age: scores.map((_, i) => i), direction: scores.map((_, i) => i), p: 8, rTarget: 32 }));
  let bytes = 0;
  let step = 0;
  const limit = mb * 1e6;
  let chunk: string[] = [];
  let chunkBytes = 0;
  while (bytes < limit) {
    step += 10;
    const rows = Array.from({ length: 10 }, (_, i) => ({ step: step - 9 + i, loss: 1 / (step + i), lr: 0.001, examplesPerSec: 512 }));
    for (const text of [line({ type: 'metrics', rows }), line({ type: 'importance', step, layers: importanceLayers })]) {
      chunk.push(text);
      chunkBytes += text.length;
      bytes += text.length;
    }
    if (chunkBytes > 8 << 20) { writeSync(fd, chunk.join('')); chunk = []; chunkBytes = 0; }
  }
  chunk.push(line({ type: 'state', state: 'stopped', step, reason: 'stopped by the user' }));
  writeSync(fd, chunk.join(''));
  closeSync(fd);
}

function build(): string {
  const runsDir = join(root, `runs-${RUNS}x${RUN_MB}`);
  mkdirSync(runsDir, { recursive: true });
  for (let i = 0; i < RUNS; i++) {
    const id = `bench-${String(i).padStart(2, '0')}`;
    const dir = join(runsDir, id);
    const log = join(dir, 'events.jsonl');
    if (existsSync(log) && statSync(log).size >= RUN_MB * 1e6) continue;
    buildRun(dir, id, RUN_MB);
  }
  return runsDir;
}

/** In a fresh process: activation's scan of `runsDir`, measured until every run is folded. */
async function measure(runsDir: string): Promise<void> {
  const { Hub } = await import('../src/hub/hub');
  const { RunManager } = await import('../src/supervisor/runManager');
  await new Promise((r) => setTimeout(r, 200));
  const loadBefore = loadavg()[0];
  const baseRss = process.memoryUsage().rss;
  let peakRss = baseRss;
  const sampler = setInterval(() => { peakRss = Math.max(peakRss, process.memoryUsage().rss); }, 20);
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  const t0 = performance.now();
  const hub = await Hub.start({ heartbeatMs: 60_000 });
  const runs = new RunManager({ runsDir, hub, cliPath: '', by: 'bench' });
  const s0 = performance.now();
  runs.scan();
  runs.watch();
  const scanMs = performance.now() - s0;
  // Until every run's model reached its last line (the logs end with `stopped`).
  // Measured until every run is folded, or at most BENCH_WATCH_S seconds (the background fold shares 2 cores).
  const n = readdirSync(runsDir).length;
  const limitMs = Number(process.env.BENCH_WATCH_S ?? 240) * 1000;
  const folded = () => [...runs.runs.values()].filter((r) => r.model.state === 'stopped' && !r.folding).length;
  while (folded() < n && performance.now() - t0 < limitMs) await new Promise((r) => setTimeout(r, 20));
  const foldedMs = performance.now() - t0;
  const foldedRuns = folded();
  const listedMs = round(performance.now() - t0);
  // ...and until the hub has every run open and read to its end (the runs a dashboard lists).
  const onHub = () => hub.listRuns().filter((r) => r.state === 'stopped').length;
  while (onHub() < n && performance.now() - t0 < limitMs) await new Promise((r) => setTimeout(r, 20));
  const hubRuns = onHub();
  const hubReadyMs = performance.now() - t0;
  loop.disable();
  clearInterval(sampler);
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
  const steps = [...runs.runs.values()].map((r) => r.model.step);
  await runs.dispose('detach');
  await hub.close();
  process.stdout.write(`${JSON.stringify({
    runs: runs.runs.size, scanMs: round(scanMs), maxLoopDelayMs: round(loop.max / 1e6), p99LoopDelayMs: round(loop.percentile(99) / 1e6),
    activationBlockMs: round(Math.max(scanMs, loop.max / 1e6)), foldedRuns, foldedMs: round(foldedMs), listedMs, hubRuns, hubReadyMs: round(hubReadyMs), peakRssMB: round((peakRss) / 2 ** 20), baseRssMB: round(baseRss / 2 ** 20),
    minStep: Math.min(...steps, Infinity),
    // The machine is shared: its 1-minute load average before and after says how much CPU this case competed for.
    loadAverage: [round(loadBefore), round(loadavg()[0])],
  })}\n`);
  process.exit(0);
}

const round = (x: number) => Math.round(x * 10) / 10;

function child(runsDir: string): Record<string, number> {
  const out = execFileSync(process.execPath, ['--import', 'tsx', import.meta.filename, '--measure', runsDir], { encoding: 'utf8', maxBuffer: 1 << 20 });
  return JSON.parse(out.trim().split('\n').pop() ?? '{}') as Record<string, number>;
}

async function main(): Promise<void> {
  if (process.argv[2] === '--measure') return measure(process.argv[3]);
  const t = performance.now();
  const runsDir = build();
  const logBytes = readdirSync(runsDir).reduce((s, d) => s + statSync(join(runsDir, d, 'events.jsonl')).size, 0);
  console.log(`${RUNS} runs, ${(logBytes / 2 ** 20).toFixed(0)} MiB of logs, built in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  const emptyDir = join(root, 'empty');
  mkdirSync(emptyDir, { recursive: true });
  const empty = child(emptyDir);
  console.log('empty', empty);
  for (const d of readdirSync(runsDir)) rmSync(join(runsDir, d, 'summary.json'), { force: true });
  const cold = child(runsDir);
  console.log('cold (no summaries)', cold);
  const warm = child(runsDir);
  console.log('warm (summaries)', warm);
  const activationBlockMs = Math.max(cold.activationBlockMs, warm.activationBlockMs);
  const memoryAboveEmptyMB = round(Math.max(cold.peakRssMB, warm.peakRssMB) - empty.peakRssMB);
  writeResult('runs', {
    command: 'npm run bench:runs', runs: RUNS, runMB: RUN_MB, logMiB: round(logBytes / 2 ** 20),
    activationBlockMs, memoryAboveEmptyMB, goal: { activationBlockMs: 300, memoryAboveEmptyMB: 100 },
    met: activationBlockMs <= 300 && memoryAboveEmptyMB <= 100, empty, cold, warm,
  });
}

void main();
