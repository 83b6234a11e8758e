/** The Runs view: each run with its state, step/total and latest loss; under it, its adapted layers. */
import * as vscode from 'vscode';
import type { RunManager } from '../supervisor/runManager';
import type { LayerUsage } from '../viewmodel/runModel';
import { runContextValue, runDescription, runTooltip } from './runsTreeText';
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
    const control = this.runs.control(run.runId);
    item.contextValue = run.loading ? 'run.loading' : runContextValue(run, control);
    item.tooltip = new vscode.MarkdownString(runTooltip(run, control), true);
    item.command = { command: 'srlora.openDashboard', title: 'Open Dashboard', arguments: [{ kind: 'run', runId: run.runId }] };
    return item;
  }

  dispose(): void {
    this.throttle.cancel();
    this.changed.dispose();
  }
}
