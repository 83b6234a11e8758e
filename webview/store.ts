/**
 * The page's one store: the runs it shows (each a RunData folded through the one reducer), the hub's run list, and
 * the user's choices (focus, chart view, hidden panels, the command labels it sent). Panels read it and send
 * through it; none keeps a copy of a run's state. `version` bumps on every change (the frame loop redraws then).
 */
import type { CommandBody, HubToViewer, RunControl, RunSummary } from '../src/protocol/messages';
import { isActive, steerControl } from '../src/viewmodel/runModel';
import { V, type Host } from './host';
import { RunData } from './runData';
import type { ChartView, XAxis } from './seriesChart';

/** What the page keeps across reloads (VS Code's webview state, or localStorage in the browser). */
export interface PageState {
  runIds?: string[];
  smoothing?: number;
  logY?: boolean;
  xAxis?: XAxis | 'time';
  /** Metric panels the user hid (by metric key). */
  hidden?: string[];
  /** Labels of the commands this page sent, by command id (the log's acks name only the id). */
  sent?: [string, string][];
  confirmStop?: boolean;
}

export interface CommandEntry { requestId: string; runId: string; label: string; commandId?: string; status: string }

const MAX_SENT = 100;

/** "Checkpoint" for a refusal that says "command checkpoint was not delivered" (a command another view sent). */
function commandName(error: string): string {
  const kind = /command (\w+) was not delivered/.exec(error)?.[1];
  return kind ? `${kind[0].toUpperCase()}${kind.slice(1)}` : 'Command';
}

export class Store {
  readonly runs = new Map<string, RunData>();
  runList: RunSummary[] = [];
  focus: string[];
  /** Runs the host does not know (a mistyped id in the URL, a deleted run). */
  readonly missing = new Set<string>();
  /** Runs the host stopped serving while this page had them (their folder was deleted), with why. */
  readonly removed = new Map<string, string>();
  /** The URL named the runs to show: a page told a run says when it is gone instead of showing another. */
  private readonly namedInUrl: boolean;
  /**
   * This page's commands the run's record does not show yet: requested, sent (forwarded, not acknowledged: e.g.
   * waiting for its trainer to connect), or refused with the reason (at once, or later: a held command that was
   * never delivered). Once the record acknowledges a command its log tells the rest (the entry goes).
   */
  readonly pending: CommandEntry[] = [];
  readonly sentLabels: Map<string, string>;
  readonly view: ChartView;
  readonly hidden: Set<string>;
  /** Layers the user selected in the heatmap (Recompose selected acts on them; the slot history shows the last). */
  readonly selectedLayers = new Set<string>();
  historyLayer: string | null = null;
  /** Ask before Stop (VS Code: srlora.dashboard.confirmStop; the browser page: remembered here). */
  confirmStop: boolean;
  version = 0;
  /** Runs whose snapshot is still arriving in parts. */
  readonly loadingParts = new Set<string>();
  private nextRequest = 1;
  private readonly saveHandlers = new Map<string, (path: string | undefined, error: string | undefined) => void>();

  /**
   * With no runs named, VS Code's tab shows the saved ones (it restores a tab after a window reload). The browser
   * page does not: its URL is the truth — a plain URL brought back the last comparison, with a stale "No run named …"
   * the URL did not name; without runs it shows the default run. Which one is the host's kind, not a flag beside it.
   */
  constructor(readonly host: Host, initialFocus: string[]) {
    const saved = host.getState();
    this.focus = initialFocus.length ? initialFocus : host.kind === 'vscode' ? saved.runIds ?? [] : [];
    this.namedInUrl = initialFocus.length > 0;
    const x = saved.xAxis === 'time' ? 'relative' : saved.xAxis;
    this.view = { smoothing: saved.smoothing ?? 0.9, logY: saved.logY ?? false, xAxis: x ?? 'step' };
    this.hidden = new Set(saved.hidden ?? []);
    this.sentLabels = new Map(saved.sent ?? []);
    this.confirmStop = document.body.dataset.confirmStop === 'false' ? false : saved.confirmStop ?? true;
    host.onMessage((m) => this.receive(m));
    // At once, not only after the user changes something: VS Code restores a dashboard tab after a window reload
    // from this state (its runs), and dropped a page that had none.
    if (this.focus.length) this.persist();
  }

  changed(): void { this.version++; }
  /** Bumped by what the user changes (view, focus, panels, theme): views redraw at once; live data may wait. */
  userVersion = 0;
  userChanged(): void { this.userVersion++; this.version++; }

  current(): RunData | undefined { return this.runs.get(this.focus[0] ?? ''); }
  /** The focused runs the page has (compare: several). */
  focused(): RunData[] { return this.focus.map((id) => this.runs.get(id)).filter((r): r is RunData => r !== undefined); }

  persist(): void {
    this.host.setState({
      runIds: this.focus, smoothing: this.view.smoothing, logY: this.view.logY, xAxis: this.view.xAxis,
      hidden: [...this.hidden], sent: [...this.sentLabels].slice(-MAX_SENT), confirmStop: this.confirmStop,
    });
  }

  subscribe(): void {
    for (const id of this.focus) this.host.send({ v: V, type: 'subscribe', runId: id });
  }

  setFocus(ids: string[]): void {
    for (const id of this.focus) if (!ids.includes(id)) this.host.send({ v: V, type: 'unsubscribe', runId: id });
    this.focus = ids;
    this.selectedLayers.clear();
    this.historyLayer = null;
    this.persist();
    this.subscribe();
    this.userChanged();
  }

  /** Sends a steering command to the focused run; the Commands panel follows it through the run's acks. */
  command(label: string, body: CommandBody): void {
    const r = this.current();
    if (!r) return;
    const requestId = `q${this.nextRequest++}`;
    this.pending.unshift({ requestId, runId: r.runId, label, status: 'requested' });
    this.pending.length = Math.min(this.pending.length, 20);
    this.host.send({ v: V, type: 'command', requestId, runId: r.runId, command: body });
    this.changed();
  }

  save(fileName: string, data: string, encoding: 'utf8' | 'base64', done: (path: string | undefined, error: string | undefined) => void): void {
    const requestId = `s${this.nextRequest++}`;
    this.saveHandlers.set(requestId, done);
    this.host.send({ v: V, type: 'save', requestId, fileName, encoding, data });
  }

  private runData(id: string): RunData {
    let r = this.runs.get(id);
    if (!r) { r = new RunData(id); this.runs.set(id, r); }
    return r;
  }

  /**
   * Whether this page can steer the run, and why not: the one rule (viewmodel steerControl) applied to this page's
   * own fold of the run's record and what the host's run list says of its trainer (connected, read-only), so the
   * controls follow the state the page shows, and the hub's list and the Runs view say the same.
   */
  control(runId: string): RunControl {
    const s = this.runList.find((r) => r.runId === runId);
    const model = this.runs.get(runId)?.model ?? { state: s?.state ?? 'starting' };
    return steerControl(model, { connected: s?.connected ?? false, readOnly: s?.readOnly ?? null });
  }

  /** Why this page cannot steer the run (see control), or null when it can. */
  steerBlock(runId: string): string | null {
    const c = this.control(runId);
    return c.canSteer ? null : c.reason ?? 'this page cannot steer the run';
  }

  /**
   * Sent commands the run's record now acknowledges leave the pending list: from then on the log tells their story.
   * One the record never acknowledged before the run ended (its trainer died or was stopped with it unread) says so.
   */
  private dropAcknowledged(): void {
    for (let i = this.pending.length - 1; i >= 0; i--) {
      const c = this.pending[i];
      if (c.commandId === undefined || c.status !== 'sent') continue;
      const run = this.runs.get(c.runId);
      if (run?.acks.has(c.commandId)) this.pending.splice(i, 1);
      else if (run && !isActive(run.model.state)) c.status = `not acknowledged: the run is ${run.model.state}`;
    }
  }

  /** A page that chose its run itself shows an existing one: the newest active run, else the most recently active. */
  private pickDefault(): void {
    // Only what the host said is gone counts (a run not listed yet may be opened in a moment).
    const gone = (id: string) => this.missing.has(id) || this.removed.has(id);
    if (!this.runList.length || (this.focus.length && (this.namedInUrl || !this.focus.every(gone)))) return;
    // The hub lists runs by last activity, oldest first.
    const pick = [...this.runList].reverse().find((r) => isActive(r.state)) ?? this.runList[this.runList.length - 1];
    this.setFocus([pick.runId]);
  }

  private receive(msg: HubToViewer): void {
    switch (msg.type) {
      case 'runs':
        this.runList = msg.runs;
        this.pickDefault();
        break;
      case 'removed':
        this.removed.set(msg.runId, msg.reason);
        this.runList = this.runList.filter((r) => r.runId !== msg.runId);
        this.runs.delete(msg.runId);
        this.loadingParts.delete(msg.runId);
        this.pickDefault();
        break;
      case 'snapshot': {
        this.missing.delete(msg.runId);
        const r = this.runData(msg.runId);
        this.userVersion++; // a fresh snapshot is drawn at once
        // A long run's snapshot comes in parts: later parts (continued) append to the first.
        if (!msg.continued) r.reset(msg.truncated);
        else if (msg.truncated) r.truncated = true;
        for (const e of msg.events) r.apply(e);
        // More parts follow: canvases wait for the last one (drawing a half-loaded run only slows the loading).
        if (msg.more) this.loadingParts.add(msg.runId); else this.loadingParts.delete(msg.runId);
        this.dropAcknowledged();
        break;
      }
      case 'event':
        this.runData(msg.runId).apply(msg.event);
        if (msg.event.type === 'ack' || msg.event.type === 'state') this.dropAcknowledged();
        break;
      case 'commandResult': {
        const unknown = msg.requestId === 'subscribe' && /^unknown run (.+)$/.exec(msg.error ?? '');
        if (unknown) { this.missing.add(unknown[1]); this.pickDefault(); }
        const c = this.pending.find((x) => x.requestId === msg.requestId || (msg.commandId !== undefined && x.commandId === msg.commandId));
        if (msg.commandId && msg.error !== undefined) {
          // A command the host accepted and then could not deliver (it waited for a trainer that did not connect).
          if (c) c.status = `refused: ${msg.error}`;
          else this.pending.unshift({ requestId: msg.requestId, runId: this.focus[0] ?? '', commandId: msg.commandId, label: this.sentLabels.get(msg.commandId) ?? commandName(msg.error), status: `refused: ${msg.error}` });
        } else if (c) {
          if (msg.commandId) {
            this.sentLabels.set(msg.commandId, c.label);
            c.commandId = msg.commandId;
            c.status = 'sent';
            this.persist();
            this.dropAcknowledged(); // the record may already hold its ack
          } else c.status = `refused: ${msg.error ?? ''}`;
        }
        this.pending.length = Math.min(this.pending.length, 20);
        break;
      }
      case 'saved': {
        const done = this.saveHandlers.get(msg.requestId);
        this.saveHandlers.delete(msg.requestId);
        done?.(msg.path, msg.error);
        break;
      }
      case 'focus':
        this.setFocus(msg.runIds);
        break;
    }
    this.changed();
  }
}
