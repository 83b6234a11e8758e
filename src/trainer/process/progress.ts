import { formatDuration } from '../../common/formatDuration';

/** The terminal's one-line progress: step/total, loss, examples/s, ETA — at most 4 updates a second. */
export class ProgressLine {
  private last = 0;
  private readonly start = performance.now();
  private readonly tty = Boolean(process.stderr.isTTY);
  private lastPercent = -1;

  constructor(private readonly total: number) {}

  update(step: number, loss: number, examplesPerSec: number): void {
    const now = performance.now();
    const percent = Math.floor((100 * step) / this.total);
    if (this.tty ? now - this.last < 250 && step !== this.total : percent === this.lastPercent || percent % 10 !== 0) return;
    this.last = now;
    this.lastPercent = percent;
    const eta = ((now - this.start) / step) * (this.total - step) / 1000;
    const line = `step ${step}/${this.total}  loss ${loss.toFixed(4)}  ${Math.round(examplesPerSec)} ex/s  ETA ${formatDuration(eta)}`;
    process.stderr.write(this.tty ? `\r\x1b[K${line}` : `${line}\n`);
  }

  done(): void {
    if (this.tty) process.stderr.write('\n');
  }
}
