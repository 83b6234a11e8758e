/** Turns TypeBox's first validation error into one line that names the field, the value and what is allowed. */
import type { TSchema } from '@sinclair/typebox';
import type { TypeCheck } from '@sinclair/typebox/compiler';
import type { ValueError } from '@sinclair/typebox/errors';

/** A value quoted in an error: JSON, cut to `max` characters (an error never echoes a whole megabyte back). */
export function showValue(value: unknown, max = 80): string {
  let s: string;
  try { s = JSON.stringify(value) ?? String(value); } catch { s = String(value); }
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

export function describeValueError(first: ValueError | undefined): string {
  if (!first) return 'invalid';
  const where = first.path === '' ? '(root)' : first.path;
  // A field whose schema says its rule in words (errorMessage, as ajv-errors) is explained so, not by a raw regex.
  const words = (first.schema as { errorMessage?: unknown }).errorMessage;
  if (typeof words === 'string') return `${where}: ${words}, got ${showValue(first.value)}`;
  const options = (first.schema as { anyOf?: { const?: unknown; type?: unknown }[] }).anyOf;
  if (options) {
    // Name the allowed values instead of TypeBox's generic "Expected union value".
    const allowed = options.map((o) => ('const' in o ? JSON.stringify(o.const) : String(o.type ?? 'object')));
    return `${where}: expected ${allowed.join(' | ')}, got ${showValue(first.value)}`;
  }
  return `${where}: ${first.message}${first.value === undefined ? '' : `, got ${showValue(first.value)}`}`;
}

export function describeFirstError(check: TypeCheck<TSchema>, value: unknown): string {
  return describeValueError(check.Errors(value).First());
}
