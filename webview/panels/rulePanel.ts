/**
 * The fusion rule: the rule in force (what the trainer acked), a draft being edited, and a live preview of what a
 * recomposition would fuse now under the draft (SRLORA.md §3 selection, with the trainer's stated min slot age).
 * τ and γ validate with the palette's own parsing (src/srlora/commandInput.ts): an invalid value says why, previews
 * nothing and cannot be applied.
 */
import type { Store } from '../store';
import { importanceKey, type RunData } from '../runData';
import type { LayerImportance } from '../../src/protocol/messages';
import { selectionKey, selectSlots } from '../../src/srlora/rule';
import type { FusionSelect } from '../../src/viewmodel/runModel';

/** Why a run that cannot be steered gets no preview, in words (FRESH8 F6: "The run is failed: nothing will be recomposed."). */
function notSteerableText(state: string): string {
  switch (state) {
    case 'failed': return 'This run failed: it will not be recomposed.';
    case 'finished': return 'This run has finished: it will not be recomposed again.';
    case 'stopped': return 'This run was stopped: it will not be recomposed again.';
    case 'interrupted': return 'This run was interrupted: nothing is recomposed until it is resumed.';
    default: return `This run is not running (${state}): nothing is recomposed now.`;
  }
}

/** What each fusionSelect fuses first, in words (the rule panel's labels and preview). */
export const SELECT_WORDS: Record<FusionSelect, string> = {
  'least-important': 'least important', 'most-important': 'most important (an ablation)', oldest: 'oldest (an ablation)', random: 'random, seeded (an ablation)',
};
import { parseRatio, parseThreshold } from '../../src/srlora/commandInput';
import { h, text } from '../dom';
import { button, section, type Btn, type Check, type Field, type Panel } from './panel';
import { ruleContext, steerable } from './header';
import { noRecompositionText } from './fusionSummary';

interface Draft { mode: 'ratio' | 'threshold'; tau: number; gamma: number; tauText: string; gammaText: string; error: string | null }

/** The ratio rule's label under the trainer's fusionSelect. */
export function ratioLabel(select: FusionSelect): string {
  return select === 'least-important' ? 'τ off — the paper\'s rule: the ⌈γ·r⌉ least important pairs' : `τ off — the ⌈γ·r⌉ ${SELECT_WORDS[select]} pairs old enough to fuse`;
}

/**
 * The preview's clause on the pairs too young to fuse (age < min slot age), after "N pairs … would fuse": they are
 * never among those N, so "other" when N > 0 ("24 pairs would fuse; 24 pairs are younger … and cannot fuse" read as a
 * contradiction, FINDINGS session 7). '' when none is too young.
 */
export function youngClause(young: number, fusing: number, minSlotAge: number | null): string {
  if (!young) return '';
  return `; ${young} ${fusing > 0 ? 'other ' : ''}pair${young === 1 ? ' is' : 's are'} younger than the min slot age ${minSlotAge} and cannot fuse yet`;
}

/**
 * Which slots of each layer a recomposition would fuse now, under `rule` and the selection the trainer states
 * (hello.srlora.fusionSelect) — SRLORA.md §3 through the trainers' own selectSlots. 'random' draws from the run's
 * seed, the step the recomposition would run after (now when paused, else the next step) and the layer's index
 * in the hello, as the trainers do.
 */
export function previewMarks(r: RunData, imp: { layers: LayerImportance[] }, rule: { fusionThreshold: number | null; fusionRatio: number; minSlotAge: number }): Map<string, number[]> {
  const marks = new Map<string, number[]>();
  const fusionSelect = r.model.fusionSelect ?? 'least-important';
  const seed = typeof r.model.config.seed === 'number' ? r.model.config.seed : 0;
  const step = r.model.state === 'paused' ? r.model.step : r.model.step + 1;
  const index = new Map(r.model.layers.map((l, i) => [l.name, i]));
  for (const l of imp.layers) {
    const randomKey = selectionKey(seed, step, index.get(l.name) ?? 0);
    marks.set(l.name, selectSlots({ scores: l.S, age: l.age, p: l.p, rTarget: l.rTarget, randomKey }, { ...rule, fusionSelect }).slots);
  }
  return marks;
}

export class RulePanel implements Panel {
  readonly element: HTMLElement;
  /** The rule being edited (null = not editing: the rule in force is shown). */
  draft: Draft | null = null;
  private readonly ruleRatio = h('vscode-radio', { name: 'rule', value: 'ratio', label: ratioLabel('least-important') }) as Check;
  private readonly selection = h('p', { class: 'muted' });
  private readonly ruleThreshold = h('vscode-radio', { name: 'rule', value: 'threshold', label: 'threshold τ — every pair old enough to fuse with ŝ < τ' }) as Check;
  private readonly tauSlider = h('input', { type: 'range', min: '0', max: '3', step: '0.01', 'aria-label': 'Fusion threshold τ', class: 'slider' }) as HTMLInputElement;
  private readonly tauField = h('vscode-textfield', { 'aria-label': 'Fusion threshold τ value', class: 'num', inputmode: 'decimal' }) as Field;
  private readonly gammaField = h('vscode-textfield', { 'aria-label': 'Fusion ratio γ', class: 'num', inputmode: 'decimal' }) as Field;
  private readonly error = h('p', { class: 'field-error', role: 'alert' });
  private readonly apply = button('Apply', 'Apply the fusion rule to the run', () => this.onApply(), false);
  private readonly revert = button('Revert', 'Revert to the rule in force', () => { this.draft = null; this.store.changed(); });
  readonly preview = h('p', { class: 'preview', 'aria-live': 'polite' });
  private readonly inForce = h('p', { class: 'muted' });
  private runKey = '';
  private sliderStep = '';

  constructor(private readonly store: Store, commands: HTMLElement) {
    this.element = section('Fusion rule', h('vscode-radio-group', { variant: 'vertical', 'aria-label': 'Fusion rule' }, this.ruleRatio, this.ruleThreshold),
      h('div', { class: 'row' }, h('label', {}, 'τ ', this.tauSlider), this.tauField, h('label', {}, 'γ ', this.gammaField)),
      this.selection, this.error, this.preview, h('div', { class: 'row' }, this.apply, this.revert), this.inForce, commands);
    this.ruleRatio.addEventListener('change', () => { if (this.ruleRatio.checked) this.edit({ mode: 'ratio' }); });
    this.ruleThreshold.addEventListener('change', () => { if (this.ruleThreshold.checked) this.edit({ mode: 'threshold' }); });
    this.tauSlider.addEventListener('input', () => this.edit({ mode: 'threshold', tauText: this.tauSlider.value }));
    this.tauField.addEventListener('input', () => this.edit({ tauText: this.tauField.value }));
    this.gammaField.addEventListener('input', () => this.edit({ gammaText: this.gammaField.value }));
  }

  /** The rule shown: the draft being edited (when valid), else the one in force. */
  shown(r: RunData): { fusionThreshold: number | null; fusionRatio: number } | null {
    if (this.draft) return this.draft.error ? null : { fusionThreshold: this.draft.mode === 'threshold' ? this.draft.tau : null, fusionRatio: this.draft.gamma };
    const s = r.model.settings;
    return { fusionThreshold: s?.fusionThreshold ?? null, fusionRatio: s?.fusionRatio ?? (r.model.startRule?.kind === 'ratio' ? r.model.startRule.fusionRatio : 0.5) };
  }

  private edit(change: Partial<Draft>): void {
    const r = this.store.current();
    if (!r) return;
    const s = r.model.settings;
    const base: Draft = this.draft ?? {
      mode: s?.fusionThreshold === null || s?.fusionThreshold === undefined ? 'ratio' : 'threshold', tau: s?.fusionThreshold ?? 1, gamma: s?.fusionRatio ?? 0.5,
      tauText: String(s?.fusionThreshold ?? 1), gammaText: String(s?.fusionRatio ?? 0.5), error: null,
    };
    const d: Draft = { ...base, ...change };
    // Exactly the palette's parsing: "off" or empty τ turns the threshold off; anything else must be a number ≥ 0.
    const tau = parseThreshold(d.tauText), gamma = parseRatio(d.gammaText);
    d.error = null;
    if (!tau.ok) d.error = `τ: ${tau.message}`;
    else if (change.tauText !== undefined) { if (tau.value === null) d.mode = 'ratio'; else { d.tau = tau.value; if (change.mode === undefined) d.mode = 'threshold'; } }
    if (!gamma.ok) d.error = `γ: ${gamma.message}`;
    else d.gamma = gamma.value;
    this.draft = d;
    this.store.changed();
  }

  private onApply(): void {
    const d = this.draft;
    if (!d || d.error) return;
    this.store.command(d.mode === 'threshold' ? `Set τ = ${d.tau}, γ = ${d.gamma}` : `Set τ off, γ = ${d.gamma}`,
      { kind: 'set', fusionThreshold: d.mode === 'threshold' ? d.tau : null, fusionRatio: d.gamma });
    this.draft = null;
  }

  /** The §3 selection for every layer under the rule shown, at the latest snapshot (empty when not steerable). */
  marks(r: RunData): Map<string, number[]> {
    // Cached: the header and the heatmap ask on every change; the selection only changes with these.
    const key = `${r.runId}:${r.resets}:${importanceKey(r)}:${JSON.stringify(this.draft)}:${JSON.stringify(r.model.settings)}:${r.model.state}:${this.store.focus.length}:${r.model.fusionSelect}:${r.model.fusionSelect === 'random' ? r.model.step : ''}`;
    if (this.marksCache?.key === key) return this.marksCache.marks;
    const marks = this.computeMarks(r);
    this.marksCache = { key, marks };
    return marks;
  }
  private marksCache: { key: string; marks: Map<string, number[]> } | null = null;

  private computeMarks(r: RunData): Map<string, number[]> {
    const marks = new Map<string, number[]>();
    const imp = r.latestImportance, shown = this.shown(r);
    const { minSlotAge } = ruleContext(r);
    if (!imp || r.model.method !== 'srlora' || minSlotAge === null || !steerable(r) || !shown || this.store.focus.length > 1) return marks;
    for (const [k, v] of previewMarks(r, imp, { ...shown, minSlotAge })) marks.set(k, v);
    return marks;
  }

  update(): void {
    const r = this.store.current();
    const key = `${this.store.focus.join(',')}:${r?.resets ?? -1}`;
    if (key !== this.runKey) { this.runKey = key; this.draft = null; }
    const editable = steerable(r, this.store) && r?.model.method === 'srlora' && this.store.focus.length === 1;
    for (const c of [this.ruleRatio, this.ruleThreshold, this.tauField, this.gammaField] as Btn[]) c.disabled = !editable;
    this.tauSlider.disabled = !editable;
    this.apply.disabled = !editable || !this.draft || this.draft.error !== null;
    this.revert.disabled = this.draft === null;
    text(this.error, this.draft?.error ?? '');
    this.tauField.invalid = this.draft?.error?.startsWith('τ') ?? false;
    this.gammaField.invalid = this.draft?.error?.startsWith('γ') ?? false;
    if (!r) { text(this.preview, ''); text(this.inForce, ''); return; }
    const d = this.draft, s = r.model.settings;
    const mode = d ? d.mode : s?.fusionThreshold === null || s?.fusionThreshold === undefined ? 'ratio' : 'threshold';
    const select = r.model.fusionSelect ?? 'least-important';
    const label = ratioLabel(select);
    if (this.ruleRatio.getAttribute('label') !== label) this.ruleRatio.setAttribute('label', label);
    text(this.selection, r.model.method !== 'srlora' ? '' : `Selection (set by the run's config, fusionSelect): ${SELECT_WORDS[select]} first${r.model.reinitOptimizer ? `; fused slots' Adam state: ${r.model.reinitOptimizer}` : ''}.`);
    this.ruleRatio.checked = mode === 'ratio';
    this.ruleThreshold.checked = mode === 'threshold';
    if (this.sliderStep !== importanceKey(r)) {
      this.sliderStep = importanceKey(r);
      let maxHat = 3;
      for (const l of r.latestImportance?.layers ?? []) for (const v of l.sHat) if (v > maxHat) maxHat = v;
      this.tauSlider.max = maxHat.toFixed(2);
    }
    const tauText = d ? d.tauText : String(s?.fusionThreshold ?? 'off');
    const gammaText = d ? d.gammaText : String(s?.fusionRatio ?? 0.5);
    if (document.activeElement !== this.tauSlider && d?.tau !== undefined) this.tauSlider.value = String(d.tau);
    else if (document.activeElement !== this.tauSlider && s?.fusionThreshold != null) this.tauSlider.value = String(s.fusionThreshold);
    if (document.activeElement !== this.tauField && this.tauField.value !== tauText) this.tauField.value = tauText;
    if (document.activeElement !== this.gammaField && this.gammaField.value !== gammaText) this.gammaField.value = gammaText;
    text(this.inForce, s ? `In force: ${s.fusionThreshold === null ? `τ off, γ = ${s.fusionRatio}` : `τ = ${s.fusionThreshold} (γ = ${s.fusionRatio} when τ is off)`}${s.minSlotAge !== undefined ? `, min slot age ${s.minSlotAge}` : ''}${d ? ' — editing: Apply sends the new rule.' : ''}` : '');
    this.renderPreview(r);
  }

  private previewKey = '';
  private renderPreview(r: RunData): void {
    const key = `${r.runId}:${r.resets}:${importanceKey(r)}:${r.model.step}:${JSON.stringify(this.draft)}:${JSON.stringify(r.model.settings)}:${r.model.state}:${this.store.focus.length}`;
    if (key === this.previewKey) return;
    this.previewKey = key;
    const imp = r.latestImportance;
    const marks = this.marks(r);
    const pairs = [...marks.values()].reduce((n, s) => n + s.length, 0);
    const layersHit = [...marks.values()].filter((s) => s.length).length;
    const { schedule, minSlotAge } = ruleContext(r);
    const next = schedule?.find((s) => s > r.model.step);
    const young = imp && minSlotAge !== null ? imp.layers.reduce((n, l) => n + l.age.filter((a) => a < minSlotAge).length, 0) : 0;
    text(this.preview, this.store.focus.length > 1 ? ''
      : noRecompositionText(r.model) ?? (!steerable(r) ? notSteerableText(r.model.state)
          : this.draft?.error ? 'No preview: the rule being edited is not valid.'
            : minSlotAge === null ? 'The trainer did not state this run\'s schedule and minimum slot age (hello.srlora, protocol 1.1): no preview.'
              : !imp ? 'Waiting for the first importance snapshot…'
                : `${pairs} pair${pairs === 1 ? '' : 's'} in ${layersHit} layer${layersHit === 1 ? '' : 's'} would fuse if recomposed now (step ${imp.step}`
                + `${r.model.fusionSelect && r.model.fusionSelect !== 'least-important' ? `, ${SELECT_WORDS[r.model.fusionSelect]} first${r.model.fusionSelect === 'random' ? ': the draw changes with the step' : ''}` : ''})`
                + youngClause(young, pairs, minSlotAge) + '; '
                + (schedule === null ? 'schedule unknown.' : next !== undefined ? `next scheduled recomposition after step ${next}.` : 'no scheduled recomposition left (forced only).')));
  }
}
