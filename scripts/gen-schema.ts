// Writes docs/protocol.schema.json from src/protocol (the test suite fails when the checked-in file is stale).
import { writeFileSync } from 'node:fs';
import { protocolJsonSchemaText } from '../src/protocol/jsonSchema';
import { runConfigJsonSchemaText } from '../src/trainer/config/runConfig';
import { viewerChecksModuleText } from '../src/protocol/precompile';

writeFileSync(new URL('../docs/protocol.schema.json', import.meta.url), protocolJsonSchemaText());
// The PyTorch trainer validates against the same generated schema, shipped inside its package.
writeFileSync(new URL('../python/srlora_torch/protocol.schema.json', import.meta.url), protocolJsonSchemaText());
// The run config's schema: VS Code validates and completes *.srlora.json files with it (contributes.jsonValidation).
writeFileSync(new URL('../media/run-config.schema.json', import.meta.url), runConfigJsonSchemaText());
// ... and the PyTorch trainer takes the same fields and defaults from it: one source for both trainers.
writeFileSync(new URL('../python/srlora_torch/run-config.schema.json', import.meta.url), runConfigJsonSchemaText());
// The dashboard page's viewer-message checks, compiled now (its CSP forbids compiling them in the page).
writeFileSync(new URL('../src/protocol/viewerChecks.generated.ts', import.meta.url), viewerChecksModuleText());
console.log('wrote src/protocol/viewerChecks.generated.ts, docs/protocol.schema.json, python/srlora_torch/protocol.schema.json, media/run-config.schema.json, python/srlora_torch/run-config.schema.json');
