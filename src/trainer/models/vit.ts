/**
 * The built-in tiny vision transformer: 28×28 digits cut into 16 patches of 7×7, a linear patch embedding, a class
 * token and learned positions, `depth` pre-norm blocks (multi-head attention with q/k/v/o projections, a GELU FFN
 * with fc1/fc2), a final LayerNorm and a linear head. Attention and FFN projections are the adaptation targets, so
 * the dashboard shows both kinds of layer side by side as the paper's analysis does.
 */
import * as tf from '@tensorflow/tfjs';
import type { Architecture } from './architecture';

export interface VitShape { dim: number; depth: number; heads: number; mlpDim: number; patch: number }
export const TINY_VIT: VitShape = { dim: 32, depth: 2, heads: 2, mlpDim: 64, patch: 7 };

function layerNorm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor): tf.Tensor {
  const { mean, variance } = tf.moments(x, -1, true);
  return tf.add(tf.mul(tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, 1e-5))), gamma), beta);
}

/** tanh approximation of GELU (tfjs has no erf gradient on every backend). */
function gelu(x: tf.Tensor): tf.Tensor {
  const c = Math.sqrt(2 / Math.PI);
  return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.tanh(tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), c))));
}

export function vitArchitecture(s: VitShape = TINY_VIT): Architecture {
  const grid = 28 / s.patch, tokens = grid * grid + 1, patchDim = s.patch * s.patch, dh = s.dim / s.heads;
  const linears = [{ name: 'patch_embed', out: s.dim, in: patchDim }];
  const params: Record<string, number[]> = { cls: [s.dim], pos: [tokens, s.dim], 'ln_f.weight': [s.dim], 'ln_f.bias': [s.dim] };
  for (let b = 0; b < s.depth; b++) {
    for (const p of ['q', 'k', 'v', 'o']) linears.push({ name: `blocks.${b}.attn.${p}`, out: s.dim, in: s.dim });
    linears.push({ name: `blocks.${b}.ffn.fc1`, out: s.mlpDim, in: s.dim }, { name: `blocks.${b}.ffn.fc2`, out: s.dim, in: s.mlpDim });
    for (const ln of ['ln1', 'ln2']) { params[`blocks.${b}.${ln}.weight`] = [s.dim]; params[`blocks.${b}.${ln}.bias`] = [s.dim]; }
  }
  linears.push({ name: 'head', out: 10, in: s.dim });
  return {
    kind: 'vit', linears, params, inputDim: 784, classes: 10,
    defaultTargets: ['attn.q', 'attn.k', 'attn.v', 'attn.o', 'ffn.fc1', 'ffn.fc2'],
    forward: (x, linear, param) => {
      const B = x.shape[0];
      // B × 784 → B × 16 × 49 (row-major patches)
      const patches = tf.reshape(tf.transpose(tf.reshape(x, [B, grid, s.patch, grid, s.patch]), [0, 1, 3, 2, 4]), [B * grid * grid, patchDim]);
      const emb = tf.reshape(linear('patch_embed').forward(patches as tf.Tensor2D), [B, grid * grid, s.dim]);
      const cls = tf.tile(tf.reshape(param('cls'), [1, 1, s.dim]), [B, 1, 1]);
      let h: tf.Tensor = tf.add(tf.concat([cls, emb], 1), param('pos'));
      const flat = (t: tf.Tensor) => tf.reshape(t, [B * tokens, -1]) as tf.Tensor2D;
      const heads = (t: tf.Tensor) => tf.transpose(tf.reshape(t, [B, tokens, s.heads, dh]), [0, 2, 1, 3]);
      for (let b = 0; b < s.depth; b++) {
        const p = `blocks.${b}`;
        const a = flat(layerNorm(h, param(`${p}.ln1.weight`), param(`${p}.ln1.bias`)));
        const q = heads(linear(`${p}.attn.q`).forward(a)), k = heads(linear(`${p}.attn.k`).forward(a)), v = heads(linear(`${p}.attn.v`).forward(a));
        const att = tf.softmax(tf.div(tf.matMul(q, k, false, true), Math.sqrt(dh)));
        const ctx = flat(tf.transpose(tf.matMul(att, v), [0, 2, 1, 3]));
        h = tf.add(h, tf.reshape(linear(`${p}.attn.o`).forward(ctx), [B, tokens, s.dim]));
        const f = flat(layerNorm(h, param(`${p}.ln2.weight`), param(`${p}.ln2.bias`)));
        const g = linear(`${p}.ffn.fc2`).forward(gelu(linear(`${p}.ffn.fc1`).forward(f)) as tf.Tensor2D);
        h = tf.add(h, tf.reshape(g, [B, tokens, s.dim]));
      }
      const clsOut = tf.reshape(tf.slice(layerNorm(h, param('ln_f.weight'), param('ln_f.bias')), [0, 0, 0], [B, 1, s.dim]), [B, s.dim]);
      return linear('head').forward(clsOut as tf.Tensor2D);
    },
  };
}
