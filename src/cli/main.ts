/**
 * `srlora` — the command line: train, init, export, serve, conformance. Every command takes --help (its usage and
 * flags, from src/cli/usage.ts); `srlora --version` prints the version; a mistyped command, flag or config-field
 * flag is an error that names it and suggests the closest known one.
 */
import { conformanceCommand } from './conformanceCommand';
import { trainCommand } from './trainCommand';
import { initCommand } from './initCommand';
import { serveCommand } from './serveCommand';
import { exportCommand } from './exportCommand';
import { commandUsage, didYouMean, HELP, knownFlags, mainUsage, unknownFlag, VERSION } from './usage';
import { configFlags } from '../trainer/config/runConfig';
import { srloraCommand } from '../viewmodel/continueCommand';
import { cliLaunch } from './launch';

const COMMANDS: Record<string, (argv: string[]) => Promise<number>> = {
  conformance: conformanceCommand,
  train: trainCommand,
  init: initCommand,
  serve: serveCommand,
  export: exportCommand,
};

/**
 * `train` takes config fields as flags (--fusion-threshold 1.0, --task.transform upright; the one schema's set,
 * configFlags, which the PyTorch trainer takes too): a flag that is neither one of its own nor a config field is
 * refused here, by name, with the closest known flag (test/vectors/flags/flags.json `unknown`).
 */
function checkTrainFlags(argv: string[]): void {
  const known = [...knownFlags('train'), ...configFlags().keys()];
  for (const a of argv) {
    if (!a.startsWith('--')) continue;
    const flag = a.split('=')[0];
    if (known.includes(flag)) continue;
    throw new Error(`train: ${unknownFlag(flag, known)}; ${srloraCommand(cliLaunch(), 'train --help')} lists them`);
  }
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === '-h' || cmd === '--help' || cmd === 'help') {
    const topic = cmd === 'help' ? rest[0] : undefined;
    process.stdout.write(topic && HELP[topic] ? commandUsage(topic) : mainUsage());
    return cmd === undefined ? 2 : 0;
  }
  if (cmd === '--version' || cmd === '-V' || cmd === 'version') { process.stdout.write(`srlora ${VERSION}\n`); return 0; }
  const run = COMMANDS[cmd];
  if (!run) {
    const guess = didYouMean(cmd, Object.keys(COMMANDS));
    process.stderr.write(`srlora: unknown command ${JSON.stringify(cmd.slice(0, 80))}${guess ? ` (did you mean ${guess}?)` : ''}\n${mainUsage()}`);
    return 2;
  }
  // --help anywhere before a lone `--`, for every command (init --help once wrote a config file named --help).
  const end = rest.indexOf('--');
  if ((end < 0 ? rest : rest.slice(0, end)).some((a) => a === '--help' || a === '-h')) { process.stdout.write(commandUsage(cmd)); return 0; }
  if (cmd === 'train') checkTrainFlags(rest);
  try {
    return await run(rest);
  } catch (e) {
    // node:util parseArgs: name the command and suggest the closest flag it knows.
    const code = (e as { code?: string }).code;
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      const flag = /'(-[^']*)'/.exec((e as Error).message)?.[1] ?? '?';
      const guess = didYouMean(flag, knownFlags(cmd));
      throw new Error(`${cmd}: unknown option ${flag.slice(0, 80)}${guess ? ` (did you mean ${guess}?)` : ''}; ${srloraCommand(cliLaunch(), `${cmd} --help`)} lists them`);
    }
    if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' || code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') throw new Error(`${cmd}: ${(e as Error).message}; ${srloraCommand(cliLaunch(), `${cmd} --help`)}`);
    throw e;
  }
}

// A trainer detached from a closed window has no one reading its output: keep training (events.jsonl is the record).
for (const stream of [process.stdout, process.stderr]) stream.on('error', () => { /* EPIPE: the reader is gone */ });

if (!process.env.SRLORA_CLI_NO_MAIN) {
  main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (err: unknown) => {
    process.stderr.write(`srlora: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  });
}
