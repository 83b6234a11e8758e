/**
 * The one-screen summary a training run ends with: what became of the run (state, steps, time), its final and best
 * loss and eval metrics, its recompositions, and where its folder and export are, with the commands that come next.
 * Folded from the run's events.jsonl with the one reducer (what every other view shows).
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { readJsonl } from '../runfolder/eventLog';
import { EVENTS_FILE, EXPORT_DIR_NAME } from '../runfolder/runFiles';
import { latestCompleteCheckpoint } from '../runfolder/checkpoints';
import { foldRun, plural } from '../viewmodel/runModel';
import { continueCommand, dashboardCommand, type PythonLaunch } from '../viewmodel/continueCommand';
import { cliOr } from './launch';
import { formatDuration } from '../common/formatDuration';
import type { TrainerMessage } from '../protocol/messages';

/**
 * The value after the summary's `recompositions` label (the label says what is counted, so the count does not repeat
 * it): every recomposition, the pairs they fused, how many fused nothing — "2 (2 pairs fused, 1 fused nothing)",
 * "1 (1 pair fused)", "0". The Python trainer's summary says the same (test/vectors/summary/recompositions.json).
 */
export function recompositionsCount(all: number, pairsFused: number, fusedNothing: number): string {
  if (all === 0) return '0';
  return `${all} (${plural(pairsFused, 'pair')} fused${fusedNothing > 0 ? `, ${fusedNothing} fused nothing` : ''})`;
}

const fmt = (v: number | null | undefined) => (v === null || v === undefined || !Number.isFinite(v) ? '–' : Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(3) : v.toFixed(4));

/**
 * Seconds the run trained, summed over its incarnations as its log states them: the clock runs from a trainer
 * message to the next state that is not starting/running (paused, interrupted, stopped, failed, finished) and
 * restarts at the next message; a rewind (a resumed process) starts a new stretch. Messages the supervisor wrote
 * (origin: 'supervisor', after the trainer was gone) do not count. So the idle time between an interrupt and
 * `train --resume`, or a pause, is not time trained.
 */
export function timeTrained(events: readonly TrainerMessage[]): number {
  let total = 0;
  let from: number | null = null, last: number | null = null;
  for (const e of events) {
    if (e.type === 'state' && e.origin === 'supervisor') continue;
    if (e.type === 'rewind' && from !== null && last !== null) { total += last - from; from = null; }
    from ??= e.time;
    last = e.time;
    if (e.type === 'state' && e.state !== 'starting' && e.state !== 'running') { total += e.time - from; from = null; }
  }
  if (from !== null && last !== null) total += last - from;
  return total / 1000;
}

/**
 * The summary text (several lines, ending in a newline) of the run in `runDir` (relative paths: against `cwd`). Every
 * path it prints is absolute (commands shell-quoted), as the PyTorch trainer's summary: a line copied into another
 * terminal, or read in a log later, still names the same folder. `cli`: the srlora command line the dashboard line
 * names (default: the run's, else this process's). The PyTorch trainer's summary has this layout too (python/srlora_torch/
 * progress.py summary; test/vectors/summary/summaries.json). Throws only if the run folder has no events.jsonl.
 */
export function trainingSummary(runDir: string, cwd = process.cwd(), cli?: PythonLaunch): string {
  runDir = resolve(cwd, runDir);
  const events = readJsonl<TrainerMessage>(join(runDir, EVENTS_FILE)).events;
  // One value per step (a resume rewinds): the latest message for a step wins.
  const losses = new Map<number, number>();
  const evals = new Map<number, { loss: number; metrics: Record<string, number> }>();
  const recompositions: { step: number; fused: number }[] = [];
  for (const e of events) {
    if (e.type === 'rewind') {
      for (const s of [...losses.keys()]) if (s > e.step) losses.delete(s);
      for (const s of [...evals.keys()]) if (s > e.step) evals.delete(s);
      for (let i = recompositions.length - 1; i >= 0; i--) if (recompositions[i].step > e.step) recompositions.splice(i, 1);
    } else if (e.type === 'metrics') for (const r of e.rows) losses.set(r.step, r.loss);
    else if (e.type === 'eval') evals.set(e.step, { loss: e.loss, metrics: e.metrics });
    else if (e.type === 'recomposition') recompositions.push({ step: e.step, fused: e.layers.reduce((n, l) => n + l.slots.length, 0) });
  }
  const m = foldRun(runDir, events);
  const lossValues = [...losses.values()];
  const evalList = [...evals.entries()].sort((a, b) => a[0] - b[0]).map(([, v]) => v);
  const lastEval = evalList[evalList.length - 1];
  const lines: string[] = [];
  const check = m.state === 'finished' ? '✓' : m.state === 'failed' ? '✗' : '■';
  lines.push(`${check} ${m.name} — ${m.state}${m.stateReason ? ` (${m.stateReason})` : ''}, step ${m.step}/${m.totalSteps ?? '?'}${events.length ? ` in ${formatDuration(timeTrained(events))} trained` : ''}`);
  lines.push(`  method ${m.method ?? '?'} on ${m.backend || '?'}`);
  const table: [string, number | undefined, number | null][] = [];
  if (lossValues.length) table.push(['train loss', lossValues[lossValues.length - 1], Math.min(...lossValues)]);
  if (lastEval) {
    table.push(['eval loss', lastEval.loss, Math.min(...evalList.map((e) => e.loss))]);
    for (const k of Object.keys(lastEval.metrics).sort()) {
      const vals = evalList.map((e) => e.metrics[k]).filter((v): v is number => typeof v === 'number');
      table.push([`eval ${k}`, lastEval.metrics[k], /loss|error|perplexity/i.test(k) ? Math.min(...vals) : Math.max(...vals)]);
    }
  }
  // one column for every label beside a value (recompositions too: its value lines up with the others)
  const w = Math.max(12, ...table.map(([k]) => k.length + 1), m.method === 'srlora' ? 'recompositions'.length + 1 : 0);
  for (const [k, final, best] of table) lines.push(`  ${k.padEnd(w)} final ${fmt(final)}   best ${fmt(best)}`);
  if (m.method === 'srlora') {
    const fusing = recompositions.filter((r) => r.fused > 0);
    lines.push(`  ${'recompositions'.padEnd(w)} ${recompositionsCount(recompositions.length, fusing.reduce((n, r) => n + r.fused, 0), recompositions.length - fusing.length)}`);
  }
  if (m.nonFiniteSteps) lines.push(`  ${plural(m.nonFiniteSteps, 'step')} skipped (non-finite gradients)`);
  const label = (k: string) => `  ${k.padEnd(w)} `;
  lines.push(`${label('run folder')}${runDir}`);
  const exportDir = join(runDir, EXPORT_DIR_NAME);
  if (existsSync(join(exportDir, 'merged.safetensors'))) lines.push(`${label('export')}${exportDir}`);
  // An interrupted run exports what it has and still continues (as the PyTorch trainer's summary says both).
  if (m.state !== 'finished') {
    // Offered only when a resume can start (sizes and markers: the resume itself verifies the checksums); the real path: it runs from anywhere.
    lines.push(`${label('continue')}${latestCompleteCheckpoint(runDir, { hashes: false }).dir ? continueCommand(runDir, m.pytorch, m.worldSize, m.pytorch ? m.launch : cliOr(m.launch)) : 'not possible: no complete checkpoint to resume from'}`);
  }
  // by the CLI that ran the run, else this one (a PyTorch run's hello names a Python): `srlora` is not on a checkout's PATH
  lines.push(`${label('dashboard')}${dashboardCommand(resolve(runDir, '..'), cli ?? cliOr(m.pytorch ? null : m.launch))}`);
  return lines.join('\n') + '\n';
}
