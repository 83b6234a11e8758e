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

  /** The indices of the (first) min and max of y[a..b), b > a, scanning whole blocks by their entries. update() first. */
  range(y: ArrayLike<number>, a: number, b: number): [number, number] {
    let mn = a, mx = a, i = a;
    for (const to = Math.min(b, Math.ceil(a / B) * B); i < to; i++) { if (y[i] < y[mn]) mn = i; if (y[i] > y[mx]) mx = i; }
    for (; i + B <= b; i += B) {
      const blk = i / B;
      if (y[this.minI[blk]] < y[mn]) mn = this.minI[blk];
      if (y[this.maxI[blk]] > y[mx]) mx = this.maxI[blk];
    }
    for (; i < b; i++) { if (y[i] < y[mn]) mn = i; if (y[i] > y[mx]) mx = i; }
    return [mn, mx];
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

/**
 * Min-max decimation onto a FIXED grid: `buckets` equal-width x buckets spanning the axis [lo, hi] (bucket b holds
 * lo + b·w < x ≤ lo + (b+1)·w, the first also x = lo), each giving its min and max point in index order; the last
 * point before lo and the first after hi come too, so the line runs on to the axis' edges. x must be non-decreasing
 * and points only appended (else reset()).
 *
 * Because the grid is the axis' and not the data's extent, appending points changes only the last buckets: a bucket
 * is final once a point lies beyond its right edge, and is never scanned again. A live update costs the new points
 * and one pass over the buckets (O(buckets)), not the series; what a chart shows at 1,000,000 steps changes only
 * where the new points fall (the chart can tell it need not redraw).
 */
export class GridDecimator {
  private key = '';
  private n = 0;
  private first = 0;
  private done = 0;
  private next = 0;
  private mn = new Int32Array(0);
  private mx = new Int32Array(0);
  /** Per final bucket, its last point's index (the line leaves the bucket from there). */
  private end = new Int32Array(0);
  private tail: [number, number, number] | null = null;
  private readonly index = new MinMaxIndex();

  reset(): void { this.key = ''; this.index.reset(); }

  decimate(x: ArrayLike<number>, y: ArrayLike<number>, lo: number, hi: number, buckets: number): Point[] {
    const n = y.length; // x holds at least as many points
    const key = `${lo}|${hi}|${buckets}`;
    if (n < this.n) this.index.reset();
    if (key !== this.key || n < this.n) {
      this.key = key;
      this.first = this.next = this.done = 0;
      if (this.mn.length !== buckets) { this.mn = new Int32Array(buckets); this.mx = new Int32Array(buckets); this.end = new Int32Array(buckets); }
    }
    // Points before lo are skipped (only the last of them is drawn); until the first bucket is final they may grow.
    if (this.done === 0 && this.next === this.first) this.next = this.first = upper(x, lo, this.first, n, true);
    this.n = n;
    this.index.update(y);
    const w = (hi - lo) / buckets;
    let tailMn = -1, tailMx = -1;
    for (let b = this.done; b < buckets; b++) {
      const edge = b === buckets - 1 ? hi : lo + (b + 1) * w;
      const end = upper(x, edge, this.next, n, false);
      if (end === n) { // no point beyond the edge yet: this bucket may still grow
        if (this.next < n) [tailMn, tailMx] = this.index.range(y, this.next, n);
        break;
      }
      if (end > this.next) [this.mn[b], this.mx[b]] = this.index.range(y, this.next, end); else { this.mn[b] = -1; this.mx[b] = -1; }
      this.end[b] = end - 1;
      this.done = b + 1;
      this.next = end;
    }
    this.tail = tailMn >= 0 ? [tailMn, tailMx, n - 1] : null;
    this.y = y;
    this.buckets = buckets;
    const out: Point[] = [];
    const push = (i: number) => out.push({ x: x[i], y: y[i] });
    const pair = (a: number, c: number) => { if (a < 0) return; const [p, q] = a <= c ? [a, c] : [c, a]; push(p); if (q !== p) push(q); };
    if (this.first > 0) push(this.first - 1);
    for (let b = 0; b < this.done; b++) pair(this.mn[b], this.mx[b]);
    if (tailMn >= 0) pair(tailMn, tailMx);
    if (this.done === buckets && this.next < n) push(this.next); // the first point after hi
    return out;
  }

  private y: ArrayLike<number> = [];
  private buckets = 0;

  /** The columns' extent of the last decimate() (see Envelope). */
  envelope(): Envelope {
    const nb = this.done + (this.tail ? 1 : 0);
    const env: Envelope = { bucket: new Int32Array(nb), low: new Float64Array(nb), high: new Float64Array(nb), count: 0 };
    const y = this.y;
    let prev = this.first > 0 ? this.first - 1 : -1; // the line enters the first bucket from the point before lo
    const add = (b: number, mn: number, mx: number, last: number) => {
      let lo = y[mn], hi = y[mx];
      if (prev >= 0) { lo = Math.min(lo, y[prev]); hi = Math.max(hi, y[prev]); }
      const k = env.count++;
      env.bucket[k] = b; env.low[k] = lo; env.high[k] = hi;
      prev = last;
    };
    for (let b = 0; b < this.done; b++) if (this.mn[b] >= 0) add(b, this.mn[b], this.mx[b], this.end[b]);
    if (this.tail && this.done < this.buckets) add(this.done, this.tail[0], this.tail[1], this.tail[2]);
    return env;
  }
}

/**
 * What a polyline through the points covers in each bucket's column, from the last decimate(): for each bucket with
 * points, [bucket, low, high] with low..high spanning its min and max and the segment that enters it from the previous
 * bucket's last point (so a steep stretch stays connected). A 1 px column filled from low to high is the line drawn
 * at that width: a noisy series is the solid band it is, at a fraction of stroking its zigzag.
 */
export interface Envelope { bucket: Int32Array; low: Float64Array; high: Float64Array; count: number }

/** The first index in [from, to) whose x is > v (or ≥ v when `orEqual`); `to` when none. x non-decreasing. */
function upper(x: ArrayLike<number>, v: number, from: number, to: number, orEqual: boolean): number {
  let a = from, b = to;
  while (a < b) { const m = (a + b) >> 1; if (orEqual ? x[m] < v : x[m] <= v) a = m + 1; else b = m; }
  return a;
}
