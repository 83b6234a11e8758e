/** Turns TypeBox's first validation error into one line that names the field, the value and what is allowed. */
import type { TSchema } from '@sinclair/typebox';
import type { TypeCheck } from '@sinclair/typebox/compiler';
import { ValueErrorType, type ValueError } from '@sinclair/typebox/errors';
import { Value } from '@sinclair/typebox/value';

/** A value quoted in an error: JSON, cut to `max` characters (an error never echoes a whole megabyte back). */
export function showValue(value: unknown, max = 80): string {
  let s: string;
  try { s = JSON.stringify(value) ?? String(value); } catch { s = String(value); }
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

/** A value quoted as python/srlora_torch/protocol.py show() quotes it: JSON, cut to `max` characters with the length said. */
function show(value: unknown, max = 60): string {
  let s: string;
  try { s = JSON.stringify(value) ?? String(value); } catch { s = String(value); }
  return s.length > max ? `${s.slice(0, max)}… (${s.length} characters)` : s;
}

/** "a string \"fast\"", "a number 2.5", "null": what a value of the wrong type is (protocol.py _got). */
function got(value: unknown): string {
  if (value === null) return 'null';
  const kind = typeof value === 'string' ? 'a string' : typeof value === 'boolean' ? 'a boolean' : Array.isArray(value) ? 'an array'
    : typeof value === 'object' ? 'an object' : 'a number';
  return `${kind} ${show(value)}`;
}

interface SchemaWords {
  type?: string | string[]; const?: unknown; anyOf?: SchemaWords[]; errorMessage?: unknown; pattern?: string;
  minimum?: number; maximum?: number; exclusiveMinimum?: number; exclusiveMaximum?: number;
  minLength?: number; maxLength?: number; minItems?: number; maxItems?: number;
}

/** What is wrong, in the words python/srlora_torch/protocol.py check() uses — one wording for both trainers and serve
 * (test/vectors/flags/errors.json): "must be ≥ 1, got -1", "expected number, got a string \"fast\"", "expected \"a\" |
 * \"b\", got \"c\"", "required". */
function words(e: ValueError): string {
  const s = e.schema as SchemaWords;
  const v = e.value;
  const T = ValueErrorType;
  switch (e.type) {
    case T.ObjectRequiredProperty: return 'required';
    case T.ObjectAdditionalProperties: return 'unknown field';
    case T.Literal: return `expected ${show(s.const)}, got ${show(v)}`;
    case T.NumberMinimum: case T.IntegerMinimum: return `must be ≥ ${s.minimum}, got ${show(v)}`;
    case T.NumberMaximum: case T.IntegerMaximum: return `must be ≤ ${s.maximum}, got ${show(v)}`;
    case T.NumberExclusiveMinimum: case T.IntegerExclusiveMinimum: return `must be > ${s.exclusiveMinimum}, got ${show(v)}`;
    case T.NumberExclusiveMaximum: case T.IntegerExclusiveMaximum: return `must be < ${s.exclusiveMaximum}, got ${show(v)}`;
    case T.StringMinLength: return `must have at least ${s.minLength} characters, got ${show(v)}`;
    case T.StringMaxLength: return `must have at most ${s.maxLength} characters, got ${typeof v === 'string' ? v.length : show(v)}`;
    case T.StringPattern: return `${typeof s.errorMessage === 'string' ? s.errorMessage : `must match ${s.pattern}`}, got ${show(v)}`;
    case T.ArrayMinItems: return `must have at least ${s.minItems} items, got ${Array.isArray(v) ? v.length : show(v)}`;
    case T.ArrayMaxItems: return `must have at most ${s.maxItems} items, got ${Array.isArray(v) ? v.length : show(v)}`;
    case T.Integer: case T.Number: case T.String: case T.Boolean: case T.Null: case T.Array: case T.Object:
      return `expected ${Array.isArray(s.type) ? s.type.join(' or ') : s.type ?? 'another value'}, got ${got(v)}`;
    case T.Union: {
      const options = s.anyOf ?? [];
      if (options.every((o) => 'const' in o)) return `expected ${options.map((o) => show(o.const)).join(' | ')}, got ${show(v)}`;
      // the branch whose error is not about the type says what is wrong (rTarget 0: "must be ≥ 1"); else the types
      try {
        const firsts = options.map((o) => Value.Errors(o as TSchema, v).First()).filter((x): x is ValueError => x !== undefined);
        const told = firsts.find((x) => x.path !== '' || !words(x).startsWith('expected '));
        if (told) return words(told);
      } catch { /* a branch that refers to other schemas: name the types */ }
      const kinds = [...new Set(options.flatMap((o) => (typeof o.type === 'string' ? [o.type] : o.type ?? [])))].sort();
      return `expected ${kinds.join(' or ') || 'another value'}, got ${got(v)}`;
    }
    default: return `${e.message}${v === undefined ? '' : `, got ${show(v)}`}`;
  }
}

/** One line for TypeBox's error `first`: "/pointer: what is wrong, got V" in the PyTorch trainer's words (words()); a
 * field whose schema says its rule in words (errorMessage, as ajv-errors) is explained so, not by a raw regex. */
export function describeValueError(first: ValueError | undefined): string {
  if (!first) return 'invalid';
  const where = first.path === '' ? '(root)' : first.path;
  const rule = (first.schema as { errorMessage?: unknown }).errorMessage;
  if (typeof rule === 'string') return `${where}: ${rule}, got ${show(first.value)}`;
  return `${where}: ${words(first)}`;
}

export function describeFirstError(check: TypeCheck<TSchema>, value: unknown): string {
  return describeValueError(check.Errors(value).First());
}
