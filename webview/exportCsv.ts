/**
 * CSV exports of a run, one tidy table per file (one header, one row per observation, the same columns on every
 * row), so numpy/pandas read each with a plain read_csv: metrics per step (the trainer's named scalars as columns),
 * evals per eval step (one column per eval metric), importance per snapshot × layer × slot, and the recompositions.
 */
import type { RunData, Track } from './runData';

const cell = (v: unknown) => {
  const s = v === null || v === undefined ? '' : String(v);
  return /[",\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
};
const csv = (header: string[], rows: unknown[][]) => [header, ...rows].map((r) => r.map(cell).join(',')).join('\n') + '\n';

/** Seconds since the run's first step (0 at the first metrics row). */
const relative = (r: RunData, time: number) => (r.time.length ? (time - r.time.data[0]) / 1000 : 0);

/** The value of a track at a step, or '' (tracks are sparse; steps increase, so one cursor walks each). */
function column(t: Track) {
  let i = 0;
  return (step: number): number | '' => {
    while (i < t.length && t.step.data[i] < step) i++;
    return i < t.length && t.step.data[i] === step ? t.value.data[i] : '';
  };
}

/** step, time (ISO), relativeSeconds, loss, lr, examplesPerSec, then one column per named scalar. */
export function metricsCsv(r: RunData): string {
  const names = [...r.scalars.keys()].sort();
  const cols = names.map((n) => column(r.scalars.get(n)!));
  const rows: unknown[][] = [];
  for (let i = 0; i < r.step.length; i++) {
    const step = r.step.data[i];
    rows.push([step, new Date(r.time.data[i]).toISOString(), relative(r, r.time.data[i]), r.loss.data[i], r.lr.data[i], r.examplesPerSec.data[i], ...cols.map((c) => c(step))]);
  }
  return csv(['step', 'time', 'relativeSeconds', 'loss', 'lr', 'examplesPerSec', ...names], rows);
}

/** step, time, relativeSeconds, loss, then one column per eval metric (accuracy, …). */
export function evalsCsv(r: RunData): string {
  const names = [...new Set(r.evals.flatMap((e) => Object.keys(e.metrics)))].sort();
  return csv(['step', 'time', 'relativeSeconds', 'loss', ...names],
    r.evals.map((e) => [e.step, new Date(e.time).toISOString(), relative(r, e.time), e.loss, ...names.map((n) => e.metrics[n] ?? '')]));
}

/** step, layer, slot, sHat, direction: every importance snapshot the page holds (older ones thinned). */
export function importanceCsv(r: RunData): string {
  const rows: unknown[][] = [];
  for (const f of r.frames) for (const [layer, l] of f.layers) l.sHat.forEach((s, k) => rows.push([f.step, layer, k, s, l.direction[k]]));
  return csv(['step', 'layer', 'slot', 'sHat', 'direction'], rows);
}

/** One row per recomposition × layer; fusedPairs = 0 marks a recomposition that fused nothing in that layer. */
export function eventsCsv(r: RunData): string {
  const rows = r.recompositions.flatMap((e) => e.layers.map((l) => [
    e.step, e.trigger, e.rule.kind === 'ratio' ? `ratio ${e.rule.fusionRatio}` : `threshold ${e.rule.fusionThreshold}`, l.name, l.slots.length,
    l.slots.join(' '), l.scores.join(' '), l.oldDirections.join(' '), l.newDirections.join(' '), l.exhausted, l.deltaNorm, l.preservationError, e.outputChange ?? '',
  ]));
  return csv(['step', 'trigger', 'rule', 'layer', 'fusedPairs', 'slots', 'scores', 'oldDirections', 'newDirections', 'exhausted', 'deltaNorm', 'preservationError', 'outputChange'], rows);
}
