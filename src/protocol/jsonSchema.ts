/** The JSON Schema document generated from messages.ts, checked in as docs/protocol.schema.json. */
import {
  CommandBody, HubMessageSchemas, HubToViewerSchemas, PROTOCOL_MAJOR, PROTOCOL_MINOR, TrainerMessageSchemas,
  ViewerToHubSchemas,
} from './messages';
import type { TSchema } from '@sinclair/typebox';

function plain(schema: TSchema): unknown {
  // TypeBox keeps its Kind markers in symbol keys, which JSON drops; a round trip gives plain JSON Schema.
  // `$id` is dropped: inside $defs it would rebase the local `#/$defs/…` references.
  const { $id: _id, ...rest } = JSON.parse(JSON.stringify(schema)) as Record<string, unknown>;
  return rest;
}

function defs(schemas: readonly TSchema[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const s of schemas) out[s.$id as string] = plain(s);
  return out;
}

const refs = (schemas: readonly TSchema[]) => schemas.map((s) => ({ $ref: `#/$defs/${s.$id as string}` }));

export function protocolJsonSchema(): Record<string, unknown> {
  const $defs = {
    ...defs(TrainerMessageSchemas), ...defs(HubMessageSchemas), CommandBody: plain(CommandBody),
    ...defs(ViewerToHubSchemas), ...defs(HubToViewerSchemas),
  };
  // T.Ref('hello') inside the viewer schemas → local JSON pointers.
  const text = JSON.stringify($defs).replace(/"\$ref":"([A-Za-z-]+)"/g, '"$ref":"#/$defs/$1"');
  return {
    // TypeBox emits draft-07 keywords (tuples as items arrays); $defs is only a JSON-pointer target here.
    $schema: 'http://json-schema.org/draft-07/schema#',
    $id: `srlora-studio/protocol/v${PROTOCOL_MAJOR}`,
    title: `SRLoRA Studio steering protocol ${PROTOCOL_MAJOR}.${PROTOCOL_MINOR}`,
    description: 'Generated from src/protocol/messages.ts by `npm run gen:schema`. Do not edit by hand.',
    'x-protocol-version': { major: PROTOCOL_MAJOR, minor: PROTOCOL_MINOR },
    'x-trainer-to-hub': TrainerMessageSchemas.map((s) => s.$id),
    'x-hub-to-trainer': HubMessageSchemas.map((s) => s.$id),
    oneOf: [...refs(TrainerMessageSchemas), ...refs(HubMessageSchemas)],
    $defs: JSON.parse(text) as unknown,
  };
}

export const protocolJsonSchemaText = (): string => JSON.stringify(protocolJsonSchema(), null, 2) + '\n';
