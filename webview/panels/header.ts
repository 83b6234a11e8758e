/**
 * The header: the run's name, state badge and facts (step, ETA without paused time, pace, loss, eval, fusing
 * recompositions, min slot age), the browser page's run picker and compare picker, and the run controls (Stop asks
 * first, unless the user turned that off).
 */
import type { Store } from '../store';
import type { RunData } from '../runData';
import { formatDuration } from '../../src/common/formatDuration';
import { evalFact, evaluatingFact, isActive, plural, recompositionsText } from '../../src/viewmodel/runModel';
import { formatNumber, h, text } from '../dom';
import { button, runName, type Check, type Field, type Panel } from './panel';
import { focusSearch } from '../focusUrl';
import { continueCommand } from '../../src/viewmodel/continueCommand';

/**
 * The run can be steered from this page: with the store, the one rule (Store.control: this page's fold and the
 * host's facts about the trainer); without it, what the record alone says (active, not stopping).
 */
export const steerable = (r: RunData | undefined, store?: Store): boolean =>
  !!r && (store ? store.control(r.runId).canSteer : isActive(r.model.state) && r.model.state !== 'stopping');

/** Recompositions that fused at least one pair (the charts mark the others hollow). */
export function fusingRecompositions(r: RunData): number {
  return r.recompositions.filter((e) => e.layers.some((l) => l.slots.length > 0)).length;
}

/** "2 recompositions, 1 fused nothing": every recomposition counts, as summary.json and the terminal count them. */
export function recompositionCount(r: RunData): string {
  return recompositionsText(r.recompositions.length, r.recompositions.length - fusingRecompositions(r));
}

/**
 * The schedule and minimum slot age as the trainer stated them (hello.srlora; an applied set's settings), never
 * recomputed here. An older trainer's hello has no srlora block: a minSlotAge its config sets explicitly is still
 * what the trainer was told; otherwise unknown (null).
 */
export function ruleContext(r: RunData): { schedule: number[] | null; minSlotAge: number | null } {
  const m = r.model;
  const configured = typeof m.config.minSlotAge === 'number' ? m.config.minSlotAge : null;
  return { schedule: m.schedule, minSlotAge: m.settings?.minSlotAge ?? m.minSlotAge ?? configured };
}

// The eval's wording is the one reducer's (the Runs view's tooltip says the same); re-exported for the panels.
export { evalFact, evaluatingFact, plural };

/** The header's facts line of one run (what the run states; nothing live about a run that is not running). */
export function runFacts(r: RunData): string {
  const m = r.model;
  const running = m.state === 'running';
  const eta = r.etaSeconds();
  const { minSlotAge } = ruleContext(r);
  const srlora = m.method === 'srlora';
  return [
    m.method ?? '?', m.backend || '?', m.worldSize > 1 ? `${m.worldSize} ranks (DDP)` : null, `step ${m.step}/${m.totalSteps ?? '?'}`, running && eta !== null ? `ETA ${formatDuration(eta)}` : null,
    running && m.examplesPerSec ? `${Math.round(m.examplesPerSec)} ex/s` : null, `loss ${formatNumber(m.loss)}`,
    evalFact(m),
    srlora ? recompositionCount(r) : null,
    srlora ? (minSlotAge !== null ? `min slot age ${minSlotAge}` : 'min slot age unknown') : null,
    m.nonFiniteSteps ? `${plural(m.nonFiniteSteps, 'step')} skipped (non-finite gradients)` : null,
    m.rewinds ? `resumed ${m.rewinds}×` : null,
    m.stateReason ? `(${m.stateReason})` : null,
  ].filter(Boolean).join(' · ');
}

/**
 * The Stop confirmation, naming what this user can do to continue the run later: VS Code's Continue Run command in
 * VS Code; in the browser page (no commands there) the command line that resumes it from its checkpoint.
 */
export function stopQuestion(r: RunData, host: 'vscode' | 'browser', dir?: string): string {
  // The real command (the run's folder from the hub's run list; a multi-rank run's launcher on as many processes);
  // a hub too old to say the folder: serve's own --resume, which takes a run id.
  const later = host === 'vscode' ? 'to continue it later, use "SRLoRA: Continue Run from Checkpoint" (the Runs view)'
    : `to continue it later, run ${dir ? continueCommand(dir, r.model.pytorch, r.model.worldSize, r.model.launch) : `srlora serve --resume ${r.runId}`} in a terminal`;
  return `Stop the run? It saves a checkpoint and ends as stopped; ${later}.`;
}

/**
 * The compare heading: the runs shown (the badge counts those, not the ids asked for) and, by name, each id the hub
 * does not know or removed — `?runs=A,nope` dropped "nope" silently under a "2 runs" badge with one row.
 */
export function compareHeading(focus: string[], shown: RunData[], gone: (id: string) => boolean): { name: string; badge: string; facts: string } {
  const unknown = focus.filter(gone);
  const missing = unknown.length ? `No run named “${unknown.join('”, “').slice(0, 200)}” (not compared) · ` : '';
  return {
    name: `Compare: ${shown.map(runName).join(' · ')}`,
    badge: plural(shown.length, 'run'),
    facts: `${missing}${shown.length > 1 ? 'The table below compares the runs; every chart overlays them (one colour per run).' : 'Nothing to compare yet: one run shown.'}`,
  };
}

export class Header implements Panel {
  readonly element: HTMLElement;
  private readonly name = h('h1', { class: 'run-name' }, 'SRLoRA');
  private readonly badge = h('span', { class: 'badge', role: 'status' }, '…');
  /** An eval under way (protocol 1.3 `evaluating`): a long first eval must not look like a stuck page. */
  private readonly evaluating = h('span', { class: 'evaluating', role: 'status', hidden: true });
  private readonly facts = h('div', { class: 'facts', 'aria-live': 'polite' });
  private readonly conn = h('span', { class: 'conn' });
  private readonly runSelect = h('vscode-single-select', { 'aria-label': 'Run', class: 'run-select' }) as Field;
  /** The browser page's compare picker: a multi-select of the runs (@vscode-elements), and Compare. */
  private readonly compareSelect = h('vscode-multi-select', { 'aria-label': 'Runs to compare', class: 'compare-select', placeholder: 'Compare runs…' }) as HTMLElement & { value: string[]; open?: boolean };
  private readonly compareGo = button('Compare', 'Compare the chosen runs', () => this.onCompare(), true);
  private readonly comparePicker = h('span', { class: 'compare-picker' }, h('span', { class: 'muted' }, 'compare'), this.compareSelect, this.compareGo);
  private readonly pause = button('Pause', 'Pause the run', () => this.onPause(), false);
  private readonly confirmText = h('span', {});
  private readonly recompose = button('Recompose now', 'Recompose all layers now', () => this.store.command('Recompose all layers', { kind: 'recompose' }));
  private readonly recomposeSel = button('Recompose selected', 'Recompose the selected layers now', () => this.onRecomposeSelected());
  private readonly checkpoint = button('Checkpoint', 'Save a checkpoint now', () => this.store.command('Checkpoint', { kind: 'checkpoint' }));
  private readonly stop = button('Stop', 'Stop the run', () => this.onStop());
  private readonly confirmBar = h('div', { class: 'confirm', role: 'alertdialog', 'aria-label': 'Confirm stop', hidden: true });
  private readonly dontAsk = h('vscode-checkbox', { label: 'don\'t ask again' }) as Check;
  private pickerKey = '';

  constructor(private readonly store: Store) {
    const browser = store.host.kind === 'browser';
    this.confirmBar.append(
      this.confirmText,
      button('Stop the run', 'Confirm: stop the run', () => this.doStop(), false), button('Cancel', 'Cancel stopping', () => { this.confirmBar.hidden = true; }),
      ...(browser ? [this.dontAsk] : []),
    );
    this.element = h('header', {},
      h('div', { class: 'title' }, this.name, this.badge, this.evaluating, this.conn, browser ? this.runSelect : null, browser ? this.comparePicker : null),
      this.facts,
      h('div', { class: 'toolbar', role: 'toolbar', 'aria-label': 'Run controls' }, this.pause, this.recompose, this.recomposeSel, this.checkpoint, this.stop),
      this.confirmBar);
    this.runSelect.addEventListener('change', () => { if (this.runSelect.value && this.runSelect.value !== store.focus[0]) this.choose([this.runSelect.value]); });
    // Subscribe again only after a lost connection: the page's first subscribe is queued until the socket opens, and
    // a second one there made the hub send every run's whole snapshot twice (at 1,000,000 steps: a second full load).
    let lost = false;
    // "since 12s" moves on while nothing arrives (the eval's own message is what ends it)
    setInterval(() => { if (!this.evaluating.hidden) this.showEvaluating(); }, 1000);
    store.host.onStatus((ok, detail) => {
      text(this.conn, ok ? '' : `● ${detail}`);
      if (!ok) lost = true;
      else if (lost && browser) { lost = false; store.subscribe(); }
    });
  }

  private onPause(): void {
    const r = this.store.current();
    if (r) this.store.command(r.model.state === 'paused' ? 'Resume' : 'Pause', { kind: r.model.state === 'paused' ? 'resume' : 'pause' });
  }

  private onCompare(): void {
    const ids = [...this.compareSelect.value];
    if (ids.length) this.choose(ids);
  }

  /** The user chose runs in the page's pickers: show them and name them in the URL (`?run=ID`, `?runs=A,B`), which
   * the page reads when it loads — a reload kept `?run=` of the first run and lost the comparison. */
  private choose(ids: string[]): void {
    this.store.setFocus(ids);
    history.replaceState(history.state, '', `${location.pathname}${focusSearch(location.search, ids)}${location.hash}`);
  }

  private onRecomposeSelected(): void {
    const layers = [...this.store.selectedLayers];
    if (layers.length) this.store.command(`Recompose ${layers.join(', ')}`, { kind: 'recompose', layers });
  }

  private onStop(): void {
    if (!this.store.confirmStop) { this.doStop(); return; }
    const r = this.store.current();
    if (r) text(this.confirmText, stopQuestion(r, this.store.host.kind, this.store.runList.find((s) => s.runId === r.runId)?.dir));
    this.confirmBar.hidden = false;
    (this.confirmBar.querySelector('vscode-button') as HTMLElement | null)?.focus();
  }

  private doStop(): void {
    this.confirmBar.hidden = true;
    if (this.dontAsk.checked) { this.store.confirmStop = false; this.store.persist(); }
    this.store.command('Stop', { kind: 'stop' });
  }

  private showEvaluating(): void {
    const r = this.store.focus.length > 1 ? undefined : this.store.current();
    const fact = r ? evaluatingFact(r.model, Date.now()) : null;
    this.evaluating.hidden = !fact;
    text(this.evaluating, fact ?? '');
  }

  update(): void {
    this.renderPickers();
    this.showEvaluating();
    const store = this.store, r = store.current();
    if (!r) {
      const removed = store.focus.filter((id) => store.removed.has(id));
      if (removed.length) {
        text(this.name, `Run “${removed[0].slice(0, 200)}” was removed`);
        text(this.badge, 'removed');
        this.badge.className = 'badge state-failed';
        text(this.facts, `${store.removed.get(removed[0]) ?? ''}${store.host.kind === 'browser' && store.runList.length ? ' · Pick a run above.' : ''}`);
        for (const b of [this.pause, this.recompose, this.recomposeSel, this.checkpoint, this.stop]) b.disabled = true;
        return;
      }
      const unknown = store.focus.filter((id) => store.missing.has(id));
      text(this.name, unknown.length ? `No run named “${unknown.join('”, “').slice(0, 200)}”` : store.focus.length ? 'Loading…' : 'No run selected');
      text(this.badge, unknown.length ? 'not found' : '…');
      this.badge.className = unknown.length ? 'badge state-failed' : 'badge';
      text(this.facts, unknown.length ? (store.host.kind === 'browser' && store.runList.length ? 'Pick a run above.' : 'Check the run id (the run folder\'s name).') : '');
      for (const b of [this.pause, this.recompose, this.recomposeSel, this.checkpoint, this.stop]) b.disabled = true;
      return;
    }
    const m = r.model;
    const compare = store.focus.length > 1;
    const head = compare ? compareHeading(store.focus, store.focused(), (id) => store.missing.has(id) || store.removed.has(id)) : null;
    text(this.name, head ? head.name : runName(r));
    text(this.badge, head ? head.badge : m.state);
    this.badge.className = compare ? 'badge' : `badge state-${m.state}`;
    const blocked = compare || !isActive(m.state) || m.state === 'stopping' ? null : store.steerBlock(r.runId);
    // Why the controls are off, where the user looks for them (e.g. "started from a terminal: this page follows it read-only").
    text(this.facts, head ? head.facts : blocked ? `${runFacts(r)} · ${blocked}` : runFacts(r));
    const srlora = m.method === 'srlora';
    const active = steerable(r, store) && !compare;
    const sel = store.selectedLayers.size;
    // The button says what it will do (its label and its accessible name follow the run's state).
    const paused = m.state === 'paused';
    text(this.pause, paused ? 'Resume' : 'Pause');
    const pauseName = paused ? 'Resume the run' : 'Pause the run';
    if (this.pause.getAttribute('aria-label') !== pauseName) { this.pause.setAttribute('aria-label', pauseName); this.pause.setAttribute('title', pauseName); }
    this.pause.disabled = !active;
    this.recompose.disabled = !active || !srlora;
    this.recomposeSel.disabled = !active || !srlora || sel === 0;
    text(this.recomposeSel, sel ? `Recompose ${sel} selected` : 'Recompose selected');
    this.checkpoint.disabled = !active;
    this.stop.disabled = !active;
    if (!active) this.confirmBar.hidden = true;
  }

  /** The browser page's pickers: one run to show, or runs to compare (the URL follows the choice: a reload keeps it). */
  private renderPickers(): void {
    const store = this.store;
    if (store.host.kind !== 'browser') return;
    const key = store.runList.map((r) => `${r.runId}:${r.name}:${r.method}:${r.state}`).join(',') + '|' + store.focus.join(',');
    if (key !== this.pickerKey && !this.compareSelect.matches(':focus-within')) { // never under the user's hands
      this.pickerKey = key;
      // The focused run's option carries `selected`: the select re-reads its options after they are replaced and
      // would otherwise select the first one (an older run) — the picker showed a finished run after Pause.
      this.runSelect.replaceChildren(...store.runList.map((r) => h('vscode-option', { value: r.runId, selected: r.runId === store.focus[0] }, `${r.name ?? r.runId} (${r.method ?? '?'}, ${r.state})`)));
      this.compareSelect.replaceChildren(...store.runList.map((r) => h('vscode-option', { value: r.runId, selected: store.focus.length > 1 && store.focus.includes(r.runId) }, `${r.name ?? r.runId} (${r.method ?? '?'}, ${r.state})`)));
    }
    if (store.focus[0] && this.runSelect.value !== store.focus[0]) this.runSelect.value = store.focus[0];
  }
}
