/**
 * The one command line that continues a run from a terminal, for every hint that says how (the trainers' end
 * summaries, `train --resume` and `serve --resume` refusals, the page's Stop confirmation): the run's real folder
 * (absolute, shell-quoted), and for a multi-rank PyTorch run the launcher on as many processes as it had — a resume on
 * another world size would change the global batch, and the trainer refuses it. python/srlora_torch/progress.py
 * continue_command says it in the same words.
 */

/** A POSIX shell word for `s`, as Python's shlex.quote: unchanged when it holds only safe characters. */
export function shellWord(s: string): string {
  if (s !== '' && /^[\w@%+=:,./-]+$/.test(s)) return s;
  return `'${s.replaceAll("'", `'"'"'`)}'`;
}

/**
 * `runDir`: the run's absolute folder; `pytorch`: written by the PyTorch trainer; `worldSize`: its hello's (≥ 1).
 * E.g. `python -m srlora_torch.launch --standalone --nproc_per_node=2 -m srlora_torch.train --resume /abs/run`.
 */
export function continueCommand(runDir: string, pytorch: boolean, worldSize = 1): string {
  const launch = !pytorch ? 'srlora train'
    : worldSize > 1 ? `python -m srlora_torch.launch --standalone --nproc_per_node=${worldSize} -m srlora_torch.train`
      : 'python -m srlora_torch.train';
  return `${launch} --resume ${shellWord(runDir)}`;
}
