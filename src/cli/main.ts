/** `srlora` — the command line: train, serve, conformance. */
import { conformanceCommand } from './conformanceCommand';

const USAGE = `usage: srlora <command> [options]
commands:
  conformance CASE.json [--backend auto|tensorflow|wasm|cpu] [--check]
                          run a golden case (../shared/VECTORS.md format) through the engine; print the answer JSON
`;

const COMMANDS: Record<string, (argv: string[]) => Promise<number>> = {
  conformance: conformanceCommand,
};

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === '-h' || cmd === '--help' || cmd === 'help') {
    process.stdout.write(USAGE);
    return cmd === undefined ? 2 : 0;
  }
  const run = COMMANDS[cmd];
  if (!run) {
    process.stderr.write(`srlora: unknown command ${JSON.stringify(cmd)}\n${USAGE}`);
    return 2;
  }
  return run(rest);
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (err: unknown) => {
  process.stderr.write(`srlora: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
