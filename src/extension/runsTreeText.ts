/**
 * The Runs view's words for a run (description, tooltip, menu context), with no `vscode` import so tests read them.
 * Every fact comes from the one reducer's model and its helpers (evalFact, etaSeconds, steerControl via
 * RunManager.control): the tree says what the dashboard and the hub's run list say.
 */
import type { RunControl } from '../protocol/messages';
import type { ManagedRun } from '../supervisor/runManager';
import { etaSeconds, evalFact, isActive } from '../viewmodel/runModel';
import { formatDuration } from '../common/formatDuration';

/**
 * The tree item's context value (package.json `when` clauses): `run.<state>`, plus `.viewed` for an active run another
 * supervisor owns (neither steering nor Stop offered), or `.nosteer` for a running or paused run of ours that steering
 * cannot reach now (control: e.g. its trainer is not connected), where Stop stays offered and steering is not.
 */
export function runContextValue(run: ManagedRun, control: RunControl): string {
  const state = run.model.state;
  if (isActive(state) && !run.owned) return `run.${state}.viewed`;
  return `run.${state}${(state === 'running' || state === 'paused') && !control.canSteer ? '.nosteer' : ''}`;
}

/** "running · 40/100 · loss 0.1234 · ETA 2m05s". */
export function runDescription(run: ManagedRun): string {
  if (run.loading) return 'reading its log…';
  const m = run.model;
  const steps = m.totalSteps ? `${m.step}/${m.totalSteps}` : `${m.step}`;
  const eta = etaSeconds(m);
  return `${m.state} · ${steps}${m.loss !== null ? ` · loss ${m.loss.toFixed(4)}` : ''}${eta !== null ? ` · ETA ${formatDuration(eta)}` : ''}`;
}

const cell = (v: unknown): string => String(v).replace(/\|/g, '\\|').replace(/\n/g, ' ');

/** The tooltip's Markdown: state (and why steering is off), then the run's facts, the eval with its step. */
export function runTooltip(run: ManagedRun, control: RunControl): string {
  const m = run.model;
  const c = m.config as Record<string, unknown>;
  const why = isActive(m.state) && !control.canSteer && control.reason ? ` (steering off: ${control.reason})` : '';
  const eta = etaSeconds(m);
  const rows: [string, string][] = [
    ['method', m.method ?? '?'], ['backend', m.backend || '?'], ['model', JSON.stringify(c.model ?? '?')],
    ['r / rTarget / α', `${String(c.r ?? '?')} / ${String(c.rTarget ?? '4·r')} / ${String(c.alpha ?? '?')}`],
    ['fusion', m.settings ? (m.settings.fusionThreshold === null ? `ratio γ = ${m.settings.fusionRatio}` : `threshold τ = ${m.settings.fusionThreshold}`) : '?'],
    ['step', `${m.step}/${m.totalSteps ?? '?'}${eta !== null ? ` (ETA ${formatDuration(eta)})` : ''}`],
    // With the step it was measured at, and "stale" once a newer eval was due: an old number must not read as current.
    ['eval', evalFact(m) ?? '–'],
    ['folder', run.dir],
  ];
  return `**${m.name}** — ${m.state}${m.stateReason ? `: ${m.stateReason}` : ''}${why}\n\n| | |\n|---|---|\n${rows.map(([k, v]) => `| ${k} | ${cell(v)} |`).join('\n')}\n`;
}
