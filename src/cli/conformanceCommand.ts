/** `srlora conformance CASE.json [--backend B] [--check]`: the answer JSON on stdout; --check compares with `expected`. */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { selectBackend, type BackendName } from '../trainer/engine/backend';
import { parseCase } from '../trainer/conformance/caseFormat';
import { runCase } from '../trainer/conformance/runCase';
import { compareAnswer } from '../trainer/conformance/compare';

export async function conformanceCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv, allowPositionals: true,
    options: { backend: { type: 'string', default: 'auto' }, check: { type: 'boolean', default: false } },
  });
  if (positionals.length !== 1) throw new Error('usage: srlora conformance CASE.json [--backend auto|tensorflow|wasm|cpu] [--check]');
  const file = positionals[0];
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: ${(e as Error).message}`);
  }
  const c = parseCase(raw, file);
  const backend = await selectBackend(values.backend as BackendName | 'auto');
  process.stderr.write(`backend: ${backend.name} (${backend.device})\n`);
  const answer = runCase(c);
  process.stdout.write(JSON.stringify(answer) + '\n');
  if (!values.check) return 0;
  const errs = compareAnswer(c, answer);
  for (const e of errs) process.stderr.write(`mismatch: ${e}\n`);
  process.stderr.write(errs.length ? `${file}: FAIL (${errs.length} mismatches)\n` : `${file}: pass\n`);
  return errs.length ? 1 : 0;
}
