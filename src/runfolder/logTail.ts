/**
 * Follows an append-only JSONL log (a run's events.jsonl) as it grows: reads the complete lines appended since the
 * last read, in chunks (bounded memory however long the log), and leaves a torn last line in the file to be read
 * again once its newline arrives. fs.watch on the folder wakes it at once; a poll (default 500 ms) covers file
 * systems where watching does not work. A log that shrinks below what was read, or is replaced (another inode),
 * was rewritten: the tail reports it and starts again from byte 0.
 *
 * It can start at a byte offset a cache vouches for (a run's summary.json: the lines before it are already folded):
 * given the offset and the inode the cache was made from, the log is taken up from there when it is still that file
 * and at least that long; otherwise it is read from byte 0 (reported as a rewrite).
 *
 * No parsing here: the owner gets raw lines with their line number and byte range, and decides.
 */
import { watch, type FSWatcher } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { MAX_LINE_BYTES } from './eventLog';

export interface TailLine {
  text: string;
  /** 1-based line number, counted from where the tail started (the file's when it started at byte 0). */
  line: number;
  /** Byte offsets of the line (without its newline) in the file. */
  start: number;
  end: number;
}

export interface LogTailOptions {
  /** Complete lines, in file order. Called synchronously from the read loop; call restart() to start over. */
  onLines: (lines: TailLine[]) => void;
  /** The file was rewritten (shrunk or replaced): everything read before is void; reading starts at byte 0. */
  onRewrite?: (reason: string) => void;
  /** A line that is too long to be a record was skipped (`start`: its first byte). */
  onSkip?: (line: number, reason: string, start: number) => void;
  /** The file was there and is gone now (ENOENT: its run folder was deleted). Called once; the tail keeps polling. */
  onGone?: () => void;
  pollMs?: number;
  /** Bytes read (and handed to onLines) at a time: each chunk is one synchronous slice of the owner's work. */
  chunkBytes?: number;
  maxLineBytes?: number;
  /** Start here instead of byte 0: a line boundary of the file whose inode is `startIno` (else byte 0). */
  startOffset?: number;
  startIno?: number;
}

export class LogTail {
  /** Bytes of complete lines delivered (always at a line boundary). */
  private off = 0;
  private lineNo = 0;
  private fh: FileHandle | null = null;
  private ino = -1;
  private lastSize = -1;
  private running = false;
  private again = false;
  /** Bumped by every reset: a read that was in flight across one drops what it read. */
  private epoch = 0;
  /** Inside a line longer than maxLineBytes (starting at skipStart): its bytes are dropped up to its newline. */
  private skipping = false;
  private skipStart = 0;
  /** Where reading started (the vouched-for offset until the first rewrite, then 0). */
  private base = 0;
  private closed = false;
  private goneSaid = false;
  private watcher: FSWatcher | null = null;
  private poll: NodeJS.Timeout | null = null;
  private readonly o: Required<Omit<LogTailOptions, 'onRewrite' | 'onSkip' | 'onGone' | 'startOffset' | 'startIno'>> & Pick<LogTailOptions, 'onRewrite' | 'onSkip' | 'onGone' | 'startIno'>;
  private firstRead: Promise<void>;
  private firstReadDone!: () => void;

  constructor(readonly file: string, options: LogTailOptions) {
    this.o = { pollMs: 500, chunkBytes: 1 << 20, maxLineBytes: MAX_LINE_BYTES, ...options };
    if (options.startOffset && options.startOffset > 0 && options.startIno !== undefined) this.off = this.base = options.startOffset;
    this.firstRead = new Promise((r) => { this.firstReadDone = r; });
  }

  /** Bytes of the file consumed so far (a line boundary). */
  get offset(): number {
    return this.off;
  }

  /** The byte the tail started from: lines before it were never read here (0 once the log was rewritten). */
  get startOffset(): number {
    return this.base;
  }

  /** Resolves once the file has been read to its end the first time (or found missing). */
  get caughtUp(): Promise<void> {
    return this.firstRead;
  }

  start(): void {
    try {
      const name = basename(this.file);
      this.watcher = watch(dirname(this.file), { persistent: false }, (_e, f) => { if (f === null || f === name) this.wake(); });
      this.watcher.on('error', () => { this.watcher?.close(); this.watcher = null; }); // the poll goes on
    } catch { /* no folder yet, or no watching here: the poll covers it */ }
    this.poll = setInterval(() => this.wake(), this.o.pollMs);
    this.poll.unref();
    this.wake();
  }

  /** Read now (coalesced: one read loop at a time). */
  wake(): void {
    if (this.closed) return;
    if (this.running) { this.again = true; return; }
    this.running = true;
    void this.pump().finally(() => {
      this.running = false;
      if (this.again && !this.closed) { this.again = false; this.wake(); }
    });
  }

  /** Forget what was read (offset 0 from now on) and read the file again (the owner found the log inconsistent). */
  restart(): void {
    this.reset();
    this.wake();
  }

  private reset(): void {
    this.epoch++;
    this.off = 0;
    this.base = 0;
    this.lineNo = 0;
    this.lastSize = -1;
    this.skipping = false;
  }

  private async pump(): Promise<void> {
    try {
      for (;;) {
        if (this.closed) return;
        const epoch = this.epoch;
        let st;
        try {
          st = await stat(this.file);
        } catch (e) {
          // Not there yet (the watch or the poll brings us back), or gone after it was read: said once.
          if ((e as NodeJS.ErrnoException).code === 'ENOENT' && this.ino !== -1 && !this.goneSaid) { this.goneSaid = true; this.o.onGone?.(); }
          return;
        }
        if (epoch !== this.epoch) continue;
        if (this.fh && st.ino !== this.ino) {
          await this.fh.close().catch(() => {});
          this.fh = null;
          if (this.off > 0) { this.reset(); this.o.onRewrite?.('the log was replaced by another file'); }
        }
        if (!this.fh) {
          this.fh = await open(this.file, 'r');
          this.ino = st.ino;
          if (this.base > 0 && st.ino !== this.o.startIno) { this.reset(); this.o.onRewrite?.('the log is not the one its summary was made from'); continue; }
        }
        if (st.size < this.off) {
          const was = this.off;
          this.reset();
          this.o.onRewrite?.(`the log shrank from ${was} to ${st.size} bytes`);
          continue;
        }
        if (st.size === this.lastSize) return; // nothing new (a torn tail is not re-read until the file changes)
        const more = await this.readFrom(st.size, epoch);
        if (epoch !== this.epoch) continue;
        this.lastSize = more ? -1 : st.size;
        if (!more) return;
      }
    } catch {
      // An I/O error (a folder deleted under us, EIO): try again on the next wake, never throw out of the tail.
      await this.fh?.close().catch(() => {});
      this.fh = null;
    } finally {
      this.firstReadDone();
    }
  }

  /** Reads complete lines up to `size`; true when it stopped early (a restart was asked, or more remains). */
  private async readFrom(size: number, epoch: number): Promise<boolean> {
    const fh = this.fh!;
    let buf = Buffer.allocUnsafe(this.o.chunkBytes);
    while (this.off < size) {
      if (this.closed || epoch !== this.epoch) return true;
      const want = Math.min(buf.length, size - this.off);
      const { bytesRead } = await fh.read(buf, 0, want, this.off);
      if (epoch !== this.epoch) return true;
      if (bytesRead === 0) return false;
      const lines: TailLine[] = [];
      let start = 0;
      for (;;) {
        const nl = buf.indexOf(0x0a, start);
        if (nl < 0 || nl >= bytesRead) break;
        this.lineNo++;
        if (this.skipping) {
          this.skipping = false;
          this.o.onSkip?.(this.lineNo, `a line longer than ${this.o.maxLineBytes} bytes`, this.skipStart);
        } else if (nl > start) {
          lines.push({ text: buf.toString('utf8', start, nl), line: this.lineNo, start: this.off + start, end: this.off + nl });
        }
        start = nl + 1;
      }
      if (start === 0) {
        if (this.skipping) { this.off += bytesRead; continue; }
        // No newline in a whole buffer: a long line (read it with a bigger buffer) or a torn tail (wait).
        if (bytesRead < want || this.off + bytesRead >= size) return false;
        if (buf.length * 2 <= this.o.maxLineBytes) { buf = Buffer.allocUnsafe(buf.length * 2); continue; }
        this.skipping = true; // the line is counted and reported when its newline comes
        this.skipStart = this.off;
        this.off += bytesRead;
        continue;
      }
      this.off += start;
      if (lines.length) this.o.onLines(lines);
      if (epoch !== this.epoch) return true; // the owner restarted inside onLines
      if (buf.length > this.o.chunkBytes) buf = Buffer.allocUnsafe(this.o.chunkBytes);
    }
    return false;
  }

  close(): void {
    this.closed = true;
    this.watcher?.close();
    if (this.poll) clearInterval(this.poll);
    void this.fh?.close().catch(() => {});
    this.fh = null;
    this.firstReadDone();
  }
}
