/**
 * Runs a golden case (../shared/VECTORS.md) through the real engine: the matrix-regression task, the case's
 * optimiser, schedule and commands, and returns the answer in the case's own format.
 */
import * as tf from '@tensorflow/tfjs';
import { SRLoRAEngine, type RecompositionResult } from '../engine/engine';
import type { CaseAnswer, CaseEvent, CaseFinalLayer, ConformanceCase } from './caseFormat';

const toRows = (data: Float32Array | Float64Array, rows: number, cols: number): number[][] =>
  Array.from({ length: rows }, (_, i) => Array.from(data.subarray(i * cols, (i + 1) * cols)));

function eventsOf(rec: RecompositionResult): CaseEvent[] {
  return rec.layers.map((l) => ({
    afterStep: rec.step, trigger: rec.trigger, layer: l.layer, slots: l.slots, oldDirections: l.oldDirections,
    newDirections: l.newDirections, scores: l.scores, exhausted: l.exhausted, preservationError: l.preservationError,
  }));
}

export function runCase(c: ConformanceCase): CaseAnswer {
  const cfg = c.config;
  const specs = c.layers.map((l) => ({ name: l.name, out: l.W0.length, in: l.W0[0].length, W0: Float64Array.from(l.W0.flat()) }));
  const engine = new SRLoRAEngine(specs, {
    method: 'srlora', r: cfg.r, rTarget: cfg.rTarget, alpha: cfg.alpha, beta1: cfg.beta1, beta2: cfg.beta2,
    fusionRatio: cfg.fusionRatio, fusionThreshold: cfg.fusionThreshold, minSlotAge: cfg.minSlotAge ?? null,
    totalSteps: cfg.totalSteps, optimizer: cfg.optimizer, trackImportance: true,
  });
  const targets = c.layers.map((l) => tf.tensor2d(Float32Array.from(l.T.flat()), [l.T.length, l.T[0].length]));
  try {
    // loss = Σ_layers 0.5 · mean((W + s·B·A − T)²)
    const lossFn = () => tf.addN(engine.layers.map((l, i) => tf.mul(tf.mean(tf.square(tf.sub(l.effectiveWeight(), targets[i]))), 0.5))) as tf.Scalar;
    const losses: number[] = [];
    const events: CaseEvent[] = [];
    const commands = c.commands ?? [];
    for (let step = 1; step <= cfg.totalSteps; step++) {
      const { loss, recomposition } = engine.trainStep(lossFn);
      losses.push(loss);
      if (recomposition) events.push(...eventsOf(recomposition));
      for (const cmd of commands) {
        if (cmd.afterStep !== step) continue;
        if (cmd.type === 'recompose') events.push(...eventsOf(engine.recompose('forced', cmd.layers)));
        else engine.set({ fusionThreshold: cmd.fusionThreshold, fusionRatio: cmd.fusionRatio });
      }
    }
    const importance = engine.importance();
    const final: CaseFinalLayer[] = engine.layers.map((l, i) => {
      const [W, delta, A, B] = tf.tidy(() => [l.W, tf.mul(tf.matMul(l.B, l.A), l.s), l.A, l.B].map((t) => t.dataSync() as Float32Array));
      return {
        layer: l.name, W: toRows(W, l.out, l.in), delta: toRows(delta, l.out, l.in), A: toRows(A, l.r, l.in), B: toRows(B, l.out, l.r),
        p: l.p, directions: Array.from(l.directions), age: Array.from(l.age), scores: importance[i].S, normalizedScores: importance[i].sHat,
      };
    });
    return { scheduledSteps: engine.schedule.steps, losses, events, final };
  } finally {
    tf.dispose(targets);
    engine.dispose();
  }
}
