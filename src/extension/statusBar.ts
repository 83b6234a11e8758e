/** The status-bar item of the active run: state, step/total, loss; a click opens its dashboard. */
import * as vscode from 'vscode';
import type { RunManager } from '../supervisor/runManager';
import { Throttle } from '../common/throttle';

export class RunStatusBar implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem('srlora.activeRun', vscode.StatusBarAlignment.Left, 50);
  private readonly throttle = new Throttle(250, () => this.render());

  constructor(private readonly runs: RunManager, private readonly activeRunId: () => string | undefined) {
    this.item.name = 'SRLoRA run';
    this.item.command = 'srlora.openDashboard';
    runs.on('changed', () => this.throttle.schedule());
    runs.on('removed', () => this.throttle.schedule());
  }

  render(): void {
    const id = this.activeRunId();
    const run = id ? this.runs.runs.get(id) : undefined;
    if (!run) { this.item.hide(); return; }
    const m = run.model;
    const icon = ({ paused: '$(debug-pause)', running: '$(pulse)', failed: '$(error)', finished: '$(pass)', stopped: '$(debug-stop)', interrupted: '$(debug-disconnect)' } as Record<string, string>)[m.state] ?? '$(loading~spin)';
    this.item.text = `${icon} SRLoRA ${m.state} ${m.step}/${m.totalSteps ?? '?'}${m.loss !== null ? ` · loss ${m.loss.toFixed(3)}` : ''}`;
    this.item.tooltip = `${m.name} (${m.method ?? '?'}): click to open the dashboard`;
    this.item.show();
  }

  dispose(): void {
    this.throttle.cancel();
    this.item.dispose();
  }
}
