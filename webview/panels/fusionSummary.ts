/** What the fusion rule picked, in numbers and words (pure: the fused-pairs panel shows it; Node tests check it). */
import type { RunData } from '../runData';
import { isActive, type Fusion, type RunModel } from '../../src/viewmodel/runModel';
import { plural } from './header';

/** How the selections went: how many fused only pairs the previous recomposition had just re-initialised. */
export function freshSummary(fusions: Fusion[]): { selections: number; later: number; allFresh: number; pairs: number; freshPairs: number; medianAge: number | null } {
  const later = fusions.filter((f) => f.previousStep !== null);
  const ages = fusions.flatMap((f) => f.ages).sort((a, b) => a - b);
  return {
    selections: fusions.length, later: later.length,
    allFresh: later.filter((f) => f.fresh === f.slots.length).length,
    pairs: ages.length, freshPairs: later.reduce((n, f) => n + f.fresh, 0),
    medianAge: ages.length ? ages[Math.floor(ages.length / 2)] : null,
  };
}

/**
 * Why nothing is or will be recomposed in this run, or null for an SRLoRA run: a lora/pissa run never recomposes; a
 * run whose trainer has not said hello has no method yet (a run that failed at once — e.g. a config its trainer
 * cannot run — read "Recomposition is off for this runs.", blaming a method it never had).
 */
export function noRecompositionText(m: Pick<RunModel, 'method' | 'state' | 'stateReason'>): string | null {
  if (m.method === 'srlora') return null;
  if (m.method !== null) return `Recomposition is off in ${m.method} runs (only srlora recomposes).`;
  if (isActive(m.state)) return 'Waiting for the trainer\'s hello (it states the run\'s method)…';
  const ended = m.state === 'stopped' || m.state === 'interrupted' ? `was ${m.state}` : m.state;
  const reason = m.stateReason ? ` (${m.stateReason.length > 160 ? `${m.stateReason.slice(0, 160)}…` : m.stateReason})` : '';
  return `Nothing was recomposed: the run ${ended} before its trainer started training${reason}.`;
}

/** The summary line under the fused-pairs chart (and whether it is a warning). */
export function freshText(r: RunData): { text: string; warn: boolean } {
  const m = r.model;
  const off = noRecompositionText(m);
  if (off !== null) return { text: m.method !== null ? `Nothing fuses in ${m.method} runs.` : off, warn: false };
  const s = freshSummary(m.fusions);
  if (!s.selections) return { text: 'No pair fused yet.', warn: false };
  const base = `${plural(s.pairs, 'pair')} fused in ${plural(s.selections, 'selection')} (layer × recomposition); median age ${s.medianAge} steps.`;
  if (!s.later) return { text: base, warn: false };
  const warn = s.later >= 2 && s.allFresh / s.later >= 0.5;
  return {
    warn,
    text: `${base} ${s.allFresh} of ${s.later} later selections fused only pairs the previous recomposition had just re-initialised (${plural(s.freshPairs, 'pair')} in all)`
      + (warn ? ' — the freshest pairs are fused again: their scores are small because they are new, so the rule mostly re-fuses them. Compare fusionSelect oldest or random on your task.' : '.'),
  };
}
