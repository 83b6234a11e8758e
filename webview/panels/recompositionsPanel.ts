/**
 * The recomposition log: one row per recomposition × layer, newest first. A recomposition that fused nothing in a
 * layer says why (no eligible pair, no direction left); the count in the header is the recompositions that fused
 * something, the same ones the charts mark.
 */
import type { Store } from '../store';
import { h, formatNumber, text } from '../dom';
import { eventsCsv } from '../exportCsv';
import { button, filePrefix, section, type Panel } from './panel';
import { save } from './exporting';
import { fusingRecompositions } from './header';

export class RecompositionsPanel implements Panel {
  readonly element: HTMLElement;
  private readonly body = h('tbody');
  private readonly status = h('span', { class: 'muted' });
  private readonly summary = h('span', { class: 'muted' });
  private key = '';

  constructor(private readonly store: Store) {
    this.element = section('Recompositions',
      h('div', { class: 'row' }, this.summary, button('CSV', 'Save the recompositions as CSV', () => { const r = store.current(); if (r) save(store, `${filePrefix(store)}-recompositions.csv`, eventsCsv(r), 'utf8', 'text/csv', (s) => text(this.status, s)); }), this.status),
      h('div', { class: 'table-wrap' }, h('table', {}, h('thead', {}, h('tr', {}, ...['step', 'trigger', 'layer', 'slots', 'directions', '‖ΔW‖', 'preservation'].map((c) => h('th', { scope: 'col' }, c)))), this.body)));
  }

  update(): void {
    const r = this.store.current();
    const key = `${r?.runId}:${r?.resets}:${r?.recompositions.length}`;
    if (key === this.key || !r) return; // the table only changes when a recomposition arrives
    this.key = key;
    const all = r.recompositions.length, fusing = fusingRecompositions(r);
    text(this.summary, `${fusing} recomposition${fusing === 1 ? '' : 's'} fused pairs${all > fusing ? `; ${all - fusing} fused nothing` : ''}`);
    const rows: HTMLTableRowElement[] = [];
    for (let i = r.recompositions.length - 1; i >= 0 && rows.length < 200; i--) {
      const e = r.recompositions[i];
      for (const l of e.layers) {
        if (rows.length >= 200) break;
        const dirs = l.exhausted ? 'nothing fused: no direction left' : l.slots.length ? l.oldDirections.map((d, k) => `${d}→${l.newDirections[k]}`).join(' ') : 'nothing fused: no eligible pair';
        rows.push(h('tr', { class: `${e.trigger}${l.slots.length ? '' : ' empty'}` }, h('td', {}, String(e.step)), h('td', {}, e.trigger), h('td', {}, l.name), h('td', {}, l.slots.join(' ') || '–'),
          h('td', {}, dirs), h('td', {}, formatNumber(l.deltaNorm, 3)), h('td', {}, l.preservationError.toExponential(1))));
      }
    }
    this.body.replaceChildren(...rows);
  }
}
