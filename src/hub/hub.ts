/**
 * The hub: a loopback WebSocket server between trainers (one connection per run, path /trainer) and viewers
 * (dashboards, path /viewer; the extension subscribes in-process). It authenticates every connection before
 * the upgrade, validates every message, and keeps one slow or hostile peer from disturbing the run or anyone else.
 *
 * The hub keeps no copy of a run: the trainer's events.jsonl is the record, which each RunChannel follows and
 * merges with the trainer's socket by seq (see runChannel.ts). Viewers get a snapshot streamed from the record in
 * parts, then every new message. No request can end the process: each HTTP request and upgrade is handled inside a
 * guard (400 for what cannot be parsed, 500 for an exception, logged through the 'rejected' event), and every size,
 * depth, queue and rate is bounded. No `vscode` import: the extension host, `srlora serve` and the tests all use
 * this same class.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { WebSocketServer, WebSocket, type RawData } from 'ws';
import { BadRequest, hostAllowed, newToken, originAllowed, presentedToken, tokensEqual, PROTOCOL_SUBPROTOCOL } from './auth';
import { TokenBucket } from './rateLimit';
import { RunChannel, SnapshotRestart } from './runChannel';
import {
  PROTOCOL_MAJOR, PROTOCOL_MINOR,
  type CommandBody, type DistributiveOmit, type ErrorCode, type HubMessage, type HubToViewer, type RunSummary, type TrainerMessage,
} from '../protocol/messages';
import { NO_TRAINER, steerControl, type TrainerLink } from '../viewmodel/runModel';
import { validateCommandBody, validateTrainerMessage, validateViewerToHub } from '../protocol/validate';
import { clip, parseBoundedJson } from '../runfolder/eventLog';

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
  /** Commands the viewers holding the viewer token may send per second (sustained) and at once, all together. */
  commandRate?: number;
  commandBurst?: number;
  /** Commands per run awaiting a final ack; more are refused. */
  maxInFlight?: number;
  /** A viewer socket with more than this many bytes unsent stops getting deltas until it drains. */
  slowViewerBytes?: number;
  /** A viewer socket with more than this many bytes unsent is cut (nothing it asks for may grow without bound). */
  maxViewerQueueBytes?: number;
  /** How often a run's record is polled when file watching says nothing (ms). */
  pollMs?: number;
  /** HTTP requests that are not upgrades (the standalone page). Default: 404. Its exceptions and rejections become 500. */
  onHttpRequest?: (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;
}

export type ViewerListener = (msg: HubToViewer) => void;

export type SendResult = { ok: true; commandId: string } | { ok: false; error: string };

const DEFAULTS = {
  host: '127.0.0.1', port: 0, maxPayload: 1 << 20, heartbeatMs: 10_000, maxInvalid: 20, invalidWindowMs: 10_000,
  commandRate: 20, commandBurst: 40, maxInFlight: 64, slowViewerBytes: 4 << 20, maxViewerQueueBytes: 64 << 20, pollMs: 500,
};

/** Error text sent back to a peer: bounded, whatever it quotes. */
const ERROR_CHARS = 300;

interface Conn { ws: WebSocket; alive: boolean; invalid: number[]; closing: boolean }

/** One subscriber of one run: a viewer socket's subscription or an in-process listener. */
interface Sub {
  runId: string;
  /** The message (or a function making it: an in-process listener needs the object, a socket only `text`). */
  send: (msg: HubToViewer | (() => HubToViewer), text?: string) => void;
  /** Bytes queued and not yet sent. */
  pending: () => number;
  gone: () => boolean;
  mode: 'loading' | 'live' | 'stale';
  /** A snapshot was asked for again while one was being sent: send a fresh one after it (coalesced). */
  again: boolean;
}

interface ViewerConn extends Conn { subs: Map<string, Sub> }

export interface HubEvents {
  /** A message new to a run (from its trainer's socket or its record), in seq order. */
  message: [runId: string, msg: TrainerMessage];
  /** What was delivered for this run is void (its record was rewritten or diverged); listeners re-fold from the record. */
  runReset: [runId: string, reason: string];
  trainerConnected: [runId: string];
  trainerDisconnected: [runId: string];
  /** The run is no longer served (its record was deleted, or its supervisor forgot it); its subscribers were told. */
  runRemoved: [runId: string, reason: string];
  /** A refused connection, request or message, or a skipped record: the hub's log. */
  rejected: [where: string, error: string];
}

export class Hub extends EventEmitter<HubEvents> {
  readonly viewerToken = newToken();
  private readonly opts: Required<Omit<HubOptions, 'onHttpRequest' | 'allowedOrigins'>> & Pick<HubOptions, 'onHttpRequest'>;
  private allowedOrigins: string[];
  private readonly runs = new Map<string, RunChannel>();
  private readonly subs = new Map<string, Set<Sub>>();
  /** Why a run's trainer cannot be steered from here, as its supervisor knows it (see setControl). */
  private readonly readOnly = new Map<string, string>();
  private readonly viewers = new Set<ViewerConn>();
  private readonly runsListeners = new Set<(runs: RunSummary[]) => void>();
  /** Command rate limit per viewer token (there is one), not per connection: reconnecting does not reset it. */
  private readonly viewerBucket: TokenBucket;
  private readonly wss: WebSocketServer;
  private heartbeat: NodeJS.Timeout | null = null;
  private drainTimer: NodeJS.Timeout | null = null;
  private port = 0;
  private closed = false;

  private constructor(private readonly server: Server, options: HubOptions) {
    super();
    this.opts = { ...DEFAULTS, ...options } as Hub['opts'];
    this.allowedOrigins = [...(options.allowedOrigins ?? [])];
    this.viewerBucket = new TokenBucket(this.opts.commandRate, this.opts.commandBurst);
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: this.opts.maxPayload,
      // Echo the protocol name, never the token subprotocol, so the secret is not reflected back.
      handleProtocols: (protocols) => (protocols.has(PROTOCOL_SUBPROTOCOL) ? PROTOCOL_SUBPROTOCOL : false),
    });
    // Every entry point is guarded: one request can fail, the process cannot.
    server.on('request', (req, res) => this.onRequest(req, res));
    server.on('upgrade', (req, socket, head) => {
      try {
        this.onUpgrade(req, socket, head);
      } catch (e) {
        const bad = e instanceof BadRequest;
        this.emit('rejected', 'upgrade', bad ? e.message : `exception: ${String(e)}`);
        this.refuse(socket, bad ? 400 : 500, bad ? 'Bad Request' : 'Internal Server Error');
      }
    });
    server.on('clientError', (err, socket) => {
      this.emit('rejected', 'http', `malformed request: ${clip(String((err as Error).message), 200)}`);
      if (socket.writable && !(err as NodeJS.ErrnoException).code?.startsWith('ECONNRESET')) {
        socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      }
      socket.destroy();
    });
  }

  static async start(options: HubOptions = {}): Promise<Hub> {
    const server = createServer();
    const hub: Hub = new Hub(server, options);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(hub.opts.port, hub.opts.host, () => { server.off('error', reject); resolve(); });
    });
    server.on('error', (e) => hub.emit('rejected', 'server', String(e)));
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

  /**
   * Follows a run's record (dir/events.jsonl, which need not exist yet) and returns the token its trainer must
   * present. Idempotent: a run already open keeps its channel and token. The run's state comes from folding the
   * record: wait for `run(id).ready` to have it read to its end. The hub writes nothing in the run folder.
   */
  openRun(runId: string, dir: string, token: string = newToken()): { token: string } {
    const existing = this.runs.get(runId);
    if (existing) return { token: existing.token };
    const run: RunChannel = new RunChannel(runId, dir, token, {
      message: (msg) => this.delivered(run, msg),
      reset: (reason) => this.runWasReset(run, reason),
      problem: (text) => this.emit('rejected', `run:${runId}`, text),
      gone: (reason) => this.closeRun(runId, reason),
    }, this.opts.pollMs);
    this.runs.set(runId, run);
    this.broadcastRuns();
    return { token };
  }

  run(runId: string): RunChannel | undefined {
    return this.runs.get(runId);
  }

  /**
   * Every open run's summary, ordered by last activity (the newest message's time), oldest first: the last is the
   * most recently active run, the one a page shows when it is told none (a run with no message yet counts as newest).
   */
  listRuns(): RunSummary[] {
    const at = (r: RunChannel) => r.model.updatedAt ?? Number.MAX_SAFE_INTEGER;
    return [...this.runs.values()].sort((a, b) => at(a) - at(b) || a.runId.localeCompare(b.runId)).map((r) => {
      const link = this.linkOf(r);
      return { ...r.summary(), ...(link.readOnly !== null ? { readOnly: link.readOnly } : {}), control: steerControl(r.model, link) };
    });
  }

  /**
   * What this hub knows of a run's trainer beyond its record (TrainerLink): connected here now, and what its
   * supervisor said (setControl). Null for a run this hub does not serve. Views fold it with the record through
   * viewmodel steerControl, as listRuns and sendCommand do.
   */
  link(runId: string): TrainerLink | null {
    const run = this.runs.get(runId);
    return run ? this.linkOf(run) : null;
  }

  private linkOf(run: RunChannel): TrainerLink {
    return { connected: run.trainer !== null && run.trainer.readyState === WebSocket.OPEN, readOnly: this.readOnly.get(run.runId) ?? null };
  }

  /**
   * The run's supervisor says why its trainer cannot be steered from here (≤ 300 characters; null: it can, once
   * connected). Shown to viewers in the run list and given as the reason when a command is refused.
   */
  setControl(runId: string, readOnlyReason: string | null): void {
    const was = this.readOnly.get(runId) ?? null;
    const now = readOnlyReason === null ? null : clip(readOnlyReason, ERROR_CHARS);
    if (was === now) return;
    if (now === null) this.readOnly.delete(runId); else this.readOnly.set(runId, now);
    if (this.runs.has(runId)) this.broadcastRuns();
  }

  /**
   * Stops serving a run (its folder was deleted, or its supervisor forgot it): its record is no longer followed,
   * its subscribers get one `removed {runId, reason}` and lose their subscription, the run leaves the list, and the
   * hub's log says so once. Idempotent: false when the run was not open.
   */
  closeRun(runId: string, reason: string): boolean {
    const run = this.runs.get(runId);
    if (!run) return false;
    this.runs.delete(runId);
    this.readOnly.delete(runId);
    run.close();
    const msg: HubToViewer = { v: PROTOCOL_MAJOR, type: 'removed', runId, reason: clip(reason, ERROR_CHARS) };
    const text = JSON.stringify(msg);
    for (const sub of this.subs.get(runId) ?? []) if (!sub.gone()) sub.send(msg, text);
    this.subs.delete(runId);
    for (const v of this.viewers) v.subs.delete(runId);
    this.emit('rejected', `run:${runId}`, `removed: ${msg.reason}`);
    this.emit('runRemoved', runId, msg.reason);
    this.broadcastRuns();
    return true;
  }

  // ------------------------------------------------------------------ HTTP

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const fail = (status: 400 | 403 | 500, why: string) => {
      this.emit('rejected', 'http', why);
      try {
        if (!res.headersSent) res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', Connection: 'close' }).end(`${status}\n`);
        else res.destroy();
      } catch { res.destroy(); }
    };
    try {
      if (!hostAllowed(req, this.opts.host)) return fail(403, `Host ${clip(String(req.headers.host), 100)} is not loopback`);
      const handler = this.opts.onHttpRequest;
      if (!handler) { res.writeHead(404).end(); return; }
      const r = handler(req, res);
      if (r && typeof r.then === 'function') r.then(undefined, (e: unknown) => fail(e instanceof BadRequest ? 400 : 500, `exception: ${clip(String(e))}`));
    } catch (e) {
      fail(e instanceof BadRequest ? 400 : 500, `exception: ${clip(String(e))}`);
    }
  }

  // ------------------------------------------------------------------ connections

  private refuse(socket: Duplex, status: number, text: string): void {
    // Nothing but the status line: no hint about which runs exist.
    if (socket.writable) socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    socket.destroy();
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => { /* a peer that resets mid-handshake */ });
    const path = (req.url ?? '').split('?')[0];
    if (!hostAllowed(req, this.opts.host)) { this.emit('rejected', 'upgrade', 'Host is not loopback'); return this.refuse(socket, 403, 'Forbidden'); }
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

  /**
   * Decided to close: stop reading at once (nothing more from it is stored or answered), send the close frame,
   * and cut the socket if the peer does not finish the close handshake promptly.
   */
  private closeConn(conn: Conn, code: number, reason: string): void {
    if (conn.closing) return;
    conn.closing = true;
    conn.ws.pause();
    conn.ws.close(code, reason);
    setTimeout(() => conn.ws.terminate(), 1000).unref();
  }

  /** Counts an invalid message; true when the connection has now sent too many and was closed. */
  private strike(conn: Conn): boolean {
    const now = Date.now();
    conn.invalid = conn.invalid.filter((t) => now - t < this.opts.invalidWindowMs);
    conn.invalid.push(now);
    if (conn.invalid.length > this.opts.maxInvalid) {
      this.closeConn(conn, 1008, 'too many invalid messages');
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
    const text = clip(message, ERROR_CHARS);
    this.emit('rejected', `trainer:${run.runId}`, text);
    this.sendToTrainer(run, ws, { type: 'error', code, message: text, ...(refSeq ? { refSeq } : {}) });
  }

  private acceptTrainer(ws: WebSocket, run: RunChannel): void {
    const conn: Conn = { ws, alive: true, invalid: [], closing: false };
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
      if (conn.closing) return;
      const raw = isBinary ? null : rawText(data);
      if (raw === null) { if (!this.strike(conn)) this.trainerError(run, ws, 'invalid-message', 'binary frames are not part of the protocol'); return; }
      const parsed = parseBoundedJson(raw);
      if (!parsed.ok) { if (!this.strike(conn)) this.trainerError(run, ws, 'invalid-json', parsed.error); return; }
      const v = validateTrainerMessage(parsed.value);
      if (!v.ok) {
        const rec = parsed.value as { v?: unknown; type?: unknown };
        if (!greeted && rec?.type === 'hello' && rec.v !== PROTOCOL_MAJOR) {
          this.trainerError(run, ws, 'unsupported-version', `this hub speaks protocol ${PROTOCOL_MAJOR}.${PROTOCOL_MINOR}`);
          this.closeConn(conn, 1002, 'unsupported protocol version');
          return;
        }
        if (!this.strike(conn)) this.trainerError(run, ws, 'invalid-message', v.error, seqOf(parsed.value));
        return;
      }
      const msg = v.value;
      if (msg.runId !== run.runId) { if (!this.strike(conn)) this.trainerError(run, ws, 'wrong-run', `this connection belongs to run ${run.runId}`, msg.seq); return; }
      if (!greeted) {
        if (msg.type !== 'hello') { this.trainerError(run, ws, 'not-hello', 'the first message must be hello'); this.closeConn(conn, 1008, 'expected hello'); return; }
        if (msg.protocol.major !== PROTOCOL_MAJOR) {
          this.trainerError(run, ws, 'unsupported-version', `this hub speaks protocol ${PROTOCOL_MAJOR}.${PROTOCOL_MINOR}`);
          this.closeConn(conn, 1002, 'unsupported protocol version');
          return;
        }
        const live = run.trainer;
        if (live && live !== ws && live.readyState === WebSocket.OPEN) {
          // Never displace a live trainer silently: whoever else holds the token is refused, and the hub says so.
          // A connection that only seems alive (the peer vanished) fails the next heartbeat and frees the run.
          live.ping();
          this.trainerError(run, ws, 'already-connected', `run ${run.runId} already has a trainer connected`);
          this.closeConn(conn, 1008, 'run already has a trainer');
          return;
        }
        const r = run.offer(msg, raw);
        if (r.kind === 'divergent') {
          this.trainerError(run, ws, 'divergent', `this hello is not the run's: ${r.error}`, msg.seq);
          this.closeConn(conn, 1008, 'hello differs from the run record');
          return;
        }
        greeted = true;
        run.trainer = ws;
        this.sendToTrainer(run, ws, { type: 'welcome', protocol: { major: PROTOCOL_MAJOR, minor: PROTOCOL_MINOR }, received: run.lastSeq });
        this.emit('trainerConnected', run.runId);
        this.broadcastRuns();
        return;
      }
      const r = run.offer(msg, raw);
      switch (r.kind) {
        case 'new':
        case 'duplicate': // a resend, or the record brought it first: the trainer still needs to hear it is held
          if (++sinceReceived >= 256) flushReceived();
          else if (!receivedTimer) receivedTimer = setTimeout(flushReceived, 50);
          return;
        case 'divergent':
          if (!this.strike(conn)) this.trainerError(run, ws, 'divergent', r.error, msg.seq);
          return;
        case 'gap':
          this.trainerError(run, ws, 'out-of-order', `expected seq ${r.expected}, got ${msg.seq}; resend after ${run.lastSeq}`, msg.seq);
          flushReceived();
          return;
      }
    });
    ws.on('close', () => {
      if (receivedTimer) clearTimeout(receivedTimer);
      conn.closing = true;
      if (run.trainer === ws) {
        run.trainer = null;
        run.inFlight.clear(); // what this trainer did not acknowledge died with it; new commands must not be refused
        this.emit('trainerDisconnected', run.runId);
        this.broadcastRuns();
        run.poke(); // its last records (a final state) may be in the file only
      }
    });
    ws.on('error', () => { /* close follows; the run is not affected */ });
    (ws as WebSocket & { conn?: Conn }).conn = conn;
  }

  /** A message new to the run: to the in-process listeners and every live subscriber, in seq order. */
  private delivered(run: RunChannel, msg: TrainerMessage): void {
    this.emit('message', run.runId, msg);
    const subs = this.subs.get(run.runId);
    if (subs && subs.size) {
      const event: HubToViewer = { v: PROTOCOL_MAJOR, type: 'event', runId: run.runId, event: msg };
      let text: string | null = null;
      for (const sub of subs) {
        if (sub.mode !== 'live') continue; // loading: the snapshot will carry it; stale: a fresh snapshot will
        if (sub.pending() > this.opts.slowViewerBytes) {
          sub.mode = 'stale'; // drop to snapshot: it gets a fresh one once it has drained
          this.scheduleDrainCheck();
          continue;
        }
        text ??= JSON.stringify(event);
        sub.send(event, text);
      }
    }
    if (msg.type === 'state' || msg.type === 'hello') this.broadcastRuns();
  }

  private runWasReset(run: RunChannel, reason: string): void {
    this.emit('rejected', `run:${run.runId}`, `record re-read: ${reason}`);
    this.emit('runReset', run.runId, reason);
    for (const sub of this.subs.get(run.runId) ?? []) this.startSnapshot(run, sub);
    this.broadcastRuns();
  }

  private scheduleDrainCheck(): void {
    if (this.drainTimer) return;
    this.drainTimer = setInterval(() => {
      let pending = false;
      for (const set of this.subs.values()) {
        for (const sub of set) {
          if (sub.mode !== 'stale') continue;
          if (sub.pending() > this.opts.slowViewerBytes / 4) { pending = true; continue; }
          const run = this.runs.get(sub.runId);
          if (run) this.startSnapshot(run, sub);
        }
      }
      if (!pending && this.drainTimer) { clearInterval(this.drainTimer); this.drainTimer = null; }
    }, 50);
    this.drainTimer.unref();
  }

  /**
   * Sends a subscriber the run's snapshot, streamed from the record in parts with the subscriber's queue bounded
   * between parts; repeated requests while one is in progress are coalesced into one more afterwards.
   */
  private startSnapshot(run: RunChannel, sub: Sub): void {
    if (sub.mode === 'loading') { sub.again = true; return; }
    sub.mode = 'loading';
    sub.again = false;
    const go = (): void => {
      const send = run.snapshot({
        part: (records, first, more, truncated) => {
          if (sub.gone()) return;
          const flags = `${more ? ',"more":true' : ''}${first ? '' : ',"continued":true'}`;
          // The records go out as the trainer wrote them (validated when read): spliced, not parsed and re-serialised.
          const text = `{"v":${PROTOCOL_MAJOR},"type":"snapshot","runId":${JSON.stringify(run.runId)},"truncated":${truncated}${flags},"events":[${records.join(',')}]}`;
          sub.send(() => ({ v: PROTOCOL_MAJOR, type: 'snapshot', runId: run.runId, events: JSON.parse(`[${records.join(',')}]`) as TrainerMessage[], truncated, ...(more ? { more: true } : {}), ...(first ? {} : { continued: true }) }), text);
        },
        ready: () => this.whenDrained(sub),
        live: () => { sub.mode = 'live'; },
      });
      send.then(() => {
        if (sub.again && !sub.gone()) { sub.again = false; sub.mode = 'loading'; go(); }
      }, (e: unknown) => {
        if (sub.gone()) return;
        if (e instanceof SnapshotRestart) { sub.again = false; go(); return; }
        // The record is gone (its run folder was deleted): the run is removed, once, instead of retried forever.
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') { this.closeRun(run.runId, `its record ${run.file} was deleted`); return; }
        this.emit('rejected', `run:${run.runId}`, `snapshot failed: ${clip(String(e))}`);
        sub.mode = 'stale'; // retried when the drain check comes round
        this.scheduleDrainCheck();
      });
    };
    go();
  }

  private async whenDrained(sub: Sub): Promise<boolean> {
    while (!sub.gone() && !this.closed && sub.pending() > this.opts.slowViewerBytes / 4) await new Promise((r) => setTimeout(r, 20));
    return !sub.gone() && !this.closed;
  }

  private addSub(sub: Sub): void {
    let set = this.subs.get(sub.runId);
    if (!set) this.subs.set(sub.runId, (set = new Set()));
    set.add(sub);
  }

  private sendViewer(v: ViewerConn, msg: HubToViewer | (() => HubToViewer), text?: string): void {
    if (v.ws.readyState !== WebSocket.OPEN || v.closing) return;
    if (v.ws.bufferedAmount > this.opts.maxViewerQueueBytes) {
      // It asks for more than it reads: every queue is bounded, so it is cut rather than buffered without end.
      this.emit('rejected', 'viewer', `closed: ${v.ws.bufferedAmount} bytes unsent`);
      v.closing = true;
      v.ws.terminate();
      return;
    }
    v.ws.send(text ?? JSON.stringify(typeof msg === 'function' ? msg() : msg));
  }

  private acceptViewer(ws: WebSocket): void {
    const viewer: ViewerConn = { ws, alive: true, invalid: [], closing: false, subs: new Map() };
    this.viewers.add(viewer);
    const drop = () => {
      this.viewers.delete(viewer);
      for (const sub of viewer.subs.values()) this.subs.get(sub.runId)?.delete(sub);
      viewer.subs.clear();
    };
    ws.on('pong', () => { viewer.alive = true; });
    ws.on('close', drop);
    ws.on('error', () => { /* close follows */ });
    ws.on('message', (data: RawData, isBinary: boolean) => {
      if (viewer.closing) return;
      const raw = isBinary ? null : rawText(data);
      const parsed = raw === null ? { ok: false as const, error: 'binary frames are not part of the protocol' } : parseBoundedJson(raw);
      const v = parsed.ok ? validateViewerToHub(parsed.value) : parsed;
      if (!v.ok) {
        if (!this.strike(viewer)) this.sendViewer(viewer, { v: PROTOCOL_MAJOR, type: 'commandResult', requestId: 'invalid', error: clip(v.error, ERROR_CHARS) });
        return;
      }
      const msg = v.value;
      if (msg.type === 'unsubscribe') {
        const sub = viewer.subs.get(msg.runId);
        if (sub) { viewer.subs.delete(msg.runId); this.subs.get(msg.runId)?.delete(sub); }
        return;
      }
      if (msg.type === 'save') {
        // A browser page downloads its exports itself; saving through the hub would write files for a web page.
        this.sendViewer(viewer, { v: PROTOCOL_MAJOR, type: 'saved', requestId: msg.requestId, error: 'the standalone page saves with a download' });
        return;
      }
      if (msg.type === 'subscribe') {
        const run = this.runs.get(msg.runId);
        if (!run) { this.sendViewer(viewer, { v: PROTOCOL_MAJOR, type: 'commandResult', requestId: 'subscribe', error: `unknown run ${clip(msg.runId, 100)}` }); return; }
        let sub = viewer.subs.get(msg.runId);
        if (!sub) {
          let gone = false;
          ws.once('close', () => { gone = true; });
          sub = {
            runId: msg.runId, mode: 'live', again: false,
            send: (m, text) => this.sendViewer(viewer, m, text),
            pending: () => ws.bufferedAmount,
            gone: () => gone || viewer.closing || viewer.subs.get(msg.runId) !== sub,
          };
          viewer.subs.set(msg.runId, sub);
          this.addSub(sub);
        }
        this.startSnapshot(run, sub);
        return;
      }
      const result: SendResult = this.viewerBucket.take()
        ? this.sendCommand(msg.runId, msg.command)
        : { ok: false, error: 'rate limited: too many commands from the dashboards' };
      this.sendViewer(viewer, {
        v: PROTOCOL_MAJOR, type: 'commandResult', requestId: msg.requestId,
        ...(result.ok ? { commandId: result.commandId } : { error: clip(result.error, ERROR_CHARS) }),
      });
    });
    this.sendViewer(viewer, { v: PROTOCOL_MAJOR, type: 'runs', runs: this.listRuns() });
  }

  /**
   * Calls `fn` with the run list whenever it changes (a run listed, its state, its trainer (dis)connecting, its
   * control): in-process viewers (VS Code's dashboard panel) get what socket viewers get. Returns the unsubscribe.
   */
  onRuns(fn: (runs: RunSummary[]) => void): () => void {
    this.runsListeners.add(fn);
    return () => { this.runsListeners.delete(fn); };
  }

  private broadcastRuns(): void {
    if (this.viewers.size === 0 && this.runsListeners.size === 0) return;
    const runs = this.listRuns();
    for (const fn of this.runsListeners) fn(runs);
    if (this.viewers.size === 0) return;
    const msg: HubToViewer = { v: PROTOCOL_MAJOR, type: 'runs', runs };
    const text = JSON.stringify(msg);
    for (const v of this.viewers) this.sendViewer(v, msg, text);
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

  /** Validates and forwards a command; the trainer acknowledges it with this id (`id`: one given earlier to a caller
   * whose command waited for the trainer to connect, see RunManager.command; default a new one). */
  sendCommand(runId: string, body: CommandBody | unknown, id = `c-${randomUUID()}`): SendResult {
    const run = this.runs.get(runId);
    if (!run) return { ok: false, error: `unknown run ${clip(runId, 100)}` };
    const v = validateCommandBody(body);
    if (!v.ok) return { ok: false, error: clip(v.error, ERROR_CHARS) };
    const control = steerControl(run.model, this.linkOf(run));
    const trainer = run.trainer;
    if (!control.canSteer || !trainer) return { ok: false, error: `run ${runId} cannot be steered from here: ${control.reason ?? NO_TRAINER}` };
    if (run.inFlight.size >= this.opts.maxInFlight) return { ok: false, error: `run ${runId} already has ${run.inFlight.size} commands waiting for the trainer` };
    run.inFlight.add(id);
    this.sendToTrainer(run, trainer, { type: 'command', id, command: v.value });
    return { ok: true, commandId: id };
  }

  /**
   * The run's snapshot (streamed from its record: one or more `snapshot` parts, later parts `continued`), then
   * every new message of the run as an `event`, in order; a fresh snapshot whenever the record is re-read.
   * The snapshot starts synchronously-scheduled but arrives asynchronously. Returns the unsubscribe function.
   */
  subscribe(runId: string, listener: ViewerListener): () => void {
    const run = this.runs.get(runId);
    if (!run) throw new Error(`unknown run ${runId}`);
    let gone = false;
    const sub: Sub = {
      runId, mode: 'live', again: false,
      send: (m) => { if (!gone) listener(typeof m === 'function' ? m() : m); },
      pending: () => 0,
      gone: () => gone,
    };
    this.addSub(sub);
    this.startSnapshot(run, sub);
    return () => { gone = true; this.subs.get(runId)?.delete(sub); };
  }

  /** Stops accepting, closes every connection and stops following the runs' records. */
  async close(): Promise<void> {
    this.closed = true;
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
