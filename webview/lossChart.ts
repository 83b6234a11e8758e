/**
 * The loss chart (Chart.js): raw and smoothed training loss, eval loss, recomposition markers (scheduled solid,
 * forced dashed), log-y, x = step or relative time, several runs overlaid for compare. Chart.js never sees the full
 * series: each frame it gets a min-max decimation (two points per pixel column) of the typed arrays, with
 * animation off, parsing off, normalized data and update('none').
 */
import {
  Chart, LineController, LineElement, PointElement, LinearScale, LogarithmicScale, Tooltip, Legend, ScatterController,
  type ChartDataset, type Plugin,
} from 'chart.js';
import type { RunData } from './runData';
import { cssVar } from './dom';
import { MinMaxIndex, type Point } from './minMaxIndex';

Chart.register(LineController, ScatterController, LineElement, PointElement, LinearScale, LogarithmicScale, Tooltip, Legend);

export interface LossView { smoothing: number; logY: boolean; xAxis: 'step' | 'time' }

/**
 * EMA with bias correction (as TensorBoard's smoothing): a_t = β a_{t−1} + (1−β) y_t, s_t = a_t / (1 − β^t).
 * Incremental: appending points costs only the new points (the state is kept between calls).
 */
export class DebiasedEma {
  out = new Float64Array(0);
  private length = 0;
  private acc = 0;
  private w = 0;

  constructor(readonly beta: number) {}

  update(y: ArrayLike<number>): Float64Array {
    if (y.length < this.length) { this.length = 0; this.acc = 0; this.w = 0; }
    if (this.out.length < y.length) {
      const next = new Float64Array(Math.max(y.length, this.out.length * 2));
      next.set(this.out.subarray(0, this.length));
      this.out = next;
    }
    const b = this.beta;
    for (let i = this.length; i < y.length; i++) {
      this.acc = b * this.acc + (1 - b) * y[i];
      this.w = b * this.w + (1 - b);
      this.out[i] = this.w > 0 ? this.acc / this.w : y[i];
    }
    this.length = y.length;
    return this.out.subarray(0, this.length);
  }
}


const PALETTE = ['--vscode-charts-blue', '--vscode-charts-orange', '--vscode-charts-green', '--vscode-charts-purple', '--vscode-charts-red', '--vscode-charts-yellow'];
const FALLBACK = ['#3794ff', '#d18616', '#89d185', '#b180d7', '#f14c4c', '#cca700'];

interface Markers { runs: RunData[]; xAxis: 'step' | 'time' }

const recompositionMarkers: Plugin<'line'> = {
  id: 'srloraRecompositions',
  afterDatasetsDraw(chart, _args, opts) {
    const { runs, xAxis } = opts as unknown as Markers;
    const { ctx, chartArea, scales } = chart;
    const x = scales.x;
    ctx.save();
    ctx.lineWidth = 1;
    for (const run of runs ?? []) {
      const t0 = run.time.length ? run.time.data[0] : 0;
      for (const r of run.recompositions) {
        if (!r.layers.some((l) => l.slots.length > 0)) continue;
        const v = xAxis === 'time' ? (r.time - t0) / 1000 : r.step;
        const px = x.getPixelForValue(v);
        if (px < chartArea.left || px > chartArea.right) continue;
        ctx.strokeStyle = r.trigger === 'forced' ? cssVar('--vscode-charts-red', '#f14c4c') : cssVar('--vscode-charts-purple', '#b180d7');
        ctx.setLineDash(r.trigger === 'forced' ? [4, 3] : []);
        ctx.globalAlpha = 0.7;
        ctx.beginPath();
        ctx.moveTo(px, chartArea.top);
        ctx.lineTo(px, chartArea.bottom);
        ctx.stroke();
      }
    }
    ctx.restore();
  },
};

export class LossChart {
  readonly chart: Chart<'line'>;
  private cache = new Map<string, { resets: number; ema: DebiasedEma; raw: MinMaxIndex; smooth: MinMaxIndex; relTime: Float64Array; relLen: number }>();

  constructor(readonly canvas: HTMLCanvasElement) {
    const fg = cssVar('--vscode-foreground', '#ccc'), grid = cssVar('--vscode-editorWidget-border', '#444');
    this.chart = new Chart(canvas, {
      type: 'line',
      data: { datasets: [] },
      plugins: [recompositionMarkers],
      options: {
        animation: false, parsing: false, normalized: true, responsive: true, maintainAspectRatio: false,
        interaction: { mode: 'nearest', axis: 'x', intersect: false },
        elements: { point: { radius: 0 }, line: { borderWidth: 1.5 } },
        scales: {
          x: { type: 'linear', title: { display: true, text: 'step', color: fg }, ticks: { color: fg }, grid: { color: grid } },
          y: { type: 'linear', title: { display: true, text: 'loss', color: fg }, ticks: { color: fg }, grid: { color: grid } },
        },
        plugins: {
          legend: { labels: { color: fg, boxWidth: 12 } },
          tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${(c.parsed.y ?? 0).toPrecision(4)}` } },
          // @ts-expect-error: options of our own plugin
          srloraRecompositions: { runs: [], xAxis: 'step' },
        },
      },
    });
  }

  /** Rebuilds the datasets from the runs (decimated to the canvas width); call at most once per frame. */
  render(runs: RunData[], view: LossView): void {
    // One min-max pair per two pixels: the envelope stays exact to the pixel pair, Chart.js draws half the points.
    const buckets = Math.max(100, Math.floor((this.canvas.clientWidth || 800) / 2));
    const compare = runs.length > 1;
    const datasets: ChartDataset<'line', Point[]>[] = [];
    runs.forEach((run, i) => {
      const color = cssVar(PALETTE[i % PALETTE.length], FALLBACK[i % FALLBACK.length]);
      const n = run.step.length;
      const t0 = n ? run.time.data[0] : 0;
      const raw = run.loss.view();
      const beta = view.smoothing;
      let c = this.cache.get(run.runId);
      if (!c || c.resets !== run.resets || c.ema.beta !== beta) {
        c = { resets: run.resets, ema: new DebiasedEma(beta), raw: new MinMaxIndex(), smooth: new MinMaxIndex(), relTime: new Float64Array(0), relLen: 0 };
        this.cache.set(run.runId, c);
      }
      let xs: ArrayLike<number> = run.step.view();
      if (view.xAxis === 'time') {
        // Seconds since the start, extended as points arrive (never rebuilt for the whole series).
        if (c.relTime.length < n) { const next = new Float64Array(Math.max(n, c.relTime.length * 2)); next.set(c.relTime.subarray(0, c.relLen)); c.relTime = next; }
        for (let k = c.relLen; k < n; k++) c.relTime[k] = (run.time.data[k] - t0) / 1000;
        c.relLen = n;
        xs = c.relTime.subarray(0, n);
      }
      const smooth = beta > 0 ? c.ema.update(raw) : raw;
      const name = compare ? `${run.model.name} (${run.model.method ?? '?'})` : 'train';
      datasets.push({ label: `${name} raw`, data: c.raw.decimate(xs, raw, buckets), borderColor: color + '55', borderWidth: 1, pointRadius: 0 });
      if (beta > 0) datasets.push({ label: `${name} smoothed`, data: c.smooth.decimate(xs, smooth, buckets), borderColor: color, borderWidth: 2, pointRadius: 0 });
      const evalPts = run.evals.map((e) => ({ x: view.xAxis === 'time' ? (e.time - t0) / 1000 : e.step, y: e.loss }));
      const evalColor = compare ? color : cssVar('--vscode-charts-green', '#89d185'); // compared runs: each its own colour
      datasets.push({
        label: `${compare ? `${run.model.name} ` : ''}eval`, data: evalPts, borderColor: evalColor,
        backgroundColor: evalColor, pointRadius: 3, showLine: false,
      });
    });
    // What the canvas shows, for screen readers (and tests): one entry per run.
    this.canvas.dataset.runs = String(runs.length);
    this.canvas.setAttribute('aria-label', `Loss chart: ${runs.map((r) => {
      const n = r.loss.length;
      return `${r.model.name} (${r.model.method ?? '?'}), ${n} steps${n ? `, last loss ${r.loss.data[n - 1].toPrecision(4)}` : ''}`;
    }).join('; ') || 'no run'}`);
    const o = this.chart.options;
    const yType = view.logY ? 'logarithmic' : 'linear';
    if (o.scales!.y!.type !== yType) o.scales!.y = { ...o.scales!.y, type: yType } as never;
    (o.scales!.x as { title: { text: string } }).title.text = view.xAxis === 'time' ? 'seconds since start' : 'step';
    (o.plugins as unknown as Record<string, Markers>).srloraRecompositions = { runs, xAxis: view.xAxis };
    this.chart.data.datasets = datasets;
    this.chart.update('none');
  }

  dispose(): void {
    this.chart.destroy();
  }
}
