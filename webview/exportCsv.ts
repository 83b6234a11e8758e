/** CSV exports of a run: metrics per step, importance per snapshot × layer × slot, and the event log. */
import type { RunData } from './runData';

const cell = (v: unknown) => {
  const s = v === null || v === undefined ? '' : String(v);
  return /[",\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
};
const csv = (header: string[], rows: unknown[][]) => [header, ...rows].map((r) => r.map(cell).join(',')).join('\n') + '\n';

export function metricsCsv(r: RunData): string {
  const rows: unknown[][] = [];
  for (let i = 0; i < r.step.length; i++) rows.push([r.step.data[i], new Date(r.time.data[i]).toISOString(), r.loss.data[i], r.lr.data[i], r.examplesPerSec.data[i]]);
  const evals = r.evals.map((e) => [e.step, new Date(e.time).toISOString(), e.loss, e.metrics.accuracy ?? '']);
  return csv(['step', 'time', 'loss', 'lr', 'examplesPerSec'], rows) + '\n' + csv(['evalStep', 'time', 'evalLoss', 'evalAccuracy'], evals);
}

export function importanceCsv(r: RunData): string {
  const rows: unknown[][] = [];
  for (const f of r.frames) for (const [layer, l] of f.layers) l.sHat.forEach((s, k) => rows.push([f.step, layer, k, s, l.direction[k]]));
  const latest = r.latestImportance;
  const last = latest ? latest.layers.flatMap((l) => l.S.map((S, k) => [latest.step, l.name, k, S, l.sHat[k], l.age[k], l.direction[k], l.p, l.rTarget])) : [];
  return csv(['step', 'layer', 'slot', 'sHat', 'direction'], rows) + '\n' + csv(['latestStep', 'layer', 'slot', 'S', 'sHat', 'age', 'direction', 'p', 'rTarget'], last);
}

export function eventsCsv(r: RunData): string {
  const rows = r.recompositions.flatMap((e) => e.layers.map((l) => [
    e.step, e.trigger, e.rule.kind === 'ratio' ? `ratio ${e.rule.fusionRatio}` : `threshold ${e.rule.fusionThreshold}`, l.name,
    l.slots.join(' '), l.scores.join(' '), l.oldDirections.join(' '), l.newDirections.join(' '), l.exhausted, l.deltaNorm, l.preservationError, e.outputChange ?? '',
  ]));
  return csv(['step', 'trigger', 'rule', 'layer', 'slots', 'scores', 'oldDirections', 'newDirections', 'exhausted', 'deltaNorm', 'preservationError', 'outputChange'], rows);
}
