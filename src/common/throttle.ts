/** Runs `fn` at most once per `ms`, trailing: a burst of schedule() calls gives one call soon after. */
export class Throttle {
  private timer: ReturnType<typeof setTimeout> | null = null;
  private last = 0;

  constructor(private readonly ms: number, private readonly fn: () => void) {}

  schedule(): void {
    if (this.timer) return;
    const wait = Math.max(0, this.last + this.ms - Date.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      this.last = Date.now();
      this.fn();
    }, wait);
  }

  cancel(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
