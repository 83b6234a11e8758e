/**
 * The dashboard as a VS Code webview panel: strict CSP (default-src 'none'; scripts by per-render nonce; styles,
 * fonts and images from webview.cspSource), localResourceRoots limited to dist/ and media/, restored after a reload
 * by a serializer. The page speaks the viewer protocol (src/protocol/messages.ts) to this host, which answers from
 * the in-process hub: a snapshot when the page asks (on load, i.e. whenever it becomes visible), then deltas.
 */
import * as vscode from 'vscode';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Hub } from '../hub/hub';
import type { RunManager } from '../supervisor/runManager';
import { PROTOCOL_MAJOR, type HubToViewer } from '../protocol/messages';
import { validateViewerToHub } from '../protocol/validate';
import { readSettings } from './settings';
import { PageCommands } from './pageCommands';

export const DASHBOARD_VIEW_TYPE = 'srlora.dashboard';

interface PanelState { runIds: string[] }

/**
 * The page's HTML. `importanceRate`: heatmap redraws per second at most (srlora.dashboard.importanceRate);
 * `confirmStop`: the page asks before Stop (srlora.dashboard.confirmStop, default true).
 */
export function dashboardHtml(webview: vscode.Webview, extensionUri: vscode.Uri, runIds: string[], importanceRate = 10, confirmStop = true): string {
  const nonce = randomBytes(16).toString('base64');
  const script = webview.asWebviewUri(vscode.Uri.joinPath(extensionUri, 'dist', 'webview.js'));
  const style = webview.asWebviewUri(vscode.Uri.joinPath(extensionUri, 'media', 'dashboard.css'));
  const csp = [
    "default-src 'none'", `script-src 'nonce-${nonce}'`, `style-src ${webview.cspSource}`, `font-src ${webview.cspSource}`,
    `img-src ${webview.cspSource} data: blob:`, "connect-src 'none'",
  ].join('; ');
  return `<!DOCTYPE html>
<html lang="en"><head>
<meta charset="UTF-8"><meta http-equiv="Content-Security-Policy" content="${csp}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link rel="stylesheet" href="${style}"><title>SRLoRA Dashboard</title>
</head><body data-host="vscode" data-runs="${runIds.map(encodeURIComponent).join(',')}" data-importance-rate="${importanceRate}" data-confirm-stop="${confirmStop}">
<div id="app" role="main"></div>
<script nonce="${nonce}" src="${script}"></script>
</body></html>`;
}

/** The key of a page's run-list listener among its subscriptions (run ids never contain a NUL). */
const RUNS_KEY = '\u0000runs';

class DashboardPanel {
  private readonly subscriptions = new Map<string, () => void>();
  /** Its commands, and their refusals after they were accepted (a queued command that expired). */
  private readonly commands: PageCommands;

  constructor(readonly panel: vscode.WebviewPanel, private runIds: string[], private readonly deps: { hub: Hub; runs: RunManager; extensionUri: vscode.Uri }) {
    const { webview } = panel;
    this.commands = new PageCommands(deps.runs, (m) => this.post(m), (runId) => this.subscriptions.has(runId));
    webview.options = { enableScripts: true, localResourceRoots: localRoots(deps.extensionUri) };
    this.render();
    webview.onDidReceiveMessage((m: unknown) => void this.onMessage(m));
    // A hidden panel's page is torn down; it asks for a snapshot again when it shows.
    panel.onDidChangeViewState(() => { if (!panel.visible) this.unsubscribeAll(); });
    panel.onDidDispose(() => { this.unsubscribeAll(); this.commands.dispose(); });
    this.updateTitle();
  }

  /** (Re)writes the page with the current srlora.dashboard.* settings; the page asks for a snapshot when it loads. */
  render(): void {
    this.unsubscribeAll();
    const confirmStop = vscode.workspace.getConfiguration('srlora').get<boolean>('dashboard.confirmStop', true);
    this.panel.webview.html = dashboardHtml(this.panel.webview, this.deps.extensionUri, this.runIds, readSettings().importanceRate, confirmStop);
  }

  /** The runs the page shows (its focus: the page subscribes to each and unsubscribes from those it stops showing). */
  get shown(): string[] {
    return this.runIds;
  }

  updateTitle(): void {
    const title = dashboardTitle(this.runIds, this.deps.runs);
    if (this.panel.title !== title) this.panel.title = title;
  }

  focus(runIds: string[]): void {
    this.runIds = runIds;
    this.updateTitle();
    this.post({ v: PROTOCOL_MAJOR, type: 'focus', runIds });
    this.panel.reveal();
  }

  private post(msg: HubToViewer): void {
    // postMessage can hang when the page is going away; never wait on it.
    void Promise.resolve(this.panel.webview.postMessage(msg)).catch(() => undefined);
  }

  private unsubscribeAll(): void {
    for (const off of this.subscriptions.values()) off();
    this.subscriptions.clear();
  }

  private async onMessage(raw: unknown): Promise<void> {
    const v = validateViewerToHub(raw);
    if (!v.ok) { this.post({ v: PROTOCOL_MAJOR, type: 'commandResult', requestId: 'invalid', error: v.error }); return; }
    const msg = v.value;
    switch (msg.type) {
      case 'subscribe': {
        this.subscriptions.get(msg.runId)?.();
        // The page's focus is the panel's key (Dashboards.open finds an open page by it) and its title.
        if (!this.runIds.includes(msg.runId)) { this.runIds = [...this.runIds, msg.runId]; this.updateTitle(); }
        // A listed run the hub has not opened yet (past runs are opened one at a time after a reload): open it now,
        // or a restored page would say "no run named …".
        const managed = this.deps.runs.runs.get(msg.runId);
        if (!this.deps.hub.run(msg.runId) && managed) this.deps.hub.openRun(msg.runId, managed.dir);
        if (!this.deps.hub.run(msg.runId)) { this.post({ v: PROTOCOL_MAJOR, type: 'commandResult', requestId: 'subscribe', error: `unknown run ${msg.runId}` }); return; }
        this.subscriptions.set(msg.runId, this.deps.hub.subscribe(msg.runId, (m) => this.post(m)));
        // The run list carries whether this page can steer (the trainer connects after the page opens): keep it
        // current, as the hub does for its socket viewers — one listener per page, dropped with its subscriptions.
        if (!this.subscriptions.has(RUNS_KEY)) {
          this.subscriptions.set(RUNS_KEY, this.deps.hub.onRuns((runs) => this.post({ v: PROTOCOL_MAJOR, type: 'runs', runs })));
        }
        this.post({ v: PROTOCOL_MAJOR, type: 'runs', runs: this.deps.hub.listRuns() });
        return;
      }
      case 'unsubscribe':
        this.subscriptions.get(msg.runId)?.();
        this.subscriptions.delete(msg.runId);
        this.runIds = this.runIds.filter((id) => id !== msg.runId); // the page moved its focus; its subscribes follow
        this.updateTitle();
        return;
      case 'command':
        this.commands.command(msg);
        return;
      case 'save': {
        const run = this.deps.runs.runs.get(this.runIds[0]);
        const target = await vscode.window.showSaveDialog({
          defaultUri: vscode.Uri.file(join(run?.dir ?? this.deps.runs.runsDir, msg.fileName)), title: `Save ${msg.fileName}`,
          filters: msg.fileName.endsWith('.png') ? { 'PNG image': ['png'] } : { CSV: ['csv'] },
        });
        if (!target) { this.post({ v: PROTOCOL_MAJOR, type: 'saved', requestId: msg.requestId, error: 'cancelled' }); return; }
        try {
          await writeFile(target.fsPath, Buffer.from(msg.data, msg.encoding));
          this.post({ v: PROTOCOL_MAJOR, type: 'saved', requestId: msg.requestId, path: target.fsPath });
        } catch (e) {
          this.post({ v: PROTOCOL_MAJOR, type: 'saved', requestId: msg.requestId, error: (e as Error).message });
        }
      }
    }
  }

  state(): PanelState {
    return { runIds: this.runIds };
  }
}

export function localRoots(extensionUri: vscode.Uri): vscode.Uri[] {
  return [vscode.Uri.joinPath(extensionUri, 'dist'), vscode.Uri.joinPath(extensionUri, 'media')];
}

/**
 * A dashboard tab's title, one per set of runs: "SRLoRA: name" (with the run id when another run has that name),
 * "SRLoRA: compare a · b". Dashboards.open matches a restored tab VS Code has not revived yet by it.
 */
export function dashboardTitle(runIds: string[], runs: Pick<RunManager, 'runs'>): string {
  const name = (id: string) => {
    const n = runs.runs.get(id)?.model.name ?? id;
    return n !== id && [...runs.runs.values()].some((r) => r.runId !== id && r.model.name === n) ? `${n} (${id})` : n;
  };
  if (runIds.length > 1) {
    const names = runIds.map(name).join(' · ');
    return `SRLoRA: compare ${names.length > 80 ? `${runIds.length} runs: ${names.slice(0, 60)}…` : names}`;
  }
  return `SRLoRA: ${runIds.length ? name(runIds[0]) : 'dashboard'}`;
}

export class Dashboards implements vscode.Disposable {
  private readonly panels = new Set<DashboardPanel>();
  private readonly registration: vscode.Disposable;
  private readonly offChanged: () => void;

  constructor(private readonly deps: { hub: Hub; runs: RunManager; extensionUri: vscode.Uri }) {
    this.registration = vscode.window.registerWebviewPanelSerializer(DASHBOARD_VIEW_TYPE, {
      // VS Code revives a restored tab only when it first becomes visible: by then this window may already show the
      // same runs in a panel it opened (the user clicked the run in the Runs view, Continue Run opened it…). One
      // page per set of runs: the restored one gives way to it.
      deserializeWebviewPanel: async (panel, state: unknown) => {
        const ids = (state as Partial<PanelState> | undefined)?.runIds?.filter((id) => typeof id === 'string' && this.deps.runs.runs.has(id)) ?? [];
        const existing = this.find(ids);
        if (ids.length === 0 || existing) { panel.dispose(); existing?.panel.reveal(); return; }
        this.track(new DashboardPanel(panel, ids, this.deps));
      },
    });
    // Titles follow the runs' names (a run's hello names it after its page opened).
    const changed = () => { for (const p of this.panels) p.updateTitle(); };
    deps.runs.on('changed', changed);
    this.offChanged = () => deps.runs.off('changed', changed);
  }

  private find(runIds: string[]): DashboardPanel | undefined {
    const key = runIds.join(',');
    return [...this.panels].find((p) => p.shown.join(',') === key);
  }

  private track(p: DashboardPanel): void {
    this.panels.add(p);
    p.panel.onDidDispose(() => this.panels.delete(p));
  }

  /**
   * Opens (or reveals) the dashboard of one run, or a compare view of several. After a window reload a restored tab
   * of these runs may still be unrevived (VS Code revives a tab when it is first shown): it is closed and the page
   * opens in its place, instead of a second tab that the restored one would duplicate once shown.
   */
  open(runIds: string[]): void {
    const existing = this.find(runIds);
    if (existing) { existing.panel.reveal(); return; }
    const title = dashboardTitle(runIds, this.deps.runs);
    const mine = new Set([...this.panels].map((p) => p.panel.title));
    const restored = vscode.window.tabGroups.all.flatMap((g) => g.tabs).filter((t) =>
      t.input instanceof vscode.TabInputWebview && t.input.viewType.endsWith(DASHBOARD_VIEW_TYPE) && t.label === title && !mine.has(t.label));
    const create = () => {
      if (this.find(runIds)) { this.find(runIds)?.panel.reveal(); return; }
      const panel = vscode.window.createWebviewPanel(DASHBOARD_VIEW_TYPE, title, restored[0]?.group.viewColumn ?? vscode.ViewColumn.Active, {
        enableScripts: true, localResourceRoots: localRoots(this.deps.extensionUri),
      });
      panel.iconPath = vscode.Uri.joinPath(this.deps.extensionUri, 'media', 'icon.svg');
      this.track(new DashboardPanel(panel, runIds, this.deps));
    };
    if (restored.length === 0) { create(); return; }
    void Promise.resolve(vscode.window.tabGroups.close(restored)).then(create, create);
  }

  /** srlora.dashboard.* changed: every open page is redrawn with the new settings (no window reload). */
  applySettings(): void {
    for (const p of this.panels) p.render();
  }

  dispose(): void {
    this.offChanged();
    for (const p of this.panels) p.panel.dispose();
    this.registration.dispose();
  }
}
