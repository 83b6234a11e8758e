/** `srlora` — the command line: train, init, export, serve, conformance. */
import { conformanceCommand } from './conformanceCommand';
import { trainCommand } from './trainCommand';
import { initCommand } from './initCommand';
import { serveCommand } from './serveCommand';
import { exportCommand } from './exportCommand';

const USAGE = `usage: srlora <command> [options]
commands:
  train [--config FILE] [--runs-dir DIR] [--resume RUN_DIR] [--no-progress] [--<field> VALUE ...]
                          train (defaults: the tiny ViT on 90°-rotated digits, srlora); flags override config fields
  init [FILE]             write a commented starting config (run.srlora.json)
  export RUN_DIR [--checkpoint CHECKPOINT_DIR]
                          write the run's export (merged weights, ΔW, direction history) from its latest checkpoint
  serve [--runs-dir DIR] [--port N] [--demo | --config FILE] [--steps N]
                          the dashboard in a browser for the runs of DIR (default .srlora/runs), optionally starting one
  conformance CASE.json [--backend auto|tensorflow|wasm|cpu] [--check]
                          run a golden case (../shared/VECTORS.md format) through the engine; print the answer JSON
`;

const COMMANDS: Record<string, (argv: string[]) => Promise<number>> = {
  conformance: conformanceCommand,
  train: trainCommand,
  init: initCommand,
  serve: serveCommand,
  export: exportCommand,
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

// A trainer detached from a closed window has no one reading its output: keep training (events.jsonl is the record).
for (const stream of [process.stdout, process.stderr]) stream.on('error', () => { /* EPIPE: the reader is gone */ });

main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (err: unknown) => {
  process.stderr.write(`srlora: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
