/** The loss chart's recomposition markers (no chart code here: the node tests import it). */
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
