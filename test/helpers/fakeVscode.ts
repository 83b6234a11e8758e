/**
 * The few `vscode` APIs the dashboard panels use (src/extension/dashboardPanel.ts), faked for unit tests: panels,
 * the webview panel serializer and the tab groups, with a window reload's restored-but-not-revived tab. Installed in
 * place of the `vscode` module by installFakeVscode() (require resolution), before the extension module is loaded.
 */
import Module from 'node:module';
import { join } from 'node:path';

export class Uri {
  constructor(readonly fsPath: string) {}
  static file(p: string): Uri { return new Uri(p); }
  static joinPath(u: Uri, ...parts: string[]): Uri { return new Uri(join(u.fsPath, ...parts)); }
  toString(): string { return `file://${this.fsPath}`; }
}

export const ViewColumn = { Active: -1, One: 1, Two: 2 };

export class TabInputWebview { constructor(readonly viewType: string) {} }

type Fn<T> = (v: T) => void;

export class FakePanel {
  disposed = false;
  reveals = 0;
  visible = true;
  iconPath: unknown;
  readonly posted: unknown[] = [];
  private readonly disposeFns: Fn<void>[] = [];
  /** The page's side: what it posts to the extension. */
  receive: Fn<unknown> = () => {};
  readonly webview = {
    options: {}, html: '', cspSource: 'vscode-webview:',
    asWebviewUri: (u: Uri) => u,
    onDidReceiveMessage: (fn: Fn<unknown>) => { this.receive = fn; return { dispose() {} }; },
    postMessage: async (m: unknown) => { this.posted.push(m); return true; },
  };
  constructor(readonly viewType: string, public title: string) {}
  onDidDispose(fn: Fn<void>) { this.disposeFns.push(fn); return { dispose() {} }; }
  onDidChangeViewState() { return { dispose() {} }; }
  reveal() { this.reveals++; }
  dispose() {
    if (this.disposed) return;
    this.disposed = true;
    fake.tabs = fake.tabs.filter((t) => t.panel !== this);
    for (const fn of this.disposeFns) fn(undefined);
  }
}

/** A tab: a live panel's, or one VS Code restored after a reload and revives only when it is first shown. */
export interface FakeTab { label: string; input: TabInputWebview; group: { viewColumn: number }; panel?: FakePanel; restoredState?: unknown }

interface Serializer { deserializeWebviewPanel(panel: FakePanel, state: unknown): Promise<void> }

export const fake = {
  panels: [] as FakePanel[],
  tabs: [] as FakeTab[],
  serializers: new Map<string, Serializer>(),
  /** A window reload left a tab of this view type and title with this webview state (not revived). */
  restoreTab(viewType: string, title: string, state: unknown): FakeTab {
    const tab: FakeTab = { label: title, input: new TabInputWebview(`mainThreadWebview-${viewType}`), group: { viewColumn: 1 }, restoredState: state };
    fake.tabs.push(tab);
    return tab;
  },
  /** The user shows a restored tab: VS Code revives it through the extension's serializer, if it is still there. */
  async show(tab: FakeTab): Promise<void> {
    if (!fake.tabs.includes(tab) || tab.panel) return;
    const viewType = tab.input.viewType.replace(/^mainThreadWebview-/, '');
    const panel = new FakePanel(viewType, tab.label);
    fake.panels.push(panel);
    tab.panel = panel;
    await fake.serializers.get(viewType)?.deserializeWebviewPanel(panel, tab.restoredState);
  },
  reset(): void { fake.panels = []; fake.tabs = []; },
};

export const window = {
  registerWebviewPanelSerializer(viewType: string, s: Serializer) {
    fake.serializers.set(viewType, s);
    return { dispose() { fake.serializers.delete(viewType); } };
  },
  createWebviewPanel(viewType: string, title: string, column: number) {
    const panel = new FakePanel(viewType, title);
    fake.panels.push(panel);
    const tab: FakeTab = { label: title, input: new TabInputWebview(`mainThreadWebview-${viewType}`), group: { viewColumn: column }, panel };
    Object.defineProperty(tab, 'label', { get: () => panel.title });
    fake.tabs.push(tab);
    return panel;
  },
  tabGroups: {
    get all() { return [{ viewColumn: 1, tabs: fake.tabs }]; },
    async close(tabs: FakeTab | FakeTab[]) {
      for (const t of Array.isArray(tabs) ? tabs : [tabs]) { fake.tabs = fake.tabs.filter((x) => x !== t); t.panel?.dispose(); }
      return true;
    },
  },
  showSaveDialog: async () => undefined,
};

export const workspace = { getConfiguration: () => ({ get: <T>(_key: string, d: T) => d }), workspaceFolders: undefined };

let installed = false;
/** Makes `require('vscode')` load this module. */
export function installFakeVscode(): void {
  if (installed) return;
  installed = true;
  const M = Module as unknown as { _resolveFilename: (request: string, ...rest: unknown[]) => string };
  const resolve = M._resolveFilename;
  M._resolveFilename = function (request: string, ...rest: unknown[]) {
    return request === 'vscode' ? __filename : resolve.call(this, request, ...rest);
  };
}
