/** Builds what a run trains on from its config: the datasets, the base weights and the fine-tuning model. */
import { existsSync, statSync } from 'node:fs';

/** Larger base weights than any model the built-in trainer can build: refused before they are read. */
const MAX_WEIGHTS_BYTES = 2 ** 30;
import { dirname, isAbsolute, join, resolve } from 'node:path';
import type { RunConfig } from '../config/runConfig';
import type { Dataset } from '../data/dataset';
import { DIGITS_FILE, loadDigits, splitDigits } from '../data/digits';
import { loadTabular } from '../data/tabular';
import { Rng } from '../rng';
import { subset } from '../data/dataset';
import { architectureFor, FineTuneModel } from '../models/model';
import { readSafetensors, type TensorMap } from '../../runfolder/safetensors';
import type { EngineConfig } from '../engine/engine';
import { SRLORA_DEFAULTS } from '../../srlora/defaults';

/** The folder holding media/ (the repo in development, the extension's install folder when packaged). */
export function assetRoot(): string {
  let dir = typeof __dirname === 'string' ? __dirname : process.cwd();
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, DIGITS_FILE))) return dir;
    dir = dirname(dir);
  }
  if (existsSync(join(process.cwd(), DIGITS_FILE))) return process.cwd();
  throw new Error(`cannot find the built-in data (${DIGITS_FILE}) next to the program`);
}

export interface TaskData { train: Dataset; eval: Dataset; description: string }

export function loadTask(config: RunConfig, baseDir: string): TaskData {
  const t = config.task;
  if (t.kind === 'digits') {
    const all = loadDigits(join(assetRoot(), DIGITS_FILE), t.transform);
    const { train, eval: ev } = splitDigits(all);
    return { train, eval: ev, description: `digits (${t.transform}), ${train.n} train / ${ev.n} eval` };
  }
  const at = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  const train = loadTabular(at(t.train), t.labelColumn, '/task/train');
  let ev: Dataset;
  if (t.eval) {
    ev = loadTabular(at(t.eval), t.labelColumn, '/task/eval');
  } else {
    // No eval file: hold out a seeded 20 %.
    const idx = Int32Array.from({ length: train.n }, (_, i) => i);
    new Rng(config.seed + 7).shuffle(idx);
    const cut = Math.max(1, Math.floor(train.n / 5));
    ev = subset(train, idx.subarray(0, cut));
    return { train: subset(train, idx.subarray(cut)), eval: ev, description: `${t.train}, ${train.n - cut} train / ${cut} held out` };
  }
  return { train, eval: ev, description: `${t.train} (${train.n}) / ${t.eval} (${ev.n})` };
}

export function loadBaseWeights(config: RunConfig, baseDir: string): { weights: TensorMap; file: string } {
  const file = config.model.weights
    ? (isAbsolute(config.model.weights) ? config.model.weights : resolve(baseDir, config.model.weights))
    : join(assetRoot(), `media/models/${config.model.kind}.safetensors`);
  const field = config.model.weights ? '/model/weights' : '/model/kind';
  if (!existsSync(file)) throw new Error(`${field}: base model ${file} not found${config.model.weights ? '' : ' (run `npm run pretrain`)'}`);
  const st = statSync(file);
  if (st.isDirectory()) throw new Error(`${field}: ${file} is a directory, not a .safetensors file`);
  if (st.size > MAX_WEIGHTS_BYTES) throw new Error(`${field}: ${file} is ${(st.size / 2 ** 30).toFixed(1)} GiB; the built-in trainer's models take at most ${MAX_WEIGHTS_BYTES / 2 ** 30} GiB`);
  try {
    return { weights: readSafetensors(file).tensors, file };
  } catch (e) {
    const m = (e as Error).message;
    throw new Error(`${field}: ${m.includes(file) ? m : `${file}: ${m}`}`);
  }
}

export function engineConfig(config: RunConfig): EngineConfig {
  const a = SRLORA_DEFAULTS.adam;
  return {
    method: config.method, r: config.r, rTarget: config.rTarget ?? undefined, alpha: config.alpha,
    beta1: config.beta1, beta2: config.beta2, fusionRatio: config.fusionRatio, fusionThreshold: config.fusionThreshold,
    minSlotAge: config.minSlotAge, totalSteps: config.steps, resetOptimizerMoments: config.resetOptimizerMoments, seed: config.seed,
    reinitOptimizer: config.resetOptimizerMoments === false ? 'keep' : config.reinitOptimizer, fusionSelect: config.fusionSelect,
    optimizer: config.optimizer === 'sgd'
      ? { type: 'sgd', lr: config.learningRate }
      : { type: config.optimizer, lr: config.learningRate, beta1: a.beta1, beta2: a.beta2, eps: a.eps, weightDecay: config.weightDecay },
  };
}

export function buildModel(config: RunConfig, weights: TensorMap, inputDim: number, classes: number): FineTuneModel {
  const arch = architectureFor(config.model.kind, weights);
  if (arch.inputDim !== inputDim || arch.classes < classes) {
    const own = config.model.kind === 'mlp' && !config.model.weights
      ? '; for other data give model.weights: your own pretrained MLP as .safetensors (fc0.weight: hidden × features, …, last: classes × hidden)' : '';
    throw new Error(`the ${config.model.kind} model takes ${arch.inputDim} features and ${arch.classes} classes; the data has ${inputDim} features and ${classes} classes${own}`);
  }
  return new FineTuneModel(arch, weights, config.targets ?? arch.defaultTargets, engineConfig(config));
}
