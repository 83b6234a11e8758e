/**
 * The hub: a loopback WebSocket server between trainers (one connection per run, path /trainer) and viewers
 * (dashboards, path /viewer; the extension subscribes in-process). It authenticates every connection before
 * the upgrade, validates every message, persists each accepted trainer message before forwarding it, and keeps
 * one slow or hostile peer from disturbing the run or anyone else. No `vscode` import: the extension host,
 * `srlora serve` and the tests all use this same class.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { WebSocketServer, WebSocket, type RawData } from 'ws';
import { newToken, originAllowed, presentedToken, tokensEqual, PROTOCOL_SUBPROTOCOL } from './auth';
import { TokenBucket } from './rateLimit';
import { RunChannel } from './runChannel';
import {
  PROTOCOL_MAJOR, PROTOCOL_MINOR,
  type CommandBody, type DistributiveOmit, type ErrorCode, type HubMessage, type HubToViewer, type RunSummary, type TrainerMessage,
} from '../protocol/messages';
import { parseJson, validateCommandBody, validateTrainerMessage, validateViewerToHub } from '../protocol/validate';

export interface HubOptions {
  /** Loopback by default; another interface only when the user explicitly asks. */
  host?: string;
  port?: number;
  /** Browser origins allowed to connect (the standalone dashboard's own). */
  allowedOrigins?: string[];
  maxPayload?: number;
  heartbeatMs?: number;
  /** Invalid messages tolerated per connection within `invalidWindowMs` before it is closed (1008). */
  maxInvalid?: number;
  invalidWindowMs?: number;
  /** Commands a viewer may send per second (sustained) and at once. */
  commandRate?: number;
  commandBurst?: number;
  /** Commands per run awaiting a final ack; more are refused. */
  maxInFlight?: number;
  /** A viewer socket with more than this many bytes unsent stops getting deltas until it drains. */
  slowViewerBytes?: number;
  /** HTTP requests that are not upgrades (the standalone page). Default: 404. */
  onHttpRequest?: (req: IncomingMessage, res: ServerResponse) => void;
}

export type ViewerListener = (msg: HubToViewer) => void;

export type SendResult = { ok: true; commandId: string } | { ok: false; error: string };

const DEFAULTS = {
  host: '127.0.0.1', port: 0, maxPayload: 1 << 20, heartbeatMs: 10_000, maxInvalid: 20, invalidWindowMs: 10_000,
  commandRate: 20, commandBurst: 40, maxInFlight: 64, slowViewerBytes: 4 << 20,
};

interface Conn { ws: WebSocket; alive: boolean; invalid: number[] }
interface ViewerConn extends Conn { runIds: Set<string>; bucket: TokenBucket; stale: Set<string> }

export interface HubEvents {
  message: [runId: string, msg: TrainerMessage];
  trainerConnected: [runId: string];
  trainerDisconnected: [runId: string];
  rejected: [where: string, error: string];
}

export class Hub extends EventEmitter<HubEvents> {
  readonly viewerToken = newToken();
  private readonly opts: Required<Omit<HubOptions, 'onHttpRequest' | 'allowedOrigins'>> & Pick<HubOptions, 'onHttpRequest'>;
  private allowedOrigins: string[];
  private readonly runs = new Map<string, RunChannel>();
  private readonly viewerListeners = new Map<string, Set<ViewerListener>>();
  private readonly viewers = new Set<ViewerConn>();
  private readonly wss: WebSocketServer;
  private heartbeat: NodeJS.Timeout | null = null;
  private drainTimer: NodeJS.Timeout | null = null;
  private port = 0;

  private constructor(private readonly server: Server, options: HubOptions) {
    super();
    this.opts = { ...DEFAULTS, ...options } as Hub['opts'];
    this.allowedOrigins = [...(options.allowedOrigins ?? [])];
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: this.opts.maxPayload,
      // Echo the protocol name, never the token subprotocol, so the secret is not reflected back.
      handleProtocols: (protocols) => (protocols.has(PROTOCOL_SUBPROTOCOL) ? PROTOCOL_SUBPROTOCOL : false),
    });
    server.on('upgrade', (req, socket, head) => this.onUpgrade(req, socket, head));
  }

  static async start(options: HubOptions = {}): Promise<Hub> {
    const server = createServer((req, res) => {
      if (hub.opts.onHttpRequest) hub.opts.onHttpRequest(req, res);
      else { res.writeHead(404).end(); }
    });
    const hub: Hub = new Hub(server, options);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(hub.opts.port, hub.opts.host, () => resolve());
    });
    const addr = server.address();
    if (addr === null || typeof addr === 'string') throw new Error('hub: no TCP address');
    hub.port = addr.port;
    hub.heartbeat = setInterval(() => hub.beat(), hub.opts.heartbeatMs);
    hub.heartbeat.unref();
    return hub;
  }

  get url(): string {
    const host = this.opts.host.includes(':') ? `[${this.opts.host}]` : this.opts.host;
    return `ws://${host}:${this.port}`;
  }

  get httpOrigin(): string {
    return this.url.replace(/^ws/, 'http');
  }

  /** The standalone page is served by this same server, so it is the origin to admit. */
  allowOrigin(origin: string): void {
    if (!this.allowedOrigins.includes(origin)) this.allowedOrigins.push(origin);
  }

  /** Registers a run (or re-opens one from its folder) and returns the token its trainer must present. */
  openRun(runId: string, dir: string, token: string = newToken()): { token: string } {
    const existing = this.runs.get(runId);
    if (existing) return { token: existing.token };
    this.runs.set(runId, new RunChannel(runId, dir, token));
    this.broadcastRuns();
    return { token };
  }

  run(runId: string): RunChannel | undefined {
    return this.runs.get(runId);
  }

  listRuns(): RunSummary[] {
    return [...this.runs.values()].map((r) => r.summary());
  }

  // ------------------------------------------------------------------ connections

  private refuse(socket: Duplex, status: number, text: string): void {
    // Nothing but the status line: no hint about which runs exist.
    socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    socket.destroy();
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const path = (req.url ?? '').split('?')[0];
    if (!originAllowed(req, this.allowedOrigins)) { this.emit('rejected', 'upgrade', 'origin'); return this.refuse(socket, 403, 'Forbidden'); }
    const token = presentedToken(req);
    if (token === null) { this.emit('rejected', 'upgrade', 'no token'); return this.refuse(socket, 401, 'Unauthorized'); }
    if (path === '/trainer') {
      const run = [...this.runs.values()].find((r) => tokensEqual(r.token, token));
      if (!run) { this.emit('rejected', 'upgrade', 'wrong token'); return this.refuse(socket, 401, 'Unauthorized'); }
      this.wss.handleUpgrade(req, socket, head, (ws) => this.acceptTrainer(ws, run));
    } else if (path === '/viewer') {
      if (!tokensEqual(this.viewerToken, token)) { this.emit('rejected', 'upgrade', 'wrong token'); return this.refuse(socket, 401, 'Unauthorized'); }
      this.wss.handleUpgrade(req, socket, head, (ws) => this.acceptViewer(ws));
    } else {
      this.refuse(socket, 404, 'Not Found');
    }
  }

  /** Counts an invalid message; true when the connection has now sent too many and was closed. */
  private strike(conn: Conn): boolean {
    const now = Date.now();
    conn.invalid = conn.invalid.filter((t) => now - t < this.opts.invalidWindowMs);
    conn.invalid.push(now);
    if (conn.invalid.length > this.opts.maxInvalid) {
      conn.ws.close(1008, 'too many invalid messages');
      return true;
    }
    return false;
  }

  private sendToTrainer(run: RunChannel, ws: WebSocket, body: DistributiveOmit<HubMessage, 'v' | 'runId' | 'seq' | 'time'>): void {
    if (ws.readyState !== WebSocket.OPEN) return;
    run.outSeq++;
    ws.send(JSON.stringify({ v: PROTOCOL_MAJOR, runId: run.runId, seq: run.outSeq, time: Date.now(), ...body }));
  }

  private trainerError(run: RunChannel, ws: WebSocket, code: ErrorCode, message: string, refSeq?: number): void {
    this.emit('rejected', `trainer:${run.runId}`, message);
    this.sendToTrainer(run, ws, { type: 'error', code, message, ...(refSeq ? { refSeq } : {}) });
  }

  private acceptTrainer(ws: WebSocket, run: RunChannel): void {
    const conn: Conn = { ws, alive: true, invalid: [] };
    let greeted = false;
    let sinceReceived = 0;
    let receivedTimer: NodeJS.Timeout | null = null;
    const flushReceived = () => {
      receivedTimer = null;
      sinceReceived = 0;
      this.sendToTrainer(run, ws, { type: 'received', received: run.lastSeq });
    };
    ws.on('pong', () => { conn.alive = true; });
    ws.on('message', (data: RawData, isBinary: boolean) => {
      const raw = isBinary ? null : rawText(data);
      if (raw === null) { if (!this.strike(conn)) this.trainerError(run, ws, 'invalid-message', 'binary frames are not part of the protocol'); return; }
      const parsed = parseJson(raw);
      if (!parsed.ok) { if (!this.strike(conn)) this.trainerError(run, ws, 'invalid-json', parsed.error); return; }
      const v = validateTrainerMessage(parsed.value);
      if (!v.ok) {
        const rec = parsed.value as { v?: unknown; type?: unknown };
        if (!greeted && rec?.type === 'hello' && rec.v !== PROTOCOL_MAJOR) {
          this.trainerError(run, ws, 'unsupported-version', `this hub speaks protocol ${PROTOCOL_MAJOR}.${PROTOCOL_MINOR}`);
          ws.close(1002, 'unsupported protocol version');
          return;
        }
        if (!this.strike(conn)) this.trainerError(run, ws, 'invalid-message', v.error, seqOf(parsed.value));
        return;
      }
      const msg = v.value;
      if (msg.runId !== run.runId) { if (!this.strike(conn)) this.trainerError(run, ws, 'wrong-run', `this connection belongs to run ${run.runId}`, msg.seq); return; }
      if (!greeted) {
        if (msg.type !== 'hello') { this.trainerError(run, ws, 'not-hello', 'the first message must be hello'); ws.close(1008, 'expected hello'); return; }
        if (msg.protocol.major !== PROTOCOL_MAJOR) {
          this.trainerError(run, ws, 'unsupported-version', `this hub speaks protocol ${PROTOCOL_MAJOR}.${PROTOCOL_MINOR}`);
          ws.close(1002, 'unsupported protocol version');
          return;
        }
        greeted = true;
        if (run.trainer && run.trainer !== ws) run.trainer.close(1000, 'replaced by a new connection');
        run.trainer = ws;
        if (msg.seq === run.lastSeq + 1) this.accept(run, msg, raw);
        this.sendToTrainer(run, ws, { type: 'welcome', protocol: { major: PROTOCOL_MAJOR, minor: PROTOCOL_MINOR }, received: run.lastSeq });
        this.emit('trainerConnected', run.runId);
        this.broadcastRuns();
        return;
      }
      if (msg.seq <= run.lastSeq) return; // a resend the hub already has
      if (msg.seq !== run.lastSeq + 1) {
        this.trainerError(run, ws, 'out-of-order', `expected seq ${run.lastSeq + 1}, got ${msg.seq}; resend after ${run.lastSeq}`, msg.seq);
        flushReceived();
        return;
      }
      this.accept(run, msg, raw);
      if (++sinceReceived >= 256) flushReceived();
      else if (!receivedTimer) receivedTimer = setTimeout(flushReceived, 50);
    });
    ws.on('close', () => {
      if (receivedTimer) clearTimeout(receivedTimer);
      if (run.trainer === ws) {
        run.trainer = null;
        run.inFlight.clear(); // what this trainer did not acknowledge died with it; new commands must not be refused
        this.emit('trainerDisconnected', run.runId);
        this.broadcastRuns();
      }
    });
    ws.on('error', () => { /* close follows; the run is not affected */ });
    (ws as WebSocket & { conn?: Conn }).conn = conn;
  }

  private accept(run: RunChannel, msg: TrainerMessage, raw: string): void {
    run.store(msg, raw);
    this.emit('message', run.runId, msg);
    const event: HubToViewer = { v: PROTOCOL_MAJOR, type: 'event', runId: run.runId, event: msg };
    for (const l of this.viewerListeners.get(run.runId) ?? []) l(event);
    let text: string | null = null;
    for (const viewer of this.viewers) {
      if (!viewer.runIds.has(run.runId) || viewer.stale.has(run.runId)) continue;
      if (viewer.ws.bufferedAmount > this.opts.slowViewerBytes) {
        viewer.stale.add(run.runId); // drop to snapshot: it gets a fresh one once it has drained
        this.scheduleDrainCheck();
        continue;
      }
      text ??= JSON.stringify(event);
      viewer.ws.send(text);
    }
    if (msg.type === 'state' || msg.type === 'hello') this.broadcastRuns();
  }

  private scheduleDrainCheck(): void {
    if (this.drainTimer) return;
    this.drainTimer = setInterval(() => {
      let pending = false;
      for (const v of this.viewers) {
        if (v.stale.size === 0) continue;
        if (v.ws.bufferedAmount > this.opts.slowViewerBytes / 4) { pending = true; continue; }
        for (const runId of v.stale) this.sendSnapshot(v, runId);
        v.stale.clear();
      }
      if (!pending && this.drainTimer) { clearInterval(this.drainTimer); this.drainTimer = null; }
    }, 50);
    this.drainTimer.unref();
  }

  private sendViewer(v: ViewerConn, msg: HubToViewer): void {
    if (v.ws.readyState === WebSocket.OPEN) v.ws.send(JSON.stringify(msg));
  }

  private sendSnapshot(v: ViewerConn, runId: string): void {
    const run = this.runs.get(runId);
    if (!run) return;
    this.sendViewer(v, { v: PROTOCOL_MAJOR, type: 'snapshot', runId, events: run.snapshot(), truncated: run.truncated });
  }

  private acceptViewer(ws: WebSocket): void {
    const viewer: ViewerConn = {
      ws, alive: true, invalid: [], runIds: new Set(), stale: new Set(),
      bucket: new TokenBucket(this.opts.commandRate, this.opts.commandBurst),
    };
    this.viewers.add(viewer);
    ws.on('pong', () => { viewer.alive = true; });
    ws.on('close', () => this.viewers.delete(viewer));
    ws.on('error', () => { /* close follows */ });
    ws.on('message', (data: RawData, isBinary: boolean) => {
      const raw = isBinary ? null : rawText(data);
      const parsed = raw === null ? { ok: false as const, error: 'binary frames are not part of the protocol' } : parseJson(raw);
      const v = parsed.ok ? validateViewerToHub(parsed.value) : parsed;
      if (!v.ok) {
        if (!this.strike(viewer)) this.sendViewer(viewer, { v: PROTOCOL_MAJOR, type: 'commandResult', requestId: 'invalid', error: v.error });
        return;
      }
      const msg = v.value;
      if (msg.type === 'unsubscribe') { viewer.runIds.delete(msg.runId); viewer.stale.delete(msg.runId); return; }
      if (msg.type === 'save') {
        // A browser page downloads its exports itself; saving through the hub would write files for a web page.
        this.sendViewer(viewer, { v: PROTOCOL_MAJOR, type: 'saved', requestId: msg.requestId, error: 'the standalone page saves with a download' });
        return;
      }
      if (msg.type === 'subscribe') {
        if (!this.runs.has(msg.runId)) { this.sendViewer(viewer, { v: PROTOCOL_MAJOR, type: 'commandResult', requestId: 'subscribe', error: `unknown run ${msg.runId}` }); return; }
        viewer.runIds.add(msg.runId);
        this.sendSnapshot(viewer, msg.runId);
        return;
      }
      const result: SendResult = viewer.bucket.take()
        ? this.sendCommand(msg.runId, msg.command)
        : { ok: false, error: 'rate limited: too many commands from this dashboard' };
      this.sendViewer(viewer, {
        v: PROTOCOL_MAJOR, type: 'commandResult', requestId: msg.requestId,
        ...(result.ok ? { commandId: result.commandId } : { error: result.error }),
      });
    });
    this.sendViewer(viewer, { v: PROTOCOL_MAJOR, type: 'runs', runs: this.listRuns() });
  }

  private broadcastRuns(): void {
    if (this.viewers.size === 0) return;
    const msg: HubToViewer = { v: PROTOCOL_MAJOR, type: 'runs', runs: this.listRuns() };
    for (const v of this.viewers) this.sendViewer(v, msg);
  }

  private beat(): void {
    const conns: Conn[] = [...this.viewers];
    for (const ws of this.wss.clients) {
      const c = (ws as WebSocket & { conn?: Conn }).conn;
      if (c) conns.push(c);
    }
    for (const c of conns) {
      if (!c.alive) { c.ws.terminate(); continue; }
      c.alive = false;
      c.ws.ping();
    }
  }

  // ------------------------------------------------------------------ in-process API (extension, serve)

  /** Validates and forwards a command; the trainer acknowledges it with this id. */
  sendCommand(runId: string, body: CommandBody | unknown): SendResult {
    const run = this.runs.get(runId);
    if (!run) return { ok: false, error: `unknown run ${runId}` };
    const v = validateCommandBody(body);
    if (!v.ok) return { ok: false, error: v.error };
    if (!run.trainer || run.trainer.readyState !== WebSocket.OPEN) return { ok: false, error: `run ${runId} has no trainer connected` };
    if (run.inFlight.size >= this.opts.maxInFlight) return { ok: false, error: `run ${runId} already has ${run.inFlight.size} commands waiting for the trainer` };
    const id = `c-${randomUUID()}`;
    run.inFlight.add(id);
    this.sendToTrainer(run, run.trainer, { type: 'command', id, command: v.value });
    return { ok: true, commandId: id };
  }

  /** Snapshot now, then every new message of the run, in order. Returns the unsubscribe function. */
  subscribe(runId: string, listener: ViewerListener): () => void {
    const run = this.runs.get(runId);
    if (!run) throw new Error(`unknown run ${runId}`);
    let set = this.viewerListeners.get(runId);
    if (!set) this.viewerListeners.set(runId, (set = new Set()));
    set.add(listener);
    listener({ v: PROTOCOL_MAJOR, type: 'snapshot', runId, events: run.snapshot(), truncated: run.truncated });
    return () => set.delete(listener);
  }

  /** Stops accepting, closes every connection and the run logs. */
  async close(): Promise<void> {
    if (this.heartbeat) clearInterval(this.heartbeat);
    if (this.drainTimer) clearInterval(this.drainTimer);
    for (const ws of this.wss.clients) ws.terminate();
    this.wss.close();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const r of this.runs.values()) r.close();
  }
}

function rawText(data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  if (data instanceof ArrayBuffer) return Buffer.from(data).toString('utf8');
  return data.toString('utf8');
}

function seqOf(value: unknown): number | undefined {
  const s = (value as { seq?: unknown } | null)?.seq;
  return typeof s === 'number' && Number.isInteger(s) && s >= 1 ? s : undefined;
}
