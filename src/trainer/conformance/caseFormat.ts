/** The golden-case format of ../shared/VECTORS.md (matrix regression), checked at the boundary. */
import { Type as T, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';

const Matrix = T.Array(T.Array(T.Number(), { minItems: 1 }), { minItems: 1 });
const Vector = T.Array(T.Number());
const IntVector = T.Array(T.Integer());

export const CaseConfig = T.Object({
  r: T.Integer({ minimum: 1 }),
  rTarget: T.Integer({ minimum: 1 }),
  alpha: T.Number(),
  beta1: T.Number({ minimum: 0, exclusiveMaximum: 1 }),
  beta2: T.Number({ minimum: 0, exclusiveMaximum: 1 }),
  fusionRatio: T.Number({ exclusiveMinimum: 0, maximum: 1 }),
  fusionThreshold: T.Union([T.Number({ minimum: 0 }), T.Null()]),
  minSlotAge: T.Optional(T.Union([T.Integer({ minimum: 0 }), T.Null()])),
  totalSteps: T.Integer({ minimum: 1 }),
  optimizer: T.Union([
    T.Object({ type: T.Literal('sgd'), lr: T.Number() }),
    T.Object({ type: T.Literal('adam'), lr: T.Number(), beta1: T.Number(), beta2: T.Number(), eps: T.Number() }),
  ]),
});

export const CaseCommand = T.Union([
  T.Object({ afterStep: T.Integer({ minimum: 1 }), type: T.Literal('recompose'), layers: T.Optional(T.Array(T.String())) }),
  T.Object({
    afterStep: T.Integer({ minimum: 1 }), type: T.Literal('set'),
    fusionThreshold: T.Optional(T.Union([T.Number({ minimum: 0 }), T.Null()])),
    fusionRatio: T.Optional(T.Number({ exclusiveMinimum: 0, maximum: 1 })),
  }),
]);

export const CaseEvent = T.Object({
  afterStep: T.Integer(), trigger: T.Union([T.Literal('schedule'), T.Literal('forced')]), layer: T.String(),
  slots: IntVector, oldDirections: IntVector, newDirections: IntVector, scores: Vector, exhausted: T.Boolean(),
  preservationError: T.Number(),
});

export const CaseFinalLayer = T.Object({
  layer: T.String(), W: Matrix, delta: Matrix, A: Matrix, B: Matrix, p: T.Integer(), directions: IntVector,
  age: IntVector, scores: Vector, normalizedScores: Vector,
});

export const CaseAnswer = T.Object({
  scheduledSteps: IntVector,
  losses: Vector,
  events: T.Array(CaseEvent),
  final: T.Array(CaseFinalLayer),
});

export const ConformanceCase = T.Object({
  name: T.Optional(T.String()),
  config: CaseConfig,
  layers: T.Array(T.Object({ name: T.String({ minLength: 1 }), W0: Matrix, T: Matrix }), { minItems: 1 }),
  commands: T.Optional(T.Array(CaseCommand)),
  tolerance: T.Optional(T.Object({ rtol: T.Number(), atol: T.Number(), preservation: T.Number() })),
  expected: T.Optional(CaseAnswer),
});

export type ConformanceCase = Static<typeof ConformanceCase>;
export type CaseAnswer = Static<typeof CaseAnswer>;
export type CaseEvent = Static<typeof CaseEvent>;
export type CaseFinalLayer = Static<typeof CaseFinalLayer>;

const check = TypeCompiler.Compile(ConformanceCase);

export function parseCase(value: unknown, source = 'case'): ConformanceCase {
  if (!check.Check(value)) {
    const e = check.Errors(value).First();
    throw new Error(`${source}: not a conformance case: ${e ? `${e.path || '(root)'}: ${e.message}` : 'invalid'}`);
  }
  for (const l of value.layers) {
    const cols = l.W0[0].length;
    if (l.W0.some((row) => row.length !== cols)) throw new Error(`${source}: layer ${l.name}: W0 rows differ in length`);
    if (l.T.length !== l.W0.length || l.T.some((row) => row.length !== cols)) throw new Error(`${source}: layer ${l.name}: T must have W0's shape`);
  }
  return value;
}
