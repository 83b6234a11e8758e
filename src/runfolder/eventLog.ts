/**
 * Append-only JSONL event logs (the trainer's events.jsonl: the run's record of truth).
 * One line per message, written with a single write(2) on an fd held open, so a crash can at worst leave a
 * partial last line; readers cut it, and opening a log for append cuts it off so the file stays valid JSONL.
 * Every record is parsed with bounded nesting depth and string/array sizes (parseBoundedJson): a record that could
 * not be re-serialised (JSON.stringify recurses) or would hold unbounded memory is skipped and reported, never kept.
 */
import { closeSync, existsSync, fsyncSync, ftruncateSync, openSync, readFileSync, writeSync } from 'node:fs';

export interface JsonLimits {
  /** Nesting of objects and arrays. */
  maxDepth: number;
  /** Characters in one string (escapes counted as written). */
  maxString: number;
}

/**
 * What every reader of a run's record and the hub's ingest accept: far above any real message, far below a stack
 * overflow. Array lengths (and the total) are bounded by the size of what is read: a frame (the hub's maxPayload,
 * 1 MiB) or a line (MAX_LINE_BYTES).
 */
export const JSON_LIMITS: JsonLimits = { maxDepth: 64, maxString: 1 << 20 };

/** A line longer than this (bytes) is not a record: readers skip it. */
export const MAX_LINE_BYTES = 16 << 20;

const STRUCTURE = /[[\]{}"]/g;

/**
 * Checks JSON text's shape without parsing it: nesting depth and string lengths. Returns null when within
 * `limits`, else a one-line reason. Linear in the text, no recursion (a 5,000-deep frame costs nothing); the regex
 * skips numbers and whitespace natively, so it costs a fraction of JSON.parse.
 */
export function jsonShapeError(text: string, limits: JsonLimits = JSON_LIMITS): string | null {
  let depth = 0;
  STRUCTURE.lastIndex = 0;
  for (let m = STRUCTURE.exec(text); m !== null; m = STRUCTURE.exec(text)) {
    const c = text.charCodeAt(m.index);
    if (c === 0x22) {
      // A string: its end is the next quote not escaped by an odd run of backslashes.
      let j = m.index;
      for (;;) {
        j = text.indexOf('"', j + 1);
        if (j < 0) return null; // unterminated: JSON.parse names it
        let k = j - 1;
        while (text.charCodeAt(k) === 0x5c) k--;
        if ((j - 1 - k) % 2 === 0) break;
      }
      if (j - m.index - 1 > limits.maxString) return `a string of ${j - m.index - 1} characters (at most ${limits.maxString})`;
      STRUCTURE.lastIndex = j + 1;
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > limits.maxDepth) return `nested deeper than ${limits.maxDepth} levels`;
    } else {
      depth--;
    }
  }
  return null;
}

export type Parsed = { ok: true; value: unknown } | { ok: false; error: string };

/** JSON.parse within JSON_LIMITS (see jsonShapeError); the error names what was wrong. */
export function parseBoundedJson(text: string, limits: JsonLimits = JSON_LIMITS): Parsed {
  const shape = jsonShapeError(text, limits);
  if (shape !== null) return { ok: false, error: `refused: ${shape}` };
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch (e) {
    return { ok: false, error: `invalid JSON: ${clip((e as Error).message)}` };
  }
}

/** A value quoted back in an error: at most `max` characters. */
export function clip(text: string, max = 200): string {
  return text.length <= max ? text : `${text.slice(0, max)}… (${text.length} characters)`;
}

export interface BadLine { line: number; error: string }

export interface LogRead<T> {
  events: T[];
  /** Byte length of the complete lines; anything after it is a torn write. */
  validBytes: number;
  /** Lines that were not valid, bounded JSON (other than a torn tail): reported, never silently dropped. */
  badLines: number[];
  /** Why each bad line was skipped (line numbers from 1). */
  errors: BadLine[];
}

/** Reads a whole log (small logs: a run's summary or an export; the hub follows logs with LogTail instead). */
export function readJsonl<T = unknown>(file: string): LogRead<T> {
  if (!existsSync(file)) return { events: [], validBytes: 0, badLines: [], errors: [] };
  const buf = readFileSync(file);
  const events: T[] = [];
  const errors: BadLine[] = [];
  let start = 0;
  let line = 0;
  let validBytes = 0;
  for (let i = 0; i < buf.length; i++) {
    if (buf[i] !== 0x0a) continue;
    line++;
    const lineStart = start;
    start = i + 1;
    validBytes = start;
    if (i - lineStart > MAX_LINE_BYTES) { errors.push({ line, error: `a line of ${i - lineStart} bytes` }); continue; }
    const text = buf.toString('utf8', lineStart, i);
    if (text.trim() === '') continue;
    const p = parseBoundedJson(text);
    if (p.ok) events.push(p.value as T);
    else errors.push({ line, error: p.error });
  }
  return { events, validBytes, badLines: errors.map((e) => e.line), errors };
}

export class JsonlWriter {
  private fd: number | null;

  constructor(readonly file: string) {
    this.fd = openSync(file, 'a+');
    const { validBytes } = readJsonl(file);
    ftruncateSync(this.fd, validBytes); // drop a torn tail from an earlier crash
  }

  append(value: unknown): void {
    this.appendLine(JSON.stringify(value));
  }

  appendLine(line: string): void {
    if (this.fd === null) throw new Error(`event log ${this.file} is closed`);
    writeSync(this.fd, line + '\n');
  }

  sync(): void {
    if (this.fd !== null) fsyncSync(this.fd);
  }

  close(): void {
    if (this.fd === null) return;
    closeSync(this.fd);
    this.fd = null;
  }
}
