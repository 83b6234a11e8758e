/**
 * How this `srlora` process was started, for every line it prints that a person runs next (continue, dashboard, watch
 * it): the lines must run as printed in a fresh shell, and a checkout has no `srlora` on PATH.
 */
import { resolve } from 'node:path';
import type { Hello } from '../protocol/messages';
import type { PythonLaunch } from '../viewmodel/continueCommand';

/** hello.launch of this command line: {node: the executable, cli: dist/cli.js (absolute), electronRunAsNode when it is
 * VS Code's Electron run as Node.js}; undefined when this process is not dist/cli.js (the `srlora` bin on PATH: its
 * lines say `srlora`; tests that call the commands in-process). */
export function cliLaunch(): Hello['launch'] {
  const cli = process.argv[1];
  if (!cli || !/(^|[\\/])cli\.js$/.test(cli)) return undefined;
  // the binary, not the environment: the supervisor sets ELECTRON_RUN_AS_NODE for every trainer it starts, plain Node too
  return { node: process.execPath, cli: resolve(cli), ...(process.versions.electron !== undefined ? { electronRunAsNode: true as const } : {}) };
}

/** The CLI a hint names: `launch` when it names one (a built-in run's hello), else this process's (cliLaunch). */
export function cliOr(launch: PythonLaunch | null | undefined): PythonLaunch | undefined {
  return launch?.node && launch.cli ? launch : cliLaunch();
}
