/** The charts' recomposition and resume markers (no chart code here: the node tests import it). */
import type { RunData } from '../runData';
import type { Marker } from '../seriesChart';
import { cssVar } from '../dom';
import { runColor } from './panel';

/** A marker per recomposition: a line where it fused something, hollow where it fused nothing (the table lists both). */
export function recompositionMarkers(runs: RunData[]): Marker[] {
  const out: Marker[] = [];
  const compare = runs.length > 1;
  runs.forEach((run, i) => {
    const t0 = run.time.length ? run.time.data[0] : 0;
    for (const e of run.recompositions) {
      const hollow = !e.layers.some((l) => l.slots.length > 0);
      out.push({ x: e.step, time: e.time, t0, dashed: e.trigger === 'forced', ...(hollow ? { hollow } : {}),
        color: compare ? runColor(i) : e.trigger === 'forced' ? cssVar('--vscode-charts-red', '#f14c4c') : cssVar('--vscode-charts-purple', '#b180d7') });
    }
  });
  return out;
}

/**
 * A marker where the run was resumed from a checkpoint (each rewind the record still holds): the values after it
 * come from the resumed trainer, and a jump there (the optimiser state, the data order) is the resume, not the model.
 */
export function resumeMarkers(runs: RunData[]): Marker[] {
  const compare = runs.length > 1;
  return runs.flatMap((run, i) => {
    const t0 = run.time.length ? run.time.data[0] : 0;
    return run.resumes.map((r) => ({ x: r.step, time: r.time, t0, dashed: true, label: 'resumed',
      color: compare ? runColor(i) : cssVar('--vscode-descriptionForeground', '#8b8b8b') }));
  });
}
