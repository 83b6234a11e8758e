import { formatDuration } from '../../common/formatDuration';

/**
 * The terminal's one-line progress: step/total, loss, examples/s, ETA — at most 4 updates a second.
 * The ETA is this incarnation's rate (steps done since this process started training / time since then) times the
 * steps left: after `train --resume` at step 643, the steps before the resume (and the idle time between the
 * interrupt and the resume) say nothing about how fast this process trains.
 */
export class ProgressLine {
  private last = 0;
  /** Time (ms) and step of the first update: the steps after it are this incarnation's. */
  private base: { time: number; step: number } | null = null;
  private lastPercent = -1;

  /**
   * @param total the run's steps
   * @param out where lines go (stderr); tty: rewrite one line, else one line per 10%
   * @param now clock in ms (performance.now)
   */
  constructor(private readonly total: number, private readonly out: { write(s: string): unknown; isTTY?: boolean } = process.stderr,
    private readonly now: () => number = () => performance.now()) {}

  private get tty(): boolean { return Boolean(this.out.isTTY); }

  /** step: the step just done (1-based, ≤ total); examplesPerSec: the latest rate. */
  update(step: number, loss: number, examplesPerSec: number): void {
    const now = this.now();
    // The first step this process trained: its start is one step's time back, estimated from the rate we have
    // none of yet, so the ETA waits for a second update.
    this.base ??= { time: now, step };
    const percent = Math.floor((100 * step) / this.total);
    if (this.tty ? now - this.last < 250 && step !== this.total : percent === this.lastPercent || percent % 10 !== 0) return;
    this.last = now;
    this.lastPercent = percent;
    const done = step - this.base.step;
    const eta = done > 0 ? ((now - this.base.time) / done) * (this.total - step) / 1000 : null;
    const line = `step ${step}/${this.total}  loss ${loss.toFixed(4)}  ${Math.round(examplesPerSec)} ex/s  ETA ${eta === null ? '…' : formatDuration(eta)}`;
    this.out.write(this.tty ? `\r\x1b[K${line}` : `${line}\n`);
  }

  done(): void {
    if (this.tty) this.out.write('\n');
  }
}
