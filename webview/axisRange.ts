/** The y range of a chart (pure: no DOM, no Chart.js), so Node tests check it. */

/**
 * The y range a reader wants: every point, unless a few extreme points (the first steps' loss, a spike) would
 * squeeze the rest into a band. Values beyond the 2nd/98th percentiles by more than that band's width are left out
 * of the range (they are still drawn, clipped at the edge). In log space when log-y.
 *
 * `keep`: values that are always inside the range — the points of a sparse series (an event series such as the
 * fused pairs, or a line of a few points such as the evals): each of them is a real measurement, not noise, and a
 * point drawn half off the axis (a forced recomposition's age 187 under an axis starting at 200) misleads.
 * A series of a few values (under ~25) is whole anyway: its 2nd/98th percentiles are its extremes.
 */
export function robustRange(values: number[], log: boolean, keep: number[] = []): { min: number; max: number } | null {
  const usable = (a: number[]) => (log ? a.filter((x) => x > 0).map(Math.log10) : a.filter(Number.isFinite));
  const v = usable(values).sort((a, b) => a - b);
  const k = usable(keep);
  if (v.length === 0 && k.length === 0) return null;
  let min = Infinity, max = -Infinity;
  if (v.length) {
    const q = (p: number) => v[Math.min(v.length - 1, Math.max(0, Math.round(p * (v.length - 1))))];
    const lo = q(0.02), hi = q(0.98), band = hi - lo;
    min = v[0];
    max = v[v.length - 1];
    if (band > 0) {
      if (max > hi + band) max = hi + 0.1 * band;
      if (min < lo - band) min = lo - 0.1 * band;
    }
  }
  for (const x of k) { if (x < min) min = x; if (x > max) max = x; }
  const allNonNegative = (v.length ? v[0] : Infinity) >= 0 && k.every((x) => x >= 0);
  const pad = min === max ? Math.abs(min) * 0.05 || (log ? 0.1 : 1) : (max - min) * 0.04;
  min -= pad;
  max += pad;
  // Values that are never negative (a loss, a rate) get no negative axis: the padding stops at 0.
  if (!log && allNonNegative && min < 0) min = 0;
  return log ? { min: 10 ** min, max: 10 ** max } : { min, max };
}

/**
 * The label of a log-scale tick, or '' for none: only round values (1, 2, 5 × 10^k; every whole significand when the
 * axis spans less than a decade). Chart.js labels its top ticks whatever they are, so the axis' bound read "289.8".
 */
export function logTickLabel(value: number, min: number, max: number, format: (v: number) => string): string {
  if (!(value > 0)) return '';
  const e = Math.floor(Math.log10(value) + 1e-9);
  const sig = value / 10 ** e;
  const whole = Math.round(sig);
  if (Math.abs(sig - whole) > 1e-6 * whole) return '';
  const narrow = max / min < 10;
  return narrow || whole === 1 || whole === 2 || whole === 5 ? format(value) : '';
}
