/**
 * Min-max decimation that stays cheap on a million points: per block of 32 points the min and max (with their
 * indices) are kept as points are appended, so a decimation scans ~2 × 32 points at each bucket's edges and one
 * entry per whole block inside it, instead of every point.
 */
const B = 32;

export interface Point { x: number; y: number }

export class MinMaxIndex {
  private minI = new Int32Array(1024);
  private maxI = new Int32Array(1024);
  private indexed = 0;

  /** Brings the block table up to date with y[0..n) (points are only ever appended; call reset() otherwise). */
  update(y: ArrayLike<number>): void {
    const n = y.length;
    const blocks = Math.ceil(n / B);
    if (this.minI.length < blocks) {
      const grow = (a: Int32Array) => { const b = new Int32Array(Math.max(blocks, a.length * 2)); b.set(a); return b; };
      this.minI = grow(this.minI);
      this.maxI = grow(this.maxI);
    }
    // Recompute from the block holding the first unindexed point (it may have been partial).
    for (let b = Math.floor(this.indexed / B); b < blocks; b++) {
      let lo = b * B, hi = lo;
      for (let i = b * B + 1; i < Math.min(n, (b + 1) * B); i++) {
        if (y[i] < y[lo]) lo = i;
        if (y[i] > y[hi]) hi = i;
      }
      this.minI[b] = lo;
      this.maxI[b] = hi;
    }
    this.indexed = n;
  }

  reset(): void {
    this.indexed = 0;
  }

  /** At most two points per bucket of equal x-width (x increasing), in x order. */
  decimate(x: ArrayLike<number>, y: ArrayLike<number>, buckets: number): Point[] {
    const n = y.length;
    if (n <= 2 * buckets) return Array.from({ length: n }, (_, i) => ({ x: x[i], y: y[i] }));
    this.update(y);
    const out: Point[] = [];
    const x0 = x[0], span = x[n - 1] - x0 || 1;
    let start = 0;
    for (let b = 0; b < buckets && start < n; b++) {
      const limit = x0 + ((b + 1) * span) / buckets;
      // First index whose x exceeds the bucket's right edge (binary search: x is increasing).
      let lo = start, hi = n;
      if (b === buckets - 1) lo = n;
      while (lo < hi) { const mid = (lo + hi) >> 1; if (x[mid] <= limit) lo = mid + 1; else hi = mid; }
      const end = Math.max(lo, start + 1);
      let mn = start, mx = start;
      let i = start;
      const scan = (to: number) => { for (; i < to; i++) { if (y[i] < y[mn]) mn = i; if (y[i] > y[mx]) mx = i; } };
      scan(Math.min(end, Math.ceil(start / B) * B));
      for (; i + B <= end; i += B) {
        const blk = i / B;
        if (y[this.minI[blk]] < y[mn]) mn = this.minI[blk];
        if (y[this.maxI[blk]] > y[mx]) mx = this.maxI[blk];
      }
      scan(end);
      const [a, c] = mn <= mx ? [mn, mx] : [mx, mn];
      out.push({ x: x[a], y: y[a] });
      if (c !== a) out.push({ x: x[c], y: y[c] });
      start = end;
    }
    return out;
  }
}
