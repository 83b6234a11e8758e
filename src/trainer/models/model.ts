/**
 * Builds runnable models from an architecture and a weight map: a fully trainable one for pretraining, and the
 * fine-tuning model, where the target linears are the engine's adapted layers and everything else is frozen.
 */
import * as tf from '@tensorflow/tfjs';
import type { Architecture, LinearLayer } from './architecture';
import { matchesTarget } from './architecture';
import type { TensorMap } from '../../runfolder/safetensors';
import { SRLoRAEngine, type EngineConfig } from '../engine/engine';
import type { Rng } from '../rng';
import { mlpArchitecture } from './mlp';
import { vitArchitecture } from './vit';

export type ModelKind = 'mlp' | 'vit';

/** The architecture of `kind`. An MLP takes its layer sizes from its weights when given (fc0.weight, fc1.weight, …,
 * out × in), so a user's own MLP of any input size, widths and classes fits — tabular data of any feature count. */
export function architectureFor(kind: ModelKind, weights?: TensorMap): Architecture {
  if (kind === 'vit') return vitArchitecture();
  if (!weights) return mlpArchitecture();
  const dims: number[] = [];
  for (let i = 0; weights[`fc${i}.weight`]; i++) {
    const shape = weights[`fc${i}.weight`].shape;
    if (shape.length !== 2) throw new Error(`base model tensor fc${i}.weight has shape [${shape}], expected [out, in]`);
    if (i === 0) dims.push(shape[1]);
    else if (shape[1] !== dims[i]) throw new Error(`base model tensor fc${i}.weight takes ${shape[1]} inputs but fc${i - 1} gives ${dims[i]}`);
    dims.push(shape[0]);
  }
  if (dims.length < 2) throw new Error('an mlp base model needs linear layers fc0, fc1, … (fc0.weight: hidden × features, PyTorch layout)');
  return mlpArchitecture(dims);
}

class PlainLinear implements LinearLayer {
  constructor(private readonly W: tf.Tensor, private readonly b: tf.Tensor | null) {}
  forward(x: tf.Tensor2D): tf.Tensor2D {
    const y = tf.matMul(x, this.W as tf.Tensor2D, false, true);
    return (this.b ? tf.add(y, this.b) : y) as tf.Tensor2D;
  }
}

/** PyTorch-like initialisation: linear U(±1/√in) for weights and biases, LayerNorm 1/0, tokens N(0, 0.02²). */
export function initWeights(arch: Architecture, rng: Rng): TensorMap {
  const w: TensorMap = {};
  for (const l of arch.linears) {
    const bound = 1 / Math.sqrt(l.in);
    w[`${l.name}.weight`] = { shape: [l.out, l.in], data: Float32Array.from({ length: l.out * l.in }, () => rng.uniform(-bound, bound)) };
    w[`${l.name}.bias`] = { shape: [l.out], data: Float32Array.from({ length: l.out }, () => rng.uniform(-bound, bound)) };
  }
  for (const [name, shape] of Object.entries(arch.params)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = name.endsWith('.weight') ? new Float32Array(n).fill(1)
      : name.endsWith('.bias') ? new Float32Array(n)
        : Float32Array.from({ length: n }, () => rng.normal() * 0.02);
    w[name] = { shape, data };
  }
  return w;
}

function requireWeight(weights: TensorMap, name: string, shape: number[]): Float32Array {
  const t = weights[name];
  if (!t) throw new Error(`base model has no tensor ${name}`);
  if (t.shape.join('x') !== shape.join('x')) throw new Error(`base model tensor ${name} has shape [${t.shape}], expected [${shape}]`);
  return t.data;
}

/** Every parameter as a trainable variable (pretraining). */
export class TrainableModel {
  readonly vars = new Map<string, tf.Variable>();
  constructor(readonly arch: Architecture, weights: TensorMap) {
    for (const [name, t] of Object.entries(weights)) this.vars.set(name, tf.variable(tf.tensor(t.data, t.shape), true));
  }
  forward(x: tf.Tensor2D): tf.Tensor2D {
    return this.arch.forward(x, (n) => new PlainLinear(this.vars.get(`${n}.weight`)!, this.vars.get(`${n}.bias`) ?? null), (n) => this.vars.get(n)!);
  }
  weights(): TensorMap {
    const out: TensorMap = {};
    for (const [name, v] of this.vars) out[name] = { shape: v.shape, data: v.dataSync() as Float32Array };
    return out;
  }
  dispose(): void { for (const v of this.vars.values()) v.dispose(); }
}

/** The fine-tuning model: adapted targets (SRLoRA engine), everything else frozen. */
export class FineTuneModel {
  readonly engine: SRLoRAEngine;
  readonly targets: string[];
  private readonly frozen = new Map<string, tf.Tensor>();
  private readonly linears = new Map<string, LinearLayer>();

  constructor(readonly arch: Architecture, weights: TensorMap, targetPatterns: readonly string[], config: EngineConfig) {
    this.targets = arch.linears.filter((l) => matchesTarget(l.name, targetPatterns)).map((l) => l.name);
    if (this.targets.length === 0) {
      throw new Error(`targets ${JSON.stringify(targetPatterns)} match no layer of the ${arch.kind} model (layers: ${arch.linears.map((l) => l.name).join(', ')})`);
    }
    const specs = arch.linears.filter((l) => this.targets.includes(l.name)).map((l) => ({
      name: l.name, out: l.out, in: l.in,
      W0: requireWeight(weights, `${l.name}.weight`, [l.out, l.in]), bias: requireWeight(weights, `${l.name}.bias`, [l.out]),
    }));
    this.engine = new SRLoRAEngine(specs, config);
    for (const l of this.engine.layers) this.linears.set(l.name, l);
    for (const l of arch.linears) {
      if (this.linears.has(l.name)) continue;
      const W = tf.tensor2d(requireWeight(weights, `${l.name}.weight`, [l.out, l.in]), [l.out, l.in]);
      const b = tf.tensor1d(requireWeight(weights, `${l.name}.bias`, [l.out]));
      this.frozen.set(`${l.name}.weight`, W).set(`${l.name}.bias`, b);
      this.linears.set(l.name, new PlainLinear(W, b));
    }
    for (const [name, shape] of Object.entries(arch.params)) this.frozen.set(name, tf.tensor(requireWeight(weights, name, shape), shape));
  }

  forward(x: tf.Tensor2D): tf.Tensor2D {
    return this.arch.forward(x, (n) => this.linears.get(n)!, (n) => this.frozen.get(n)!);
  }

  /** Merged weights: W + s·B·A for adapted layers, the frozen tensors for the rest. */
  mergedWeights(): TensorMap {
    const out: TensorMap = {};
    for (const [name, t] of this.frozen) out[name] = { shape: t.shape, data: t.dataSync() as Float32Array };
    for (const l of this.engine.layers) {
      out[`${l.name}.weight`] = { shape: [l.out, l.in], data: tf.tidy(() => l.effectiveWeight().dataSync() as Float32Array) };
      if (l.bias) out[`${l.name}.bias`] = { shape: [l.out], data: l.bias.dataSync() as Float32Array };
    }
    return out;
  }

  dispose(): void {
    this.engine.dispose();
    for (const t of this.frozen.values()) t.dispose();
  }
}

/**
 * Mean softmax cross-entropy of a batch (logits: batch × classes). Its gradient is softmax − onehot computed without
 * cancellation: the true class's entry as −Σ_{j≠y} p_j rather than p_y − 1, which in float32 is rounding noise for a
 * confidently classified example (p_y = 1 − 1e-8 rounds to 1 or 1 − 6e-8). That noise, on weights only such examples
 * reach, is what Adam's per-element normalisation turns into full-size, implementation-dependent steps (issue 16's
 * per-step parity: it made the two trainers part past 1e-4 by step ~220). python/srlora_torch/tasks.py
 * (accurate_cross_entropy) computes the same.
 */
export function crossEntropy(logits: tf.Tensor2D, labels: Int32Array, classes: number): tf.Scalar {
  return tf.tidy(() => {
    // onehot is an input (and saved) so that it outlives this tidy: the gradient runs after it, in variableGrads
    const ce = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const z = args[0] as tf.Tensor2D, onehot = args[1] as tf.Tensor2D, save = args[2] as tf.GradSaveFunc;
      save([z, onehot]);
      return {
        value: tf.losses.softmaxCrossEntropy(onehot, z) as tf.Scalar,
        gradFunc: (dy: tf.Scalar, saved: tf.Tensor[]) => {
          const [x, y] = saved;
          const e = tf.exp(tf.sub(x, tf.max(x, 1, true)));
          const others = tf.sub(1, y);
          const S = tf.sum(e, 1, true);
          const rest = tf.sum(tf.mul(e, others), 1, true); // Σ_{j≠y} e_j: no cancellation
          const delta = tf.sub(tf.mul(tf.div(e, S), others), tf.mul(y, tf.div(rest, S)));
          return [tf.mul(delta, tf.div(dy, x.shape[0] as number)), tf.zerosLike(y)];
        },
      };
    });
    return ce(logits, tf.oneHot(tf.tensor1d(labels, 'int32'), classes).toFloat());
  });
}

/** Loss and accuracy over a dataset, in batches. */
export function evaluate(forward: (x: tf.Tensor2D) => tf.Tensor2D, features: Float32Array, labels: Int32Array, dim: number, classes: number, batch = 500): { loss: number; accuracy: number } {
  let lossSum = 0, correct = 0;
  const n = labels.length;
  for (let i = 0; i < n; i += batch) {
    const m = Math.min(batch, n - i);
    const [l, c] = tf.tidy(() => {
      const x = tf.tensor2d(features.subarray(i * dim, (i + m) * dim), [m, dim]);
      const y = labels.subarray(i, i + m);
      const logits = forward(x);
      const loss = crossEntropy(logits, y, classes).dataSync()[0] * m;
      const pred = tf.argMax(logits, 1).dataSync();
      let ok = 0;
      for (let j = 0; j < m; j++) if (pred[j] === y[j]) ok++;
      return [loss, ok];
    });
    lossSum += l;
    correct += c;
  }
  return { loss: lossSum / n, accuracy: correct / n };
}
