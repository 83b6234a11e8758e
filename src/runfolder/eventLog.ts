/**
 * Append-only JSONL event logs (the trainer's events.jsonl, the hub's hub-events.jsonl).
 * One line per message, written with a single write(2) on an fd held open, so a crash can at worst leave a
 * partial last line; readers skip it, and opening a log for append cuts it off so the file stays valid JSONL.
 */
import { closeSync, existsSync, fsyncSync, ftruncateSync, openSync, readFileSync, writeSync } from 'node:fs';

export interface LogRead<T> {
  events: T[];
  /** Byte length of the complete lines; anything after it is a torn write. */
  validBytes: number;
  /** Lines that were not valid JSON (other than a torn tail): reported, never silently dropped. */
  badLines: number[];
}

export function readJsonl<T = unknown>(file: string): LogRead<T> {
  if (!existsSync(file)) return { events: [], validBytes: 0, badLines: [] };
  const buf = readFileSync(file);
  const events: T[] = [];
  const badLines: number[] = [];
  let start = 0;
  let line = 0;
  let validBytes = 0;
  for (let i = 0; i < buf.length; i++) {
    if (buf[i] !== 0x0a) continue;
    line++;
    const text = buf.toString('utf8', start, i);
    start = i + 1;
    validBytes = start;
    if (text.trim() === '') continue;
    try {
      events.push(JSON.parse(text) as T);
    } catch {
      badLines.push(line);
    }
  }
  return { events, validBytes, badLines };
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
