/**
 * Runtime validation of protocol messages, compiled once from the schemas in messages.ts.
 * Dispatching on `type` first keeps validation fast (one compiled check per message) and lets errors name
 * the field that is wrong instead of listing every union branch.
 */
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import { Value } from '@sinclair/typebox/value';
import type { TObject, TSchema } from '@sinclair/typebox';
import { describeFirstError } from './describeError';
import { viewerChecks } from './viewerChecks.generated';
import {
  CommandBody, HubMessageSchemas, HubToViewerSchemas, TrainerMessageSchemas, ViewerToHubSchemas,
  PROTOCOL_MAJOR,
  type CommandBody as CommandBodyT, type HubMessage, type HubToViewer, type TrainerMessage, type ViewerToHub,
} from './messages';

export type Result<T> = { ok: true; value: T } | { ok: false; error: string };

/** Schemas that others reference by `$id` (T.Ref). */
const references: TSchema[] = [...TrainerMessageSchemas, CommandBody];

type Table = Map<string, TypeCheck<TSchema>>;

/**
 * Compiled checks where code generation is allowed (Node: the hub's hot path); the interpreting checker in a
 * browser page, whose strict CSP forbids `new Function`. Both answer the same schema.
 */
const inBrowser = typeof (globalThis as { document?: unknown }).document !== 'undefined';
function compile(schema: TSchema, refs: TSchema[] = []): TypeCheck<TSchema> {
  if (!inBrowser) return TypeCompiler.Compile(schema, refs);
  return {
    Check: (v: unknown) => Value.Check(schema, refs, v),
    Errors: (v: unknown) => Value.Errors(schema, refs, v),
  } as unknown as TypeCheck<TSchema>;
}

function table(schemas: readonly TObject[]): Table {
  const t: Table = new Map();
  for (const s of schemas) {
    const type = (s.properties.type as unknown as { const: string }).const;
    t.set(type, compile(s, references));
  }
  return t;
}

const trainerTable = table(TrainerMessageSchemas);
const hubTable = table(HubMessageSchemas);
const viewerInTable = table(ViewerToHubSchemas);
/**
 * What the page receives: in a browser the checks compiled at build time (viewerChecks.generated.ts; the
 * interpreting checker took ~10 ms per live importance event), the interpreter only to name a failure's field.
 */
const viewerOutTable = inBrowser ? precompiledTable(HubToViewerSchemas) : table(HubToViewerSchemas);

function precompiledTable(schemas: readonly TObject[]): Table {
  const t: Table = new Map();
  for (const s of schemas) {
    const type = (s.properties.type as unknown as { const: string }).const;
    const check = viewerChecks[type];
    t.set(type, check ? { Check: check, Errors: (v: unknown) => Value.Errors(s, references, v) } as unknown as TypeCheck<TSchema> : compile(s, references));
  }
  return t;
}
/** One check per command kind, so an error names the field (a union check only says "no branch matched"). */
const commandTable = new Map<string, TypeCheck<TSchema>>(
  CommandBody.anyOf.map((s) => [(s.properties.kind as unknown as { const: string }).const, compile(s)]),
);

function dispatch<T>(t: Table, value: unknown, what: string): Result<T> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, error: `${what} must be a JSON object` };
  }
  const rec = value as Record<string, unknown>;
  if (rec.v !== PROTOCOL_MAJOR) {
    return { ok: false, error: `/v: expected protocol major version ${PROTOCOL_MAJOR}, got ${JSON.stringify(rec.v)}` };
  }
  const type = rec.type;
  if (typeof type !== 'string') return { ok: false, error: '/type: missing or not a string' };
  const check = t.get(type);
  if (!check) return { ok: false, error: `/type: unknown ${what} type ${JSON.stringify(type)}; expected one of ${[...t.keys()].join(', ')}` };
  if (!check.Check(value)) {
    // A message that carries a command: let the per-kind check say what is wrong inside it.
    if ('command' in rec) {
      const c = validateCommandBody(rec.command);
      if (!c.ok) return { ok: false, error: `${type} /command: ${c.error}` };
    }
    return { ok: false, error: `${type} ${describeFirstError(check, value)}` };
  }
  return { ok: true, value: value as T };
}

/** Checks JSON Schema cannot express: arrays that must line up. */
function semantic(msg: TrainerMessage): string | null {
  if (msg.type === 'importance') {
    for (const l of msg.layers) {
      const n = l.S.length;
      if (l.sHat.length !== n || l.age.length !== n || l.direction.length !== n || (l.stepBoost && l.stepBoost.length !== n)) {
        return `importance /layers/${l.name}: S, sHat, age, direction and stepBoost must have the same length`;
      }
    }
  } else if (msg.type === 'recomposition') {
    for (const l of msg.layers) {
      const n = l.slots.length;
      if (l.scores.length !== n || l.oldDirections.length !== n || l.newDirections.length !== n || (l.ages && l.ages.length !== n)) {
        return `recomposition /layers/${l.name}: slots, scores, oldDirections, newDirections and ages must have the same length`;
      }
    }
  } else if (msg.type === 'metrics') {
    for (let i = 1; i < msg.rows.length; i++) {
      if (msg.rows[i].step <= msg.rows[i - 1].step) return 'metrics /rows: steps must increase';
    }
  }
  return null;
}

export function validateTrainerMessage(value: unknown): Result<TrainerMessage> {
  const r = dispatch<TrainerMessage>(trainerTable, value, 'trainer message');
  if (!r.ok) return r;
  const err = semantic(r.value);
  return err ? { ok: false, error: err } : r;
}

export function validateHubMessage(value: unknown): Result<HubMessage> {
  return dispatch<HubMessage>(hubTable, value, 'hub message');
}

export function validateViewerToHub(value: unknown): Result<ViewerToHub> {
  return dispatch<ViewerToHub>(viewerInTable, value, 'viewer message');
}

export function validateHubToViewer(value: unknown): Result<HubToViewer> {
  return dispatch<HubToViewer>(viewerOutTable, value, 'viewer message');
}

export function validateCommandBody(value: unknown): Result<CommandBodyT> {
  const kind = (value as { kind?: unknown } | null)?.kind;
  const check = typeof kind === 'string' ? commandTable.get(kind) : undefined;
  if (!check) return { ok: false, error: `/kind: expected one of ${[...commandTable.keys()].join(', ')}, got ${JSON.stringify(kind)}` };
  return check.Check(value) ? { ok: true, value: value as CommandBodyT } : { ok: false, error: `${kind} ${describeFirstError(check, value)}` };
}

/** JSON.parse that reports instead of throwing. */
export function parseJson(text: string): Result<unknown> {
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch (e) {
    return { ok: false, error: `invalid JSON: ${(e as Error).message}` };
  }
}

/** Either direction of the trainer ↔ hub link, chosen by `type` (what the protocol vectors are checked with). */
export function validateLinkMessage(value: unknown): Result<TrainerMessage | HubMessage> {
  const type = (value as { type?: unknown } | null)?.type;
  if (typeof type === 'string' && hubTable.has(type)) return validateHubMessage(value);
  return validateTrainerMessage(value);
}
