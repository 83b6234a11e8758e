/**
 * The page's connection to its host, the same viewer protocol both ways: a VS Code webview posts to the extension
 * host; the standalone page opens the hub's /viewer WebSocket (its cookie proves the page's token). Every incoming
 * message is validated against the protocol schema before the page uses it.
 */
import { PROTOCOL_MAJOR, type HubToViewer, type ViewerToHub } from '../src/protocol/messages';
import { validateHubToViewer } from '../src/protocol/validate';

import type { PageState } from './store';
export type { PageState };

export interface Host {
  readonly kind: 'vscode' | 'browser';
  send(msg: ViewerToHub): void;
  onMessage(fn: (msg: HubToViewer) => void): void;
  onStatus(fn: (connected: boolean, detail: string) => void): void;
  getState(): PageState;
  setState(s: PageState): void;
}

interface VsCodeApi { postMessage(m: unknown): void; getState(): unknown; setState(s: unknown): void }
declare function acquireVsCodeApi(): VsCodeApi;

function validated(fn: (msg: HubToViewer) => void): (data: unknown) => void {
  return (data) => {
    const v = validateHubToViewer(data);
    if (v.ok) fn(v.value);
    else console.warn(`srlora: ignored an invalid message: ${v.error}`);
  };
}

class VsCodeHost implements Host {
  readonly kind = 'vscode' as const;
  private readonly api = acquireVsCodeApi();
  send(msg: ViewerToHub): void { this.api.postMessage(msg); }
  onMessage(fn: (msg: HubToViewer) => void): void {
    const handle = validated(fn);
    window.addEventListener('message', (e: MessageEvent) => handle(e.data));
  }
  onStatus(fn: (connected: boolean, detail: string) => void): void { fn(true, 'VS Code'); }
  getState(): PageState { return (this.api.getState() as PageState | undefined) ?? {}; }
  setState(s: PageState): void { this.api.setState(s); }
}

class SocketHost implements Host {
  readonly kind = 'browser' as const;
  private ws: WebSocket | null = null;
  private readonly queue: string[] = [];
  private handlers: ((m: HubToViewer) => void)[] = [];
  private status: (c: boolean, d: string) => void = () => {};
  private retry = 500;
  private onOpenHooks: (() => void)[] = [];

  constructor() { this.connect(); }

  private connect(): void {
    const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/viewer`, ['srlora.v1']);
    this.ws = ws;
    ws.onopen = () => {
      this.retry = 500;
      this.status(true, location.host);
      for (const m of this.queue.splice(0)) ws.send(m);
      for (const h of this.onOpenHooks) h();
    };
    ws.onmessage = (e) => {
      let data: unknown;
      try { data = JSON.parse(String(e.data)); } catch { return; }
      for (const h of this.handlers) validated(h)(data);
    };
    ws.onclose = () => {
      this.status(false, 'disconnected; retrying…');
      setTimeout(() => this.connect(), this.retry);
      this.retry = Math.min(5000, this.retry * 2);
    };
  }

  /** Re-subscribe after a reconnect (the hub sends a fresh snapshot). */
  onReconnect(fn: () => void): void { this.onOpenHooks.push(fn); }
  send(msg: ViewerToHub): void {
    const text = JSON.stringify(msg);
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(text);
    else this.queue.push(text);
  }
  onMessage(fn: (msg: HubToViewer) => void): void { this.handlers.push(fn); }
  onStatus(fn: (connected: boolean, detail: string) => void): void { this.status = fn; }
  getState(): PageState {
    try { return JSON.parse(localStorage.getItem('srlora-dashboard') ?? '{}') as PageState; } catch { return {}; }
  }
  setState(s: PageState): void { localStorage.setItem('srlora-dashboard', JSON.stringify(s)); }
}

export function connectHost(): Host & { onReconnect?: (fn: () => void) => void } {
  return document.body.dataset.host === 'vscode' ? new VsCodeHost() : new SocketHost();
}

export const V = PROTOCOL_MAJOR;
