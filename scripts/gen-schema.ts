// Writes docs/protocol.schema.json from src/protocol (the test suite fails when the checked-in file is stale).
import { writeFileSync } from 'node:fs';
import { protocolJsonSchemaText } from '../src/protocol/jsonSchema';

writeFileSync(new URL('../docs/protocol.schema.json', import.meta.url), protocolJsonSchemaText());
console.log('wrote docs/protocol.schema.json');
