/** A classification dataset in memory: row-major float features and integer labels. */
export interface Dataset {
  features: Float32Array;
  labels: Int32Array;
  n: number;
  dim: number;
  classes: number;
}

export function subset(d: Dataset, idx: ArrayLike<number>): Dataset {
  const features = new Float32Array(idx.length * d.dim);
  const labels = new Int32Array(idx.length);
  for (let i = 0; i < idx.length; i++) {
    features.set(d.features.subarray(idx[i] * d.dim, (idx[i] + 1) * d.dim), i * d.dim);
    labels[i] = d.labels[idx[i]];
  }
  return { features, labels, n: idx.length, dim: d.dim, classes: d.classes };
}
