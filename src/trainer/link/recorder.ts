/**
 * The trainer's record of truth: every message it emits gets the next seq and is appended to its own
 * events.jsonl before anything else sees it. The hub link resends from here after a reconnect, and a run
 * with no hub at all still leaves a complete log.
 */
import { join } from 'node:path';
import { JsonlWriter, readJsonl } from '../../runfolder/eventLog';
import { PROTOCOL_MAJOR, type DistributiveOmit, type Hello, type TrainerMessage } from '../../protocol/messages';
import { validateTrainerMessage } from '../../protocol/validate';
import { EVENTS_FILE } from '../../runfolder/runFiles';
import { describeWriteError } from '../../runfolder/atomic';


/** What a caller emits: the envelope (v, runId, seq, time) is filled in here. */
export type TrainerEventBody = DistributiveOmit<TrainerMessage, 'v' | 'runId' | 'seq' | 'time'>;

export class EventRecorder {
  readonly file: string;
  private readonly writer: JsonlWriter;
  private seq = 0;
  private helloMsg: Hello | null = null;
  private readonly listeners = new Set<(msg: TrainerMessage, text: string) => void>();
  /** Set once an append failed (e.g. "disk full: …/events.jsonl"); every later emit throws it. */
  writeFailure: Error | null = null;

  /** Opens (or continues, on resume) `dir/events.jsonl`. */
  constructor(readonly runId: string, dir: string, private readonly validate = false) {
    this.file = join(dir, EVENTS_FILE);
    const { events } = readJsonl<TrainerMessage>(this.file);
    for (const e of events) {
      if (e.seq !== this.seq + 1) throw new Error(`${this.file}: seq ${e.seq} follows ${this.seq}; the log is not this run's or was edited`);
      this.seq = e.seq;
      // A run folder is movable (renamed, copied): its id is the folder's; lines written under another id are this run's.
      this.recordedAs ??= e.runId !== runId ? e.runId : null;
      if (e.type === 'hello' && !this.helloMsg) this.helloMsg = { ...e, runId };
    }
    this.writer = new JsonlWriter(this.file);
  }

  /** The id the log's first line was written under when it is not this run's (the folder was renamed or copied), else null. */
  recordedAs: string | null = null;

  get lastSeq(): number {
    return this.seq;
  }

  /** The run's first message, presented again on every (re)connection. */
  get hello(): Hello | null {
    return this.helloMsg;
  }

  emit(body: TrainerEventBody): TrainerMessage {
    const msg = { v: PROTOCOL_MAJOR, runId: this.runId, seq: this.seq + 1, time: Date.now(), ...body } as TrainerMessage;
    if (this.validate) {
      const v = validateTrainerMessage(msg);
      if (!v.ok) throw new Error(`trainer emitted an invalid message: ${v.error}`);
    }
    if (msg.type === 'hello') {
      if (this.helloMsg) throw new Error('hello was already emitted for this run');
      this.helloMsg = msg;
    } else if (!this.helloMsg) {
      throw new Error('the first message of a run must be hello');
    }
    // JSON.stringify writes NaN and ±Infinity as null, which no schema accepts: refuse the message instead, so every
    // line of events.jsonl (and of the link) is strict JSON (RFC 8259) that validates.
    const bad = nonFinitePath(msg);
    if (bad !== null) throw new NonFiniteError(`${msg.type} ${bad} is not a finite number`);
    const text = JSON.stringify(msg);
    if (this.writeFailure) throw this.writeFailure;
    try {
      this.writer.appendLine(text);
    } catch (e) {
      // A failed append may have left part of a line: nothing more is appended after it (readers cut a torn tail).
      this.writeFailure = describeWriteError(e, this.file);
      throw this.writeFailure;
    }
    this.seq = msg.seq;
    for (const l of this.listeners) l(msg, text);
    return msg;
  }

  onEmit(listener: (msg: TrainerMessage, text: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Messages after `seq`, read back from disk (for a resend after a reconnect). */
  readAfter(seq: number): string[] {
    return readJsonl<TrainerMessage>(this.file).events.filter((e) => e.seq > seq).map((e) => JSON.stringify(e.runId === this.runId ? e : { ...e, runId: this.runId }));
  }

  /** fsync events.jsonl: done before a checkpoint is declared, so a resume never reuses a seq the log had lost. */
  sync(): void {
    try {
      this.writer.sync();
    } catch (e) {
      throw describeWriteError(e, this.file);
    }
  }

  close(): void {
    this.writer.close();
  }
}

/** A message held a NaN or ±Infinity where JSON can only hold finite numbers. */
export class NonFiniteError extends Error {}

/** The JSON pointer of the first non-finite number in a value, or null when every number is finite. */
export function nonFinitePath(value: unknown): string | null {
  const stack: [unknown, string][] = [[value, '']];
  while (stack.length) {
    const [v, path] = stack.pop()!;
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) return path || '/';
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push([v[i], `${path}/${i}`]);
    } else if (v !== null && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) stack.push([x, `${path}/${k}`]);
    }
  }
  return null;
}
