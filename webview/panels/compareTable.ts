/**
 * Compare: a table of the compared runs (name, method, state, steps, final and best loss and eval metrics) and the
 * config fields that every run states and that differ between them; fields only some runs' trainers record (the
 * PyTorch trainer's backend, baseModel, data, torch…) are named below the table, not compared: a "–" beside a value
 * would make runs on the same base model look different. Long values are cut, with the whole value as a tooltip;
 * the table scrolls inside its section. Shown only when more than one run is focused. The charts overlay the
 * same runs in the same colours.
 */
import type { Store } from '../store';
import type { RunData } from '../runData';
import type { RunModel } from '../../src/viewmodel/runModel';
import { formatNumber, h } from '../dom';
import { runName, section, type Panel } from './panel';

/** Config fields the fixed columns already show (the steps column is step/steps; method and name have their own). */
const SHOWN = new Set(['method', 'name', 'steps']);

/**
 * The config fields (dotted paths, sorted) to compare: `differ` = stated by every run with values that differ;
 * `oneSided` = stated by some runs only (not comparable). Fields the fixed columns show are left out of both.
 * Paths are walked together: where every run holds an object the walk goes into it; where the runs' values differ
 * in shape (the PyTorch trainer's `backend: {kind, device}` beside the built-in's `backend: "wasm"`) the field is
 * compared whole at that path (FRESH8 F7: flattening each config alone listed `backend` as one-sided, though both
 * runs record it). Read a value with fieldValue.
 */
export function differingFields(configs: Record<string, unknown>[]): { differ: string[]; oneSided: string[] } {
  const differ: string[] = [], oneSided: string[] = [];
  const isObject = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);
  const walk = (values: unknown[], path: string) => {
    if (SHOWN.has(path)) return;
    if (path && values.some((v) => v === undefined)) { oneSided.push(path); return; }
    if (values.every(isObject)) {
      for (const k of [...new Set(values.flatMap((v) => Object.keys(v)))]) walk(values.map((v) => v[k]), path ? `${path}.${k}` : k);
      return;
    }
    if (new Set(values.map((v) => JSON.stringify(v))).size > 1) differ.push(path);
  };
  walk(configs, '');
  return { differ: differ.sort(), oneSided: oneSided.sort() };
}

/** The value at a dotted path of differingFields (a leaf, or a whole object where the runs' shapes differ). */
export function fieldValue(config: Record<string, unknown>, path: string): unknown {
  let v: unknown = config;
  for (const k of path.split('.')) v = v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>)[k] : undefined;
  return v;
}

/**
 * The config a run is compared by: the batch as the optimiser sees it — the global batch, batchSize per rank ×
 * hello.worldSize (the PyTorch trainer's `globalBatchSize` when stated) — and the world size. A single-process run
 * at batchSize 64 and a 2-rank DDP run at 32 per rank (64 global) listed "batchSize 64 vs 32" with no world size.
 */
export function comparedConfig(m: Pick<RunModel, 'config' | 'worldSize' | 'backend'>): Record<string, unknown> {
  const { batchSize, globalBatchSize, backend, ...rest } = m.config as Record<string, unknown> & { batchSize?: unknown; globalBatchSize?: unknown; backend?: unknown };
  const global = typeof globalBatchSize === 'number' ? globalBatchSize : typeof batchSize === 'number' ? batchSize * m.worldSize : batchSize;
  // The backend is what the trainer's hello says ran the run ("pytorch · CPU", "wasm · CPU (WebAssembly SIMD…)"),
  // which every trainer states; the config's `backend` is only the built-in trainer's request ("auto"), absent from
  // the PyTorch trainer's config (FRESH8 F7: a PyTorch run beside a built-in one listed backend as one-sided).
  const ran = m.backend || backend;
  return { ...rest, ...(ran !== undefined ? { backend: ran } : {}), ...(global !== undefined ? { [GLOBAL_BATCH]: global } : {}), [WORLD_SIZE]: m.worldSize };
}
export const GLOBAL_BATCH = 'global batch', WORLD_SIZE = 'world size';

/** Values longer than this are cut in the table (the whole value is the cell's title). */
const MAX_CELL = 40;
function valueCell(v: unknown): HTMLElement {
  const s = typeof v === 'string' ? v : JSON.stringify(v);
  const cell = h('td', { class: 'value' }, s.length > MAX_CELL ? `${s.slice(0, MAX_CELL - 1)}…` : s);
  cell.title = s;
  return cell;
}

const best = (vals: Float64Array, lower: boolean) => (vals.length ? vals.reduce((a, b) => (lower ? Math.min(a, b) : Math.max(a, b))) : null);

export class CompareTable implements Panel {
  readonly element: HTMLElement;
  private readonly table = h('table', { class: 'compare' });
  private readonly oneSided = h('p', { class: 'muted one-sided' });
  private readonly wrap = h('div', { class: 'table-wrap compare-wrap' }, this.table);
  /** Says that the table scrolls sideways when it is wider than its section (a hidden scrollbar hid columns). */
  private readonly more = h('p', { class: 'muted compare-more', 'aria-live': 'polite' });
  private key = '';

  constructor(private readonly store: Store) {
    this.element = section('Compared runs', this.wrap, this.more, this.oneSided);
    this.more.hidden = true;
    if (typeof ResizeObserver !== 'undefined') new ResizeObserver(() => this.fit()).observe(this.wrap);
  }

  private fit(): void {
    const scrolls = this.wrap.scrollWidth > this.wrap.clientWidth + 1;
    this.wrap.classList.toggle('scrolls', scrolls);
    this.more.hidden = !scrolls;
    this.more.textContent = scrolls ? 'The table is wider than the page: scroll it sideways for the other columns →' : '';
  }

  update(): void {
    const runs = this.store.focused();
    this.element.hidden = this.store.focus.length < 2;
    if (this.element.hidden) return;
    const key = runs.map((r) => `${r.runId}:${r.version}`).join();
    if (key === this.key) return;
    this.key = key;
    const metrics = [...new Set(runs.flatMap((r) => [...r.evalTracks.keys()].filter((k) => k !== 'loss')))].sort();
    const configs = runs.map((r) => comparedConfig(r.model));
    const { differ: diff, oneSided } = differingFields(configs);
    this.oneSided.textContent = oneSided.length ? `Recorded by only some of these runs (not compared): ${oneSided.join(', ')}` : '';
    this.oneSided.hidden = !oneSided.length;
    const head = ['run', 'method', 'state', 'steps', 'final loss', 'best loss', 'final eval loss', 'best eval loss', ...metrics.flatMap((m) => [`final ${m}`, `best ${m}`]), ...diff];
    const cell = (r: RunData, i: number) => {
      const ev = r.evalTracks.get('loss')?.value.view() ?? new Float64Array(0);
      return [
        h('th', { scope: 'row' }, h('span', { class: `swatch c${i % 6}`, 'aria-hidden': 'true' }), ` ${runName(r)}`),
        r.model.method ?? '?', r.model.state, `${r.model.step}/${r.model.totalSteps ?? '?'}`,
        formatNumber(r.loss.last()), formatNumber(best(r.loss.view(), true)), formatNumber(ev[ev.length - 1]), formatNumber(best(ev, true)),
        ...metrics.flatMap((m) => { const v = r.evalTracks.get(m)?.value.view() ?? new Float64Array(0); const lower = /loss|error|perplexity/i.test(m); return [formatNumber(v[v.length - 1]), formatNumber(best(v, lower))]; }),
        ...diff.map((f) => {
          const v = fieldValue(configs[i], f);
          // the global batch says how it is made: "64 (32 per rank × 2)"
          return valueCell(f === GLOBAL_BATCH && r.model.worldSize > 1 && typeof v === 'number' ? `${v} (${v / r.model.worldSize} per rank × ${r.model.worldSize})` : v);
        }),
      ];
    };
    this.table.replaceChildren(
      h('thead', {}, h('tr', {}, ...head.map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, ...runs.map((r, i) => h('tr', {}, ...cell(r, i).map((c) => (typeof c === 'string' ? h('td', {}, c) : c))))),
    );
    this.fit();
  }
}
