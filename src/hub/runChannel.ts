/**
 * What the hub knows about one run. The trainer's events.jsonl is the run's record of truth: the channel follows it
 * (LogTail: appended lines, a torn tail re-read once complete, fs.watch plus a poll) and folds every record through
 * the one reducer (viewmodel/runModel), so a run whose trainer is not connected to this hub — started from a
 * terminal, finished while no hub ran, or ended by a supervisor's state record — streams live like any other.
 *
 * A connected trainer's socket messages are merged with the file by seq: each seq is delivered once, in order,
 * whichever source brings it first; when both carry a seq their content must be equal. A socket message that
 * differs from the record is refused (divergent); a file record that differs from what the socket delivered first
 * makes the file win: the channel re-reads the record and viewers get a fresh snapshot.
 *
 * Memory is bounded however long the run: the folded model, the messages the socket delivered ahead of the file
 * (at most MAX_AHEAD), the newest records (for the duplicate check), a sparse seq → byte index (one entry per
 * INDEX_EVERY records) and the offsets of skipped lines. A viewer's snapshot is streamed from the file in parts.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import type { WebSocket } from 'ws';
import { clip, parseBoundedJson } from '../runfolder/eventLog';
import { LogTail, type TailLine } from '../runfolder/logTail';
import { EVENTS_FILE } from '../runfolder/runFiles';
import { validateTrainerMessage } from '../protocol/validate';
import type { Hello, RunStateName, RunSummary, TrainerMessage } from '../protocol/messages';
import { applyMessage, emptyRun, type RunModel } from '../viewmodel/runModel';

/** Messages (and their bytes) the socket may deliver ahead of the file; more are dropped (the file brings them). */
const MAX_AHEAD = 10_000;
const MAX_AHEAD_BYTES = 64 << 20;
/** Newest records kept for comparing a resent seq without reading the file. */
const RECENT = 1024;
/** One seq → byte-offset entry per this many records (older duplicates are read back from there). */
const INDEX_EVERY = 256;
/** Skipped-line offsets remembered; past this the snapshot validates every line itself. */
const MAX_BAD_REMEMBERED = 10_000;
/** Importance snapshots in a viewer's snapshot: the newest IMPORTANCE_NEWEST, plus at most IMPORTANCE_OLDER evenly spaced older ones. */
export const IMPORTANCE_NEWEST = 200;
export const IMPORTANCE_OLDER = 200;
/** Bytes of records per snapshot part. */
export const SNAPSHOT_PART_BYTES = 1 << 20;

export interface ChannelHooks {
  /** A message new to the run (from either source), in seq order, already folded into the model. */
  message: (msg: TrainerMessage) => void;
  /** What viewers were given is void (the record was rewritten, or differed from what the socket delivered). */
  reset: (reason: string) => void;
  /** A record skipped or a message refused: reported, never silent. */
  problem: (text: string) => void;
}

export type OfferResult =
  | { kind: 'new' }
  | { kind: 'duplicate' }
  | { kind: 'divergent'; error: string }
  | { kind: 'gap'; expected: number };

/** Thrown out of a snapshot when the record was rewritten under it: the caller starts a new one. */
export class SnapshotRestart extends Error {}

export interface SnapshotSink {
  /**
   * One part, as the records' JSON texts (validated when the record was read: no parse on this path);
   * `first` replaces what the viewer holds, later ones append; `more` says further parts follow.
   */
  part(records: string[], first: boolean, more: boolean, truncated: boolean): void;
  /** Waits until the viewer can take more; false when it went away (the snapshot stops). */
  ready(): Promise<boolean>;
  /** Called synchronously after the last part: from here on the viewer gets every new message as an event. */
  live(): void;
}

export class RunChannel {
  readonly file: string;
  model: RunModel;
  trainer: WebSocket | null = null;
  /** Hub → trainer seq for this run. */
  outSeq = 0;
  readonly inFlight = new Set<string>();
  /** Bumped whenever what was delivered is void; a snapshot in progress starts over. */
  generation = 0;
  private fileSeq = 0;
  private ahead: TrainerMessage[] = [];
  /** The socket's text of each message ahead: a record with the same text is the same message (no parse needed). */
  private aheadRaw: string[] = [];
  private aheadBytes: number[] = [];
  private aheadTotal = 0;
  private recent = new Map<number, TrainerMessage>();
  private helloMsg: Hello | null = null;
  private indexSeq: number[] = [];
  private indexOff: number[] = [];
  private records = 0;
  /** Byte offsets of the record's importance lines (8 bytes each: how a snapshot thins them without parsing). */
  private importanceAt: number[] = [];
  private bad = new Set<number>();
  private badOverflow = false;
  private droppedAhead = false;
  private readonly tail: LogTail;

  constructor(readonly runId: string, readonly dir: string, readonly token: string, private readonly hooks: ChannelHooks, pollMs = 500) {
    this.file = join(dir, EVENTS_FILE);
    this.model = emptyRun(runId);
    this.tail = new LogTail(this.file, {
      onLines: (lines) => this.onLines(lines),
      onRewrite: (reason) => this.rewound(`${EVENTS_FILE} was rewritten (${reason})`),
      onSkip: (line, reason) => this.hooks.problem(`${this.file}:${line}: skipped ${reason}`),
      pollMs,
    });
    this.tail.start();
  }

  /** Resolves once the record has been read to its end the first time. */
  get ready(): Promise<void> {
    return this.tail.caughtUp;
  }

  /** Highest seq delivered (record or socket). */
  get lastSeq(): number {
    return this.ahead.length ? this.ahead[this.ahead.length - 1].seq : this.fileSeq;
  }

  get hello(): Hello | null { return this.helloMsg; }
  get state(): RunStateName { return this.model.state; }
  get step(): number { return this.model.step; }
  /** A snapshot would thin importance out. */
  get truncated(): boolean { return this.importanceAt.length > IMPORTANCE_NEWEST + IMPORTANCE_OLDER; }

  /** Reads the record now instead of at the next watch event or poll. */
  poke(): void {
    this.tail.wake();
  }

  // ------------------------------------------------------------------ the record (events.jsonl)

  private onLines(lines: TailLine[]): void {
    const gen = this.generation;
    for (const l of lines) {
      if (this.generation !== gen) return; // restarted mid-batch: the tail reads again from byte 0
      if (this.aheadRaw.length && l.text === this.aheadRaw[0]) {
        // The socket brought this record first, byte for byte (a trainer sends the line it wrote): already delivered.
        const msg = this.ahead[0];
        this.fileSeq = msg.seq;
        this.index(msg, l.start);
        if (msg.type === 'importance') this.importanceAt.push(l.start);
        this.shiftAhead();
        continue;
      }
      const p = parseBoundedJson(l.text);
      const v = p.ok ? validateTrainerMessage(p.value) : p;
      if (!v.ok) { this.skip(l, v.error); continue; }
      const msg = v.value;
      if (msg.runId !== this.runId) { this.skip(l, `belongs to run ${clip(msg.runId, 100)}`); continue; }
      if (msg.seq <= this.fileSeq) { this.skip(l, `seq ${msg.seq} does not follow ${this.fileSeq}`); continue; }
      if (this.fileSeq > 0 && msg.seq !== this.fileSeq + 1) this.hooks.problem(`${this.file}:${l.line}: seq ${msg.seq} follows ${this.fileSeq} (records missing)`);
      this.fileSeq = msg.seq;
      this.index(msg, l.start);
      if (msg.type === 'importance') this.importanceAt.push(l.start);
      const first = this.ahead[0];
      if (first && first.seq <= msg.seq) {
        if (first.seq === msg.seq && isDeepStrictEqual(first, msg)) { this.shiftAhead(); continue; } // the socket brought it first
        // The socket delivered something the record does not hold: the record wins, viewers start over from it.
        this.diverged(`${this.file}:${l.line}: seq ${msg.seq} in the record differs from what the trainer's connection delivered`);
        return;
      }
      this.deliver(msg);
    }
  }

  private shiftAhead(): void {
    this.ahead.shift();
    this.aheadRaw.shift();
    this.aheadTotal -= this.aheadBytes.shift() ?? 0;
  }

  private skip(l: TailLine, error: string): void {
    if (this.bad.size < MAX_BAD_REMEMBERED) this.bad.add(l.start);
    else this.badOverflow = true;
    this.hooks.problem(`${this.file}:${l.line}: skipped a record: ${clip(error)}`);
  }

  private index(msg: TrainerMessage, start: number): void {
    if (this.records++ % INDEX_EVERY === 0) { this.indexSeq.push(msg.seq); this.indexOff.push(start); }
    this.recent.set(msg.seq, msg);
    if (this.recent.size > RECENT) this.recent.delete(this.recent.keys().next().value as number);
  }

  private deliver(msg: TrainerMessage): void {
    if (msg.type === 'hello' && !this.helloMsg) this.helloMsg = msg;
    if (msg.type === 'ack' && msg.status !== 'received') this.inFlight.delete(msg.commandId);
    applyMessage(this.model, msg);
    this.hooks.message(msg);
  }

  private diverged(reason: string): void {
    this.hooks.problem(reason);
    this.tail.restart();
    this.rewound(reason);
  }

  /** Everything delivered is void: start over from the record. */
  private rewound(reason: string): void {
    this.generation++;
    this.model = emptyRun(this.runId);
    this.fileSeq = 0;
    this.ahead = [];
    this.aheadRaw = [];
    this.aheadBytes = [];
    this.aheadTotal = 0;
    this.recent.clear();
    this.helloMsg = null;
    this.indexSeq = [];
    this.indexOff = [];
    this.records = 0;
    this.importanceAt = [];
    this.bad.clear();
    this.badOverflow = false;
    this.hooks.reset(reason);
  }

  // ------------------------------------------------------------------ the trainer's connection

  /**
   * A validated message from the run's trainer socket, with its text as received. New (the next seq): delivered and held until the record
   * shows it. At or below what is held: a resend, compared with the record — equal is a duplicate, different is
   * divergent (refused, reported). Past the next seq: a gap.
   */
  offer(msg: TrainerMessage, raw: string): OfferResult {
    const bytes = raw.length;
    if (msg.seq <= this.lastSeq) {
      const stored = msg.seq > this.fileSeq ? this.ahead[msg.seq - this.ahead[0].seq] : this.stored(msg.seq);
      if (stored !== undefined && isDeepStrictEqual(stored, msg)) return { kind: 'duplicate' };
      const error = stored === undefined
        ? `seq ${msg.seq} is not in the run's record`
        : `seq ${msg.seq} differs from the run's record (${stored.type} there, ${msg.type} here)`;
      this.hooks.problem(`run ${this.runId}: refused a trainer message: ${error}`);
      return { kind: 'divergent', error };
    }
    if (msg.seq !== this.lastSeq + 1) return { kind: 'gap', expected: this.lastSeq + 1 };
    if (this.ahead.length >= MAX_AHEAD || this.aheadTotal + bytes > MAX_AHEAD_BYTES) {
      // The trainer's file is not keeping up with its socket (or it writes no file): the record will bring these.
      if (!this.droppedAhead) this.hooks.problem(`run ${this.runId}: ${MAX_AHEAD} messages arrived ahead of ${EVENTS_FILE}; waiting for the file`);
      this.droppedAhead = true;
      return { kind: 'gap', expected: this.lastSeq + 1 };
    }
    this.droppedAhead = false;
    this.ahead.push(msg);
    this.aheadRaw.push(raw);
    this.aheadBytes.push(bytes);
    this.aheadTotal += bytes;
    this.deliver(msg);
    this.tail.wake(); // the trainer writes its record before it sends: read it now
    return { kind: 'new' };
  }

  /** The record's message with this seq (newest from memory, older read back via the sparse index). */
  private stored(seq: number): TrainerMessage | undefined {
    if (seq === 1 && this.helloMsg?.seq === 1) return this.helloMsg;
    const hit = this.recent.get(seq);
    if (hit) return hit;
    let lo = 0;
    let hi = this.indexSeq.length - 1;
    if (hi < 0 || this.indexSeq[0] > seq) return undefined;
    while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (this.indexSeq[mid] <= seq) lo = mid; else hi = mid - 1; }
    const from = this.indexOff[lo];
    const to = lo + 1 < this.indexOff.length ? this.indexOff[lo + 1] : this.tail.offset;
    let fd: number | null = null;
    try {
      fd = openSync(this.file, 'r');
      const buf = Buffer.allocUnsafe(to - from);
      readSync(fd, buf, 0, buf.length, from);
      for (const text of buf.toString('utf8').split('\n')) {
        const p = parseBoundedJson(text);
        const s = p.ok ? (p.value as { seq?: unknown }).seq : undefined;
        if (s === seq) { const v = validateTrainerMessage(p.ok ? p.value : null); return v.ok ? v.value : undefined; }
      }
    } catch { /* unreadable: not comparable, treated as absent */ } finally {
      if (fd !== null) closeSync(fd);
    }
    return undefined;
  }

  // ------------------------------------------------------------------ viewers

  /**
   * Streams the record to one viewer in parts of about SNAPSHOT_PART_BYTES, waiting for it between parts, then the
   * messages the socket delivered ahead of the file, then calls sink.live() in the same tick, so no message falls
   * between the snapshot and the events that follow. Importance snapshots are thinned to the newest
   * IMPORTANCE_NEWEST plus IMPORTANCE_OLDER evenly spaced older ones. Throws SnapshotRestart when the record was
   * rewritten meanwhile.
   */
  async snapshot(sink: SnapshotSink): Promise<void> {
    const gen = this.generation;
    const imps = this.importanceAt;
    const total = imps.length;
    const older = Math.max(0, total - IMPORTANCE_NEWEST);
    const stride = older > IMPORTANCE_OLDER ? Math.ceil(older / IMPORTANCE_OLDER) : 1;
    const truncated = this.truncated;
    let records: string[] = [];
    let bytes = 0;
    let first = true;
    let imp = 0;
    let pos = 0;
    let fh: Awaited<ReturnType<typeof open>> | null = null;
    let buf = Buffer.allocUnsafe(SNAPSHOT_PART_BYTES);
    try {
      for (;;) {
        if (this.generation !== gen) throw new SnapshotRestart();
        const end = this.tail.offset;
        if (pos >= end) {
          // Caught up with the record: what the socket delivered ahead of it, then live, in the same tick.
          for (const m of this.ahead) records.push(JSON.stringify(m));
          sink.part(records, first, false, truncated);
          sink.live();
          return;
        }
        fh ??= await open(this.file, 'r');
        const want = Math.min(buf.length, end - pos);
        const { bytesRead } = await fh.read(buf, 0, want, pos);
        if (this.generation !== gen || bytesRead === 0) throw new SnapshotRestart(); // rewritten under us
        const lastNl = buf.lastIndexOf(0x0a, bytesRead - 1);
        if (lastNl < 0) { buf = Buffer.allocUnsafe(buf.length * 2); continue; } // one long line: a bigger buffer
        let start = 0;
        while (start <= lastNl) {
          const nl = buf.indexOf(0x0a, start);
          const at = pos + start;
          const len = nl - start;
          const lineStart = start;
          start = nl + 1;
          // Only what the channel accepted when it read the line: skipped lines are remembered, and the rest were
          // validated, in order, with increasing seqs (the generation check catches a rewrite).
          if (len === 0 || this.bad.has(at)) continue;
          if (this.badOverflow) {
            const p = parseBoundedJson(buf.toString('utf8', lineStart, nl));
            const v = p.ok ? validateTrainerMessage(p.value) : p;
            if (!v.ok || v.value.runId !== this.runId) continue;
          }
          if (imp < total && imps[imp] === at) {
            const i = imp++;
            if (i < older && i % stride !== 0) continue;
          }
          records.push(buf.toString('utf8', lineStart, nl));
          bytes += len;
        }
        pos += lastNl + 1;
        if (buf.length > SNAPSHOT_PART_BYTES) buf = Buffer.allocUnsafe(SNAPSHOT_PART_BYTES);
        if (bytes >= SNAPSHOT_PART_BYTES) {
          sink.part(records, first, true, truncated);
          first = false;
          records = [];
          bytes = 0;
          if (!(await sink.ready())) return;
        }
      }
    } finally {
      await fh?.close().catch(() => {});
    }
  }

  summary(): RunSummary {
    const m = this.model;
    return {
      runId: this.runId,
      ...(this.helloMsg ? { name: m.name, method: this.helloMsg.method } : {}),
      state: m.state,
      step: m.step,
      totalSteps: m.totalSteps,
      connected: this.trainer !== null,
    };
  }

  close(): void {
    this.tail.close();
  }
}
