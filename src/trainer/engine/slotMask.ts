import * as tf from '@tensorflow/tfjs';

/** Which axis of a parameter holds the slots: rows of A (axis 0), columns of B (axis 1). */
export type SlotAxis = 0 | 1;

/** A 0/1 mask that broadcasts over a parameter: 0 at the given slots along `axis` (r × 1 or 1 × r). */
export function slotKeepMask(size: number, slots: readonly number[], axis: SlotAxis): tf.Tensor2D {
  const keep = new Float32Array(size).fill(1);
  for (const k of slots) keep[k] = 0;
  return axis === 0 ? tf.tensor2d(keep, [size, 1]) : tf.tensor2d(keep, [1, size]);
}
