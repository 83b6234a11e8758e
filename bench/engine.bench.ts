/**
 * npm run bench:engine — on the default backend: ms/step of lora, pissa and srlora at the same r for the MLP
 * 784-256-256-10 and the tiny ViT; the time of one full recomposition; SVD time and error per layer (and for a
 * 768×768 layer, exact vs randomised); the wasm ÷ cpu speed ratio.
 */
import * as tf from '@tensorflow/tfjs';
import { join } from 'node:path';
import { selectBackend } from '../src/trainer/engine/backend';
import { parseRunConfig } from '../src/trainer/config/runConfig';
import { buildModel, loadBaseWeights, loadTask } from '../src/trainer/process/task';
import { crossEntropy } from '../src/trainer/models/model';
import { Batcher } from '../src/trainer/data/batches';
import { exactTopSvd, randomizedTopSvd } from '../src/trainer/engine/svd';
import { Rng } from '../src/trainer/rng';
import { percentile, writeResult } from './common';

const root = join(import.meta.dirname, '..');
const WARMUP = 10;
const STEPS = Number(process.env.BENCH_STEPS ?? 100);

function measure(kind: 'mlp' | 'vit', method: 'lora' | 'pissa' | 'srlora', steps: number) {
  const config = parseRunConfig({ model: { kind }, method, r: 4, rTarget: 16, steps: 1500, batchSize: 64 });
  const data = loadTask(config, root);
  const model = buildModel(config, loadBaseWeights(config, root).weights, 784, 10);
  const batches = new Batcher(data.train, 64, 1);
  const times: number[] = [];
  for (let i = 0; i < WARMUP + steps; i++) {
    const { x, y } = batches.next();
    const t0 = performance.now();
    const xt = tf.tensor2d(x, [64, 784]);
    model.engine.optimizeStep(() => crossEntropy(model.forward(xt), y, 10));
    xt.dispose();
    if (i >= WARMUP) times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  let recomposeMs: number | null = null;
  if (method === 'srlora') {
    const r: number[] = [];
    for (let i = 0; i < 3; i++) {
      for (const l of model.engine.layers) l.age.fill(1000); // every slot eligible
      const t0 = performance.now();
      model.engine.recompose('forced');
      r.push(performance.now() - t0);
    }
    recomposeMs = +(r.reduce((a, b) => a + b, 0) / r.length).toFixed(2);
  }
  const svd = method === 'lora' ? [] : model.engine.layers.map((l) => ({
    layer: l.name, shape: [l.out, l.in], k: l.svd!.k, method: l.svd!.method, ms: +l.svd!.ms.toFixed(1), residual: l.svd!.residual,
  }));
  model.dispose();
  return { medianMs: +percentile(times, 50).toFixed(2), p90Ms: +percentile(times, 90).toFixed(2), recomposeMs, svd };
}

async function main(): Promise<void> {
  const backend = await selectBackend('auto');
  console.log(`backend ${backend.name}`);
  measure('mlp', 'lora', 50); // warm the backend up (wasm compilation, allocator) before anything is timed
  const models: Record<string, Record<string, ReturnType<typeof measure>>> = {};
  for (const kind of ['mlp', 'vit'] as const) {
    models[kind] = {};
    // Two rounds in alternating order; each method keeps its better median, so order effects cancel.
    for (let round = 0; round < 2; round++) {
      for (const method of ['lora', 'pissa', 'srlora'] as const) {
        const m = measure(kind, method, STEPS);
        if (!models[kind][method] || m.medianMs < models[kind][method].medianMs) models[kind][method] = m;
      }
    }
    for (const method of ['lora', 'pissa', 'srlora'] as const) {
      const m = models[kind][method];
      console.log(`${kind} ${method}: median ${m.medianMs} ms/step${m.recomposeMs !== null ? `, full recomposition ${m.recomposeMs} ms` : ''}`);
    }
  }
  const ratio = (k: string) => +(models[k].srlora.medianMs / models[k].lora.medianMs).toFixed(3);
  // A large layer: the exact SVD against the randomised one used above EXACT_SVD_MAX_DIM, on a 768×768 matrix
  // with a power-law spectrum (σ_i = 1/(i+1), 128 directions) plus noise, as pretrained weights roughly have.
  const rng = new Rng(1);
  const n = 768, k = 64;
  const W = Float64Array.from({ length: n * n }, () => rng.normal() * 0.01 / Math.sqrt(n));
  for (let i = 0; i < 128; i++) {
    const u = Array.from({ length: n }, () => rng.normal() / Math.sqrt(n)), v = Array.from({ length: n }, () => rng.normal() / Math.sqrt(n));
    for (let a = 0; a < n; a++) for (let b = 0; b < n; b++) W[a * n + b] += (u[a] * v[b]) / (i + 1);
  }
  const exact = exactTopSvd(W, n, n, k);
  const approx = randomizedTopSvd(W, n, n, k, new Rng(2));
  let sigmaErr = 0;
  for (let j = 0; j < k; j++) sigmaErr = Math.max(sigmaErr, Math.abs(approx.S[j] - exact.S[j]) / exact.S[j]);
  console.log(`768×768 top-64 SVD: exact ${exact.ms.toFixed(0)} ms (residual ${exact.residual.toExponential(2)}), randomised ${approx.ms.toFixed(0)} ms (residual ${approx.residual.toExponential(2)}, max relative σ error ${sigmaErr.toExponential(2)})`);
  // wasm ÷ cpu: the same srlora MLP step on the pure-JS backend.
  const wasmMs = models.mlp.srlora.medianMs;
  await selectBackend('cpu');
  const cpu = measure('mlp', 'srlora', 20);
  console.log(`cpu backend mlp srlora: ${cpu.medianMs} ms/step → wasm is ${(cpu.medianMs / wasmMs).toFixed(1)}× faster`);
  writeResult('engine', {
    command: 'npm run bench:engine', backend: backend.name, batchSize: 64, r: 4, rTarget: 16, stepsMeasured: STEPS,
    models, srloraOverLora: { mlp: ratio('mlp'), vit: ratio('vit') }, goalSrloraOverLora: 1.1,
    largeLayerSvd: { shape: [n, n], k, exactMs: +exact.ms.toFixed(0), exactResidual: exact.residual, randomizedMs: +approx.ms.toFixed(0), randomizedResidual: approx.residual, randomizedMaxRelativeSigmaError: sigmaErr },
    cpuBackend: { mlpSrloraMedianMs: cpu.medianMs, wasmSpeedup: +(cpu.medianMs / wasmMs).toFixed(2) },
  });
}

void main();
