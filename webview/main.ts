/**
 * The SRLoRA dashboard page. One bundle for two hosts (a VS Code webview panel, the standalone page of
 * `srlora serve`). It asks for a snapshot when it loads (VS Code reloads a hidden panel's page when it shows again),
 * then applies deltas; it never refetches on a timer.
 *
 * The page is a set of panels (webview/panels/), each a component with its own DOM, inputs and state, all fed by the
 * one store (webview/store.ts), which folds every run through the one reducer. This module only builds the layout
 * and runs the frame loop: on a store change every panel updates its DOM (cheap); canvas drawing (charts, heatmap)
 * runs only for what changed, spread over frames within a time budget, so a frame stays short with every panel live.
 */
import '@vscode-elements/elements/dist/vscode-button/index.js';
import '@vscode-elements/elements/dist/vscode-checkbox/index.js';
import '@vscode-elements/elements/dist/vscode-radio/index.js';
import '@vscode-elements/elements/dist/vscode-radio-group/index.js';
import '@vscode-elements/elements/dist/vscode-textfield/index.js';
import '@vscode-elements/elements/dist/vscode-single-select/index.js';
import '@vscode-elements/elements/dist/vscode-multi-select/index.js';
import '@vscode-elements/elements/dist/vscode-option/index.js';
import '@vscode-elements/elements/dist/vscode-label/index.js';
import { connectHost } from './host';
import { Store } from './store';
import { h, onThemeChange, text } from './dom';
import type { Panel } from './panels/panel';
import { Header } from './panels/header';
import { ChartPanel } from './panels/chartPanel';
import { MetricsPanel, lossSpec } from './panels/metricsPanel';
import { RulePanel } from './panels/rulePanel';
import { CommandsPanel } from './panels/commandsPanel';
import { ImportancePanel } from './panels/importancePanel';
import { HistoryPanel } from './panels/historyPanel';
import { RecompositionsPanel } from './panels/recompositionsPanel';
import { CompareTable } from './panels/compareTable';
import { FusionsPanel, boostSpec, rankSpec } from './panels/dynamicsPanels';
import { button, filePrefix, type Check, type Field } from './panels/panel';
import { save } from './panels/exporting';
import { evalsCsv } from './exportCsv';

const host = connectHost();
const initialRuns = (document.body.dataset.runs ?? '').split(',').filter(Boolean).map(decodeURIComponent);
// The standalone page: ?run=ID, or ?runs=A,B to compare; its URL is the truth (a URL naming no run shows the default
// run, not the runs saved from the last page). VS Code's tab restores its saved runs.
const params = new URLSearchParams(location.search);
const urlRuns = (params.get('runs') ?? params.get('run') ?? '').split(',').filter(Boolean);
const store = new Store(host, initialRuns.length ? initialRuns : urlRuns);

// ------------------------------------------------------------------ the chart view controls (shared by every chart)

const smoothing = h('input', { type: 'range', min: '0', max: '0.99', step: '0.01', 'aria-label': 'Smoothing', class: 'slider small' }) as HTMLInputElement;
const smoothingValue = h('span', { class: 'muted' });
const logY = h('vscode-checkbox', { label: 'log y' }) as Check;
const xAxis = h('vscode-single-select', { 'aria-label': 'x axis', class: 'axis-select' }) as Field;
xAxis.append(...(['step', 'relative', 'wall'] as const).map((v) => h('vscode-option', { value: v, selected: v === store.view.xAxis }, v === 'step' ? 'x: step' : v === 'relative' ? 'x: time since start' : 'x: wall clock')));
smoothing.value = String(store.view.smoothing);
logY.checked = store.view.logY;
smoothing.addEventListener('input', () => { store.view.smoothing = Number(smoothing.value); store.persist(); store.userChanged(); });
logY.addEventListener('change', () => { store.view.logY = logY.checked; store.persist(); store.userChanged(); });
xAxis.addEventListener('change', () => { const v = xAxis.value; store.view.xAxis = v === 'relative' || v === 'wall' ? v : 'step'; store.persist(); store.userChanged(); });

// ------------------------------------------------------------------ panels

const header = new Header(store);
const compare = new CompareTable(store);
const evalsStatus = h('span', { class: 'muted' });
const evalsCsvButton = button('Evals CSV', 'Save the evals as CSV', () => {
  const r = store.current();
  if (r) save(store, `${filePrefix(store)}-evals.csv`, evalsCsv(r), 'utf8', 'text/csv', (s) => text(evalsStatus, s));
});
const loss = new ChartPanel(store, lossSpec, [h('label', {}, 'smoothing ', smoothing, ' ', smoothingValue), logY, xAxis, evalsCsvButton, evalsStatus], true, 200);
const metrics = new MetricsPanel(store);
const commands = new CommandsPanel(store);
const rule = new RulePanel(store, commands.element);
const importanceEveryMs = 1000 / Math.max(1, Math.min(10, Number(document.body.dataset.importanceRate ?? 10)));
const importance = new ImportancePanel(store, rule, importanceEveryMs);
const history = new HistoryPanel(store);
const recompositions = new RecompositionsPanel(store);
const rank = new ChartPanel(store, rankSpec(store));
const boost = new ChartPanel(store, boostSpec(store));
const fusions = new FusionsPanel(store);

document.getElementById('app')!.append(
  header.element,
  compare.element,
  h('div', { class: 'grid' }, loss.element, rule.element, importance.element, history.element,
    h('div', { class: 'dynamics' }, rank.element, fusions.element, boost.element), metrics.element, recompositions.element),
);

const panels: Panel[] = [header, compare, loss, metrics, rule, commands, importance, history, recompositions, rank, fusions, boost];
/** What draws on canvases, in the order the frame loop offers them time. */
const drawables = (): Panel[] => [loss, importance, ...metrics.visible(), history, rank, fusions, boost];

onThemeChange(() => {
  everDrawn = new WeakSet<Panel>();
  for (const p of [...panels, ...metrics.charts.values()]) p.retheme?.();
  store.userChanged();
});

// ------------------------------------------------------------------ what is on screen

/**
 * Canvases off screen are drawn once, then not again until they scroll into view (IntersectionObserver; a margin of
 * half a screen draws a panel just before it shows): a page of a dozen live charts draws only the ones the user can see. A panel that missed
 * data while off screen is drawn at once when it shows (as for what the user did); meanwhile `describe` keeps its
 * label for screen readers current, at most once a second.
 */
const shown = new WeakSet<Element>();
const shownStale = new WeakSet<Element>();
const described = new WeakMap<Panel, number>();
/** Panels drawn since the last theme change (a theme change redraws off-screen canvases too, once each). */
let everDrawn = new WeakSet<Panel>();
const watched = new WeakSet<Element>();
const visibility = typeof IntersectionObserver === 'undefined' ? null : new IntersectionObserver((entries) => {
  for (const e of entries) {
    if (e.isIntersecting) { if (!shown.has(e.target)) { shown.add(e.target); shownStale.add(e.target); } } else shown.delete(e.target);
  }
}, { rootMargin: '50% 0px' });
/** Whether the panel is (about to be) on screen; not until the observer first says so (a frame after it starts). */
function onScreen(p: Panel): boolean {
  if (!visibility) return true;
  if (!watched.has(p.element)) { watched.add(p.element); visibility.observe(p.element); }
  return shown.has(p.element);
}

// ------------------------------------------------------------------ the frame loop

/** Canvas drawing for what the user did stops once this much time is spent in a frame (the rest waits a frame). */
const FRAME_BUDGET_MS = 6;
/** Canvas drawing for live data per second, at most (ms); the draws of the last second, [start, ms]. */
const LIVE_SHARE_MS = 200;
const liveSpent: [number, number][] = [];
let updated = -1;
let cursor = 0;

/**
 * One animation frame: panels' DOM updates when the store changed, then canvas drawing. Live data redraws at most
 * ONE canvas per frame (round robin over the dirty ones): a canvas's cost is not only the script that draws it but
 * also its rasterisation and upload, which the browser does after this callback, so a frame that drew two charts
 * could not be known to fit in 16.7 ms. What the user did (view, focus, zoom, theme) redraws within a budget.
 */
function frame(): void {
  requestAnimationFrame(frame);
  if (store.version !== updated) {
    updated = store.version;
    text(smoothingValue, store.view.smoothing.toFixed(2));
    for (const p of panels) timed(p.constructor.name, () => p.update());
  }
  if (store.focus.some((id) => store.loadingParts.has(id))) return; // a long snapshot still arriving: draw once it is in
  const list = drawables();
  const t0 = performance.now();
  let liveDrawn = false;
  for (let k = 0; k < list.length; k++) {
    const i = (cursor + k) % list.length;
    const p = list[i];
    if (!p.dirty?.()) continue;
    // Off screen: drawn once (as the frame's one live draw: a page, or a whole-page screenshot, never shows a chart
    // that was not drawn at all), then not again until it scrolls into view.
    const firstDraw = !everDrawn.has(p) && !liveDrawn;
    if (!onScreen(p) && !firstDraw) {
      const now = performance.now();
      if (p.describe && now - (described.get(p) ?? 0) >= 1000) { described.set(p, now); p.describe(); }
      continue;
    }
    everDrawn.add(p);
    const urgent = (p.urgent?.() ?? false) || shownStale.has(p.element);
    shownStale.delete(p.element);
    if (!urgent) {
      if (liveDrawn) continue;
      // Live redraws share at most LIVE_SHARE_MS of each second: on a slow or busy machine the charts update less
      // often instead of the page dropping frames.
      const now = performance.now();
      while (liveSpent.length && liveSpent[0][0] < now - 1000) liveSpent.shift();
      if (liveSpent.reduce((n, [, ms]) => n + ms, 0) > LIVE_SHARE_MS) continue;
    }
    const d0 = performance.now();
    let drew = true;
    timed(p === loss ? 'loss' : p === importance ? 'importance' : p === history ? 'history' : p === rank || p === fusions || p === boost ? 'dynamics' : 'metric', () => { drew = p.draw!() !== false; }, () => drew);
    if (!urgent && drew) { liveSpent.push([d0, performance.now() - d0]); liveDrawn = true; cursor = i + 1; }
    if (performance.now() - t0 > FRAME_BUDGET_MS) { cursor = i + 1; return; }
  }
}

/** Render times per view (bench:dashboard reads them with ?profile). */
function timed(name: string, fn: () => void, counted: () => boolean = () => true): void {
  const t0 = performance.now();
  fn();
  if (timings) timings.push([counted() ? name : `${name} (unchanged, skipped)`, performance.now() - t0]);
}
const timings: [string, number][] | null = params.has('profile') ? [] : null;
(window as unknown as { srloraTimings?: unknown }).srloraTimings = timings;

store.persist(); // the panel serializer restores this panel after a reload from this state
store.subscribe();
requestAnimationFrame(frame);
window.addEventListener('resize', () => store.userChanged());
