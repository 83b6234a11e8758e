/**
 * The one command line that continues a run from a terminal, for every hint that says how (the trainers' end
 * summaries, `train --resume` and `serve --resume` refusals, the page's Stop confirmation): the run's real folder
 * (absolute, shell-quoted), and for a multi-rank PyTorch run the launcher on as many processes as it had — a resume on
 * another world size would change the global batch, and the trainer refuses it. A PyTorch run names the interpreter
 * that ran it and the PYTHONPATH it needed, as its hello recorded them (`hello.launch`), so the line runs as printed in
 * a fresh shell. python/srlora_torch/progress.py continue_command builds the same line from the same facts; the shared
 * vectors test/vectors/continue/lines.json hold the two equal.
 */
import type { Hello } from '../protocol/messages';

/** How a trainer was started: `hello.launch` (python, pythonPath for the PyTorch trainer; node, cli for the built-in one). */
export type PythonLaunch = NonNullable<Hello['launch']>;

/** A POSIX shell word for `s`, as Python's shlex.quote: unchanged when it holds only safe characters. */
export function shellWord(s: string): string {
  if (s !== '' && /^[\w@%+=:,./-]+$/.test(s)) return s;
  return `'${s.replaceAll("'", `'"'"'`)}'`;
}

/**
 * `python -m MODULE` as the run's trainer ran it: `PYTHONPATH=… /abs/python -m MODULE` from its recorded `launch`,
 * a bare `python -m MODULE` for a run whose trainer did not record it (older trainers).
 */
export function pythonModule(launch: PythonLaunch | null | undefined, module: string): string {
  if (!launch?.python) return `python -m ${module}`;
  return `${launch.pythonPath ? `PYTHONPATH=${shellWord(launch.pythonPath)} ` : ''}${shellWord(launch.python)} -m ${module}`;
}

/**
 * The `srlora` command line's SUBCOMMAND as `launch` ran it (`node /abs/dist/cli.js serve`; VS Code's Electron run as
 * Node.js: `ELECTRON_RUN_AS_NODE=1 /abs/code /abs/dist/cli.js serve`): a checkout has no `srlora` on PATH. `srlora
 * SUBCOMMAND` only when `launch` names no CLI (the `srlora` bin itself, an older trainer's hello). python/srlora_torch/
 * progress.py srlora_command says the same (test/vectors/continue/lines.json `serve`).
 */
export function srloraCommand(launch: PythonLaunch | null | undefined, subcommand: string): string {
  if (!launch?.node || !launch.cli) return `srlora ${subcommand}`;
  return `${launch.electronRunAsNode ? 'ELECTRON_RUN_AS_NODE=1 ' : ''}${shellWord(launch.node)} ${shellWord(launch.cli)} ${subcommand}`;
}

/** The line that shows the runs of `runsDir` (absolute) on the dashboard, by the CLI `launch` names (srloraCommand):
 * `/usr/bin/node /abs/dist/cli.js serve --runs-dir '/a/my runs'`. Every "dashboard" / "watch it" hint prints it. */
export function dashboardCommand(runsDir: string, launch: PythonLaunch | null | undefined): string {
  return `${srloraCommand(launch, 'serve')} --runs-dir ${shellWord(runsDir)}`;
}

/**
 * `runDir`: the run's absolute folder; `pytorch`: written by the PyTorch trainer; `worldSize`: its hello's (≥ 1);
 * `launch`: its hello's. E.g. `PYTHONPATH=/src/python /venv/bin/python -m srlora_torch.launch --standalone
 * --nproc_per_node=2 -m srlora_torch.train --resume /abs/run`; the built-in trainer's: `srlora train --resume /abs/run`.
 */
export function continueCommand(runDir: string, pytorch: boolean, worldSize = 1, launch?: PythonLaunch | null): string {
  const command = !pytorch ? srloraCommand(launch, 'train')
    : worldSize > 1 ? pythonModule(launch, `srlora_torch.launch --standalone --nproc_per_node=${worldSize} -m srlora_torch.train`)
      : pythonModule(launch, 'srlora_torch.train');
  return `${command} --resume ${shellWord(runDir)}`;
}
