/**
 * The built-in trainer's system scalars (src/protocol/scalars.ts: process/rss_MiB, process/cpu_pct), read once per
 * metrics message, never per step: two cheap syscalls (getrusage, the RSS) however fast the steps run.
 */
const MIB = 1024 * 1024;

export class SystemScalars {
  private lastCpuUs: number;
  private lastMs: number;

  /** cpu/now/rss: the readings (tests replace them); defaults are this process's. */
  constructor(
    private readonly cpu: () => number = () => { const u = process.cpuUsage(); return u.user + u.system; },
    private readonly now: () => number = () => performance.now(),
    private readonly rss: () => number = () => process.memoryUsage.rss(),
  ) {
    this.lastCpuUs = cpu();
    this.lastMs = now();
  }

  /**
   * {'process/rss_MiB': resident memory in MiB, 'process/cpu_pct': CPU time since the previous sample (or since
   * construction) in % of one core}; a value that is not finite (no time elapsed) is left out.
   */
  sample(): Record<string, number> {
    const cpuUs = this.cpu(), ms = this.now();
    const out: Record<string, number> = {};
    const rss = this.rss() / MIB;
    if (Number.isFinite(rss)) out['process/rss_MiB'] = rss;
    const dt = ms - this.lastMs;
    if (dt > 0) {
      const pct = ((cpuUs - this.lastCpuUs) / 1000 / dt) * 100;
      if (Number.isFinite(pct)) out['process/cpu_pct'] = Math.max(0, pct);
    }
    this.lastCpuUs = cpuUs;
    this.lastMs = ms;
    return out;
  }
}
