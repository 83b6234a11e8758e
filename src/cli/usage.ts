/**
 * The command line's words in one place: the version, the default runs folder (one for every command: train writes
 * where serve, --resume, export and the extension read), each command's usage and flags, and did-you-mean for a
 * mistyped flag or command.
 */
import pkg from '../../package.json';

export const VERSION: string = pkg.version;

/** Where runs live unless --runs-dir says otherwise (the extension's srlora.runsDirectory default too). */
export const DEFAULT_RUNS_DIR = '.srlora/runs';

export interface CommandHelp { summary: string; usage: string; flags: [string, string][] }

export const HELP: Record<string, CommandHelp> = {
  train: {
    summary: 'train a run (defaults: the tiny ViT on 90°-rotated digits, srlora)',
    usage: 'srlora train [--config FILE] [--runs-dir DIR] [--resume RUN_DIR] [--no-progress] [--<config-field> VALUE …]',
    flags: [
      ['--config FILE', 'a run config (srlora init writes a starter one)'],
      ['--runs-dir DIR', `where the run folder is created (default ${DEFAULT_RUNS_DIR})`],
      ['--resume RUN_DIR', 'continue a run from its newest complete checkpoint'],
      ['--no-progress', 'no progress line on stderr'],
      ['--<config-field> VALUE', 'override a config field: --r 8, --fusion-threshold 1.0, --task.transform upright'],
    ],
  },
  init: {
    summary: 'write a commented starting config',
    usage: 'srlora init [FILE]',
    flags: [['FILE', 'where to write it (default run.srlora.json; never overwritten)']],
  },
  export: {
    summary: 'write a run\'s export (merged weights, ΔW, direction history) from a checkpoint',
    usage: 'srlora export RUN_DIR [--checkpoint CHECKPOINT_DIR]',
    flags: [['--checkpoint DIR', 'the checkpoint to export (default: the run\'s latest)']],
  },
  serve: {
    summary: 'the dashboard in a browser for the runs of a folder, optionally starting one',
    usage: 'srlora serve [--runs-dir DIR] [--port N] [--host 127.0.0.1] [--demo | --config FILE] [--steps N]',
    flags: [
      ['--runs-dir DIR', `the runs to show (default ${DEFAULT_RUNS_DIR})`],
      ['--port N', 'the port (default: any free one)'],
      ['--host HOST', 'the address to listen on (default 127.0.0.1: loopback only)'],
      ['--demo', 'start the built-in demo run'],
      ['--config FILE', 'start a run of this config'],
      ['--steps N', 'steps of the run it starts'],
    ],
  },
  conformance: {
    summary: 'run a golden case (the shared vectors\' format) through the engine; print the answer JSON',
    usage: 'srlora conformance CASE.json [--backend auto|tensorflow|wasm|cpu] [--check]',
    flags: [['--backend NAME', 'TensorFlow.js backend (default auto)'], ['--check', 'compare with the case\'s expected answer; exit 1 on a mismatch']],
  },
};

export function commandUsage(name: string): string {
  const c = HELP[name];
  const w = Math.max(...c.flags.map(([f]) => f.length));
  return `usage: ${c.usage}\n${c.summary}\n\n${c.flags.map(([f, d]) => `  ${f.padEnd(w)}  ${d}`).join('\n')}\n  ${'--help'.padEnd(w)}  this help\n`;
}

export function mainUsage(): string {
  const w = Math.max(...Object.keys(HELP).map((k) => k.length));
  return `usage: srlora <command> [options]     (srlora <command> --help for its options)\ncommands:\n${Object.entries(HELP).map(([k, c]) => `  ${k.padEnd(w)}  ${c.summary}`).join('\n')}\n\n  --version  print the version\n`;
}

/** Edit distance (insert, delete, substitute, transpose adjacent), for did-you-mean. */
export function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

/** The closest of `known` to `word` when it is close enough to be a typo (≤ 2 edits, or ≤ a third of its length). */
export function didYouMean(word: string, known: Iterable<string>): string | null {
  let best: string | null = null, bestD = Infinity;
  for (const k of known) {
    const d = editDistance(word.toLowerCase(), k.toLowerCase());
    if (d < bestD) { best = k; bestD = d; }
  }
  return best !== null && bestD <= Math.max(2, Math.floor(word.length / 3)) ? best : null;
}

/** The long flags a command knows (from its help). */
export function knownFlags(name: string): string[] {
  return (HELP[name]?.flags ?? []).map(([f]) => f.split(' ')[0]).filter((f) => f.startsWith('--') && !f.includes('<'));
}
