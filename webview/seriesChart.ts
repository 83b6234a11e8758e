/**
 * One time-series chart (Chart.js) for any scalar of one or several runs: the loss chart and every metrics panel
 * are instances of it. Chart.js never sees a full series: each frame it gets a min-max decimation (two points per
 * pixel pair) of the typed arrays, kept incremental per line by a MinMaxIndex, with animation off, parsing off and
 * update('none').
 *
 * What a practitioner expects of the chart, and why it is here:
 * - zoom and pan on x (chartjs-plugin-zoom: wheel or drag a box to zoom, Shift+drag to pan, double-click resets);
 *   a zoomed view is decimated from the visible slice only, so zooming in shows the steps, not the envelope;
 * - an outlier-aware y range (the first steps' loss does not flatten the curve; see robustRange);
 * - x as step, seconds since the first step (0 at the first step), or wall-clock time;
 * - tooltips with units; log-y that fits the smallest positive value and says how many points (≤ 0) it hides;
 * - colours read from the theme at every draw (a theme switch redraws everything in the new colours).
 */
import {
  Chart, LineController, LineElement, PointElement, LinearScale, LogarithmicScale, Tooltip, Legend, ScatterController,
  type ChartDataset, type Plugin, type Scale, type TooltipItem,
} from 'chart.js';
import zoomPlugin from 'chartjs-plugin-zoom';
import { GridDecimator, type Envelope, type Point } from './minMaxIndex';
import { cssVar, formatNumber } from './dom';
import { niceAxis, robustRange } from './axisRange';

export { robustRange };

Chart.register(LineController, ScatterController, LineElement, PointElement, LinearScale, LogarithmicScale, Tooltip, Legend, zoomPlugin);

export type XAxis = 'step' | 'relative' | 'wall';
export interface ChartView { smoothing: number; logY: boolean; xAxis: XAxis }

/** One line (or, with points, a scatter) of one run. x/y/t are aligned typed-array views; t is ms since the epoch. */
export interface Line {
  /** Stable key of the line's cache (run id + series); `epoch` changes when its values were replaced (not appended). */
  key: string;
  epoch: number;
  label: string;
  color: string;
  step: ArrayLike<number>;
  time: ArrayLike<number>;
  y: ArrayLike<number>;
  /** ms of the run's first step: relative time 0. */
  t0: number;
  width?: number;
  alpha?: string;
  points?: boolean;
  /** A line that also marks each point with a dot (a few evals: each is a measurement, the line only joins them). */
  dots?: boolean;
  /** A smooth curve (the smoothed loss): stroked at its width even when dense (hairlines are for noisy envelopes). */
  smooth?: boolean;
  /** Not in the y range (a faint raw line under its smoothed one still shows; the range follows the smoothed). */
  ignoreInRange?: boolean;
  /** Points or dots that share a dense line's outlier-aware range instead of being always inside it (the loss
   * chart's evals: an eval at step 0, before any training, would otherwise flatten the training curve again). */
  robust?: boolean;
  /** Points drawn as rings (and a hollow legend box): a run's evals beside its smoothed line of the same colour. */
  hollow?: boolean;
}

/** A vertical line at a recomposition; hollow: it fused nothing (a dotted line under a hollow circle). */
export interface Marker { x: number; time: number; t0: number; dashed: boolean; color: string; hollow?: boolean; /** drawn by the line's top */ label?: string }

const markerPlugin: Plugin<'line'> = {
  id: 'srloraMarkers',
  afterDatasetsDraw(chart, _args, opts) {
    const { markers, xAxis } = opts as unknown as { markers: Marker[]; xAxis: XAxis };
    const { ctx, chartArea, scales } = chart;
    ctx.save();
    ctx.lineWidth = 1;
    ctx.globalAlpha = 0.7;
    for (const m of markers ?? []) {
      const px = scales.x.getPixelForValue(xOf(xAxis, m.x, m.time, m.t0));
      if (!(px >= chartArea.left && px <= chartArea.right)) continue;
      ctx.strokeStyle = m.color;
      ctx.setLineDash(m.hollow ? [1, 4] : m.dashed ? [4, 3] : []);
      ctx.beginPath();
      ctx.moveTo(px, chartArea.top + (m.hollow ? 8 : 0));
      ctx.lineTo(px, chartArea.bottom);
      ctx.stroke();
      if (m.label) {
        ctx.setLineDash([]);
        ctx.fillStyle = m.color;
        ctx.font = '10px sans-serif';
        ctx.textBaseline = 'top';
        // right of the line, unless that would leave the plot
        const w = ctx.measureText(m.label).width;
        ctx.textAlign = px + 3 + w <= chartArea.right ? 'left' : 'right';
        ctx.fillText(m.label, ctx.textAlign === 'left' ? px + 3 : px - 3, chartArea.top + 2);
      }
      if (m.hollow) {
        ctx.setLineDash([]);
        ctx.beginPath();
        ctx.arc(px, chartArea.top + 4, 3.5, 0, 2 * Math.PI);
        ctx.stroke();
      }
    }
    ctx.restore();
  },
};

/** What the axes are labelled, for tests: after each update (a resize updates too), not at every draw — a hover
 * redraws the chart on each mouse move (review). */
const labelsPlugin: Plugin<'line'> = {
  id: 'srloraLabels',
  afterUpdate(chart) {
    for (const axis of ['x', 'y'] as const) chart.canvas.dataset[`${axis}Labels`] = chart.scales[axis].ticks.map((t) => String(t.label ?? '')).filter((l) => l).join('|');
  },
};

/** A min-max band: the columns a dense line covers (see Envelope), drawn under the datasets as 1 px columns. */
interface Band { env: Envelope; color: string; lo: number; width: number; thickness: number }
/** Each chart's bands, kept beside its options (Chart.js wraps option objects in resolver proxies: slow for arrays). */
const bandsOf = new WeakMap<object, Band[]>();

const bandPlugin: Plugin<'line'> = {
  id: 'srloraBands',
  beforeDatasetsDraw(chart) {
    const bands = bandsOf.get(chart);
    if (!bands?.length) return;
    const { ctx, chartArea, scales } = chart;
    ctx.save();
    ctx.beginPath();
    ctx.rect(chartArea.left, chartArea.top, chartArea.right - chartArea.left, chartArea.bottom - chartArea.top);
    ctx.clip();
    for (const band of bands) {
      ctx.fillStyle = band.color;
      const { bucket, low, high, count } = band.env;
      for (let k = 0; k < count; k++) {
        const b = bucket[k];
        const left = Math.floor(scales.x.getPixelForValue(band.lo + b * band.width));
        const right = Math.floor(scales.x.getPixelForValue(band.lo + (b + 1) * band.width));
        const top = scales.y.getPixelForValue(high[k]), bottom = scales.y.getPixelForValue(low[k]);
        // At least the line's width tall: a flat stretch (min = max) is a line, not nothing.
        const hgt = Math.max(band.thickness, bottom - top);
        ctx.fillRect(left, (top + bottom) / 2 - hgt / 2, Math.max(1, right - left), hgt);
      }
    }
    ctx.restore();
  },
};

/** The x value of a point on the chosen axis: step, seconds since the run's first step (≥ 0), or epoch ms. */
export function xOf(axis: XAxis, step: number, time: number, t0: number): number {
  return axis === 'step' ? step : axis === 'relative' ? Math.max(0, (time - t0) / 1000) : time;
}

/** Seconds as a short duration (x: relative). */
export function formatSeconds(s: number): string {
  if (s < 120) return `${Math.round(s)} s`;
  if (s < 7200) return `${Math.floor(s / 60)} m ${String(Math.round(s % 60)).padStart(2, '0')} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} m`;
}

/** Epoch ms as local time of day (x: wall); the date too when the run spans days. */
export function formatWall(ms: number, withDate: boolean): string {
  const d = new Date(ms);
  const hms = `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}:${String(d.getSeconds()).padStart(2, '0')}`;
  return withDate ? `${d.getMonth() + 1}/${d.getDate()} ${hms}` : hms;
}

/**
 * The unit a scalar's name states ("units in the name", docs/protocol.md): a last segment after _ . / or - such as
 * MiB, GB, ms, s, %, W; the built-in series have known units. '' when none.
 */
export function unitOf(name: string): string {
  if (name === 'examplesPerSec') return 'examples/s';
  const m = /[_./-](KiB|MiB|GiB|KB|MB|GB|bytes|ms|s|%|pct|percent|W|C)$/i.exec(name);
  if (!m) return '';
  const u = m[1];
  return /^(pct|percent)$/i.test(u) ? '%' : u;
}

interface LineCache { epoch: number; grid: GridDecimator; x: Float64Array; xLen: number; xAxis: XAxis; nonPositive: number; counted: number }

export class SeriesChart {
  readonly chart: Chart<'line'>;
  private readonly cache = new Map<string, LineCache>();
  /** What the last draw hid on log-y (points ≤ 0), for the note under the chart. */
  hiddenNonPositive = 0;
  private themeKey = '';

  constructor(readonly canvas: HTMLCanvasElement, private yTitle: string, private readonly unit = '') {
    this.chart = new Chart(canvas, {
      type: 'line',
      data: { datasets: [] },
      plugins: [bandPlugin, markerPlugin, labelsPlugin],
      options: {
        animation: false, parsing: false, normalized: true, responsive: true, maintainAspectRatio: false, spanGaps: false,
        interaction: { mode: 'nearest', axis: 'x', intersect: false },
        elements: { point: { radius: 0 }, line: { borderWidth: 1.5 } },
        scales: {
          // The range is set (round numbers, or the zoom): the bounds are labelled only when they are ticks.
          x: { type: 'linear', title: { display: true, text: 'step' }, ticks: { includeBounds: false }, afterBuildTicks: (s) => { if (this.xTicks.length) s.ticks = this.xTicks.map((value) => ({ value })); } },
          // The range is set (outlier-aware, padded): its bounds are not labelled as ticks (they read 449.4, 9.9).
          y: { type: 'linear', title: { display: true, text: yTitle }, ticks: { includeBounds: false, autoSkip: false }, afterBuildTicks: (s) => this.setYTicks(s) },
        },
        plugins: {
          legend: { labels: { boxWidth: 12 } },
          tooltip: { callbacks: { title: (items) => this.tooltipTitle(items), label: (c) => `${c.dataset.label}: ${formatNumber(c.parsed.y, 4)}${this.unit ? ` ${this.unit}` : ''}` } },
          zoom: {
            // onZoom/onPan run right after the plugin's own update, at each wheel notch and pan move: the next draw
            // sets the x range from zoomRange, so it must already hold the new one. (onZoomComplete comes 250 ms
            // after a wheel zoom, debounced: a live draw in between put the whole axis back, and the zoom then
            // froze the axis there — new points ran off the right edge.)
            zoom: { wheel: { enabled: true, modifierKey: 'ctrl' }, drag: { enabled: true, threshold: 8 }, mode: 'x', onZoom: () => this.zoomedTo() },
            pan: { enabled: true, mode: 'x', modifierKey: 'shift', onPan: () => this.zoomedTo() },
          },
          // @ts-expect-error: options of our own plugin
          srloraMarkers: { markers: [], xAxis: 'step' },
        },
      },
    });
    canvas.addEventListener('dblclick', () => this.resetZoom());
  }

  /** Show the legend even for one line (comparing runs: it names the run). */
  legendAlways = false;
  private xAxis: XAxis = 'step';
  private axisKey = '';
  private wallWithDate = false;

  private tooltipTitle(items: TooltipItem<'line'>[]): string {
    const x = items[0]?.parsed.x;
    if (x === undefined || x === null) return '';
    return this.xAxis === 'step' ? `step ${x}` : this.xAxis === 'relative' ? `${formatSeconds(x)} since the first step` : formatWall(x, true);
  }

  /**
   * The x range the user zoomed or panned to (null: the whole run). Kept here, not asked of the plugin: its
   * isZoomedOrPanned compares against limits it stored at the first zoom, which live data outgrows.
   */
  private zoomRange: { min: number; max: number } | null = null;
  get zoomed(): boolean { return this.zoomRange !== null; }
  resetZoom(): void { this.chart.resetZoom?.('none'); this.zoomRange = null; this.viewChanged = true; }
  private zoomedTo(): void {
    const s = this.chart.scales.x;
    if (s) this.zoomRange = { min: s.min, max: s.max };
    this.viewChanged = true;
  }
  /** Zoomed, panned or reset since the last draw (the visible slice is decimated anew). */
  viewChanged = false;

  /** The colours of the theme in force; applied only when they changed (a theme switch). */
  private applyTheme(): boolean {
    const fg = cssVar('--vscode-foreground', '#ccc'), grid = cssVar('--vscode-editorWidget-border', '#444');
    const key = `${fg}|${grid}`;
    if (key === this.themeKey) return false;
    this.themeKey = key;
    const o = this.chart.options;
    // Set in place: Chart.js options are resolver proxies, which must not be spread into new objects.
    for (const axis of ['x', 'y'] as const) {
      const s = o.scales![axis] as { ticks: { color?: string }; grid: { color?: string }; title: { color?: string } };
      s.ticks.color = fg;
      s.grid.color = grid;
      s.title.color = fg;
    }
    o.plugins!.legend!.labels!.color = fg;
    o.color = fg;
    this.canvas.dataset.fg = fg; // what the axes and legend are drawn in (tests check a theme switch)
    return true;
  }

  /**
   * Rebuilds the datasets, decimated onto the x axis' pixel grid, and draws — unless `force` is false and what the
   * canvas would show is what it shows (every point at the same pixel, the same axes, lines and markers): a live
   * update of a long run moves nothing most of the time, and skipping it costs ~1 ms instead of a Chart.js update
   * and a raster. Returns whether it drew. Call at most once per frame.
   */
  render(lines: Line[], markers: Marker[], view: ChartView, force = true): boolean {
    if (this.applyTheme()) force = true;
    // A zoom is a range on the axis it was made on: on another (steps vs seconds vs wall-clock ms) it shows nothing.
    if (view.xAxis !== this.xAxis && this.zoomRange) { this.chart.resetZoom?.('none'); this.zoomRange = null; }
    this.xAxis = view.xAxis;
    const o = this.chart.options;
    const area = this.chart.chartArea;
    const plotW = Math.max(100, Math.round(area?.width || (this.canvas.clientWidth || 800) - 60));
    const plotH = Math.max(50, Math.round(area?.height || (this.canvas.clientHeight || 300) - 60));
    // Two points (min, max) per pixel column: each column's stroke spans its min to max, so a noisy series reads
    // as the solid band it is (buckets of 2 px left 1 px gaps: a barcode that suggested structure).
    const buckets = Math.max(50, plotW);
    const zoom = this.zoomRange;
    // x values on the chosen axis: the step array itself, or times extended as points arrive (never rebuilt).
    const xsOf: ArrayLike<number>[] = [];
    let dataMin = Infinity, dataMax = -Infinity;
    for (const line of lines) {
      const n = Math.min(line.y.length, line.step.length);
      let c = this.cache.get(line.key);
      if (!c || c.epoch !== line.epoch || c.xAxis !== view.xAxis || c.xLen > n || c.counted > n) {
        c = { epoch: line.epoch, grid: new GridDecimator(), x: new Float64Array(0), xLen: 0, xAxis: view.xAxis, nonPositive: 0, counted: 0 };
        this.cache.set(line.key, c);
      }
      let xs: ArrayLike<number>;
      if (view.xAxis === 'step') xs = line.step;
      else {
        if (c.x.length < n) { const next = new Float64Array(Math.max(n, c.x.length * 2)); next.set(c.x.subarray(0, c.xLen)); c.x = next; }
        for (let k = c.xLen; k < n; k++) c.x[k] = xOf(view.xAxis, line.step[k], line.time[k], line.t0);
        c.xLen = n;
        xs = c.x.subarray(0, n);
      }
      for (let k = c.counted; k < n; k++) if (!(line.y[k] > 0)) c.nonPositive++;
      c.counted = n;
      xsOf.push(xs);
      if (n) { dataMin = Math.min(dataMin, xs[0]); dataMax = Math.max(dataMax, xs[n - 1]); }
    }
    // The x axis: the zoomed range, or the data's extent widened to round numbers that change rarely (the grid
    // the lines are decimated onto stays put while points arrive, so only the newest buckets change).
    // A chart that draws dots (events, evals) gets ~6 px more on each side, so a dot at the first or last step is
    // whole, not cut in half by the axis' edge.
    const dotted = lines.some((l) => (l.points || l.dots) && l.y.length > 0);
    const padX = dotted ? (dataMax > dataMin ? ((dataMax - dataMin) * 6) / plotW : 0.5) : 0;
    // A chart of dots only (fused pairs, evals: a few measurements, each read off the axis) ends at labelled steps on
    // both sides, as its y axis does (a fused pair at step 30 sat left of the first label, 40). A dense line keeps the
    // finer bounds above: its decimation grid should move rarely while points arrive.
    const dotsOnly = view.xAxis === 'step' && lines.length > 0 && lines.every((l) => l.points || l.dots);
    // The labelled ticks are fitted to the data, not to the dots' padding: fitted to the padded range, evals at steps
    // 0..400 got an axis from −200 to 600 (FRESH8 F8); the axis reaches the ticks and the dots' few pixels, no further.
    const xNice = !zoom && dotsOnly && dataMin <= dataMax ? niceAxis({ min: dataMin, max: dataMax }, false, Math.max(2, Math.min(10, Math.floor(plotW / 70)))) : null;
    this.xTicks = xNice?.ticks ?? [];
    const axis = zoom ?? (xNice ? { min: Math.min(xNice.min, dataMin - padX), max: Math.max(xNice.max, dataMax + padX) } : null)
      ?? (dataMin <= dataMax ? niceBounds(dataMin - padX, dataMax + padX) : null);
    const datasets: ChartDataset<'line', Point[]>[] = [];
    const bands: Band[] = [];
    const inRange: number[] = [];
    // The points of a sparse series (events, or a few values): always inside the y range (robustRange's keep).
    const keep: number[] = [];
    let hidden = 0;
    lines.forEach((line, li) => {
      const xs = xsOf[li];
      const c = this.cache.get(line.key)!;
      const y = line.y.length <= xs.length ? line.y : ArrayBuffer.isView(line.y) ? (line.y as Float64Array).subarray(0, xs.length) : Array.from({ length: xs.length }, (_, i) => line.y[i]);
      const n = y.length;
      let pts: Point[];
      let band = false;
      if (line.points || n <= 2 * buckets || !axis) pts = Array.from({ length: n }, (_, i) => ({ x: xs[i], y: y[i] }));
      else {
        pts = c.grid.decimate(xs, y, axis.min, axis.max, buckets);
        // A decimated line is filled as its band of 1 px columns (min to max, at least its width tall), not stroked:
        // a zigzag of ~1,800 segments across the plot took ~7 ms to rasterise on a software canvas (a 2 px smoothed
        // loss that still wiggles ~10 ms), the band ~0.5 ms. Log-y (which hides values ≤ 0) is stroked.
        band = !view.logY;
        if (band) bands.push({ env: c.grid.envelope(), color: line.alpha ? line.color + line.alpha : line.color, lo: axis.min, width: (axis.max - axis.min) / buckets, thickness: line.width ?? 1 });
      }
      // A line as dense as the canvas's pixels (a min-max envelope, or a raw series about as long as the width) is
      // stroked as a hairline: a software canvas strokes a zigzag of ~1,000 segments 1.5–2 px wide in 6–15 ms and
      // a 1 px one in ~1 ms (Skia's hairline path). A smooth line (the smoothed loss) keeps its width: it is cheap.
      const dense = !line.points && !line.smooth && pts.length > buckets / 2;
      if (view.logY && c.nonPositive) { hidden += c.nonPositive; pts = pts.map((p) => (p.y > 0 ? p : { x: p.x, y: NaN })); }
      const sparse = (line.points || line.dots) && !line.robust;
      if (!line.ignoreInRange) for (const p of pts) if (!zoom || (p.x >= zoom.min && p.x <= zoom.max)) (sparse ? keep : inRange).push(p.y);
      datasets.push(line.points
        ? { label: line.label, data: pts, borderColor: line.color, backgroundColor: line.hollow ? 'transparent' : line.color, borderWidth: line.hollow ? 2 : 1, pointRadius: 3, showLine: false }
        : { label: line.label, data: pts, borderColor: line.alpha ? line.color + line.alpha : line.color, backgroundColor: line.alpha ? line.color + line.alpha : line.color, borderWidth: dense ? 1 : line.width ?? 1.5, pointRadius: line.dots ? 2.5 : band ? 0 : isolatedRadii(pts, 2.5), showLine: !band });
    });
    this.hiddenNonPositive = view.logY ? hidden : 0;
    const fit = robustRange(inRange, view.logY, keep);
    // The axis widened to ticks (one per ~40 px at most): the lowest and highest fitted points lie between labels.
    // No points yet: an empty 0–1 (1–10 on log-y) axis with as few labels (Chart.js's own put eleven on it).
    const range = niceAxis(fit ?? (view.logY ? { min: 1, max: 10 } : { min: 0, max: 1 }), view.logY, Math.max(2, Math.min(10, Math.floor(plotH / 40))));
    this.yTicks = range.ticks;
    this.yLabels = new Set(range.labels);
    this.wallWithDate = dataMax - dataMin > 20 * 3600_000 && view.xAxis === 'wall';
    // What the canvas would show: each point's pixel, the axes' ranges to a pixel, and everything else drawn.
    const shown = this.shownKey(datasets, markers, view, axis, range, plotW, plotH);
    if (!force && shown === this.drawnKey) return false;
    this.drawnKey = shown;
    const yType = view.logY ? 'logarithmic' : 'linear';
    const yo = o.scales!.y as { type: string; min?: number; max?: number };
    if (yo.type !== yType) {
      const fg = cssVar('--vscode-foreground', '#ccc'), grid = cssVar('--vscode-editorWidget-border', '#444');
      // Log-y labels round values only (Chart.js labelled its top ticks whatever they were: "289.8", "2.47").
      // Our ticks (niceAxis), each label kept: Chart.js's autoSkip dropped the axis' top label ("20" of 2..20).
      const ticks = view.logY ? { color: fg, includeBounds: false, autoSkip: false, callback: (v: number | string) => (this.yLabels.has(Number(v)) ? String(Number(Number(v).toPrecision(3))) : '') }
        : { color: fg, includeBounds: false, autoSkip: false };
      o.scales!.y = { type: yType, title: { display: true, text: this.yTitle, color: fg }, ticks, grid: { color: grid }, afterBuildTicks: (s: Scale) => this.setYTicks(s) } as never;
    }
    (o.scales!.y as { min?: number; max?: number }).min = range.min;
    (o.scales!.y as { min?: number; max?: number }).max = range.max;
    const x = o.scales!.x as { min?: number; max?: number; title: { text: string }; ticks: { callback?: (v: number | string) => string } };
    x.min = axis?.min;
    x.max = axis?.max;
    const axisKey = `${view.xAxis}:${this.wallWithDate}`;
    x.title.text = view.xAxis === 'step' ? 'step' : view.xAxis === 'relative' ? 'time since the first step' : 'wall-clock time';
    if (axisKey !== this.axisKey) {
      this.axisKey = axisKey;
      // Steps are whole numbers: a fractional tick (a chart of one or two steps) gets no label, not a rounded repeat.
      x.ticks.callback = view.xAxis === 'step' ? (v) => (Number.isInteger(Number(v)) ? String(v) : '')
        : view.xAxis === 'relative' ? (v) => formatSeconds(Number(v)) : (v) => formatWall(Number(v), this.wallWithDate);
    }
    (o.plugins as unknown as Record<string, unknown>).srloraMarkers = { markers, xAxis: view.xAxis };
    bandsOf.set(this.chart, bands);
    // The axes' extent, for screen readers' companions and tests.
    let xMin = Infinity;
    for (const d of datasets) if (d.data.length) xMin = Math.min(xMin, d.data[0].x);
    // data-draws counts the redraws (tests check that off-screen and unchanged charts are not drawn).
    // yFit: the range the points need (outliers of a dense line aside); yTicks: where the axis puts its ticks.
    Object.assign(this.canvas.dataset, { logY: view.logY ? '1' : '0', xMin: String(xMin), yMin: String(range.min), yMax: String(range.max),
      yFit: fit ? `${fit.min},${fit.max}` : '', yTicks: this.yTicks.join(','),
      axis: axis ? `${axis.min},${axis.max}` : '', draws: String(Number(this.canvas.dataset.draws ?? 0) + 1) });
    this.chart.data.datasets = datasets;
    // One line of one run: its heading already names it (a legend of one repeated the title and took the plot's
    // height). Comparing runs, a chart where one run has data yet still says whose line it is.
    const legend = datasets.length > 1 || this.legendAlways;
    o.plugins!.legend!.display = legend;
    this.canvas.dataset.legend = legend ? '1' : '0';
    // Each legend entry's box, for tests: label, fill and stroke.
    this.canvas.dataset.legendBoxes = datasets.map((d) => `${d.label}=${String(d.backgroundColor)}/${String(d.borderColor)}`).join('|');
    this.chart.update('none');
    // How many lines are joined (not dots only), for tests; what the y axis is labelled: labelsPlugin.
    this.canvas.dataset.joined = String(lines.filter((l) => !l.points && l.y.length > 1).length);
    return true;
  }

  private drawnKey = '';
  /** The y ticks niceAxis chose for the last draw (Chart.js's own, from a set range, could start above its lowest points). */
  private yTicks: number[] = [];
  private yLabels = new Set<number>();
  /** The x ticks of a chart of dots only (niceAxis), else none: Chart.js's own. */
  private xTicks: number[] = [];
  private setYTicks(scale: Scale): void { if (this.yTicks.length) scale.ticks = this.yTicks.map((value) => ({ value })); }

  /** A key of what the canvas shows: equal keys draw the same pixels. */
  private shownKey(datasets: ChartDataset<'line', Point[]>[], markers: Marker[], view: ChartView, axis: { min: number; max: number } | null, range: { min: number; max: number } | null, plotW: number, plotH: number): string {
    const parts: (string | number)[] = [view.xAxis, view.logY ? 1 : 0, plotW, plotH, this.wallWithDate ? 1 : 0, markers.map((m) => `${m.x}:${m.time}:${m.dashed}:${m.color}:${m.hollow ? 1 : 0}:${m.label ?? ''}`).join()];
    const ax = axis ? [axis.min, axis.max] : [0, 1];
    const f = (v: number) => (view.logY ? Math.log10(Math.max(v, Number.MIN_VALUE)) : v);
    const ry = range ? [f(range.min), f(range.max)] : [0, 1];
    const ySpan = ry[1] - ry[0] || 1, xSpan = ax[1] - ax[0] || 1;
    parts.push(...ax, Math.round((ry[0] / ySpan) * plotH), Math.round((ry[1] / ySpan) * plotH)); // the y range to a pixel
    for (const d of datasets) {
      parts.push(`${d.label}|${String(d.borderColor)}|${String(d.borderWidth)}|${d.data.length}`);
      let h = 0;
      for (const p of d.data) {
        const px = Math.round(((p.x - ax[0]) / xSpan) * plotW), py = Number.isFinite(p.y) ? Math.round(((f(p.y) - ry[0]) / ySpan) * plotH) : -1e9;
        h = (Math.imul(h, 31) + px) | 0;
        h = (Math.imul(h, 31) + py) | 0;
      }
      parts.push(h);
    }
    return parts.join(';');
  }

  setYTitle(title: string): void {
    this.yTitle = title;
    (this.chart.options.scales!.y as { title: { text: string } }).title.text = title;
  }

  dispose(): void { this.chart.destroy(); }
}

/**
 * Point radii for a line drawn without dots: `r` at a point no segment reaches (a one-point series — a run that
 * failed at step 2 —, or a value between gaps), 0 elsewhere; a plain 0 when there is none. A line of one point is not
 * drawn at all by a canvas: the series looked empty though it had data (FRESH8 F6).
 */
export function isolatedRadii(pts: ArrayLike<{ y: number }>, r: number): number | number[] {
  const ok = (i: number) => i >= 0 && i < pts.length && Number.isFinite(pts[i].y);
  let any = false;
  const radii = Array.from({ length: pts.length }, (_, i) => (ok(i) && !ok(i - 1) && !ok(i + 1) ? ((any = true), r) : 0));
  return any ? radii : 0;
}

/** Min-max decimation of the points with x in [lo, hi] (a zoomed view: only what is visible, at full detail). */
export function decimateSlice(x: ArrayLike<number>, y: ArrayLike<number>, lo: number, hi: number, buckets: number): Point[] {
  const n = y.length;
  const first = (v: number) => { let a = 0, b = n; while (a < b) { const m = (a + b) >> 1; if (x[m] < v) a = m + 1; else b = m; } return a; };
  const start = Math.max(0, first(lo) - 1), end = Math.min(n, first(hi) + 2);
  const out: Point[] = [];
  if (end - start <= 2 * buckets) { for (let i = start; i < end; i++) out.push({ x: x[i], y: y[i] }); return out; }
  const span = (x[end - 1] - x[start]) || 1;
  let i = start;
  for (let b = 0; b < buckets && i < end; b++) {
    const edge = x[start] + ((b + 1) * span) / buckets;
    let mn = i, mx = i;
    while (i < end && (x[i] <= edge || b === buckets - 1)) { if (y[i] < y[mn]) mn = i; if (y[i] > y[mx]) mx = i; i++; }
    const [a, c] = mn <= mx ? [mn, mx] : [mx, mn];
    out.push({ x: x[a], y: y[a] });
    if (c !== a) out.push({ x: x[c], y: y[c] });
  }
  return out;
}

/**
 * The x axis for data in [min, max]: widened to multiples of a quarter of a round tick step (1, 2 or 5 × 10^k, about
 * ten ticks), so it changes only every few percent of growth and leaves at most ~5 % empty.
 */
export function niceBounds(min: number, max: number): { min: number; max: number } {
  if (!(max > min)) { const pad = Math.abs(min) * 0.05 || 1; return { min: min - pad, max: max + pad }; }
  const raw = (max - min) / 10;
  const e = 10 ** Math.floor(Math.log10(raw));
  const f = raw / e;
  const unit = ((f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * e) / 4;
  return { min: Math.floor(min / unit) * unit, max: Math.ceil(max / unit) * unit };
}
