/**
 * The command line's words in one place: the version, the default runs folder (one for every command: train writes
 * where serve, --resume, export and the extension read), each command's usage and flags, and did-you-mean for a
 * mistyped flag or command.
 */
import pkg from '../../package.json';
import { runConfigJsonSchemaText, RunConfigSchema } from '../trainer/config/runConfig';

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
    usage: 'srlora export RUN_DIR_OR_ID [--runs-dir DIR] [--checkpoint CHECKPOINT_DIR]',
    flags: [
      ['--runs-dir DIR', `where a run named by its id is (default ${DEFAULT_RUNS_DIR})`],
      ['--checkpoint DIR', 'the checkpoint to export (default: the run\'s latest)'],
    ],
  },
  serve: {
    summary: 'the dashboard in a browser for the runs of a folder, optionally starting one',
    usage: 'srlora serve [--runs-dir DIR] [--port N] [--host 127.0.0.1] [--demo | --config FILE | --resume RUN_DIR_OR_ID] [--steps N] [--trainer builtin|pytorch] [--python PATH] [--gpus N]',
    flags: [
      ['--runs-dir DIR', `the runs to show (default ${DEFAULT_RUNS_DIR}; with --resume RUN_DIR, its parent)`],
      ['--port N', 'the port (default: any free one)'],
      ['--host HOST', 'the address to listen on (default 127.0.0.1: loopback only)'],
      ['--demo', 'start the built-in demo run'],
      ['--config FILE', 'start a run of this config'],
      ['--resume RUN', 'continue a stopped, interrupted or failed run (its folder, or its id in --runs-dir) from its newest complete checkpoint, steerable from the page, by the trainer that wrote it (a PyTorch run: give --python)'],
      ['--steps N', 'steps of the run it starts'],
      ['--trainer NAME', 'which trainer runs it: builtin (default; with --resume, the run\'s own) or pytorch (srlora_torch, shipped with this package)'],
      ['--python PATH', 'the Python with torch for --trainer pytorch (default python3)'],
      ['--gpus N', 'GPUs for --trainer pytorch (default 1; more launches torchrun: DDP)'],
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
  const fields = name === 'train' ? `\n${configFieldsHelp()}` : '';
  return `usage: ${c.usage}\n${c.summary}\n\n${c.flags.map(([f, d]) => `  ${f.padEnd(w)}  ${d}`).join('\n')}\n  ${'--help'.padEnd(w)}  this help\n${fields}`;
}

interface JsonSchemaNode {
  type?: string; const?: unknown; default?: unknown; description?: string; anyOf?: JsonSchemaNode[];
  minimum?: number; maximum?: number; exclusiveMinimum?: number; exclusiveMaximum?: number; pattern?: string;
  properties?: Record<string, JsonSchemaNode>; items?: JsonSchemaNode;
}

const kebabCase = (s: string) => s.replace(/[A-Z]/g, (ch) => `-${ch.toLowerCase()}`);

/** What a field takes, from its JSON schema: "lora | pissa | srlora", "INTEGER 1..1024", "NUMBER > 0", "null | INTEGER ≥ 1". */
function valueHint(n: JsonSchemaNode): string {
  if (n.anyOf) return n.anyOf.map((o) => ('const' in o ? String(o.const) : valueHint(o))).join(' | ');
  if (n.const !== undefined) return String(n.const);
  const t = n.type === 'array' ? `${(n.items?.type ?? 'value').toUpperCase()},…` : (n.type ?? 'value').toUpperCase();
  if (n.type === 'null') return 'null';
  const lo = n.minimum !== undefined ? `≥ ${n.minimum}` : n.exclusiveMinimum !== undefined ? `> ${n.exclusiveMinimum}` : '';
  const hi = n.maximum !== undefined ? `≤ ${n.maximum}` : n.exclusiveMaximum !== undefined ? `< ${n.exclusiveMaximum}` : '';
  return [t, lo, hi].filter(Boolean).join(' ');
}

/**
 * Every run config field as a train flag, from the generated JSON schema (media/run-config.schema.json is the same
 * text): what it takes, its default and description. The task and model are listed by kind (--task.kind, then each
 * kind's fields); fields only the PyTorch trainer reads are marked, since `train` (the built-in trainer) refuses them.
 */
export function configFieldsHelp(): string {
  const schema = JSON.parse(runConfigJsonSchemaText()) as JsonSchemaNode;
  const builtIn = new Set(Object.keys(RunConfigSchema.properties));
  const rows: [string, string][] = [];
  const describe = (n: JsonSchemaNode, extra = '') => {
    const d = n.default !== undefined && typeof n.default !== 'object' ? `default ${JSON.stringify(n.default)}` : n.default === null ? 'default null' : '';
    return [valueHint(n), d, n.description, extra].filter(Boolean).join(' · ');
  };
  for (const [key, node] of Object.entries(schema.properties ?? {})) {
    if (key === '$schema') continue;
    const only = builtIn.has(key) ? '' : 'PyTorch trainer only';
    if (key === 'task' || key === 'model') {
      const kinds = node.anyOf ?? [];
      rows.push([`--${key}.kind`, `${kinds.map((k) => (k.properties?.kind ? valueHint(k.properties.kind) : '?')).join(' | ')} · default ${JSON.stringify((node.default as { kind?: string } | undefined)?.kind)}`]);
      const seen = new Map<string, string[]>();
      for (const k of kinds) {
        const kind = k.properties?.kind ? valueHint(k.properties.kind) : '?';
        for (const f of Object.keys(k.properties ?? {})) if (f !== 'kind') seen.set(f, [...(seen.get(f) ?? []), kind]);
      }
      for (const [f, ks] of seen) {
        const n = kinds.find((k) => k.properties?.[f])!.properties![f];
        rows.push([`--${key}.${f}`, describe(n, `${key} kind ${ks.join(' | ')}`)]);
      }
      continue;
    }
    rows.push([`--${kebabCase(key)}`, describe(node, only)]);
  }
  const w = Math.min(24, Math.max(...rows.map(([f]) => f.length)));
  return `config fields (each a flag over the config file's value; srlora init writes them all with comments):\n${rows.map(([f, d]) => `  ${f.padEnd(w)}  ${d}`).join('\n')}\n`;
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

/** "unknown flag --eval-evry: neither a train option nor a config field (did you mean --eval-every?)": the PyTorch
 * trainer's words too (python/srlora_torch/runconfig.py unknown_flag). */
export function unknownFlag(flag: string, known: readonly string[]): string {
  const guess = didYouMean(flag, known);
  return `unknown flag ${flag.slice(0, 80)}: neither a train option nor a config field${guess ? ` (did you mean ${guess}?)` : ''}`;
}

/** The long flags a command knows (from its help). */
export function knownFlags(name: string): string[] {
  return (HELP[name]?.flags ?? []).map(([f]) => f.split(' ')[0]).filter((f) => f.startsWith('--') && !f.includes('<'));
}
