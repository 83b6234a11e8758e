/** `srlora init [FILE]`: writes a commented starting config (default run.srlora.json); never overwrites. */
import { existsSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { starterConfigText } from '../trainer/config/runConfig';

export async function initCommand(argv: string[]): Promise<number> {
  const { positionals } = parseArgs({ args: argv, allowPositionals: true, strict: true, options: {} });
  if (positionals.length > 1) throw new Error(`init: one file at most (got ${positionals.length}); srlora init --help`);
  const file = positionals[0] ?? 'run.srlora.json';
  if (existsSync(file)) throw new Error(`${file} exists; not overwriting it`);
  writeFileSync(file, starterConfigText(), { flag: 'wx' });
  process.stdout.write(`wrote ${file}\n`);
  return 0;
}
