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
 * The y axis a chart draws for a fitted `range` (robustRange's): its bounds widened to labelled ticks, so the lowest
 * and the highest points the range holds lie between two labels (FINDINGS session 7: a fused-pairs axis labelled
 * 50–80 with 47 of its 48 points at 42, drawn under the lowest label). Pure. `ticks` ascending (grid lines), first =
 * min, last = max; `labels` the ticks that get a label (min and max among them).
 * - linear: ticks every 1, 2 or 5 × 10^k, the smallest step giving at most `maxSpaces` spaces (one per ~40 px), all
 *   labelled;
 * - log: ticks at every whole significand (1..9 × 10^k); the bounds are widened to labelled ones: every whole
 *   significand on an axis under a decade wide, else 1, 2, 5 × 10^k (Chart.js labelled its top ticks whatever they were:
 *   "289.8"), or only 10^k when that would put
 *   more than `maxSpaces` + 1 labels on the axis.
 */
export function niceAxis(range: { min: number; max: number }, log: boolean, maxSpaces = 6): { min: number; max: number; ticks: number[]; labels: number[] } {
  const clean = (v: number) => Number(v.toPrecision(12));
  const spaces = Math.max(1, Math.floor(maxSpaces));
  if (log) {
    const exp = (v: number) => Math.floor(Math.log10(v) + 1e-9);
    const down = (v: number, sigs: number[]) => { const e = exp(v); const s = v / 10 ** e; return clean(([...sigs].reverse().find((x) => x <= s + 1e-9) ?? 1) * 10 ** e); };
    const up = (v: number, sigs: number[]) => { const e = exp(v); const s = v / 10 ** e; const f = sigs.find((x) => x >= s - 1e-9); return clean((f ?? 10) * 10 ** e); };
    const between = (min: number, max: number, sigs: number[]) => {
      const out: number[] = [];
      for (let e = exp(min); 10 ** e <= max * (1 + 1e-9); e++) for (const s of sigs) { const v = clean(s * 10 ** e); if (v >= min * (1 - 1e-9) && v <= max * (1 + 1e-9)) out.push(v); }
      return out;
    };
    const whole = [1, 2, 3, 4, 5, 6, 7, 8, 9];
    let sigs = whole;
    let min = down(range.min, sigs), max = up(range.max, sigs);
    // Under a decade every whole significand is labelled; wider, only 1, 2, 5 × 10^k; many decades, 10^k.
    if (!(max / min < 10)) {
      sigs = [1, 2, 5];
      min = down(range.min, sigs); max = up(range.max, sigs);
      if (between(min, max, sigs).length > spaces + 1) { sigs = [1]; min = down(range.min, sigs); max = up(range.max, sigs); }
    }
    return { min, max, ticks: between(min, max, whole), labels: between(min, max, sigs) };
  }
  const span = range.max - range.min;
  let step = span > 0 ? 10 ** Math.floor(Math.log10(span / spaces)) : Math.abs(range.min) || 1;
  const fits = (s: number) => Math.ceil(range.max / s - 1e-9) - Math.floor(range.min / s + 1e-9) <= spaces;
  for (let i = 0; i < 40 && ![1, 2, 5].some((m) => fits(m * step) && ((step *= m), true)); i++) step *= 10;
  const lo = Math.floor(range.min / step + 1e-9), hi = Math.max(lo + 1, Math.ceil(range.max / step - 1e-9));
  const ticks = Array.from({ length: hi - lo + 1 }, (_, i) => clean((lo + i) * step));
  return { min: ticks[0], max: ticks[ticks.length - 1], ticks, labels: ticks };
}
