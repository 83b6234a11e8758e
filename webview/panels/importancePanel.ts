/**
 * The importance heatmap (one row per layer, one cell per slot, colour = ŝ; the preview's picks crossed) and its
 * row list: a listbox of the layers, reachable by Tab, ↑/↓ to move, Space/Enter to select a row for "Recompose
 * selected" and the slot history; the canvas draws the keyboard's row with a focus ring.
 */
import type { Store } from '../store';
import { Heatmap, drawLegend, drawScale, MAX_SHAT } from '../heatmap';
import { cssVar, h, text } from '../dom';
import { importanceCsv } from '../exportCsv';
import { button, filePrefix, firstComparedRun, runName, section, type Panel } from './panel';
import { composePng, save } from './exporting';
import { importanceKey } from '../runData';
import type { RulePanel } from './rulePanel';

export class ImportancePanel implements Panel {
  readonly element: HTMLElement;
  private readonly canvas = h('canvas', { class: 'heatmap', role: 'img', 'aria-label': 'Importance heatmap: layers by slots' }) as HTMLCanvasElement;
  private readonly legend = h('canvas', { width: '160', height: '10', class: 'legend', 'aria-hidden': 'true' }) as HTMLCanvasElement;
  private readonly info = h('span', { class: 'muted' });
  private readonly status = h('span', { class: 'muted' });
  private readonly rows = h('ul', { class: 'layer-rows', role: 'listbox', 'aria-label': 'Layers (Space or Enter selects)', 'aria-multiselectable': 'true', tabindex: '0' });
  private readonly heatmap: Heatmap;
  private focusRow = 0;
  private rowsKey = '';
  private drawnKey = '';
  private lastDraw = 0;

  constructor(private readonly store: Store, private readonly rule: RulePanel, private readonly everyMs: number) {
    this.element = section('Importance',
      h('div', { class: 'row' }, h('span', { class: 'muted' }, 'ŝ 0'), this.legend, h('span', { class: 'muted' }, `${MAX_SHAT}+`), this.info,
        button('PNG', 'Save the heatmap as PNG', () => this.savePng()),
        button('CSV', 'Save the importance snapshots as CSV', () => { const r = store.current(); if (r) save(store, `${filePrefix(store)}-importance.csv`, importanceCsv(r), 'utf8', 'text/csv', (s) => text(this.status, s)); }),
        this.status),
      h('div', { class: 'heat-wrap' }, this.canvas), this.rows);
    drawLegend(this.legend);
    // Scrolling the box draws the rows it brings in (as a user's change: at once).
    this.heatmap = new Heatmap(this.canvas, this.canvas.parentElement, () => this.store.changed());
    this.heatmap.onToggleLayer = (name) => this.toggle(name);
    this.rows.addEventListener('keydown', (e) => this.onKey(e));
    this.rows.addEventListener('focus', () => { this.store.changed(); });
    this.rows.addEventListener('blur', () => { this.store.changed(); });
  }

  private layers(): string[] { return this.store.current()?.latestImportance?.layers.map((l) => l.name) ?? []; }

  private toggle(name: string): void {
    const sel = this.store.selectedLayers;
    if (sel.has(name)) sel.delete(name); else sel.add(name);
    this.store.historyLayer = name;
    this.store.changed();
  }

  private onKey(e: KeyboardEvent): void {
    const names = this.layers();
    if (!names.length) return;
    if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      this.focusRow = Math.max(0, Math.min(names.length - 1, this.focusRow + (e.key === 'ArrowDown' ? 1 : -1)));
      this.store.historyLayer = names[this.focusRow];
    } else if (e.key === 'Home' || e.key === 'End') this.focusRow = e.key === 'Home' ? 0 : names.length - 1;
    else if (e.key === ' ' || e.key === 'Enter') this.toggle(names[this.focusRow]);
    else return;
    e.preventDefault();
    this.heatmap.reveal(this.focusRow);
    this.store.changed();
  }

  update(): void {
    const r = this.store.current();
    const imp = r?.latestImportance;
    const names = this.layers();
    this.focusRow = Math.min(this.focusRow, Math.max(0, names.length - 1));
    const key = `${names.join('|')}#${[...this.store.selectedLayers].join('|')}#${this.focusRow}`;
    if (key !== this.rowsKey) {
      this.rowsKey = key;
      this.rows.replaceChildren(...names.map((n, i) => h('li', { role: 'option', id: `layer-row-${i}`, 'aria-selected': this.store.selectedLayers.has(n) ? 'true' : 'false' }, n)));
      if (names.length) this.rows.setAttribute('aria-activedescendant', `layer-row-${this.focusRow}`); else this.rows.removeAttribute('aria-activedescendant');
    }
    text(this.info, this.store.focus.length > 1 ? `showing ${firstComparedRun(r)}`
      : imp ? `step ${imp.step}, ${imp.layers.length} layers × ${imp.layers[0]?.S.length ?? 0} slots; click a row or use the keyboard to select it` : '');
  }

  /** What the user changed (redraw at once) and what the run sent (redraw at most everyMs). */
  private userKey(): string {
    const r = this.store.current();
    return `${this.store.focus[0]}:${r?.resets}:${JSON.stringify(this.rule.draft)}:${[...this.store.selectedLayers].join()}:${this.focusRow}:${document.activeElement === this.rows}:${r?.model.state}:${this.themeKey}:${this.heatmap.scrollTop}`;
  }
  private liveKey(): string { return importanceKey(this.store.current()); }

  private themeKey = 0;
  retheme(): void { this.themeKey++; drawLegend(this.legend); }

  /** Redraw when what it shows changed; live snapshots at most srlora.dashboard.importanceRate per second. */
  dirty(): boolean {
    if (this.userKey() !== this.drawnKey) return true;
    return this.liveKey() !== this.drawnLive && performance.now() - this.lastDraw >= this.everyMs;
  }

  private drawnLive = '';
  draw(): void {
    this.drawnKey = this.userKey();
    this.drawnLive = this.liveKey();
    this.lastDraw = performance.now();
    this.heatmap.render(this.input());
  }

  private input(forExport = false) {
    const r = this.store.current();
    const imp = r?.latestImportance;
    return { layers: imp?.layers ?? [], marked: r ? this.rule.marks(r) : new Map<string, number[]>(), selected: this.store.selectedLayers, focusRow: !forExport && document.activeElement === this.rows ? this.focusRow : -1 };
  }

  private savePng(): void {
    const r = this.store.current();
    if (!r) return;
    // Every layer, not only the rows the scroll box shows.
    const data = composePng(this.heatmap.renderAll(this.input(true)), `Importance ŝ per slot (step ${r.latestImportance?.step ?? '–'})`, `${runName(r)} (${r.model.method ?? '?'}, ${r.model.state})`, (ctx, x, y) => {
      ctx.fillStyle = cssVar('--vscode-foreground', '#ccc');
      ctx.font = `11px ${cssVar('--vscode-font-family', 'sans-serif')}`;
      ctx.textBaseline = 'middle';
      ctx.fillText('ŝ 0', x, y + 6);
      drawScale(ctx, x + 28, y, 200, 12);
      ctx.fillText(`${MAX_SHAT}+ (1 = the layer's mean; crossed: would fuse now)`, x + 234, y + 6);
      return 20;
    });
    save(this.store, `${filePrefix(this.store)}-importance.png`, data, 'base64', 'image/png', (s) => text(this.status, s));
  }
}
