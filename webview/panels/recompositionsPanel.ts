/**
 * The recomposition log: one row per recomposition × layer, newest first. A recomposition that fused nothing in a
 * layer says which condition stopped it (no pair old enough, none below τ, no direction left: the one reducer's idleLayers); the count in the header is the recompositions that fused
 * something, the same ones the charts mark.
 */
import type { Store } from '../store';
import { importanceKey, type RunData } from '../runData';
import { h, formatNumber, text } from '../dom';
import { eventsCsv } from '../exportCsv';
import { button, filePrefix, firstComparedRun, section, type Panel } from './panel';
import { save } from './exporting';
import { recompositionCount } from './header';
import { noFusionText, type Fusion } from '../../src/viewmodel/runModel';

/** The fused pairs' ages; pairs the previous recomposition had re-initialised are marked (★) and named in the title. */
function ageCell(f: Fusion | undefined): HTMLElement {
  if (!f) return h('td', {}, '–');
  const fresh = f.installedAt.map((s) => f.previousStep !== null && s === f.previousStep);
  const cell = h('td', { class: fresh.some(Boolean) ? 'fresh' : '' }, f.ages.map((a, k) => `${a}${fresh[k] ? '★' : ''}`).join(' '));
  if (f.fresh) cell.title = `${f.fresh} of ${f.slots.length} fused pairs were re-initialised at step ${f.previousStep} (the previous recomposition of this layer)`;
  return cell;
}

/** One row of the table: a recomposition × layer, with that recomposition's own fusion (ages) or no-fusion reason. */
export interface RecompositionRow {
  seq: number; step: number; trigger: string; layer: string; slots: number[]; directions: string;
  fusion: Fusion | undefined; deltaNorm: number; preservationError: number;
}

/**
 * The table's rows, newest first (at most max). The one reducer's fusions and idle layers are looked up by the
 * recomposition's seq and the layer — not its step: two recompositions at one step (forced twice while paused) each
 * show their own ages and reasons.
 */
export function recompositionRows(r: RunData, max = 200): RecompositionRow[] {
  const fused = new Map(r.model.fusions.map((f) => [`${f.seq}|${f.layer}`, f]));
  const idle = new Map(r.model.idleLayers.map((l) => [`${l.seq}|${l.layer}`, l]));
  const rows: RecompositionRow[] = [];
  for (let i = r.recompositions.length - 1; i >= 0 && rows.length < max; i--) {
    const e = r.recompositions[i];
    for (const l of e.layers) {
      if (rows.length >= max) break;
      const why = idle.get(`${e.seq}|${l.name}`);
      const directions = l.slots.length ? l.oldDirections.map((d, k) => `${d}→${l.newDirections[k]}`).join(' ')
        : `nothing fused: ${why ? noFusionText(why, r.model.minSlotAge) : l.exhausted ? 'no direction left' : 'no pair selected'}`;
      rows.push({ seq: e.seq, step: e.step, trigger: e.trigger, layer: l.name, slots: l.slots, directions, fusion: fused.get(`${e.seq}|${l.name}`),
        deltaNorm: l.deltaNorm, preservationError: l.preservationError });
    }
  }
  return rows;
}

export class RecompositionsPanel implements Panel {
  readonly element: HTMLElement;
  private readonly body = h('tbody');
  private readonly status = h('span', { class: 'muted' });
  private readonly summary = h('span', { class: 'muted' });
  private key = '';

  constructor(private readonly store: Store) {
    this.element = section('Recompositions',
      h('div', { class: 'row' }, this.summary, button('CSV', 'Save the recompositions as CSV', () => { const r = store.current(); if (r) save(store, `${filePrefix(store)}-recompositions.csv`, eventsCsv(r), 'utf8', 'text/csv', (s) => text(this.status, s)); }), this.status),
      h('div', { class: 'table-wrap' }, h('table', {}, h('thead', {}, h('tr', {}, ...['step', 'trigger', 'layer', 'slots', 'directions', 'age when fused', '‖ΔW‖', 'preservation'].map((c) => h('th', { scope: 'col' }, c)))), this.body)));
  }

  update(): void {
    const r = this.store.current();
    const key = `${r?.runId}:${r?.resets}:${r?.recompositions.length}:${importanceKey(r)}:${this.store.focus.length > 1}`; // a snapshot may say why a layer fused nothing
    if (key === this.key || !r) return; // the table changes when a recomposition (or a snapshot of its step) arrives
    this.key = key;
    // Compare: the table is the first run's, and says so (as the heatmap does).
    text(this.summary, `${this.store.focus.length > 1 ? `${firstComparedRun(r)}: ` : ''}${recompositionCount(r)}`);
    const rows = recompositionRows(r).map((x) => h('tr', { class: `${x.trigger}${x.slots.length ? '' : ' empty'}` }, h('td', {}, String(x.step)), h('td', {}, x.trigger), h('td', {}, x.layer), h('td', {}, x.slots.join(' ') || '–'),
      h('td', {}, x.directions), ageCell(x.fusion), h('td', {}, formatNumber(x.deltaNorm, 3)), h('td', {}, x.preservationError.toExponential(1))));
    this.body.replaceChildren(...rows);
  }
}
