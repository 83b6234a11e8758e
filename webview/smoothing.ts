/** Smoothing of a training curve, as TensorBoard's slider does it. */

/**
 * EMA with bias correction (as TensorBoard's smoothing): a_t = β a_{t−1} + (1−β) y_t, s_t = a_t / (1 − β^t).
 * Incremental: appending points costs only the new points (the state is kept between calls).
 */
export class DebiasedEma {
  out = new Float64Array(0);
  private length = 0;
  private acc = 0;
  private w = 0;

  constructor(readonly beta: number) {}

  update(y: ArrayLike<number>): Float64Array {
    if (y.length < this.length) { this.length = 0; this.acc = 0; this.w = 0; }
    if (this.out.length < y.length) {
      const next = new Float64Array(Math.max(y.length, this.out.length * 2));
      next.set(this.out.subarray(0, this.length));
      this.out = next;
    }
    const b = this.beta;
    for (let i = this.length; i < y.length; i++) {
      this.acc = b * this.acc + (1 - b) * y[i];
      this.w = b * this.w + (1 - b);
      this.out[i] = this.w > 0 ? this.acc / this.w : y[i];
    }
    this.length = y.length;
    return this.out.subarray(0, this.length);
  }
}

