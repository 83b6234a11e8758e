/**
 * The trainer's connection to a hub. It never blocks a training step: emitting appends to the recorder's log
 * and queues a frame; the socket drains on its own. After any drop it reconnects with exponential backoff and
 * jitter (re-reading the hub's discovery file, if given, since a restarted hub has a new port), presents the
 * run's hello again, and resends everything after the hub's `received` seq — from memory, or from
 * events.jsonl when memory no longer holds it — so the hub's log ends complete, in order, each seq once.
 */
import { WebSocket } from 'ws';
import type { CommandBody, HubMessage, TrainerMessage } from '../../protocol/messages';
import { parseJson, validateHubMessage } from '../../protocol/validate';
import type { EventRecorder } from './recorder';

export interface HubEndpoint { url: string; token: string }

export interface HubLinkOptions {
  endpoint: HubEndpoint;
  /** Called before each reconnect: the hub may have restarted elsewhere (discovery file). */
  discover?: () => HubEndpoint | null;
  onCommand: (id: string, command: CommandBody) => void;
  onLog?: (text: string) => void;
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** Frames kept in memory for a resend; older ones are re-read from events.jsonl if needed. */
  maxPendingInMemory?: number;
  /** Above this many unsent bytes the link is "under pressure" and importance snapshots are skipped. */
  pressureBytes?: number;
}

interface Pending { seq: number; text: string }

export class HubLink {
  private ws: WebSocket | null = null;
  private welcomed = false;
  private pending: Pending[] = [];
  /** Highest seq the hub confirmed stored. */
  private received = 0;
  private attempt = 0;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private endpoint: HubEndpoint;
  private readonly unsubscribe: () => void;
  private readonly o: Required<Omit<HubLinkOptions, 'discover' | 'onLog'>> & Pick<HubLinkOptions, 'discover' | 'onLog'>;

  constructor(private readonly recorder: EventRecorder, options: HubLinkOptions) {
    this.o = { minBackoffMs: 100, maxBackoffMs: 5000, maxPendingInMemory: 20_000, pressureBytes: 4 << 20, ...options };
    this.endpoint = options.endpoint;
    this.unsubscribe = recorder.onEmit((msg, text) => this.enqueue(msg, text));
  }

  start(): void {
    this.connect();
  }

  get connected(): boolean {
    return this.welcomed && this.ws?.readyState === WebSocket.OPEN;
  }

  /** True when the socket cannot keep up (or is down): the trainer then skips, i.e. coalesces, importance snapshots. */
  underPressure(): boolean {
    return !this.connected || (this.ws?.bufferedAmount ?? 0) > this.o.pressureBytes;
  }

  /** Highest seq the hub has confirmed. */
  get confirmed(): number {
    return this.received;
  }

  private enqueue(msg: TrainerMessage, text: string): void {
    if (msg.type === 'hello') return; // sent as the handshake of each connection
    this.pending.push({ seq: msg.seq, text });
    if (this.pending.length > this.o.maxPendingInMemory) this.pending.splice(0, this.pending.length - this.o.maxPendingInMemory);
    if (this.connected) this.ws!.send(text);
  }

  private connect(): void {
    if (this.closed) return;
    const hello = this.recorder.hello;
    if (!hello) throw new Error('emit hello before starting the hub link');
    const ws = new WebSocket(`${this.endpoint.url}/trainer`, {
      headers: { Authorization: `Bearer ${this.endpoint.token}` },
      handshakeTimeout: 5000,
    });
    this.ws = ws;
    this.welcomed = false;
    ws.on('open', () => ws.send(JSON.stringify(hello)));
    ws.on('message', (data) => this.onMessage(ws, data.toString()));
    ws.on('unexpected-response', (_req, res) => {
      this.o.onLog?.(`hub refused the connection: HTTP ${res.statusCode}`);
      ws.terminate();
    });
    ws.on('error', () => { /* 'close' follows and schedules the reconnect */ });
    ws.on('close', () => {
      if (this.ws === ws) { this.ws = null; this.welcomed = false; }
      this.scheduleReconnect();
    });
  }

  private scheduleReconnect(): void {
    if (this.closed || this.timer) return;
    const base = Math.min(this.o.maxBackoffMs, this.o.minBackoffMs * 2 ** this.attempt);
    const delay = base / 2 + Math.random() * base / 2; // jitter: a restarted hub is not hit by every trainer at once
    this.attempt++;
    this.timer = setTimeout(() => {
      this.timer = null;
      const found = this.o.discover?.();
      if (found) this.endpoint = found;
      this.connect();
    }, delay);
  }

  private onMessage(ws: WebSocket, text: string): void {
    const parsed = parseJson(text);
    const v = parsed.ok ? validateHubMessage(parsed.value) : parsed;
    if (!v.ok) { this.o.onLog?.(`ignored a hub message: ${v.error}`); return; }
    const msg: HubMessage = v.value;
    switch (msg.type) {
      case 'welcome':
        this.attempt = 0;
        this.acknowledge(msg.received);
        this.resend(ws, msg.received);
        this.welcomed = true;
        break;
      case 'received':
        this.acknowledge(msg.received);
        break;
      case 'command':
        this.o.onCommand(msg.id, msg.command);
        break;
      case 'error':
        this.o.onLog?.(`hub: ${msg.code}: ${msg.message}`);
        break;
    }
  }

  private acknowledge(received: number): void {
    this.received = Math.max(this.received, received);
    let drop = 0;
    while (drop < this.pending.length && this.pending[drop].seq <= received) drop++;
    if (drop) this.pending.splice(0, drop);
  }

  private resend(ws: WebSocket, after: number): void {
    const firstInMemory = this.pending.length ? this.pending[0].seq : this.recorder.lastSeq + 1;
    if (firstInMemory > after + 1) {
      // Memory no longer holds the start of the gap: the log on disk does.
      const fromDisk = this.recorder.readAfter(after).map((t) => ({ seq: (JSON.parse(t) as TrainerMessage).seq, text: t }));
      this.pending = fromDisk.filter((p) => p.seq > 1 && p.seq < firstInMemory).concat(this.pending);
    }
    for (const p of this.pending) if (p.seq > after) ws.send(p.text);
  }

  /** Waits (bounded) until the hub has confirmed everything emitted so far. */
  async flush(timeoutMs = 5000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.received < this.recorder.lastSeq && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    return this.received >= this.recorder.lastSeq;
  }

  close(): void {
    this.closed = true;
    this.unsubscribe();
    if (this.timer) clearTimeout(this.timer);
    this.ws?.close(1000, 'trainer finished');
  }
}
