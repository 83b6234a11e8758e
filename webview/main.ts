/**
 * The SRLoRA dashboard page. One bundle for two hosts (a VS Code webview panel, the standalone page of
 * `srlora serve`). It asks for a snapshot when it loads (VS Code reloads a hidden panel's page when it shows again),
 * then applies deltas; it never refetches on a timer. Drawing happens at most once per animation frame, and only
 * for what changed.
 */
import '@vscode-elements/elements/dist/vscode-button/index.js';
import '@vscode-elements/elements/dist/vscode-checkbox/index.js';
import '@vscode-elements/elements/dist/vscode-radio/index.js';
import '@vscode-elements/elements/dist/vscode-radio-group/index.js';
import '@vscode-elements/elements/dist/vscode-textfield/index.js';
import '@vscode-elements/elements/dist/vscode-single-select/index.js';
import '@vscode-elements/elements/dist/vscode-option/index.js';
import '@vscode-elements/elements/dist/vscode-label/index.js';
import type { CommandBody, HubToViewer, RunSummary } from '../src/protocol/messages';
import { selectSlots } from '../src/srlora/rule';
import { etaSeconds, isActive } from '../src/viewmodel/runModel';
import { formatDuration } from '../src/common/formatDuration';
import { connectHost, V, type PageState } from './host';
import { RunData } from './runData';
import { LossChart, type LossView } from './lossChart';
import { Heatmap, drawLegend } from './heatmap';
import { drawSlotHistory } from './slotHistory';
import { h, text, formatNumber } from './dom';
import { eventsCsv, evalsCsv, importanceCsv, metricsCsv } from './exportCsv';

type Btn = HTMLElement & { disabled: boolean };
type Field = HTMLElement & { value: string; disabled: boolean };
type Check = HTMLElement & { checked: boolean };

interface CommandEntry { requestId: string; runId: string; label: string; commandId?: string; status: string }

const host = connectHost();
const saved: PageState = host.getState();
const initialRuns = (document.body.dataset.runs ?? '').split(',').filter(Boolean).map(decodeURIComponent);
// The standalone page: ?run=ID, or ?runs=A,B to compare; a URL that names runs wins over the page's saved state.
const params = new URLSearchParams(location.search);
const urlRuns = (params.get('runs') ?? params.get('run') ?? '').split(',').filter(Boolean);
let focus: string[] = initialRuns.length ? initialRuns : urlRuns.length ? urlRuns : saved.runIds ?? [];
const runs = new Map<string, RunData>();
let runList: RunSummary[] = [];
const view: LossView = { smoothing: saved.smoothing ?? 0.9, logY: saved.logY ?? false, xAxis: saved.xAxis ?? 'step' };
const selectedLayers = new Set<string>();
let historyLayer: string | null = null;
const commands: CommandEntry[] = [];
let nextRequest = 1;
/** The fusion rule being edited (null = not editing: show the rule in force). */
let draft: { mode: 'ratio' | 'threshold'; tau: number; gamma: number } | null = null;

// ------------------------------------------------------------------ layout

const app = document.getElementById('app')!;
const el = {
  name: h('h1', { class: 'run-name' }, 'SRLoRA'),
  badge: h('span', { class: 'badge', role: 'status' }, '…'),
  facts: h('div', { class: 'facts', 'aria-live': 'polite' }),
  conn: h('span', { class: 'conn' }),
  runSelect: h('vscode-single-select', { 'aria-label': 'Run', class: 'run-select' }) as Field,
  pause: h('vscode-button', { 'aria-label': 'Pause or resume the run' }, 'Pause') as Btn,
  recompose: h('vscode-button', { secondary: true, 'aria-label': 'Recompose all layers now' }, 'Recompose now') as Btn,
  recomposeSel: h('vscode-button', { secondary: true, disabled: true, 'aria-label': 'Recompose the selected layers now' }, 'Recompose selected') as Btn,
  checkpoint: h('vscode-button', { secondary: true }, 'Checkpoint') as Btn,
  stop: h('vscode-button', { secondary: true }, 'Stop') as Btn,
  ruleRatio: h('vscode-radio', { name: 'rule', value: 'ratio', label: 'off — the paper\'s rule: the ⌈γ·r⌉ least important pairs' }) as Check,
  ruleThreshold: h('vscode-radio', { name: 'rule', value: 'threshold', label: 'threshold τ — every eligible pair with ŝ < τ' }) as Check,
  tauSlider: h('input', { type: 'range', min: '0', max: '3', step: '0.01', 'aria-label': 'Fusion threshold τ', class: 'slider' }) as HTMLInputElement,
  tauField: h('vscode-textfield', { type: 'number', min: '0', step: '0.01', 'aria-label': 'Fusion threshold τ value', class: 'num' }) as Field,
  gammaField: h('vscode-textfield', { type: 'number', min: '0.01', max: '1', step: '0.01', 'aria-label': 'Fusion ratio γ', class: 'num' }) as Field,
  apply: h('vscode-button', { 'aria-label': 'Apply the fusion rule to the run' }, 'Apply') as Btn,
  revert: h('vscode-button', { secondary: true }, 'Revert') as Btn,
  preview: h('p', { class: 'preview', 'aria-live': 'polite' }),
  inForce: h('p', { class: 'muted' }),
  lossCanvas: h('canvas', { 'aria-label': 'Training and eval loss' }) as HTMLCanvasElement,
  smoothing: h('input', { type: 'range', min: '0', max: '0.99', step: '0.01', 'aria-label': 'Smoothing', class: 'slider small' }) as HTMLInputElement,
  smoothingValue: h('span', { class: 'muted' }),
  logY: h('vscode-checkbox', { label: 'log y' }) as Check,
  xAxis: h('vscode-single-select', { 'aria-label': 'x axis', class: 'axis-select' }) as Field,
  heatCanvas: h('canvas', { class: 'heatmap', 'aria-label': 'Importance heatmap: layers by slots' }) as HTMLCanvasElement,
  legend: h('canvas', { width: '160', height: '10', class: 'legend', 'aria-hidden': 'true' }) as HTMLCanvasElement,
  heatInfo: h('span', { class: 'muted' }),
  historySelect: h('vscode-single-select', { 'aria-label': 'Layer for the slot history' }) as Field,
  historyCanvas: h('canvas', { class: 'history', 'aria-label': 'Slot history of the selected layer' }) as HTMLCanvasElement,
  logBody: h('tbody'),
  commandList: h('ul', { class: 'commands', 'aria-live': 'polite' }),
  exportStatus: h('span', { class: 'muted' }),
};
el.xAxis.append(h('vscode-option', { value: 'step' }, 'x: step'), h('vscode-option', { value: 'time' }, 'x: time'));

const button = (label: string, name: string, onClick: () => void) => { const b = h('vscode-button', { secondary: true, 'aria-label': name }, label); b.addEventListener('click', onClick); return b; };
const section = (title: string, ...children: (Node | string)[]) => h('section', { class: 'panel', 'aria-label': title }, h('h2', {}, title), ...children);

app.append(
  h('header', {}, h('div', { class: 'title' }, el.name, el.badge, el.conn, host.kind === 'browser' ? el.runSelect : null), el.facts,
    h('div', { class: 'toolbar', role: 'toolbar', 'aria-label': 'Run controls' }, el.pause, el.recompose, el.recomposeSel, el.checkpoint, el.stop)),
  h('div', { class: 'grid' },
    section('Loss', h('div', { class: 'chart-wrap' }, el.lossCanvas),
      h('div', { class: 'row' }, h('label', {}, 'smoothing ', el.smoothing, ' ', el.smoothingValue), el.logY, el.xAxis,
        button('PNG', 'Save the loss chart as PNG', () => savePng(el.lossCanvas, 'loss.png')),
        button('CSV', 'Save the metrics as CSV', () => saveCsv('metrics.csv', metricsCsv(current()!))),
        button('Evals CSV', 'Save the evals as CSV', () => saveCsv('evals.csv', evalsCsv(current()!))))),
    section('Fusion rule', h('vscode-radio-group', { variant: 'vertical', 'aria-label': 'Fusion rule' }, el.ruleRatio, el.ruleThreshold),
      h('div', { class: 'row' }, h('label', {}, 'τ ', el.tauSlider), el.tauField, h('label', {}, 'γ ', el.gammaField)),
      el.preview, h('div', { class: 'row' }, el.apply, el.revert), el.inForce,
      h('h2', {}, 'Commands'), el.commandList),
    section('Importance', h('div', { class: 'row' }, h('span', { class: 'muted' }, 'ŝ 0'), el.legend, h('span', { class: 'muted' }, '2.5+'), el.heatInfo,
      button('PNG', 'Save the heatmap as PNG', () => savePng(el.heatCanvas, 'importance.png')),
      button('CSV', 'Save the importance snapshots as CSV', () => saveCsv('importance.csv', importanceCsv(current()!)))),
    h('div', { class: 'heat-wrap' }, el.heatCanvas)),
    section('Slot history', h('div', { class: 'row' }, el.historySelect), el.historyCanvas),
    section('Recompositions', h('div', { class: 'row' }, button('CSV', 'Save the recompositions as CSV', () => saveCsv('recompositions.csv', eventsCsv(current()!))), el.exportStatus),
      h('div', { class: 'table-wrap' }, h('table', {}, h('thead', {}, h('tr', {}, ...['step', 'trigger', 'layer', 'slots', 'directions', '‖ΔW‖', 'preservation'].map((c) => h('th', { scope: 'col' }, c)))), el.logBody))),
  ),
);
drawLegend(el.legend);
const chart = new LossChart(el.lossCanvas);
const heatmap = new Heatmap(el.heatCanvas);

// ------------------------------------------------------------------ state helpers

const current = (): RunData | undefined => runs.get(focus[0] ?? '');
const runData = (id: string) => { let r = runs.get(id); if (!r) { r = new RunData(id); runs.set(id, r); } return r; };
const persist = () => host.setState({ runIds: focus, smoothing: view.smoothing, logY: view.logY, xAxis: view.xAxis });

function subscribe(): void {
  for (const id of focus) host.send({ v: V, type: 'subscribe', runId: id });
}

function setFocus(ids: string[]): void {
  for (const id of focus) if (!ids.includes(id)) host.send({ v: V, type: 'unsubscribe', runId: id });
  focus = ids;
  selectedLayers.clear();
  historyLayer = null;
  draft = null;
  persist();
  subscribe();
  dirty = true;
}

/**
 * The schedule and minimum slot age as the trainer stated them (hello.srlora; an applied set's settings), never
 * recomputed here: null when the run's log predates hello.srlora.
 */
function ruleContext(r: RunData): { schedule: number[] | null; minSlotAge: number | null } {
  const m = r.model;
  // An older trainer's hello has no srlora block; a minSlotAge the run's config sets explicitly is still what the
  // trainer was told (a null one would have been derived by the trainer: unknown here).
  const configured = typeof m.config.minSlotAge === 'number' ? m.config.minSlotAge : null;
  return { schedule: m.schedule, minSlotAge: m.settings?.minSlotAge ?? m.minSlotAge ?? configured };
}

/** The trainer is working (or paused) and takes steering commands: only then does the page offer them. */
const steerable = (r: RunData) => isActive(r.model.state) && r.model.state !== 'stopping';

/** The rule shown: the draft being edited, else the one in force. */
function ruleShown(r: RunData): { fusionThreshold: number | null; fusionRatio: number } {
  if (draft) return { fusionThreshold: draft.mode === 'threshold' ? draft.tau : null, fusionRatio: draft.gamma };
  const s = r.model.settings;
  return { fusionThreshold: s?.fusionThreshold ?? null, fusionRatio: s?.fusionRatio ?? 0.5 };
}

function sendCommand(label: string, body: CommandBody): void {
  const r = current();
  if (!r) return;
  const requestId = `q${nextRequest++}`;
  commands.unshift({ requestId, runId: r.runId, label, status: 'requested' });
  commands.length = Math.min(commands.length, 12);
  host.send({ v: V, type: 'command', requestId, runId: r.runId, command: body });
  dirty = true;
}

// ------------------------------------------------------------------ incoming

const pendingSaves = new Map<string, string>();
/** Runs the host does not know (a mistyped id in the URL, a deleted run): said so, never "Loading…" forever. */
const missing = new Set<string>();

host.onMessage((msg: HubToViewer) => {
  switch (msg.type) {
    case 'runs':
      runList = msg.runs;
      if (focus.length === 0 && runList.length) {
        const pick = runList.find((r) => isActive(r.state)) ?? runList[runList.length - 1];
        setFocus([pick.runId]);
      }
      break;
    case 'snapshot': {
      missing.delete(msg.runId);
      const r = runData(msg.runId);
      r.reset(msg.truncated);
      for (const e of msg.events) r.apply(e);
      break;
    }
    case 'event':
      runData(msg.runId).apply(msg.event);
      break;
    case 'commandResult': {
      const unknown = msg.requestId === 'subscribe' && /^unknown run (.+)$/.exec(msg.error ?? '');
      if (unknown) missing.add(unknown[1]);
      const c = commands.find((x) => x.requestId === msg.requestId);
      if (c) { c.commandId = msg.commandId; c.status = msg.error ? `refused: ${msg.error}` : 'sent'; }
      break;
    }
    case 'saved': {
      const name = pendingSaves.get(msg.requestId) ?? 'file';
      pendingSaves.delete(msg.requestId);
      text(el.exportStatus, msg.path ? `saved ${msg.path}` : msg.error === 'cancelled' ? '' : `could not save ${name}: ${msg.error}`);
      break;
    }
    case 'focus':
      setFocus(msg.runIds);
      break;
  }
  dirty = true;
});
host.onStatus((ok, detail) => { text(el.conn, ok ? '' : `● ${detail}`); if (ok && host.kind === 'browser') subscribe(); });

// ------------------------------------------------------------------ controls

el.pause.addEventListener('click', () => {
  const r = current();
  if (r) sendCommand(r.model.state === 'paused' ? 'Resume' : 'Pause', { kind: r.model.state === 'paused' ? 'resume' : 'pause' });
});
el.recompose.addEventListener('click', () => sendCommand('Recompose all layers', { kind: 'recompose' }));
el.recomposeSel.addEventListener('click', () => {
  if (selectedLayers.size) sendCommand(`Recompose ${[...selectedLayers].join(', ')}`, { kind: 'recompose', layers: [...selectedLayers] });
});
el.checkpoint.addEventListener('click', () => sendCommand('Checkpoint', { kind: 'checkpoint' }));
el.stop.addEventListener('click', () => sendCommand('Stop', { kind: 'stop' }));
heatmap.onToggleLayer = (name) => {
  if (selectedLayers.has(name)) selectedLayers.delete(name); else selectedLayers.add(name);
  historyLayer = name;
  dirty = true;
};

function editDraft(change: Partial<NonNullable<typeof draft>>): void {
  const r = current();
  if (!r) return;
  const base = ruleShown(r);
  draft = { mode: base.fusionThreshold === null ? 'ratio' : 'threshold', tau: base.fusionThreshold ?? 1, gamma: base.fusionRatio, ...draft, ...change };
  dirty = true;
}
el.ruleRatio.addEventListener('change', () => { if (el.ruleRatio.checked) editDraft({ mode: 'ratio' }); });
el.ruleThreshold.addEventListener('change', () => { if (el.ruleThreshold.checked) editDraft({ mode: 'threshold' }); });
el.tauSlider.addEventListener('input', () => editDraft({ mode: 'threshold', tau: Number(el.tauSlider.value) }));
el.tauField.addEventListener('input', () => { const v = Number(el.tauField.value); if (Number.isFinite(v) && v >= 0) editDraft({ mode: 'threshold', tau: v }); });
el.gammaField.addEventListener('input', () => { const v = Number(el.gammaField.value); if (v > 0 && v <= 1) editDraft({ gamma: v }); });
el.apply.addEventListener('click', () => {
  if (!draft) return;
  const body: CommandBody = { kind: 'set', fusionThreshold: draft.mode === 'threshold' ? draft.tau : null, fusionRatio: draft.gamma };
  sendCommand(draft.mode === 'threshold' ? `Set τ = ${draft.tau}, γ = ${draft.gamma}` : `Set τ off, γ = ${draft.gamma}`, body);
  draft = null;
});
el.revert.addEventListener('click', () => { draft = null; dirty = true; });
el.smoothing.value = String(view.smoothing);
el.smoothing.addEventListener('input', () => { view.smoothing = Number(el.smoothing.value); persist(); dirty = true; });
el.logY.checked = view.logY;
el.logY.addEventListener('change', () => { view.logY = el.logY.checked; persist(); dirty = true; });
el.xAxis.value = view.xAxis;
el.xAxis.addEventListener('change', () => { view.xAxis = el.xAxis.value === 'time' ? 'time' : 'step'; persist(); dirty = true; });
el.historySelect.addEventListener('change', () => { historyLayer = el.historySelect.value; dirty = true; });
el.runSelect.addEventListener('change', () => { if (el.runSelect.value && el.runSelect.value !== focus[0]) setFocus([el.runSelect.value]); });

// ------------------------------------------------------------------ exports

function save(fileName: string, data: string, encoding: 'utf8' | 'base64', mime: string): void {
  if (host.kind === 'vscode') {
    // `<a download>` silently fails inside a webview: the host shows a save dialog instead.
    const requestId = `s${nextRequest++}`;
    pendingSaves.set(requestId, fileName);
    host.send({ v: V, type: 'save', requestId, fileName, encoding, data });
    return;
  }
  const bytes = encoding === 'base64' ? Uint8Array.from(atob(data), (c) => c.charCodeAt(0)) : new TextEncoder().encode(data);
  const url = URL.createObjectURL(new Blob([bytes], { type: mime }));
  const a = h('a', { href: url, download: fileName });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
const prefix = () => (current()?.model.name ?? 'srlora').replace(/[^\w.-]+/g, '_');
function saveCsv(name: string, csv: string): void { save(`${prefix()}-${name}`, csv, 'utf8', 'text/csv'); }
function savePng(canvas: HTMLCanvasElement, name: string): void { save(`${prefix()}-${name}`, canvas.toDataURL('image/png').split(',')[1], 'base64', 'image/png'); }

// ------------------------------------------------------------------ drawing

let dirty = true;
const drawn = { version: -1, focus: '' };
/** srlora.dashboard.importanceRate: heatmap redraws per second at most (a user's own edits redraw at once). */
const importanceEveryMs = 1000 / Math.max(1, Math.min(10, Number(document.body.dataset.importanceRate ?? 10)));
let lastImportanceDraw = 0;
let importanceKey = '';
let lossPending = false;
let importancePending = false;
let lastHeavy: 'loss' | 'importance' = 'importance';

function renderHeader(r: RunData): void {
  const m = r.model;
  text(el.name, focus.length > 1 ? `Compare: ${focus.map((id) => runs.get(id)?.model.name ?? id).join(' · ')}` : m.name);
  text(el.badge, m.state);
  el.badge.className = `badge state-${m.state}`;
  const eta = etaSeconds(m);
  const running = m.state === 'running';
  const { minSlotAge } = ruleContext(r);
  text(el.facts, [
    m.method ?? '?', m.backend || '?', `step ${m.step}/${m.totalSteps ?? '?'}`, running && eta !== null ? `ETA ${formatDuration(eta)}` : null,
    running && m.examplesPerSec ? `${Math.round(m.examplesPerSec)} ex/s` : null, `loss ${formatNumber(m.loss)}`,
    m.evalAccuracy !== null ? `eval acc ${(100 * m.evalAccuracy).toFixed(1)} %` : null,
    m.method === 'srlora' ? `${fusedCount(r)} recompositions` : null,
    m.method === 'srlora' ? (minSlotAge !== null ? `min slot age ${minSlotAge}` : 'min slot age unknown') : null,
    m.nonFiniteSteps ? `${m.nonFiniteSteps} steps skipped (non-finite gradients)` : null,
    m.rewinds ? `resumed ${m.rewinds}×` : null,
    m.stateReason ? `(${m.stateReason})` : null,
  ].filter(Boolean).join(' · '));
  const active = steerable(r);
  const srlora = m.method === 'srlora';
  text(el.pause, m.state === 'paused' ? 'Resume' : 'Pause');
  el.pause.disabled = !active;
  el.recompose.disabled = !active || !srlora;
  el.recomposeSel.disabled = !active || !srlora || selectedLayers.size === 0;
  text(el.recomposeSel, selectedLayers.size ? `Recompose ${selectedLayers.size} selected` : 'Recompose selected');
  el.checkpoint.disabled = !active;
  el.stop.disabled = !active;
  el.apply.disabled = !active || !srlora || draft === null;
  el.revert.disabled = draft === null;
  for (const c of [el.ruleRatio, el.ruleThreshold, el.tauField, el.gammaField] as Btn[]) c.disabled = !active || !srlora;
  el.tauSlider.disabled = !active || !srlora;
}

/** Nothing to steer: no run yet, or one the host does not know. */
function disableControls(): void {
  for (const c of [el.pause, el.recompose, el.recomposeSel, el.checkpoint, el.stop, el.apply, el.revert, el.ruleRatio, el.ruleThreshold, el.tauField, el.gammaField] as Btn[]) c.disabled = true;
  el.tauSlider.disabled = true;
}

/** Recompositions that fused at least one pair: the ones the loss chart marks. */
function fusedCount(r: RunData): number {
  return r.recompositions.filter((e) => e.layers.some((l) => l.slots.length > 0)).length;
}

function renderRule(r: RunData): void {
  const shown = ruleShown(r);
  const mode = shown.fusionThreshold === null ? 'ratio' : 'threshold';
  el.ruleRatio.checked = mode === 'ratio';
  el.ruleThreshold.checked = mode === 'threshold';
  const tau = shown.fusionThreshold ?? draft?.tau ?? 1;
  const maxHat = Math.max(3, ...(r.latestImportance?.layers.flatMap((l) => l.sHat) ?? [0]));
  el.tauSlider.max = maxHat.toFixed(2);
  if (document.activeElement !== el.tauSlider) el.tauSlider.value = String(tau);
  if (document.activeElement !== el.tauField) el.tauField.value = String(tau);
  if (document.activeElement !== el.gammaField) el.gammaField.value = String(shown.fusionRatio);
  const s = r.model.settings;
  text(el.inForce, s ? `In force: ${s.fusionThreshold === null ? `τ off, γ = ${s.fusionRatio}` : `τ = ${s.fusionThreshold} (γ = ${s.fusionRatio} when τ is off)`}${draft ? ' — editing: Apply sends the new rule.' : ''}` : '');
}

/** The exact SRLORA.md §3 selection for every layer, under the rule shown, at the latest snapshot. */
function previewMarks(r: RunData): Map<string, number[]> {
  const marks = new Map<string, number[]>();
  const imp = r.latestImportance;
  if (!imp || r.model.method !== 'srlora') return marks;
  const { minSlotAge } = ruleContext(r);
  if (minSlotAge === null || !steerable(r)) return marks; // unknown rule, or nothing will fuse: mark nothing
  const rule = { ...ruleShown(r), minSlotAge };
  for (const l of imp.layers) {
    const sel = selectSlots({ scores: l.S, age: l.age, p: l.p, rTarget: l.rTarget }, rule);
    marks.set(l.name, sel.slots);
  }
  return marks;
}

function renderImportance(r: RunData): void {
  const imp = r.latestImportance;
  const marks = previewMarks(r);
  const pairs = [...marks.values()].reduce((n, s) => n + s.length, 0);
  const layersHit = [...marks.values()].filter((s) => s.length).length;
  const { schedule, minSlotAge } = ruleContext(r);
  const next = schedule?.find((s) => s > r.model.step);
  const young = imp && minSlotAge !== null ? imp.layers.reduce((n, l) => n + l.age.filter((a) => a < minSlotAge).length, 0) : 0;
  text(el.preview, r.model.method !== 'srlora' ? `Recomposition is off for ${r.model.method ?? 'this'} runs.`
    : !steerable(r) ? `The run is ${r.model.state}: nothing will be recomposed.`
      : minSlotAge === null ? 'This run\'s log does not state its schedule and minimum slot age (it predates protocol 1.1): no preview.'
        : !imp ? 'Waiting for the first importance snapshot…'
          : `${pairs} pair${pairs === 1 ? '' : 's'} in ${layersHit} layer${layersHit === 1 ? '' : 's'} would fuse if recomposed now (step ${imp.step})`
          + (young ? `; ${young} pair${young === 1 ? ' is' : 's are'} younger than the min slot age ${minSlotAge} and cannot fuse` : '') + '; '
          + (schedule === null ? 'schedule unknown.' : next !== undefined ? `next scheduled recomposition after step ${next}.` : 'no scheduled recomposition left (forced only).'));
  text(el.heatInfo, imp ? `step ${imp.step}, ${imp.layers.length} layers × ${imp.layers[0]?.S.length ?? 0} slots; click a row to select it` : '');
  heatmap.render({ layers: imp?.layers ?? [], marked: marks, selected: selectedLayers });
  const names = r.model.layers.map((l) => l.name);
  if (el.historySelect.childElementCount !== names.length) {
    el.historySelect.replaceChildren(...names.map((n) => h('vscode-option', { value: n, selected: n === historyLayer }, n)));
  }
  historyLayer ??= names[0] ?? null;
  if (historyLayer && el.historySelect.value !== historyLayer) el.historySelect.value = historyLayer;
  if (historyLayer) drawSlotHistory(el.historyCanvas, r.frames, historyLayer);
}

let logKey = '';
function renderLog(r: RunData): void {
  const key = `${r.runId}:${r.resets}:${r.recompositions.length}`;
  if (key === logKey) return; // the table only changes when a recomposition arrives
  logKey = key;
  const rows: HTMLTableRowElement[] = [];
  for (let i = r.recompositions.length - 1; i >= 0 && rows.length < 200; i--) {
    const e = r.recompositions[i];
    for (const l of e.layers) {
      if (rows.length >= 200) break;
      const dirs = l.exhausted ? 'exhausted' : l.slots.length ? l.oldDirections.map((d, k) => `${d}→${l.newDirections[k]}`).join(' ') : 'none eligible';
      rows.push(h('tr', { class: e.trigger }, h('td', {}, String(e.step)), h('td', {}, e.trigger), h('td', {}, l.name), h('td', {}, l.slots.join(' ') || '–'),
        h('td', {}, dirs), h('td', {}, formatNumber(l.deltaNorm, 3)), h('td', {}, l.preservationError.toExponential(1))));
    }
  }
  el.logBody.replaceChildren(...rows);
}

function renderCommands(): void {
  for (const c of commands) {
    const acks = c.commandId ? runs.get(c.runId)?.acks.get(c.commandId) ?? [] : [];
    const last = acks[acks.length - 1];
    if (last) c.status = last.status === 'applied' ? `applied at step ${last.step}` : last.status === 'rejected' ? `rejected: ${last.reason ?? ''}` : 'received';
  }
  el.commandList.replaceChildren(...commands.map((c) => h('li', { class: c.status.startsWith('applied') ? 'ok' : /^(rejected|refused)/.test(c.status) ? 'bad' : '' }, `${c.label} — ${c.status}`)));
}

function renderRunSelect(): void {
  if (host.kind !== 'browser') return;
  const key = runList.map((r) => `${r.runId}:${r.name}:${r.method}:${r.state}`).join(',');
  if (el.runSelect.dataset.key !== key) {
    el.runSelect.dataset.key = key;
    // The focused run's option carries `selected`: the select re-reads its options when they change (after this
    // call returns) and would otherwise select the first one (an older run).
    el.runSelect.replaceChildren(...runList.map((r) => h('vscode-option', { value: r.runId, selected: r.runId === focus[0] }, `${r.name ?? r.runId} (${r.method ?? '?'}, ${r.state})`)));
  }
  if (focus[0] && el.runSelect.value !== focus[0]) el.runSelect.value = focus[0];
}

function frame(): void {
  requestAnimationFrame(frame);
  const r = current();
  const version = focus.reduce((n, id) => n + (runs.get(id)?.version ?? 0), 0);
  const key = focus.join(',');
  const changed = dirty || version !== drawn.version || key !== drawn.focus;
  if (changed) { lossPending = true; importancePending = true; }
  if (!changed && !lossPending && !importancePending) return;
  dirty = false;
  drawn.version = version;
  drawn.focus = key;
  if (changed) {
    renderRunSelect();
    renderCommands();
    text(el.smoothingValue, view.smoothing.toFixed(2));
  }
  if (!r) {
    const unknown = focus.filter((id) => missing.has(id));
    text(el.name, unknown.length ? `No run named “${unknown.join('”, “').slice(0, 200)}”` : focus.length ? 'Loading…' : 'No run selected');
    text(el.badge, unknown.length ? 'not found' : '…');
    el.badge.className = unknown.length ? 'badge state-failed' : 'badge';
    text(el.facts, unknown.length ? (host.kind === 'browser' && runList.length ? 'Pick a run above.' : 'Check the run id (the run folder\'s name).') : '');
    disableControls();
    return;
  }
  if (changed) {
    timed('header', () => { renderHeader(r); renderRule(r); });
    timed('log', () => renderLog(r));
  }
  // At most one heavy view per frame (the loss chart, or the importance views), alternating, so that one update
  // never costs the time of both in a single frame.
  const viewKey = `${focus[0]}:${JSON.stringify(draft)}:${[...selectedLayers].join()}:${historyLayer}:${r.resets}`;
  const now = performance.now();
  const importanceDue = importancePending && (viewKey !== importanceKey || now - lastImportanceDraw >= importanceEveryMs);
  if (lossPending && (!importanceDue || lastHeavy === 'importance')) {
    lossPending = false;
    lastHeavy = 'loss';
    timed('loss', () => chart.render(focus.map((id) => runs.get(id)).filter((x): x is RunData => x !== undefined), view));
  } else if (importanceDue) {
    importancePending = false;
    lastHeavy = 'importance';
    importanceKey = viewKey;
    lastImportanceDraw = now;
    timed('importance', () => renderImportance(r));
  }
}

/** User Timing marks per view (visible in the browser's performance tools; bench:dashboard reads them). */
function timed(name: string, fn: () => void): void {
  const t0 = performance.now();
  fn();
  if (timings) timings.push([name, performance.now() - t0]);
}
const timings: [string, number][] | null = params.has('profile') ? [] : null;
(window as unknown as { srloraTimings?: unknown }).srloraTimings = timings;

persist(); // the panel serializer restores this panel after a reload from this state
subscribe();
requestAnimationFrame(frame);
window.addEventListener('resize', () => { dirty = true; });
