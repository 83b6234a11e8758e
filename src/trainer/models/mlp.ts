/** The built-in MLP: 784 → 256 → 256 → 10 with ReLU; every linear layer is an adaptation target by default. */
import * as tf from '@tensorflow/tfjs';
import type { Architecture } from './architecture';

export function mlpArchitecture(dims = [784, 256, 256, 10]): Architecture {
  const linears = dims.slice(1).map((out, i) => ({ name: `fc${i}`, out, in: dims[i] }));
  return {
    kind: 'mlp', linears, params: {}, inputDim: dims[0], classes: dims[dims.length - 1],
    defaultTargets: linears.map((l) => l.name),
    forward: (x, linear) => {
      let h = x;
      linears.forEach((l, i) => {
        h = linear(l.name).forward(h);
        if (i < linears.length - 1) h = tf.relu(h);
      });
      return h;
    },
  };
}
