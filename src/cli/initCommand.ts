/** `srlora init [FILE]`: writes a commented starting config (default run.srlora.json); never overwrites. */
import { existsSync, writeFileSync } from 'node:fs';
import { starterConfigText } from '../trainer/config/runConfig';

export async function initCommand(argv: string[]): Promise<number> {
  const file = argv[0] ?? 'run.srlora.json';
  if (existsSync(file)) throw new Error(`${file} exists; not overwriting it`);
  writeFileSync(file, starterConfigText(), { flag: 'wx' });
  process.stdout.write(`wrote ${file}\n`);
  return 0;
}
