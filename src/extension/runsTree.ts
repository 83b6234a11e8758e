/** The Runs view: each run with its state, step/total and latest loss; under it, its adapted layers. */
import * as vscode from 'vscode';
import type { ManagedRun, RunManager } from '../supervisor/runManager';
import { isActive, type LayerUsage } from '../viewmodel/runModel';
import { Throttle } from '../common/throttle';

export type RunsNode = { kind: 'run'; runId: string } | { kind: 'layer'; runId: string; layer: string };

const STATE_ICONS: Record<string, vscode.ThemeIcon> = {
  starting: new vscode.ThemeIcon('loading~spin'),
  running: new vscode.ThemeIcon('debug-start', new vscode.ThemeColor('testing.iconPassed')),
  paused: new vscode.ThemeIcon('debug-pause', new vscode.ThemeColor('debugIcon.pauseForeground')),
  stopping: new vscode.ThemeIcon('loading~spin'),
  // Only a finished run (every step done) gets the green check.
  finished: new vscode.ThemeIcon('pass', new vscode.ThemeColor('testing.iconPassed')),
  stopped: new vscode.ThemeIcon('debug-stop'),
  interrupted: new vscode.ThemeIcon('debug-disconnect', new vscode.ThemeColor('list.warningForeground')),
  failed: new vscode.ThemeIcon('error', new vscode.ThemeColor('testing.iconFailed')),
};

/**
 * The tree item's context value (package.json `when` clauses): `run.<state>`, plus `.viewed` for an active run another
 * supervisor owns (steering and Stop are offered only where they can act).
 */
export function runContextValue(run: ManagedRun): string {
  return `run.${run.model.state}${isActive(run.model.state) && !run.owned ? '.viewed' : ''}`;
}

export function runDescription(run: ManagedRun): string {
  if (run.loading) return 'reading its log…';
  const m = run.model;
  const steps = m.totalSteps ? `${m.step}/${m.totalSteps}` : `${m.step}`;
  return `${m.state} · ${steps}${m.loss !== null ? ` · loss ${m.loss.toFixed(4)}` : ''}`;
}

export class RunsTree implements vscode.TreeDataProvider<RunsNode>, vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<RunsNode | undefined>();
  readonly onDidChangeTreeData = this.changed.event;
  // A few refreshes a second at most, however fast the run streams.
  private readonly throttle = new Throttle(250, () => this.changed.fire(undefined));

  constructor(private readonly runs: RunManager) {
    runs.on('changed', () => this.throttle.schedule());
    runs.on('removed', () => this.throttle.schedule());
  }

  getChildren(node?: RunsNode): RunsNode[] {
    if (!node) return this.runs.list().map((r) => ({ kind: 'run', runId: r.runId }));
    if (node.kind === 'run') return (this.runs.runs.get(node.runId)?.model.layers ?? []).map((l) => ({ kind: 'layer', runId: node.runId, layer: l.name }));
    return [];
  }

  getTreeItem(node: RunsNode): vscode.TreeItem {
    const run = this.runs.runs.get(node.runId);
    if (!run) return new vscode.TreeItem('(removed)');
    if (node.kind === 'layer') {
      const l = run.model.layers.find((x) => x.name === node.layer) as LayerUsage;
      const item = new vscode.TreeItem(l.name);
      item.description = `${l.p}/${l.rTarget} directions`;
      item.tooltip = `${l.name}: ${l.shape[0]}×${l.shape[1]}, r = ${l.r}; directions used ${l.p} of ${l.rTarget}`;
      item.iconPath = new vscode.ThemeIcon('symbol-array');
      return item;
    }
    const m = run.model;
    const item = new vscode.TreeItem(m.name, m.layers.length ? vscode.TreeItemCollapsibleState.Collapsed : vscode.TreeItemCollapsibleState.None);
    item.id = run.runId;
    item.description = runDescription(run);
    item.iconPath = run.loading ? new vscode.ThemeIcon('loading~spin') : STATE_ICONS[m.state];
    item.contextValue = run.loading ? 'run.loading' : runContextValue(run);
    const c = m.config as Record<string, unknown>;
    const md = new vscode.MarkdownString(undefined, true);
    md.appendMarkdown(`**${m.name}** — ${m.state}${m.stateReason ? `: ${m.stateReason}` : ''}${isActive(m.state) && !run.owned ? ' (viewed read-only: another window or `srlora serve` runs it)' : ''}\n\n`);
    md.appendMarkdown(`| | |\n|---|---|\n| method | ${m.method ?? '?'} |\n| backend | ${m.backend || '?'} |\n| model | ${JSON.stringify(c.model ?? '?')} |\n| r / rTarget / α | ${c.r ?? '?'} / ${c.rTarget ?? '4·r'} / ${c.alpha ?? '?'} |\n| fusion | ${m.settings ? (m.settings.fusionThreshold === null ? `ratio γ = ${m.settings.fusionRatio}` : `threshold τ = ${m.settings.fusionThreshold}`) : '?'} |\n| step | ${m.step}/${m.totalSteps ?? '?'} |\n| eval accuracy | ${m.evalAccuracy !== null ? `${(100 * m.evalAccuracy).toFixed(1)} %` : '–'} |\n| folder | ${run.dir} |\n`);
    item.tooltip = md;
    item.command = { command: 'srlora.openDashboard', title: 'Open Dashboard', arguments: [{ kind: 'run', runId: run.runId }] };
    return item;
  }

  dispose(): void {
    this.throttle.cancel();
    this.changed.dispose();
  }
}
