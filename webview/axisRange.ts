/** The y range of a chart (pure: no DOM, no Chart.js), so Node tests check it. */

/**
 * The y range a reader wants: every point, unless a few extreme points (the first steps' loss, a spike) would
 * squeeze the rest into a band. Values beyond the 2nd/98th percentiles by more than that band's width are left out
 * of the range (they are still drawn, clipped at the edge). In log space when log-y.
 */
export function robustRange(values: number[], log: boolean): { min: number; max: number } | null {
  const v = (log ? values.filter((x) => x > 0).map(Math.log10) : values.filter(Number.isFinite)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const q = (p: number) => v[Math.min(v.length - 1, Math.max(0, Math.round(p * (v.length - 1))))];
  const lo = q(0.02), hi = q(0.98), band = hi - lo;
  let min = v[0], max = v[v.length - 1];
  if (band > 0) {
    if (max > hi + band) max = hi + 0.1 * band;
    if (min < lo - band) min = lo - 0.1 * band;
  }
  const pad = min === max ? Math.abs(min) * 0.05 || (log ? 0.1 : 1) : (max - min) * 0.04;
  min -= pad;
  max += pad;
  // Values that are never negative (a loss, a rate) get no negative axis: the padding stops at 0.
  if (!log && v[0] >= 0 && min < 0) min = 0;
  return log ? { min: 10 ** min, max: 10 ** max } : { min, max };
}
