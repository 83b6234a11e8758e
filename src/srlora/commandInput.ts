/**
 * Parsing what a user types for a fusion rule, one implementation for every place that asks: the command palette
 * (src/supervisor/commandHandlers.ts) and the dashboard's τ and γ fields (webview/). Pure: no Node, no DOM.
 */

export type Parsed<T> = { ok: true; value: T } | { ok: false; message: string };

/** τ: "off" / "none" / "null" / empty → null (the paper's fixed-ratio rule); a finite number ≥ 0 → τ. */
export function parseThreshold(text: string): Parsed<number | null> {
  const t = text.trim().toLowerCase();
  if (t === 'off' || t === 'none' || t === 'null' || t === '') return { ok: true, value: null };
  const v = Number(t);
  if (!Number.isFinite(v) || v < 0) return { ok: false, message: 'Enter a number ≥ 0 (pairs with normalised importance ŝ below it fuse), or "off" for the paper\'s fixed-ratio rule.' };
  return { ok: true, value: v };
}

/** γ: a finite number in (0, 1]. */
export function parseRatio(text: string): Parsed<number> {
  const t = text.trim();
  const v = t === '' ? NaN : Number(t);
  if (!Number.isFinite(v) || v <= 0 || v > 1) return { ok: false, message: 'Enter a number in (0, 1]: the share of pairs per layer that fuse under the fixed-ratio rule.' };
  return { ok: true, value: v };
}
