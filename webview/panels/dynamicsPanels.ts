/**
 * The SRLoRA views no other tool has (issue 15/16), each a ChartPanel fed by the one store:
 * - the effective rank of each layer's accumulated update ΔW over time (the trainer's deltaRank; the method's promise
 *   is that it grows past r);
 * - what the fusion rule picked: each fused pair's age when it fused (or the direction it held), with the pairs that
 *   the previous recomposition had just re-initialised ("the freshest pairs fused again") marked;
 * - the per-slot step boost of the selected layer (the trainer's importance.stepBoost: a re-initialised pair's
 *   optimiser step over the layer's mean).
 * Every number is what the trainer stated or what the one reducer derived from its events; nothing is recomputed.
 */
import type { Store } from '../store';
import type { RunData } from '../runData';
import type { Line } from '../seriesChart';
import { cssVar, h, text } from '../dom';
import { ChartPanel, trackLine, type ChartSpec } from './chartPanel';
import { firstComparedRun, runColor, runName, type Field, type Panel } from './panel';
import { freshText } from './fusionSummary';

export { freshSummary, freshText } from './fusionSummary';

const SLOT_COLORS = ['--vscode-charts-blue', '--vscode-charts-orange', '--vscode-charts-green', '--vscode-charts-purple', '--vscode-charts-yellow', '--vscode-charts-red'];
const SLOT_FALLBACK = ['#3794ff', '#d18616', '#89d185', '#b180d7', '#cca700', '#f14c4c'];
const slotColor = (k: number) => cssVar(SLOT_COLORS[k % SLOT_COLORS.length], SLOT_FALLBACK[k % SLOT_FALLBACK.length]);

/** A constant reference line across the run's steps (r, or a boost of 1). */
function reference(r: RunData, key: string, label: string, y: number, from: number, to: number): Line {
  const t0 = r.time.length ? r.time.data[0] : 0;
  return { key: `${r.runId}|${key}`, epoch: 0, label, color: cssVar('--vscode-descriptionForeground', '#999'), width: 1, alpha: '99', ignoreInRange: false,
    step: [from, Math.max(from + 1, to)], time: [t0, r.time.last() ?? t0], y: [y, y], t0 };
}

/** The layer the user picked (heatmap row or slot-history select), else the first. */
const layerOf = (store: Store, r: RunData): string | null => store.historyLayer ?? r.model.layers[0]?.name ?? null;

/** Effective rank of ΔW: mean, min and max over the layers, the selected layer, and r for reference. */
export function rankSpec(store: Store): ChartSpec {
  return {
    key: 'rank', title: 'Effective rank of ΔW', yTitle: 'effective rank', unit: '',
    dataKey: (runs) => `${store.historyLayer}|${runs.map((r) => `${r.runId}:${r.resets}:${r.rankSummary.mean.length}:${r.rankSummary.mean.cuts}`).join()}`,
    emptyNote: () => 'The trainer sent no deltaRank (protocol 1.2: with every eval) for this run.',
    lines(r, i, compare) {
      const s = r.rankSummary;
      if (!s.mean.length) return [];
      const color = runColor(compare ? i : 0);
      if (compare) return trackLine(r, i, true, 'rank-mean', 'mean over layers', s.mean);
      const layer = layerOf(store, r);
      const out: Line[] = [
        ...trackLine(r, i, false, 'rank-mean', 'mean over layers', s.mean).map((l) => ({ ...l, width: 2 })),
        ...trackLine(r, i, false, 'rank-min', 'min', s.min).map((l) => ({ ...l, width: 1, alpha: '88' })),
        ...trackLine(r, i, false, 'rank-max', 'max', s.max).map((l) => ({ ...l, width: 1, alpha: '88' })),
      ].map((l) => ({ ...l, color }));
      const t = layer ? r.ranks.get(layer) : undefined;
      if (layer && t && r.ranks.size > 1) out.push(...trackLine(r, i, false, `rank:${layer}`, layer, t).map((l) => ({ ...l, color: cssVar('--vscode-charts-orange', '#d18616'), width: 1.5 })));
      const rr = r.model.layers[0]?.r;
      const last = s.mean.step.last() ?? 1;
      if (rr) out.push(reference(r, 'rank-r', `r = ${rr}`, rr, s.mean.step.data[0], last));
      return out;
    },
  };
}

/** Up to this many slots the boost chart draws one line per slot; more read as a largest/median pair. */
const MAX_SLOT_LINES = 8;

/** The selected layer's per-slot step boost over the importance snapshots. */
export function boostSpec(store: Store): ChartSpec {
  return {
    key: 'boost', title: 'Step boost per slot', yTitle: 'step ÷ layer mean', unit: '×',
    dataKey: (runs) => `${store.historyLayer}|${runs.map((r) => `${r.runId}:${r.resets}:${r.framesVersion}`).join()}`,
    // Compare: the first run's, named (as the heatmap and the recompositions show it); its slots are not comparable.
    // Say what is true (FRESH8 F6): a run that sent no importance snapshot at all (it failed at step 2) is not a
    // trainer that left stepBoost out of its snapshots.
    emptyNote: (runs) => {
      const of = runs.length > 1 ? ` of ${firstComparedRun(runs[0])}` : '';
      return !runs[0]?.frames.length ? `No importance snapshot${of} yet: the step boost comes with them.`
        : `The trainer sent no stepBoost (protocol 1.2, Adam runs) in the importance snapshots${of}.`;
    },
    note: (runs) => (runs.length > 1 ? `showing ${firstComparedRun(runs[0])}` : ''),
    lines(r, i) {
      if (i > 0) return [];
      const layer = layerOf(store, r);
      if (!layer) return [];
      const rows = r.frames.map((f) => ({ f, l: f.layers.get(layer) })).filter((x) => x.l?.stepBoost);
      if (!rows.length) return [];
      const slots = rows[rows.length - 1].l!.stepBoost!.length;
      const t0 = r.time.length ? r.time.data[0] : 0;
      const step = Float64Array.from(rows, (x) => x.f.step), time = Float64Array.from(rows, (x) => x.f.time);
      const out: Line[] = [];
      if (slots <= MAX_SLOT_LINES) {
        for (let k = 0; k < slots; k++) {
          out.push({ key: `${r.runId}|boost|${layer}|${k}`, epoch: r.framesVersion, label: `${layer} slot ${k}`, color: slotColor(k), width: 1.5,
            step, time, y: Float64Array.from(rows, (x) => x.l!.stepBoost![k] ?? NaN), t0 });
        }
      } else {
        // Many slots: the largest boost among them (where a fresh pair's jump shows) and the median, not r lines.
        const max = new Float64Array(rows.length), med = new Float64Array(rows.length);
        rows.forEach((x, i) => { const v = [...x.l!.stepBoost!].sort((a, b) => a - b); max[i] = v[v.length - 1] ?? NaN; med[i] = v[v.length >> 1] ?? NaN; });
        out.push({ key: `${r.runId}|boost-max|${layer}`, epoch: r.framesVersion, label: `${layer}: largest of ${slots} slots`, color: slotColor(1), width: 1.5, step, time, y: max, t0 },
          { key: `${r.runId}|boost-med|${layer}`, epoch: r.framesVersion, label: `${layer}: median slot`, color: slotColor(0), width: 1.5, step, time, y: med, t0 });
      }
      out.push(reference(r, 'boost-1', 'layer mean', 1, step[0], step[step.length - 1]));
      return out;
    },
  };
}

/** Each fused pair as a point: x = the recomposition's step, y = its age then (or the direction it held). */
function fusionSpec(view: { y: 'age' | 'direction' }): ChartSpec {
  return {
    key: 'fusions', title: 'Fused pairs', yTitle: 'age when fused (steps)', unit: '',
    dataKey: (runs) => `${view.y}|${runs.map((r) => `${r.runId}:${r.resets}:${r.model.fusions.length}:${r.model.fusions[r.model.fusions.length - 1]?.step}`).join()}`,
    emptyNote: () => '', // the summary above the chart says it
    lines(r, i, compare) {
      const fs = r.model.fusions;
      if (!fs.length) return [];
      const t0 = r.time.length ? r.time.data[0] : 0;
      const times = new Map(r.recompositions.map((e) => [e.step, e.time]));
      const pts = (fresh: boolean) => {
        const step: number[] = [], time: number[] = [], y: number[] = [];
        for (const f of fs) f.ages.forEach((age, k) => {
          if ((f.previousStep !== null && f.installedAt[k] === f.previousStep) !== fresh) return;
          step.push(f.step); time.push(times.get(f.step) ?? t0); y.push(view.y === 'age' ? age : f.directions[k]);
        });
        return { step, time, y };
      };
      const fresh = pts(true), old = pts(false);
      const name = compare ? `${runName(r)}: ` : '';
      const out: Line[] = [];
      if (old.step.length) out.push({ key: `${r.runId}|fused-old|${view.y}`, epoch: fs.length, label: `${name}fused pairs`, color: compare ? runColor(i) : cssVar('--vscode-charts-blue', '#3794ff'), points: true, t0, ...old });
      if (fresh.step.length) out.push({ key: `${r.runId}|fused-fresh|${view.y}`, epoch: fs.length, label: `${name}just re-initialised`, color: cssVar('--vscode-charts-orange', '#d18616'), points: true, t0, ...fresh });
      return out;
    },
  };
}

/** The fused-pairs chart with its summary and a choice of y (age when fused, or the direction index). */
export class FusionsPanel implements Panel {
  readonly element: HTMLElement;
  readonly chart: ChartPanel;
  private readonly view: { y: 'age' | 'direction' } = { y: 'age' };
  private readonly summary = h('p', { class: 'fusion-summary', 'aria-live': 'polite' });
  private readonly ySelect = h('vscode-single-select', { 'aria-label': 'Fused pairs: y axis', class: 'fusion-y' }) as Field;

  constructor(private readonly store: Store) {
    this.ySelect.append(h('vscode-option', { value: 'age', selected: true }, 'y: age when fused'), h('vscode-option', { value: 'direction' }, 'y: direction index'));
    this.chart = new ChartPanel(store, fusionSpec(this.view), [this.ySelect]);
    this.ySelect.addEventListener('change', () => {
      this.view.y = this.ySelect.value === 'direction' ? 'direction' : 'age';
      this.chart.setYTitle(this.view.y === 'age' ? 'age when fused (steps)' : 'direction index');
      store.userChanged();
    });
    this.element = this.chart.element;
    this.element.insertBefore(this.summary, this.element.querySelector('.chart-wrap'));
  }

  update(): void {
    const r = this.store.current();
    this.element.hidden = !!r && this.store.focus.length === 1 && r.model.method !== null && r.model.method !== 'srlora';
    const s = r && this.store.focus.length === 1 ? freshText(r) : { text: '', warn: false };
    text(this.summary, s.text);
    this.summary.classList.toggle('warn', s.warn);
  }
  draw(): boolean { return this.chart.draw(); }
  dirty(): boolean { return this.chart.dirty(); }
  urgent(): boolean { return this.chart.urgent(); }
  retheme(): void { this.chart.retheme(); }
  describe(): void { this.chart.describe(); }
}
