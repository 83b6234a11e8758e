/**
 * The steering protocol: the one definition of every message that crosses a process boundary between a
 * trainer and the hub, and between the hub and its viewers. TypeScript types (`Static`), runtime validation
 * (src/protocol/validate.ts) and docs/protocol.schema.json (for the Python trainer) all come from these
 * TypeBox schemas, which are plain JSON Schema.
 *
 * Versioning: `v` is the major version in every message. Within a major version changes are additive only,
 * so receivers ignore object fields they do not know (objects are open), while closed sets — message types,
 * command kinds, the fields of `set` — are strict so that a typo is an error, not a silent no-op.
 */
import { Type as T, type Static, type TSchema } from '@sinclair/typebox';

export const PROTOCOL_MAJOR = 1;
export const PROTOCOL_MINOR = 3;

const Id = T.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9][A-Za-z0-9._:-]*$' });
const Step = T.Integer({ minimum: 0 });
const Finite = T.Number();
const NonNeg = T.Number({ minimum: 0 });
const Name = T.String({ minLength: 1, maxLength: 256 });

export const Method = T.Union([T.Literal('lora'), T.Literal('pissa'), T.Literal('srlora')]);
export type Method = Static<typeof Method>;

/**
 * A run's state as users mean it (docs/protocol.md, "States"): `finished` = every step done (the only success);
 * `stopped` = ended early by the user's stop command; `interrupted` = ended early by its surroundings (window reload,
 * Ctrl+C, SIGTERM, the extension host going away) and resumable from its checkpoint; `failed` = crashed, killed,
 * vanished, or a non-finite loss — with the reason and the step.
 */
export const RunStateName = T.Union([
  T.Literal('starting'), T.Literal('running'), T.Literal('paused'), T.Literal('stopping'),
  T.Literal('finished'), T.Literal('stopped'), T.Literal('interrupted'), T.Literal('failed'),
]);
export type RunStateName = Static<typeof RunStateName>;

/** Fields every message carries. `seq` counts per sender and connection-independently: 1, 2, 3, … with no gaps. */
function envelope<K extends string, P extends Record<string, TSchema>>(type: K, fields: P, description: string) {
  return T.Object({
    v: T.Literal(PROTOCOL_MAJOR),
    type: T.Literal(type),
    runId: Id,
    seq: T.Integer({ minimum: 1 }),
    time: T.Number({ description: 'sender clock, milliseconds since the Unix epoch' }),
    ...fields,
  }, { $id: type, description });
}

// ---------------------------------------------------------------- trainer → hub

export const FusionRule = T.Union([
  T.Object({ kind: T.Literal('ratio'), fusionRatio: T.Number({ exclusiveMinimum: 0, maximum: 1 }) }),
  T.Object({ kind: T.Literal('threshold'), fusionThreshold: NonNeg }),
]);
export type FusionRule = Static<typeof FusionRule>;

export const LayerInfo = T.Object({
  name: Name,
  shape: T.Tuple([T.Integer({ minimum: 1 }), T.Integer({ minimum: 1 })], { description: '[out, in]' }),
  r: T.Integer({ minimum: 1 }),
  rTarget: T.Integer({ minimum: 1, description: 'directions this layer can use, already capped at min(out, in)' }),
});
export type LayerInfo = Static<typeof LayerInfo>;

export const Hello = envelope('hello', {
  protocol: T.Object({ major: T.Integer({ minimum: 1 }), minor: T.Integer({ minimum: 0 }) }),
  name: T.Optional(T.String({ maxLength: 256 })),
  method: Method,
  backend: T.Object({ name: T.String({ minLength: 1 }), device: T.String() }),
  totalSteps: T.Integer({ minimum: 1 }),
  config: T.Record(T.String(), T.Unknown(), { description: 'the full, validated run config' }),
  layers: T.Array(LayerInfo, { maxItems: 4096 }),
  srlora: T.Optional(T.Object({
    schedule: T.Array(T.Integer({ minimum: 1 }), { maxItems: 100000, description: 'steps after which a scheduled recomposition runs' }),
    minSlotAge: T.Integer({ minimum: 0, description: 'steps a slot must have trained before it may fuse' }),
    rule: FusionRule,
    reinitOptimizer: T.Optional(T.Union([T.Literal('zero-moments'), T.Literal('restart'), T.Literal('keep')], { description: 'the fused slots\' Adam state after a recomposition (an experiment setting; absent from older trainers: zero-moments)' })),
    fusionSelect: T.Optional(T.Union([T.Literal('least-important'), T.Literal('random'), T.Literal('most-important'), T.Literal('oldest')], { description: 'which eligible pairs fuse (least-important = the paper; the others are ablations; absent from older trainers: least-important)' })),
  }, { description: 'what the trainer decided (srlora runs): viewers show it and never recompute it' })),
  worldSize: T.Optional(T.Integer({ minimum: 1, description: 'data-parallel ranks training this run (1 when absent)' })),
  launch: T.Optional(T.Object({
    python: T.Optional(T.String({ minLength: 1, maxLength: 4096, description: 'the PyTorch trainer: the interpreter that ran it, absolute' })),
    pythonPath: T.Optional(T.String({ minLength: 1, maxLength: 16384, description: 'the PYTHONPATH it needs (absolute entries, joined by the platform\'s separator); absent when srlora_torch is installed in that interpreter' })),
    node: T.Optional(T.String({ minLength: 1, maxLength: 4096, description: 'the built-in trainer: the Node.js (or Electron) executable that ran its command line, absolute' })),
    cli: T.Optional(T.String({ minLength: 1, maxLength: 4096, description: 'the built-in trainer: its command line\'s script (dist/cli.js), absolute' })),
    electronRunAsNode: T.Optional(T.Literal(true, { description: 'node is an Electron binary (VS Code\'s) run as Node.js: ELECTRON_RUN_AS_NODE=1' })),
  }, { description: 'how the trainer was started, so that every continue line (src/viewmodel/continueCommand.ts) runs as printed; absent from older trainers (a bare python / srlora then)' })),
}, 'First message of a run (presented again on every reconnection; a resumed run keeps its hello and sends rewind).');

export const MetricsRow = T.Object({
  step: T.Integer({ minimum: 1 }),
  loss: Finite,
  lr: NonNeg,
  examplesPerSec: NonNeg,
  nonFiniteGrad: T.Optional(T.Literal(true, { description: 'this step\'s gradients were not finite: the update and the importance EMAs skipped it' })),
  scalars: T.Optional(T.Record(T.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_./-]+$' }), Finite, {
    maxProperties: 64, description: 'named per-step scalars (grad norm, memory, a user trainer\'s own), units in the name',
  })),
});
export type MetricsRow = Static<typeof MetricsRow>;

export const Metrics = envelope('metrics', {
  rows: T.Array(MetricsRow, { minItems: 1, maxItems: 10000 }),
}, 'Per-step training metrics, batched.');

export const LayerImportance = T.Object({
  name: Name,
  S: T.Array(NonNeg, { description: 'pair score S_k per slot' }),
  sHat: T.Array(NonNeg, { description: 'normalised pair score ŝ_k = S_k / mean_j S_j' }),
  age: T.Array(T.Integer({ minimum: 0 })),
  direction: T.Array(T.Integer({ minimum: 0 }), { description: 'direction index held by each slot' }),
  p: T.Integer({ minimum: 0 }),
  rTarget: T.Integer({ minimum: 1 }),
  // 1.2: the per-slot step-size boost (docs/ALGORITHM.md, "What the trainers measure").
  stepBoost: T.Optional(T.Array(NonNeg, {
    description: 'per slot: the norm of the optimiser\'s last update of the pair (Adam: lr·m̂/(√v̂+ε) over its row of A and column of B) divided by the mean of the layer\'s slots (1 = average; all 0 before the first update; absent for SGD)',
  })),
});
export type LayerImportance = Static<typeof LayerImportance>;

export const Importance = envelope('importance', {
  step: Step,
  layers: T.Array(LayerImportance, { maxItems: 4096 }),
}, 'Per-layer, per-slot importance snapshot (every importanceEvery steps, at most ~10/s).');



export const LayerRecomposition = T.Object({
  name: Name,
  slots: T.Array(T.Integer({ minimum: 0 }), { description: 'selected slots, in selection order' }),
  scores: T.Array(NonNeg, { description: 'S_k of the selected slots' }),
  oldDirections: T.Array(T.Integer({ minimum: 0 })),
  newDirections: T.Array(T.Integer({ minimum: 0 })),
  exhausted: T.Boolean({ description: 'no direction was left: a no-op' }),
  deltaNorm: NonNeg, // ‖s·B_K A_K‖_F of the fused part
  preservationError: NonNeg,
  p: T.Integer({ minimum: 0 }),
  // 1.2: how old each fused pair was (aligned with slots); oldDirections is its singular-direction index.
  ages: T.Optional(T.Array(T.Integer({ minimum: 0 }), { description: 'age in steps of each selected slot when it fused (steps since its last (re)initialisation), aligned with slots' })),
});
export type LayerRecomposition = Static<typeof LayerRecomposition>;

export const Recomposition = envelope('recomposition', {
  step: Step,
  trigger: T.Union([T.Literal('schedule'), T.Literal('forced')]),
  commandId: T.Optional(Id),
  rule: FusionRule,
  layers: T.Array(LayerRecomposition, { maxItems: 4096 }),
  outputChange: T.Union([NonNeg, T.Null()], { description: 'relative model-output change on the probe batch' }),
}, 'One recomposition of all or some layers.');

export const LayerDeltaRank = T.Object({
  name: Name,
  effectiveRank: NonNeg, // exp(entropy of σ_i / Σσ) of ΔW (docs/ALGORITHM.md); 0 when ΔW = 0
  norm: NonNeg, // ‖ΔW‖_F
});
export type LayerDeltaRank = Static<typeof LayerDeltaRank>;

export const DeltaRank = envelope('deltaRank', {
  step: Step,
  layers: T.Array(LayerDeltaRank, { maxItems: 4096 }),
}, 'Per layer, the effective rank and norm of the accumulated update ΔW = W + s·BA − W0 (1.2; sent with every eval, every method).');

export const Eval = envelope('eval', {
  step: Step,
  loss: Finite,
  metrics: T.Record(T.String(), Finite, { description: 'task metrics, e.g. accuracy' }),
}, 'Evaluation on held-out data.');

export const Evaluating = envelope('evaluating', {
  step: Step,
}, 'An evaluation at `step` has begun (1.3; a real model\'s eval set can take minutes): views show it under way until the eval of that step, a rewind, or the run ending.');

export const ExitInfo = T.Object({
  code: T.Union([T.Integer(), T.Null()]),
  signal: T.Union([T.String({ maxLength: 32 }), T.Null()]),
  stderrTail: T.Array(T.String({ maxLength: 4096 }), { maxItems: 20 }),
});
export type ExitInfo = Static<typeof ExitInfo>;

export const State = envelope('state', {
  state: RunStateName,
  step: Step,
  reason: T.Optional(T.String({ maxLength: 4096 })),
  origin: T.Optional(T.Union([T.Literal('trainer'), T.Literal('supervisor')], {
    description: 'supervisor: written by the process that launched or watches the trainer, after the trainer is gone (what the trainer could not say)',
  })),
  exit: T.Optional(ExitInfo),
}, 'The run changed state.');

export const Rewind = envelope('rewind', {
  step: Step,
  checkpoint: T.String({ minLength: 1 }),
  incarnation: T.String({ minLength: 1, maxLength: 64, description: 'random id of the trainer process that continues the run' }),
}, 'A resumed run continues from `step` (its checkpoint): every value a view holds for a later step is replaced by what follows.');

export const Settings = T.Object({
  fusionThreshold: T.Union([NonNeg, T.Null()]),
  fusionRatio: T.Number({ exclusiveMinimum: 0, maximum: 1 }),
  learningRate: T.Number({ exclusiveMinimum: 0 }),
  importanceEvery: T.Integer({ minimum: 1 }),
  evalEvery: T.Integer({ minimum: 1 }),
  minSlotAge: T.Optional(T.Integer({ minimum: 0 })),
});
export type Settings = Static<typeof Settings>;

export const Ack = envelope('ack', {
  commandId: Id,
  status: T.Union([T.Literal('received'), T.Literal('applied'), T.Literal('rejected')]),
  step: T.Union([Step, T.Null()]),
  reason: T.Optional(T.String({ maxLength: 4096 })),
  settings: T.Optional(Settings),
}, 'A command was received, applied after step `step`, or rejected with a reason. Applied `set` commands carry the settings now in force.');

export const Checkpoint = envelope('checkpoint', {
  step: Step,
  path: T.String({ minLength: 1 }),
}, 'A checkpoint was written (atomically).');

export const Log = envelope('log', {
  level: T.Union([T.Literal('debug'), T.Literal('info'), T.Literal('warn'), T.Literal('error')]),
  text: T.String({ maxLength: 65536 }),
}, 'A log line.');

export const TrainerMessageSchemas = [Hello, Metrics, Importance, Recomposition, Eval, State, Ack, Checkpoint, Log, Rewind, DeltaRank, Evaluating] as const;
export type Hello = Static<typeof Hello>;
export type Metrics = Static<typeof Metrics>;
export type Importance = Static<typeof Importance>;
export type Recomposition = Static<typeof Recomposition>;
export type Eval = Static<typeof Eval>;
export type State = Static<typeof State>;
export type Ack = Static<typeof Ack>;
export type Checkpoint = Static<typeof Checkpoint>;
export type Log = Static<typeof Log>;
export type Rewind = Static<typeof Rewind>;
export type DeltaRank = Static<typeof DeltaRank>;
export type Evaluating = Static<typeof Evaluating>;
export type TrainerMessage = Hello | Metrics | Importance | Recomposition | Eval | State | Ack | Checkpoint | Log | Rewind | DeltaRank | Evaluating;
export type TrainerMessageType = TrainerMessage['type'];

// ---------------------------------------------------------------- hub → trainer

export const SetCommand = T.Object({
  kind: T.Literal('set'),
  fusionThreshold: T.Optional(T.Union([NonNeg, T.Null()], { description: 'τ; null switches the threshold rule off' })),
  fusionRatio: T.Optional(T.Number({ exclusiveMinimum: 0, maximum: 1 })),
  learningRate: T.Optional(T.Number({ exclusiveMinimum: 0 })),
  importanceEvery: T.Optional(T.Integer({ minimum: 1 })),
  evalEvery: T.Optional(T.Integer({ minimum: 1 })),
}, { additionalProperties: false, minProperties: 2 });

export const CommandBody = T.Union([
  T.Object({ kind: T.Literal('pause') }, { additionalProperties: false }),
  T.Object({ kind: T.Literal('resume') }, { additionalProperties: false }),
  SetCommand,
  T.Object({
    kind: T.Literal('recompose'),
    layers: T.Optional(T.Array(Name, { minItems: 1, maxItems: 4096, description: 'omit for all layers' })),
  }, { additionalProperties: false }),
  T.Object({ kind: T.Literal('checkpoint') }, { additionalProperties: false }),
  T.Object({ kind: T.Literal('stop') }, { additionalProperties: false }),
], { $id: 'CommandBody' });
export type CommandBody = Static<typeof CommandBody>;
export type CommandKind = CommandBody['kind'];

export const Welcome = envelope('welcome', {
  protocol: T.Object({ major: T.Integer({ minimum: 1 }), minor: T.Integer({ minimum: 0 }) }),
  received: T.Integer({ minimum: 0, description: 'highest trainer seq the hub has stored; resend after it' }),
}, 'The hub accepted a hello.');

export const Command = envelope('command', {
  id: Id,
  command: CommandBody,
}, 'A steering command for the trainer, applied at the next step boundary and acknowledged.');

export const Received = envelope('received', {
  received: T.Integer({ minimum: 0 }),
}, 'The highest trainer seq the hub holds (in the run\'s events.jsonl or received); the trainer may forget what is at or below it.');

export const ErrorMessage = envelope('error', {
  code: T.Union([
    T.Literal('invalid-json'), T.Literal('invalid-message'), T.Literal('unsupported-version'),
    T.Literal('out-of-order'), T.Literal('not-hello'), T.Literal('wrong-run'), T.Literal('rate-limited'),
    T.Literal('unknown-run'), T.Literal('too-many-commands'),
    // 1.1 additions: content for a seq that differs from the run's record; a second trainer connection for a live one.
    T.Literal('divergent'), T.Literal('already-connected'),
  ]),
  message: T.String(),
  refSeq: T.Optional(T.Integer({ minimum: 1 })),
}, 'The hub refused one message; the connection goes on unless it keeps happening.');

export const HubMessageSchemas = [Welcome, Command, Received, ErrorMessage] as const;
export type Welcome = Static<typeof Welcome>;
export type Command = Static<typeof Command>;
export type Received = Static<typeof Received>;
export type ErrorMessage = Static<typeof ErrorMessage>;
export type HubMessage = Welcome | Command | Received | ErrorMessage;
/** A message without the envelope that the sender fills in (v, runId, seq, time). */
export type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
export type ErrorCode = ErrorMessage['code'];

// ---------------------------------------------------------------- viewer ↔ hub (dashboards, the extension's views)

export const RunSummary = T.Object({
  runId: Id,
  name: T.Optional(T.String()),
  method: T.Optional(Method),
  state: RunStateName,
  step: Step,
  totalSteps: T.Union([T.Integer({ minimum: 1 }), T.Null()]),
  connected: T.Boolean(),
  // 1.2: whether this hub can steer the run, and why not (a run started from a terminal, or owned by another
  // supervisor, is followed read-only: its trainer is connected elsewhere or nowhere). Views disable steering then.
  // Derived by the one rule (viewmodel steerControl) from the record's state, `connected` and `readOnly`; kept for
  // viewers that read it, while a page derives it from its own fold of the record so its controls follow its state.
  control: T.Optional(T.Object({ canSteer: T.Boolean(), reason: T.Optional(T.String({ maxLength: 300 })) })),
  // 1.2 (additive): why this hub's supervisor follows the run read-only (a fact, unlike `control`), absent when it does not say.
  readOnly: T.Optional(T.String({ maxLength: 300 })),
  // 1.3 (additive; it came after 1.2 was out): the run's folder, absolute, so that a page's hint names the real command that continues it from a
  // terminal (never a `<runs folder>/…` placeholder). The hub is loopback-only and token-gated; the path is no secret.
  dir: T.Optional(T.String({ maxLength: 4096 })),
});
export type RunSummary = Static<typeof RunSummary>;
export type RunControl = NonNullable<RunSummary['control']>;

const ViewerEnvelope = <K extends string, P extends Record<string, TSchema>>(type: K, fields: P, description: string) =>
  T.Object({ v: T.Literal(PROTOCOL_MAJOR), type: T.Literal(type), ...fields }, { $id: `viewer-${type}`, description });

const TrainerMessageRef = T.Union(TrainerMessageSchemas.map((s) => T.Ref(s.$id as string)));

export const ViewerSubscribe = ViewerEnvelope('subscribe', { runId: Id }, 'Ask for a run: a snapshot follows, then deltas.');
export const ViewerCommand = ViewerEnvelope('command', { requestId: Id, runId: Id, command: T.Ref('CommandBody') }, 'Send a steering command to a run.');
export const ViewerRuns = ViewerEnvelope('runs', { runs: T.Array(RunSummary) }, 'The runs the hub knows.');
export const ViewerSnapshot = ViewerEnvelope('snapshot', {
  runId: Id, events: T.Array(TrainerMessageRef), truncated: T.Boolean(),
  // 1.1: a long run's snapshot comes in parts. `more`: further parts follow; `continued`: this part appends to the
  // previous one instead of replacing what the viewer holds. A short run's snapshot is one part with neither.
  more: T.Optional(T.Boolean()), continued: T.Optional(T.Boolean()),
}, 'The run\'s record, in seq order (importance thinned out when truncated), in one or more parts.');
export const ViewerEvent = ViewerEnvelope('event', { runId: Id, event: TrainerMessageRef }, 'One new trainer message.');
export const ViewerCommandResult = ViewerEnvelope('commandResult', {
  requestId: Id, commandId: T.Optional(Id), error: T.Optional(T.String()),
}, 'The hub forwarded (commandId) or refused (error) a viewer command.');

// The dashboard page speaks this same protocol to its host — the hub's /viewer socket for the standalone page,
// the extension's webview panel in VS Code (src/extension/dashboardPanel.ts) — plus saving a file through the host,
// since `<a download>` silently fails inside a webview.
export const ViewerUnsubscribe = ViewerEnvelope('unsubscribe', { runId: Id }, 'Stop receiving a run\'s deltas.');
export const ViewerSave = ViewerEnvelope('save', {
  requestId: Id,
  fileName: T.String({ minLength: 1, maxLength: 200, pattern: '^[^/\\\\]+$' }),
  encoding: T.Union([T.Literal('utf8'), T.Literal('base64')]),
  data: T.String({ maxLength: 32 * 1024 * 1024 }),
}, 'Save an export (CSV text, PNG as base64) through the host: a save dialog in VS Code.');
export const ViewerSaved = ViewerEnvelope('saved', {
  requestId: Id, path: T.Optional(T.String()), error: T.Optional(T.String()),
}, 'Where an export was saved, or why not (cancelled is an error of "cancelled").');
export const ViewerFocus = ViewerEnvelope('focus', {
  runIds: T.Array(Id, { minItems: 1, maxItems: 16 }),
}, 'The host asks the page to show these runs (one = that run; several = compare).');

export const ViewerRemoved = ViewerEnvelope('removed', {
  runId: Id, reason: T.String({ maxLength: 300 }),
}, 'The run is no longer served (its folder or events.jsonl was deleted): sent once to its subscribers, who drop it.');

export type ViewerSubscribe = Static<typeof ViewerSubscribe>;
export type ViewerCommand = { v: 1; type: 'command'; requestId: string; runId: string; command: CommandBody };
export type ViewerToHub = ViewerSubscribe | ViewerCommand | Static<typeof ViewerUnsubscribe> | Static<typeof ViewerSave>;
export type HubToViewer =
  | Static<typeof ViewerRuns>
  | { v: 1; type: 'snapshot'; runId: string; events: TrainerMessage[]; truncated: boolean; more?: boolean; continued?: boolean }
  | { v: 1; type: 'event'; runId: string; event: TrainerMessage }
  | Static<typeof ViewerCommandResult>
  | Static<typeof ViewerSaved>
  | Static<typeof ViewerFocus>
  | Static<typeof ViewerRemoved>;
export const ViewerToHubSchemas = [ViewerSubscribe, ViewerCommand, ViewerUnsubscribe, ViewerSave] as const;
export const HubToViewerSchemas = [ViewerRuns, ViewerSnapshot, ViewerEvent, ViewerCommandResult, ViewerSaved, ViewerFocus, ViewerRemoved] as const;
