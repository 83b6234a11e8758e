/** `srlora` — the command line: train, serve, conformance. */
const USAGE = `usage: srlora <command> [options]
commands:
  conformance CASE.json   run a golden case of ../shared/VECTORS.md format through the engine, print the answer JSON
`;

async function main(argv: string[]): Promise<number> {
  const [cmd] = argv;
  switch (cmd) {
    case undefined: case '-h': case '--help': case 'help':
      process.stdout.write(USAGE);
      return cmd === undefined ? 2 : 0;
    default:
      process.stderr.write(`srlora: unknown command ${JSON.stringify(cmd)}\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (err: unknown) => {
  process.stderr.write(`srlora: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
