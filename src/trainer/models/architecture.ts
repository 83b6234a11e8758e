/**
 * A model architecture: its parameters' shapes and a forward pass written against two accessors — `linear(name)`
 * for every linear layer and `param(name)` for everything else. Pretraining plugs in trainable layers; fine-tuning
 * plugs in the engine's adapted layers for the targets and frozen ones for the rest. Linear weights are stored as
 * `<name>.weight` (out × in, PyTorch's layout) and `<name>.bias`.
 */
import type * as tf from '@tensorflow/tfjs';

export interface LinearLayer { forward(x: tf.Tensor2D): tf.Tensor2D }

export interface Architecture {
  kind: 'mlp' | 'vit';
  /** Linear layers in order, with [out, in]. */
  linears: { name: string; out: number; in: number }[];
  /** Every other parameter. */
  params: Record<string, number[]>;
  inputDim: number;
  classes: number;
  /** x: batch × inputDim → logits batch × classes. */
  forward(x: tf.Tensor2D, linear: (name: string) => LinearLayer, param: (name: string) => tf.Tensor): tf.Tensor2D;
  /** Default adaptation targets (PEFT-style name patterns). */
  defaultTargets: string[];
}

/** PEFT's `target_modules` rule: a name matches a pattern when it equals it or ends with "." + pattern; `*` globs. */
export function matchesTarget(name: string, patterns: readonly string[]): boolean {
  return patterns.some((p) => {
    if (p.includes('*')) {
      const re = new RegExp('^(?:.*\\.)?' + p.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('[^]*') + '$');
      return re.test(name);
    }
    return name === p || name.endsWith('.' + p);
  });
}
