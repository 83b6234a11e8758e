/**
 * What the hub knows about one run. The trainer's events.jsonl is the run's record of truth: the channel follows it
 * (LogTail: appended lines, a torn tail re-read once complete, fs.watch plus a poll) and folds every record through
 * the one reducer (viewmodel/runModel), so a run whose trainer is not connected to this hub — started from a
 * terminal, finished while no hub ran, or ended by a supervisor's state record — streams live like any other.
 *
 * Opening is cheap however long the record: when the run's summary.json (runfolder/summary.ts: the same reducer's
 * model of the record up to a byte offset) still fits the log, the channel starts from that model and follows the
 * log from that offset; otherwise it folds from byte 0, in slices of CHUNK_BYTES, each read awaited, so the event
 * loop is never held for long. What a viewer's snapshot needs from the part before the offset (which lines are
 * records, where the importance snapshots are) is indexed when the first viewer asks, in time-bounded slices.
 *
 * A connected trainer's socket messages are merged with the file by seq: each seq is delivered once, in order,
 * whichever source brings it first; when both carry a seq their content must be equal. A socket message that
 * differs from the record is refused (divergent); a file record that differs from what the socket delivered first
 * makes the file win: the channel re-reads the record and viewers get a fresh snapshot.
 *
 * Memory is bounded however long the run: the folded model, the messages the socket delivered ahead of the file
 * (at most MAX_AHEAD / MAX_AHEAD_BYTES), the newest records' texts (at most RECENT / RECENT_BYTES, for the duplicate
 * check; older ones are found in the file by a binary search on seq), the byte offsets of the importance snapshots
 * and of skipped lines. A viewer's snapshot is streamed from the file in parts.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import type { WebSocket } from 'ws';
import { clip, MAX_LINE_BYTES, parseBoundedJson } from '../runfolder/eventLog';
import { LogTail, type TailLine } from '../runfolder/logTail';
import { EVENTS_FILE } from '../runfolder/runFiles';
import { readSummary, summaryFits } from '../runfolder/summary';
import { validateTrainerMessage } from '../protocol/validate';
import { RunSummary, type RunStateName, type TrainerMessage } from '../protocol/messages';
import { applyMessage, emptyRun, type RunModel } from '../viewmodel/runModel';

/** The longest run folder a summary states (the schema's bound on RunSummary.dir). */
const MAX_DIR = RunSummary.properties.dir.maxLength ?? 4096;
/** Messages (and their bytes) the socket may deliver ahead of the file; more are dropped (the file brings them). */
const MAX_AHEAD = 10_000;
const MAX_AHEAD_BYTES = 64 << 20;
/** Newest records' texts kept for comparing a resent seq without reading the file (count and characters). */
const RECENT = 1024;
const RECENT_BYTES = 256 << 10;
/** Skipped-line offsets remembered; past this the snapshot validates every line itself. */
const MAX_BAD_REMEMBERED = 10_000;
/** Bytes of the record folded per read (one synchronous slice of work between awaited reads). */
const CHUNK_BYTES = 256 << 10;
/** Longest stretch of indexing work between yields to the event loop (ms). */
const SLICE_MS = 8;
/** Importance snapshots in a viewer's snapshot: the newest IMPORTANCE_NEWEST, plus at most IMPORTANCE_OLDER evenly spaced older ones. */
export const IMPORTANCE_NEWEST = 200;
export const IMPORTANCE_OLDER = 200;
/** Bytes of records per snapshot part. */
export const SNAPSHOT_PART_BYTES = 1 << 20;

const yieldNow = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Enough of a RunModel's shape to start from (fields a newer reducer added come from emptyRun). */
function isCachedModel(v: unknown): v is RunModel {
  const m = v as Partial<RunModel> | null;
  return typeof m === 'object' && m !== null && typeof m.runId === 'string' && typeof m.state === 'string' && typeof m.step === 'number'
    && Number.isInteger(m.lastSeq) && Array.isArray(m.layers) && Array.isArray(m.recompositionSteps);
}

export interface ChannelHooks {
  /** A message new to the run (from either source), in seq order, already folded into the model. */
  message: (msg: TrainerMessage) => void;
  /** What viewers were given is void (the record was rewritten, or differed from what the socket delivered). */
  reset: (reason: string) => void;
  /** A record skipped or a message refused: reported, never silent. */
  problem: (text: string) => void;
  /** The record (events.jsonl) was there and is gone: the run folder was deleted. */
  gone?: (reason: string) => void;
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
  /** seq → the record's text, newest last (bounded by RECENT and RECENT_BYTES). */
  private recent = new Map<number, string>();
  private recentBytes = 0;
  /** Byte offsets of the record's importance lines (8 bytes each: how a snapshot thins them without parsing). */
  private importanceAt: number[] = [];
  private bad = new Set<number>();
  private badOverflow = false;
  /** The log holds lines written under another run id (its folder was renamed or copied): see own(). */
  private foreign = false;
  private droppedAhead = false;
  /** The lines before the tail's start offset (folded by the summary cache) have been indexed for snapshots. */
  private prefixIndexed = true;
  private prefixTask: Promise<void> | null = null;
  private readonly tail: LogTail;

  constructor(readonly runId: string, readonly dir: string, readonly token: string, private readonly hooks: ChannelHooks, pollMs = 500) {
    this.file = join(dir, EVENTS_FILE);
    this.model = emptyRun(runId);
    // The run's summary (the one reducer's model up to a byte offset), when it still describes this log: start there.
    const cache = readSummary(dir, isCachedModel);
    const from = cache && cache.byteOffset > 0 && cache.model.runId === runId && cache.lastSeq === cache.model.lastSeq && summaryFits(this.file, cache) ? cache : null;
    if (from) {
      this.model = { ...emptyRun(runId), ...from.model, latestImportance: null };
      this.fileSeq = from.lastSeq;
      this.prefixIndexed = false;
    }
    this.tail = new LogTail(this.file, {
      onLines: (lines) => this.onLines(lines),
      onRewrite: (reason) => this.rewound(`${EVENTS_FILE} was rewritten (${reason})`),
      onSkip: (line, reason, start) => { this.markBad(start); this.hooks.problem(`${this.where(line, start)}: skipped ${reason}`); },
      onGone: () => this.hooks.gone?.(`its record ${this.file} was deleted`),
      pollMs,
      chunkBytes: CHUNK_BYTES,
      ...(from ? { startOffset: from.byteOffset, startIno: from.ino } : {}),
    });
    this.tail.start();
  }

  /** Where a line is, for reports: its line number when the tail read the file from its start, else its byte offset. */
  private where(line: number, start: number): string {
    return this.tail.startOffset === 0 ? `${this.file}:${line}` : `${this.file} (the line at byte ${start})`;
  }

  /** Resolves once the record has been read to its end the first time. */
  get ready(): Promise<void> {
    return this.tail.caughtUp;
  }

  /** Highest seq delivered (record or socket). */
  get lastSeq(): number {
    return this.ahead.length ? this.ahead[this.ahead.length - 1].seq : this.fileSeq;
  }

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
        this.remember(msg.seq, l.text);
        if (msg.type === 'importance') this.importanceAt.push(l.start);
        this.shiftAhead();
        continue;
      }
      const p = parseBoundedJson(l.text);
      const v = p.ok ? validateTrainerMessage(p.value) : p;
      if (!v.ok) { this.skip(l, v.error); continue; }
      let msg = v.value;
      let text = l.text;
      if (msg.runId !== this.runId) { msg = { ...msg, runId: this.runId }; text = JSON.stringify(msg); this.foreign = true; } // see own()
      if (msg.seq <= this.fileSeq) { this.skip(l, `seq ${msg.seq} does not follow ${this.fileSeq}`); continue; }
      if (this.fileSeq > 0 && msg.seq !== this.fileSeq + 1) this.hooks.problem(`${this.where(l.line, l.start)}: seq ${msg.seq} follows ${this.fileSeq} (records missing)`);
      this.fileSeq = msg.seq;
      this.remember(msg.seq, text);
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
    this.markBad(l.start);
    this.hooks.problem(`${this.where(l.line, l.start)}: skipped a record: ${clip(error)}`);
  }

  private markBad(start: number): void {
    if (this.bad.size < MAX_BAD_REMEMBERED) this.bad.add(start);
    else this.badOverflow = true;
  }

  /**
   * A record as this run's: a run folder is movable (renamed, copied: docs/protocol.md, Run ids), so every line of its
   * events.jsonl is the run the folder names, whatever id it was written under; such a line is served with this run's
   * id. Only a log that held one (`foreign`) pays for the parse.
   */
  private own(text: string): string {
    if (!this.foreign) return text;
    const p = parseBoundedJson(text);
    const m = p.ok ? p.value as { runId?: unknown } | null : null;
    return m !== null && typeof m === 'object' && typeof m.runId === 'string' && m.runId !== this.runId ? JSON.stringify({ ...m, runId: this.runId }) : text;
  }

  private remember(seq: number, text: string): void {
    this.recent.set(seq, text);
    this.recentBytes += text.length;
    while (this.recent.size > RECENT || (this.recentBytes > RECENT_BYTES && this.recent.size > 1)) {
      const [k, v] = this.recent.entries().next().value as [number, string];
      this.recent.delete(k);
      this.recentBytes -= v.length;
    }
  }

  private deliver(msg: TrainerMessage): void {
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
    this.recentBytes = 0;
    this.importanceAt = [];
    this.bad.clear();
    this.badOverflow = false;
    this.prefixIndexed = true; // read again from byte 0 (the tail's start offset is 0 after a rewrite or restart)
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
      let stored: TrainerMessage | undefined;
      if (msg.seq > this.fileSeq) stored = this.ahead[msg.seq - this.ahead[0].seq];
      else {
        const text = this.storedText(msg.seq);
        if (text === raw) return { kind: 'duplicate' }; // the line the trainer wrote, byte for byte
        if (text !== undefined) stored = parseRecord(text);
      }
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

  /**
   * The text of the record's line with this seq: the newest from memory, older ones by a binary search on seq over
   * the bytes read so far (seqs increase along the record; a few small reads, however long the log). Undefined when
   * the record has no such line or cannot be read.
   */
  private storedText(seq: number): string | undefined {
    const hit = this.recent.get(seq);
    if (hit !== undefined) return hit;
    let fd: number | null = null;
    try {
      fd = openSync(this.file, 'r');
      const text = findRecord(fd, this.tail.offset, seq);
      return text === undefined ? undefined : this.own(text);
    } catch {
      return undefined; // unreadable: not comparable, treated as absent
    } finally {
      if (fd !== null) closeSync(fd);
    }
  }

  // ------------------------------------------------------------------ viewers

  /**
   * Streams the record to one viewer in parts of about SNAPSHOT_PART_BYTES, waiting for it between parts, then the
   * messages the socket delivered ahead of the file, then calls sink.live() in the same tick, so no message falls
   * between the snapshot and the events that follow. Importance snapshots are thinned to the newest
   * IMPORTANCE_NEWEST plus IMPORTANCE_OLDER evenly spaced older ones. A channel opened from a summary first indexes
   * the lines before the summary's offset (once, shared by every viewer). Throws SnapshotRestart when the record was
   * rewritten meanwhile.
   */
  async snapshot(sink: SnapshotSink): Promise<void> {
    const gen = this.generation;
    if (!this.prefixIndexed) {
      await this.indexPrefix();
      if (this.generation !== gen) throw new SnapshotRestart();
    }
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
            if (!v.ok) continue;
          }
          if (imp < total && imps[imp] === at) {
            const i = imp++;
            if (i < older && i % stride !== 0) continue;
          }
          records.push(this.own(buf.toString('utf8', lineStart, nl)));
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

  /** Indexes the record before the tail's start offset (see scanPrefix); one scan at a time, shared. */
  private indexPrefix(): Promise<void> {
    if (this.prefixIndexed) return Promise.resolve();
    this.prefixTask ??= this.scanPrefix(this.generation).finally(() => { this.prefixTask = null; });
    return this.prefixTask;
  }

  /**
   * Reads the lines before the tail's start offset as onLines would have (bounded JSON, the schema, every id read as this run's,
   * increasing seqs), remembering only where the importance snapshots and the skipped lines are. Works in slices of at
   * most about SLICE_MS, yielding to the event loop between them; gives up when the record is rewritten meanwhile.
   */
  private async scanPrefix(gen: number): Promise<void> {
    const end = this.tail.startOffset;
    const imps: number[] = [];
    const bad: number[] = [];
    let seq = 0;
    let pos = 0;
    let buf = Buffer.allocUnsafe(CHUNK_BYTES);
    let t0 = performance.now();
    const fh = await open(this.file, 'r');
    try {
      while (pos < end) {
        if (this.generation !== gen) return;
        const want = Math.min(buf.length, end - pos);
        const { bytesRead } = await fh.read(buf, 0, want, pos);
        if (bytesRead === 0) return; // shrunk: the tail reports the rewrite
        const lastNl = buf.lastIndexOf(0x0a, bytesRead - 1);
        if (lastNl < 0) {
          if (buf.length <= MAX_LINE_BYTES) { buf = Buffer.allocUnsafe(buf.length * 2); continue; } // one long line
          // Longer than any record: skipped, up to its newline.
          bad.push(pos);
          let skipTo = -1;
          for (let p = pos + bytesRead; p < end && skipTo < 0; p += bytesRead) {
            const r = await fh.read(buf, 0, Math.min(buf.length, end - p), p);
            const nl = buf.indexOf(0x0a);
            if (nl >= 0 && nl < r.bytesRead) skipTo = p + nl + 1;
            if (r.bytesRead === 0) return;
          }
          pos = skipTo < 0 ? end : skipTo;
          continue;
        }
        let start = 0;
        while (start <= lastNl) {
          const nl = buf.indexOf(0x0a, start);
          const at = pos + start;
          if (nl > start) {
            const p = parseBoundedJson(buf.toString('utf8', start, nl));
            const v = p.ok ? validateTrainerMessage(p.value) : p;
            if (!v.ok || v.value.seq <= seq) bad.push(at);
            else {
              if (v.value.runId !== this.runId) this.foreign = true;
              seq = v.value.seq;
              if (v.value.type === 'importance') imps.push(at);
            }
          }
          start = nl + 1;
          if (performance.now() - t0 > SLICE_MS) {
            await yieldNow();
            t0 = performance.now();
            if (this.generation !== gen) return;
          }
        }
        pos += lastNl + 1;
        if (buf.length > CHUNK_BYTES) buf = Buffer.allocUnsafe(CHUNK_BYTES);
      }
    } finally {
      await fh.close().catch(() => {});
    }
    if (this.generation !== gen || this.prefixIndexed) return;
    this.importanceAt = imps.concat(this.importanceAt);
    for (const b of bad) this.markBad(b);
    this.prefixIndexed = true;
  }

  summary(): RunSummary {
    const m = this.model;
    // The folder as the schema bounds it (RunSummary.dir, 1.3): measured once absolute — a relative path within the
    // bound can resolve past it, and a runs list with it would be refused by every viewer.
    const dir = resolve(this.dir);
    return {
      runId: this.runId,
      ...(m.method ? { name: m.name, method: m.method } : {}),
      state: m.state,
      step: m.step,
      totalSteps: m.totalSteps,
      connected: this.trainer !== null,
      ...(dir.length <= MAX_DIR ? { dir } : {}),
    };
  }

  close(): void {
    this.tail.close();
  }
}

function parseRecord(text: string): TrainerMessage | undefined {
  const p = parseBoundedJson(text);
  const v = p.ok ? validateTrainerMessage(p.value) : p;
  return v.ok ? v.value : undefined;
}

/** The complete line that starts at the first line boundary at or after `pos` (and before `end`), or null. */
function lineFrom(fd: number, pos: number, end: number): { start: number; text: string; next: number } | null {
  let start = pos;
  if (pos > 0) {
    // pos is a line start when the byte before it is a newline; else the line starts after the next newline.
    const b = Buffer.allocUnsafe(64 << 10);
    let at = pos - 1;
    for (;;) {
      if (at >= end) return null;
      const n = readSync(fd, b, 0, Math.min(b.length, end - at), at);
      if (n === 0) return null;
      const nl = b.indexOf(0x0a);
      if (nl >= 0 && nl < n) { start = at + nl + 1; break; }
      at += n;
    }
  }
  if (start >= end) return null;
  let buf = Buffer.allocUnsafe(Math.min(64 << 10, end - start));
  for (;;) {
    const n = readSync(fd, buf, 0, Math.min(buf.length, end - start), start);
    const nl = buf.indexOf(0x0a);
    if (nl >= 0 && nl < n) return { start, text: buf.toString('utf8', 0, nl), next: start + nl + 1 };
    if (n < buf.length || buf.length > MAX_LINE_BYTES) return { start, text: '', next: end }; // no end (or too long): nothing to compare
    buf = Buffer.allocUnsafe(Math.min(buf.length * 4, end - start + 1));
  }
}

/** The seq of a record's text, or null when the line is not a record. */
function seqOfLine(text: string): number | null {
  if (text === '') return null;
  const p = parseBoundedJson(text);
  const s = p.ok ? (p.value as { seq?: unknown } | null)?.seq : undefined;
  return typeof s === 'number' && Number.isInteger(s) ? s : null;
}

/**
 * The text of the line holding `seq` in the first `end` bytes of the log open as `fd` (complete lines), found by a
 * binary search on byte offsets (seqs increase along a record; lines that are not records are stepped over).
 */
function findRecord(fd: number, end: number, seq: number): string | undefined {
  let lo = 0; // a line start
  let hi = end; // the line sought starts before hi
  for (let i = 0; i < 80 && hi - lo > (64 << 10); i++) {
    const mid = lo + Math.floor((hi - lo) / 2);
    let line = lineFrom(fd, mid, hi);
    let s: number | null = null;
    while (line && (s = seqOfLine(line.text)) === null) line = line.next < hi ? lineFrom(fd, line.next, hi) : null;
    if (!line || s === null || s > seq) { hi = mid; continue; }
    if (s === seq) return line.text;
    lo = line.next;
  }
  for (let line = lineFrom(fd, lo, end); line; line = line.next < end ? lineFrom(fd, line.next, end) : null) {
    const s = seqOfLine(line.text);
    if (s === seq) return line.text;
    if ((s !== null && s > seq) || line.start >= hi) return undefined;
  }
  return undefined;
}
