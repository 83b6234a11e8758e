/** The slot history of one layer (chosen here or by selecting a heatmap row). */
import type { Store } from '../store';
import { drawSlotHistory } from '../slotHistory';
import { h, text } from '../dom';
import { firstComparedRun, section, type Field, type Panel } from './panel';

export class HistoryPanel implements Panel {
  readonly element: HTMLElement;
  private readonly select = h('vscode-single-select', { 'aria-label': 'Layer for the slot history' }) as Field;
  private readonly canvas = h('canvas', { class: 'history', role: 'img', 'aria-label': 'Slot history of the selected layer' }) as HTMLCanvasElement;
  private optionsKey = '';
  private drawnKey = '';
  private themeKey = 0;
  private readonly info = h('span', { class: 'muted' });

  constructor(private readonly store: Store) {
    this.element = section('Slot history', h('div', { class: 'row' }, this.select, this.info), this.canvas);
    this.select.addEventListener('change', () => { if (this.select.value) { store.historyLayer = this.select.value; store.changed(); } });
  }

  update(): void {
    const r = this.store.current();
    const names = r?.model.layers.map((l) => l.name) ?? [];
    this.store.historyLayer ??= names[0] ?? null;
    const key = names.join('|') + '#' + this.store.historyLayer;
    if (key !== this.optionsKey) {
      this.optionsKey = key;
      // `selected` on the shown layer's option: the select re-reads its options after they change.
      this.select.replaceChildren(...names.map((n) => h('vscode-option', { value: n, selected: n === this.store.historyLayer }, n)));
    }
    if (this.store.historyLayer && this.select.value !== this.store.historyLayer) this.select.value = this.store.historyLayer;
    // Compare: the first run's history, and it says so (as the heatmap and the recompositions do).
    text(this.info, `${this.store.focus.length > 1 ? `showing ${firstComparedRun(r)}; ` : ''}time runs left to right; red: a slot took a new direction`);
  }

  retheme(): void { this.themeKey++; }

  private key(): string { const r = this.store.current(); return `${r?.runId}:${r?.resets}:${r?.framesVersion}:${this.store.historyLayer}:${this.themeKey}`; }
  /** The history spans the whole run: live snapshots redraw it at most twice a second. */
  dirty(): boolean {
    const k = this.key();
    if (k === this.drawnKey) return false;
    return k.split(':').slice(4).join() !== this.drawnKey.split(':').slice(4).join() || k.split(':')[0] !== this.drawnKey.split(':')[0] || performance.now() - this.lastDraw >= 500;
  }
  private lastDraw = 0;
  draw(): void {
    this.drawnKey = this.key();
    this.lastDraw = performance.now();
    const r = this.store.current();
    if (r && this.store.historyLayer) drawSlotHistory(this.canvas, r.frames, this.store.historyLayer);
  }
}
