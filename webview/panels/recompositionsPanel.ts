/**
 * The recomposition log: one row per recomposition × layer, newest first. A recomposition that fused nothing in a
 * layer says which condition stopped it (no pair old enough, none below τ, no direction left: the one reducer's idleLayers); the count in the header is the recompositions that fused
 * something, the same ones the charts mark.
 */
import type { Store } from '../store';
import { h, formatNumber, text } from '../dom';
import { eventsCsv } from '../exportCsv';
import { button, filePrefix, section, type Panel } from './panel';
import { save } from './exporting';
import { fusingRecompositions } from './header';
import { noFusionText, type Fusion } from '../../src/viewmodel/runModel';

/** The fused pairs' ages; pairs the previous recomposition had re-initialised are marked (★) and named in the title. */
function ageCell(f: Fusion | undefined): HTMLElement {
  if (!f) return h('td', {}, '–');
  const fresh = f.installedAt.map((s) => f.previousStep !== null && s === f.previousStep);
  const cell = h('td', { class: fresh.some(Boolean) ? 'fresh' : '' }, f.ages.map((a, k) => `${a}${fresh[k] ? '★' : ''}`).join(' '));
  if (f.fresh) cell.title = `${f.fresh} of ${f.slots.length} fused pairs were re-initialised at step ${f.previousStep} (the previous recomposition of this layer)`;
  return cell;
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
    const key = `${r?.runId}:${r?.resets}:${r?.recompositions.length}`;
    if (key === this.key || !r) return; // the table only changes when a recomposition arrives
    this.key = key;
    const all = r.recompositions.length, fusing = fusingRecompositions(r);
    text(this.summary, `${fusing} recomposition${fusing === 1 ? '' : 's'} fused pairs${all > fusing ? `; ${all - fusing} fused nothing` : ''}`);
    // The one reducer's fusions: each pair's age, and whether the previous recomposition had just re-initialised it.
    const fused = new Map(r.model.fusions.map((f) => [`${f.step}|${f.layer}`, f]));
    const idle = new Map(r.model.idleLayers.map((l) => [`${l.step}|${l.layer}`, l]));
    const rows: HTMLTableRowElement[] = [];
    for (let i = r.recompositions.length - 1; i >= 0 && rows.length < 200; i--) {
      const e = r.recompositions[i];
      for (const l of e.layers) {
        if (rows.length >= 200) break;
        const why = idle.get(`${e.step}|${l.name}`);
        const dirs = l.slots.length ? l.oldDirections.map((d, k) => `${d}→${l.newDirections[k]}`).join(' ')
          : `nothing fused: ${why ? noFusionText(why, r.model.minSlotAge) : l.exhausted ? 'no direction left' : 'no pair selected'}`;
        rows.push(h('tr', { class: `${e.trigger}${l.slots.length ? '' : ' empty'}` }, h('td', {}, String(e.step)), h('td', {}, e.trigger), h('td', {}, l.name), h('td', {}, l.slots.join(' ') || '–'),
          h('td', {}, dirs), ageCell(fused.get(`${e.step}|${l.name}`)), h('td', {}, formatNumber(l.deltaNorm, 3)), h('td', {}, l.preservationError.toExponential(1))));
      }
    }
    this.body.replaceChildren(...rows);
  }
}
