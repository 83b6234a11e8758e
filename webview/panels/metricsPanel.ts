/**
 * The loss chart, and a chart for every other scalar the trainer sends: learning rate, examples/s, each named
 * scalar of the metrics rows (grad norm, memory, a user trainer's own), eval loss and each eval metric. The user
 * picks which metric panels show (the choice persists); a metric that appears later gets its panel then.
 */
import type { Store } from '../store';
import type { RunData } from '../runData';
import { DebiasedEma } from '../smoothing';
import { metricsCsv } from '../exportCsv';
import { cssVar, h, text } from '../dom';
import type { Line } from '../seriesChart';
import { ChartPanel, trackLine, unitOf, type ChartSpec } from './chartPanel';
import { runColor, runName, type Panel } from './panel';
import { SCALARS } from '../../src/protocol/scalars';

const SCALAR_BY_NAME = new Map(SCALARS.map((s) => [s.name, s]));

/** Per run: its smoothing state (incremental), rebuilt when the run was reset or β changed. */
const emas = new WeakMap<RunData, { resets: number; ema: DebiasedEma }>();

export const lossSpec: ChartSpec = {
  key: 'loss', title: 'Loss', yTitle: 'loss', unit: '',
  csv: metricsCsv,
  lines(r, i, compare, beta) {
    const n = r.step.length, t0 = n ? r.time.data[0] : 0;
    const color = runColor(compare ? i : 0);
    const name = compare ? `${runName(r)} (${r.model.method ?? '?'})` : 'train';
    const base = { step: r.step.view(), time: r.time.view(), t0, epoch: r.resets };
    const out: Line[] = [{ ...base, key: `${r.runId}|loss`, label: `${name} raw`, color, y: r.loss.view(), width: 1, alpha: beta > 0 ? '55' : undefined }];
    if (beta > 0) {
      let e = emas.get(r);
      if (!e || e.resets !== r.resets || e.ema.beta !== beta) { e = { resets: r.resets, ema: new DebiasedEma(beta) }; emas.set(r, e); }
      out.push({ ...base, key: `${r.runId}|loss-smooth|${beta}`, label: `${name} smoothed`, color, y: e.ema.update(r.loss.view()), width: 2, smooth: true, ignoreInRange: true });
      // The raw points set the y range (outlier-aware); a smoothed spike's tail would otherwise stretch it.
    }
    const ev = r.evalTracks.get('loss');
    // robust: the evals share the training loss's outlier-aware range (the step-0 eval, before training, must not
    // set the axis); the Eval loss panel shows every one of them
    out.push(...trackLine(r, i, compare, 'eval-loss', compare ? 'eval' : 'eval', ev, true).map((l) => ({ ...l, color: compare ? color : cssVar('--vscode-charts-green', '#89d185'), robust: true, hollow: compare })));
    // compare: the evals are rings, so their legend box (hollow) differs from the smoothed line's (filled) of the same colour (FRESH8 F8)
    return out;
  },
};

function aligned(key: string, title: string, pick: (r: RunData) => Float64Array): ChartSpec {
  return {
    // A title that is its unit ("Examples/s") is not repeated as "Examples/s (examples/s)".
    key, title, yTitle: `${title}${unitOf(key) && unitOf(key) !== title.toLowerCase() ? ` (${unitOf(key)})` : ''}`, unit: unitOf(key),
    lines: (r, i, compare) => [{ key: `${r.runId}|${key}`, epoch: r.resets, label: compare ? runName(r) : title, color: runColor(compare ? i : 0),
      step: r.step.view(), time: r.time.view(), y: pick(r), t0: r.step.length ? r.time.data[0] : 0 }],
  };
}

/** The spec of a metric panel by its key. */
export function metricSpec(key: string): ChartSpec {
  if (key === 'lr') return aligned('lr', 'Learning rate', (r) => r.lr.view());
  if (key === 'examplesPerSec') return aligned('examplesPerSec', 'Examples/s', (r) => r.examplesPerSec.view());
  const [kind, name] = [key.slice(0, key.indexOf(':')), key.slice(key.indexOf(':') + 1)];
  // A named scalar of the shared table is titled for people, its name as sent kept as the caption (people grep logs
  // for it); one the table does not know (a newer or a user's trainer) is titled by its name, its unit by its suffix.
  const known = kind === 'scalar' ? SCALAR_BY_NAME.get(name) : undefined;
  const unit = known ? known.unit : unitOf(name);
  const title = kind === 'eval' ? `Eval ${name}` : known ? known.title : name;
  return {
    key, title, caption: known ? name : undefined, description: known?.description,
    // The heading names the series: the axis says its unit, else a short name (a long one was cut off at the edge:
    // "Process memory (resident) (MiE").
    yTitle: unit || axisText(kind === 'eval' ? name : title), unit,
    dataKey: (runs) => runs.map((r) => { const t = (kind === 'eval' ? r.evalTracks : r.scalars).get(name); return `${r.runId}:${r.resets}:${t?.length}:${t?.cuts}`; }).join(),
    // An eval is a few measurements: a line that joins them, each marked (one eval alone: its dot).
    lines: (r, i, compare) => trackLine(r, i, compare, key, compare ? '' : title, (kind === 'eval' ? r.evalTracks : r.scalars).get(name), kind === 'eval' && (r.evalTracks.get(name)?.length ?? 0) < 2)
      .map((l) => (kind === 'eval' ? { ...l, dots: true } : l)),
  };
}

/** An axis title that fits beside a chart of the grid's height (≈ 28 characters). */
function axisText(t: string): string { return t.length > 28 ? `${t.slice(0, 27)}…` : t; }

/** The metric keys the focused runs have, in a stable order: lr, examples/s, named scalars, evals. */
export function metricKeys(runs: RunData[]): string[] {
  const keys: string[] = [];
  if (runs.some((r) => r.step.length)) keys.push('lr', 'examplesPerSec');
  const scalars = new Set<string>(), evals = new Set<string>();
  for (const r of runs) { for (const k of r.scalars.keys()) scalars.add(k); for (const k of r.evalTracks.keys()) evals.add(k); }
  keys.push(...[...scalars].sort().map((k) => `scalar:${k}`), ...[...evals].sort().map((k) => `eval:${k}`));
  return keys;
}

export class MetricsPanel implements Panel {
  readonly element: HTMLElement;
  /** Which metric panels show: @vscode-elements' multi-select (a checked option per shown panel; select all / none). */
  private readonly chooser = h('vscode-multi-select', { class: 'chooser', label: 'Metric panels to show', 'aria-label': 'Metric panels to show' }) as HTMLElement & { value: string[] };
  private optionsKey = '';
  private readonly grid = h('div', { class: 'metrics-grid' });
  private readonly count = h('span', { class: 'muted' });
  readonly charts = new Map<string, ChartPanel>();
  private keysShown = '';

  constructor(private readonly store: Store) {
    this.element = h('section', { class: 'panel metrics', 'aria-label': 'Metrics' },
      h('div', { class: 'row' }, h('h2', {}, 'Metrics'), this.count, h('span', { class: 'muted' }, 'panels'), this.chooser), this.grid);
    this.chooser.addEventListener('change', () => {
      const shown = new Set(this.chooser.value);
      for (const k of this.optionsKey.split('|').filter(Boolean)) { if (shown.has(k)) this.store.hidden.delete(k); else this.store.hidden.add(k); }
      this.store.persist();
      this.store.userChanged();
    });
  }

  /** The chart panels drawn now (shown ones), for the frame loop. */
  visible(): ChartPanel[] { return [...this.charts.values()].filter((c) => !this.store.hidden.has(c.spec.key)); }

  update(): void {
    const keys = metricKeys(this.store.focused());
    const key = keys.join('|') + '#' + [...this.store.hidden].join('|');
    if (key === this.keysShown) return;
    this.keysShown = key;
    // The options are rebuilt only when the metrics change (not under the user's hands when they toggle one).
    const optionsKey = keys.join('|');
    if (optionsKey !== this.optionsKey) {
      this.optionsKey = optionsKey;
      this.chooser.replaceChildren(...keys.map((k) => h('vscode-option', { value: k, selected: !this.store.hidden.has(k), 'data-metric': k }, metricSpec(k).title)));
    }
    for (const k of keys) if (!this.charts.has(k) && !this.store.hidden.has(k)) this.charts.set(k, new ChartPanel(this.store, metricSpec(k)));
    const shown = keys.filter((k) => !this.store.hidden.has(k));
    this.grid.replaceChildren(...shown.map((k) => this.charts.get(k)!.element));
    text(this.count, `${shown.length} of ${keys.length} shown`);
  }
}
