/**
 * A run's summary without reading its whole log (issue 12.7): a follower folds events.jsonl forward from a byte offset
 * with a reducer it is given (the view model's one reducer; this layer holds no policy), and a small cache
 * `summary.json` = {v, ino, byteOffset, lastSeq, model} written atomically next to the log lets the next listing start
 * where the last one stopped. A cache that no longer matches its log (another inode, a shorter file, an offset that is
 * not a line boundary, a bad shape) is dropped and the log refolded from the start — in slices, so a caller can yield
 * between them and never block its event loop for long.
 *
 * Lines are cut at '\n'; an incomplete last line (a writer mid-line, or torn by a crash) is not consumed until it
 * completes. A line that is not JSON, or that the reducer refuses, is skipped and counted (`badLines`), never fatal.
 */
import { closeSync, fstatSync, openSync, readFileSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { writePrivateFileAtomic } from './lock';

export const SUMMARY_FILE = 'summary.json';
/** Longest line folded; a longer one is skipped and counted (the hub accepts 1 MiB frames). */
const MAX_LINE = 16 << 20;

export interface SummaryCache<M> {
  v: 1;
  /** The log's inode when folded: a replaced log is refolded. */
  ino: number;
  /** Bytes of complete lines folded into `model`. */
  byteOffset: number;
  lastSeq: number;
  model: M;
}

export interface FollowerOptions<M> {
  /** The log (a run's events.jsonl). */
  file: string;
  init: () => M;
  /** Folds one parsed line into the model in place; throws to refuse it (it is then skipped and counted). */
  apply: (model: M, value: unknown) => void;
  lastSeq: (model: M) => number;
}

export class LogFollower<M> {
  model: M;
  byteOffset = 0;
  ino = -1;
  /** Lines skipped: not JSON, refused by the reducer, or longer than MAX_LINE. */
  badLines = 0;
  /** The log's size when last looked at. */
  size = 0;
  private trusted: boolean;
  private skippingLongLine = false;

  constructor(private readonly o: FollowerOptions<M>, cache: SummaryCache<M> | null = null) {
    if (cache) {
      this.model = cache.model;
      this.byteOffset = cache.byteOffset;
      this.ino = cache.ino;
      this.trusted = false; // checked against the log at the first read
    } else {
      this.model = o.init();
      this.trusted = true;
    }
  }

  /** Bytes not folded yet (from the size last seen). */
  get behind(): number {
    return Math.max(0, this.size - this.byteOffset);
  }

  private reset(ino: number): void {
    this.model = this.o.init();
    this.byteOffset = 0;
    this.ino = ino;
    this.badLines = 0;
    this.skippingLongLine = false;
  }

  /**
   * Folds complete lines from the offset, reading at most about `maxBytes` (more only to finish one long line).
   * Returns whether the model changed and whether more complete data may follow. A missing log is an empty one.
   */
  readSome(maxBytes = 1 << 20): { changed: boolean; more: boolean } {
    let fd: number;
    try { fd = openSync(this.o.file, 'r'); } catch { this.size = 0; return { changed: false, more: false }; }
    try {
      const st = fstatSync(fd);
      this.size = st.size;
      let changed = false;
      if (st.ino !== this.ino || st.size < this.byteOffset) { this.reset(st.ino); changed = true; }
      if (!this.trusted) {
        this.trusted = true;
        if (this.byteOffset > 0) {
          const b = Buffer.alloc(1);
          if (readSync(fd, b, 0, 1, this.byteOffset - 1) !== 1 || b[0] !== 0x0a) { this.reset(st.ino); changed = true; }
        }
      }
      const avail = st.size - this.byteOffset;
      if (avail <= 0) return { changed, more: false };
      let len = Math.min(avail, maxBytes);
      let buf = Buffer.allocUnsafe(len);
      let got = readSync(fd, buf, 0, len, this.byteOffset);
      let end = buf.lastIndexOf(0x0a, got - 1);
      while (end < 0 && got < avail && len < MAX_LINE) { // one line longer than the slice: read on to its end
        len = Math.min(avail, len * 4, MAX_LINE);
        buf = Buffer.allocUnsafe(len);
        got = readSync(fd, buf, 0, len, this.byteOffset);
        end = buf.lastIndexOf(0x0a, got - 1);
      }
      if (end < 0) {
        if (got >= MAX_LINE) { // a line too long to fold: skip up to where we read, and the rest of it later
          if (!this.skippingLongLine) this.badLines++;
          this.skippingLongLine = true;
          this.byteOffset += got;
          return { changed, more: true };
        }
        return { changed, more: false }; // an incomplete last line: wait for the writer
      }
      let start = 0;
      for (let i = buf.indexOf(0x0a, 0); i >= 0 && i <= end; i = buf.indexOf(0x0a, start)) {
        if (this.skippingLongLine) { this.skippingLongLine = false; start = i + 1; continue; }
        if (i > start) changed = this.fold(buf.toString('utf8', start, i)) || changed;
        start = i + 1;
      }
      this.byteOffset += end + 1;
      return { changed, more: this.byteOffset < st.size };
    } finally {
      closeSync(fd);
    }
  }

  private fold(text: string): boolean {
    if (text.trim() === '') return false;
    try {
      this.o.apply(this.model, JSON.parse(text));
      return true;
    } catch {
      this.badLines++;
      return false;
    }
  }

  /** Folds everything complete now, synchronously (small tails: a live run's latest lines). */
  catchUpSync(): boolean {
    let changed = false;
    for (;;) {
      const r = this.readSome(4 << 20);
      changed ||= r.changed;
      if (!r.more) return changed;
    }
  }

  /** Folds everything complete now in slices of `sliceBytes`, yielding to the event loop between them. */
  async catchUp(sliceBytes = 1 << 20): Promise<boolean> {
    let changed = false;
    for (;;) {
      const r = this.readSome(sliceBytes);
      changed ||= r.changed;
      if (!r.more) return changed;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  toCache(strip: (m: M) => M = (m) => m): SummaryCache<M> {
    return { v: 1, ino: this.ino, byteOffset: this.byteOffset, lastSeq: this.o.lastSeq(this.model), model: strip(this.model) };
  }
}

/**
 * The cached summary of the run in `dir`, or null when there is none or it is not one (`isModel` checks the model's
 * shape). Reads only summary.json, never the log.
 */
export function readSummary<M>(dir: string, isModel: (v: unknown) => v is M): SummaryCache<M> | null {
  try {
    const c = JSON.parse(readFileSync(join(dir, SUMMARY_FILE), 'utf8')) as Partial<SummaryCache<unknown>> | null;
    if (typeof c !== 'object' || c === null || c.v !== 1 || !Number.isInteger(c.ino) || !Number.isInteger(c.byteOffset) || (c.byteOffset as number) < 0
      || !Number.isInteger(c.lastSeq) || !isModel(c.model)) return null;
    return c as SummaryCache<M>;
  } catch {
    return null;
  }
}

/**
 * Whether `cache` still describes the start of `file`: the same inode, at least `byteOffset` bytes long, and the byte
 * before the offset a newline (the offset is a line boundary). One stat and a one-byte read; false when unreadable.
 */
export function summaryFits(file: string, cache: SummaryCache<unknown>): boolean {
  let fd: number | null = null;
  try {
    fd = openSync(file, 'r');
    const st = fstatSync(fd);
    if (st.ino !== cache.ino || st.size < cache.byteOffset) return false;
    if (cache.byteOffset === 0) return true;
    const b = Buffer.alloc(1);
    return readSync(fd, b, 0, 1, cache.byteOffset - 1) === 1 && b[0] === 0x0a;
  } catch {
    return false;
  } finally {
    if (fd !== null) closeSync(fd);
  }
}

/** Writes summary.json atomically (a cache: losing it costs one refold). */
export function writeSummary<M>(dir: string, cache: SummaryCache<M>): void {
  writePrivateFileAtomic(join(dir, SUMMARY_FILE), JSON.stringify(cache));
}
