/**
 * A chart panel: one SeriesChart with its title, the shared view controls' effect (x axis, log-y, smoothing), a
 * log-y note, zoom reset, and PNG/CSV export. The loss panel and every metric panel are ChartPanels that differ
 * only in the lines they draw (`lines`).
 */
import type { Store } from '../store';
import type { RunData } from '../runData';
import { SeriesChart, unitOf, type Line } from '../seriesChart';
import { h, text } from '../dom';
import { button, filePrefix, runColor, runName, type Panel } from './panel';
import { recompositionMarkers, resumeMarkers } from './markers';
export { recompositionMarkers };
import { composePng, save } from './exporting';

export interface ChartSpec {
  /** Stable key (what the chooser persists): 'loss', 'lr', 'examplesPerSec', 'scalar:NAME', 'eval:NAME'. */
  key: string;
  title: string;
  /** The series' name as sent, shown small beside a title that differs from it (people grep logs for it). */
  caption?: string;
  /** What the series measures (the heading's tooltip). */
  description?: string;
  yTitle: string;
  unit: string;
  lines(run: RunData, index: number, compare: boolean, smoothing: number): Line[];
  csv?(run: RunData): string;
  /**
   * What the chart draws from, as a key: live data redraws only when it changed (a chart of evals or recompositions
   * need not redraw for every metrics row). Absent: any change of the store.
   */
  dataKey?(runs: RunData[]): string;
  /** What the note under an empty chart says (why there is nothing to draw). */
  emptyNote?(runs: RunData[]): string;
  /** What the note under a chart with data says (compare: whose data a one-run chart shows). */
  note?(runs: RunData[]): string;
}

export class ChartPanel implements Panel {
  readonly element: HTMLElement;
  readonly canvas = h('canvas', {}) as HTMLCanvasElement;
  readonly chart: SeriesChart;
  private readonly note = h('span', { class: 'muted chart-note', 'aria-live': 'polite' });
  private readonly status = h('span', { class: 'muted' });
  private readonly reset = button('Reset zoom', 'Reset the zoom', () => this.chart.resetZoom());
  private drawn = -1;

  constructor(private readonly store: Store, readonly spec: ChartSpec, extraControls: (Node | null)[] = [], big = false, private readonly liveEveryMs = 500) {
    this.canvas.setAttribute('aria-label', spec.title);
    this.canvas.setAttribute('role', 'img');
    this.element = h('section', { class: `panel chart-panel${big ? ' big' : ''}`, 'aria-label': spec.title, 'data-metric': spec.key },
      h('h2', { title: spec.caption ? [spec.caption, spec.description].filter(Boolean).join(': ') : undefined }, spec.title,
        spec.caption ? h('code', { class: 'metric-key' }, spec.caption) : null),
      h('div', { class: 'chart-wrap' }, this.canvas),
      h('div', { class: 'row' }, ...extraControls, this.reset,
        button('PNG', `Save the ${spec.title} chart as PNG`, () => this.savePng()),
        spec.csv ? button('CSV', spec.key === 'loss' ? 'Save the metrics as CSV' : `Save ${spec.title} as CSV`, () => this.saveCsv()) : null,
        this.note, this.status));
    this.chart = new SeriesChart(this.canvas, spec.yTitle, spec.unit);
    this.reset.disabled = true; // nothing is zoomed yet (a chart off screen may not draw for a while)
  }

  /**
   * Redraw at once for what the user did (view, focus, zoom, theme); for live data at most every liveEveryMs, so
   * that with every panel live the page's drawing stays a small share of each second.
   */
  dirty(): boolean {
    if (this.chart.viewChanged || this.store.userVersion !== this.drawnUser) return true;
    if (this.store.version === this.drawn) return false;
    if (this.spec.dataKey && this.spec.dataKey(this.store.focused()) === this.drawnData) { this.drawn = this.store.version; return false; }
    // Live data: at most every liveEveryMs, and never more than ~1/8 of the time for this chart (a slow machine or a
    // huge run draws less often rather than dropping every frame).
    return performance.now() - this.lastDraw >= Math.max(this.liveEveryMs, 8 * this.lastCost);
  }
  urgent(): boolean { return this.chart.viewChanged || this.store.userVersion !== this.drawnUser; }
  private drawnData = '';
  private lastCost = 0;
  private drawnUser = -1;
  private lastDraw = 0;

  update(): void { /* drawing only */ }

  retheme(): void { this.drawnUser = -1; }

  setYTitle(title: string): void { this.chart.setYTitle(title); }

  /** Returns whether it drew (a live update that changes no pixel is skipped, cheaply). */
  draw(): boolean {
    const t0 = performance.now();
    const drew = this.drawOnce(this.urgent());
    if (drew) this.lastCost = performance.now() - t0;
    return drew;
  }

  private drawOnce(force = true): boolean {
    this.drawn = this.store.version;
    this.drawnData = this.spec.dataKey?.(this.store.focused()) ?? '';
    this.drawnUser = this.store.userVersion;
    this.lastDraw = performance.now();
    this.chart.viewChanged = false;
    const runs = this.store.focused();
    const lines = this.lines(runs);
    this.chart.legendAlways = runs.length > 1;
    const drew = this.chart.render(lines, this.spec.key === 'loss' || runs.length ? [...recompositionMarkers(runs), ...resumeMarkers(runs)] : [], this.store.view, force);
    (this.reset as HTMLElement & { disabled: boolean }).disabled = !this.chart.zoomed;
    this.label(runs, lines, this.chart.hiddenNonPositive);
    return drew;
  }

  private lines(runs: RunData[]): Line[] {
    const compare = runs.length > 1;
    return runs.flatMap((r, i) => this.spec.lines(r, i, compare, this.store.view.smoothing));
  }

  /** Off screen: the note and the label follow the data without a draw (the canvas is drawn when it shows). */
  describe(): void {
    const runs = this.store.focused();
    const lines = this.lines(runs);
    let hidden = 0;
    if (this.store.view.logY) for (const l of lines) for (let k = 0; k < l.y.length; k++) if (!(l.y[k] > 0)) hidden++;
    this.label(runs, lines, hidden);
  }

  private label(runs: RunData[], lines: Line[], hiddenNonPositive: number): void {
    const empty = lines.every((l) => l.y.length === 0);
    text(this.note, empty && runs.length && this.spec.emptyNote ? this.spec.emptyNote(runs)
      : [this.spec.note?.(runs) ?? '', hiddenNonPositive ? `log y hides ${hiddenNonPositive} point${hiddenNonPositive === 1 ? '' : 's'} ≤ 0` : ''].filter(Boolean).join('; '));
    // What the canvas shows, for screen readers (and tests): one entry per run.
    this.canvas.dataset.runs = String(runs.length);
    this.canvas.setAttribute('aria-label', `${this.spec.title} chart: ${runs.map((r) => {
      const own = lines.filter((l) => l.key.startsWith(`${r.runId}|`));
      const y = (own.find((l) => !l.points) ?? own[0])?.y; // a chart of points only (fused pairs) names its first set
      const n = y?.length ?? 0;
      return `${runName(r)} (${r.model.method ?? '?'}), ${n} ${n === 1 ? 'point' : 'points'}${n && y ? `, last ${y[n - 1].toPrecision(4)}${this.spec.unit ? ` ${this.spec.unit}` : ''}` : ''}`;
    }).join('; ') || 'no run'}`);
  }

  private savePng(): void {
    this.drawOnce(); // an off-screen chart may not have drawn the latest data
    const runs = this.store.focused();
    const data = composePng(this.canvas, this.spec.caption ? `${this.spec.title} (${this.spec.caption})` : this.spec.title, runs.map((r) => `${runName(r)} (${r.model.method ?? '?'}, ${r.model.state}, step ${r.model.step})`).join(' · '));
    save(this.store, `${filePrefix(this.store)}-${this.spec.key.replace(/[^\w.-]+/g, '_')}.png`, data, 'base64', 'image/png', (s) => text(this.status, s));
  }

  private saveCsv(): void {
    const r = this.store.current();
    if (!r || !this.spec.csv) return;
    save(this.store, `${filePrefix(this.store)}-${this.spec.key === 'loss' ? 'metrics' : this.spec.key.replace(/[^\w.-]+/g, '_')}.csv`, this.spec.csv(r), 'utf8', 'text/csv', (s) => text(this.status, s));
  }
}

/** The lines of a Track (a named scalar or an eval metric) of one run. */
export function trackLine(r: RunData, i: number, compare: boolean, name: string, label: string, track: { step: { data: Float64Array }; time: { data: Float64Array }; value: { data: Float64Array }; length: number; cuts: number } | undefined, points = false): Line[] {
  if (!track) return [];
  const n = track.length;
  return [{
    key: `${r.runId}|${name}`, epoch: r.resets * 1000 + track.cuts, label: compare ? `${runName(r)}${label ? ` ${label}` : ''}` : label || name, color: runColor(compare ? i : 0),
    step: track.step.data.subarray(0, n), time: track.time.data.subarray(0, n), y: track.value.data.subarray(0, n), t0: r.time.length ? r.time.data[0] : 0, points,
  }];
}

export { unitOf };
