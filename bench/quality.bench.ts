/**
 * npm run bench:quality — lora vs pissa vs srlora (τ off, the paper's rule) vs srlora (τ = 1.0, the threshold
 * rule) on the built-in task (MLP on 90°-rotated digits), the same r, steps and data, 3 seeds — plus lora at
 * r = rTarget as a control. Final eval accuracy (mean ± sd), trainable parameters, and the step at which each run's
 * smoothed training loss first reaches the same seed's lora final loss. Two runs at a time (2 cores).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { trainCli, runEvents } from './runCli';
import { writeResult } from './common';

const STEPS = Number(process.env.BENCH_STEPS ?? 1500);
const SEEDS = [0, 1, 2];
const R = 4, R_TARGET = 16;
const VARIANTS: { id: string; label: string; args: string[]; rank: number }[] = [
  { id: 'lora', label: `lora r=${R}`, args: ['--method', 'lora', '--r', String(R)], rank: R },
  { id: 'pissa', label: `pissa r=${R}`, args: ['--method', 'pissa', '--r', String(R)], rank: R },
  { id: 'srlora-ratio', label: `srlora r=${R}, rTarget=${R_TARGET}, τ off (γ = 0.5)`, args: ['--method', 'srlora', '--r', String(R), '--r-target', String(R_TARGET)], rank: R },
  { id: 'srlora-threshold', label: `srlora r=${R}, rTarget=${R_TARGET}, τ = 1.0`, args: ['--method', 'srlora', '--r', String(R), '--r-target', String(R_TARGET), '--fusion-threshold', '1.0'], rank: R },
  { id: 'lora-r16', label: `lora r=${R_TARGET} (control)`, args: ['--method', 'lora', '--r', String(R_TARGET)], rank: R_TARGET },
];
const MLP = [[256, 784], [256, 256], [10, 256]];

/** Debiased EMA of the training loss, per step. */
function smoothed(runDir: string): Map<number, number> {
  const out = new Map<number, number>();
  let ema = 0, n = 0;
  for (const m of runEvents(runDir)) {
    if (m.type !== 'metrics') continue;
    for (const r of m.rows) { n++; ema = 0.98 * ema + 0.02 * r.loss; out.set(r.step, ema / (1 - 0.98 ** n)); }
  }
  return out;
}

function finalAccuracy(runDir: string): number {
  const evals = runEvents(runDir).filter((m) => m.type === 'eval');
  const last = evals[evals.length - 1];
  return last && last.type === 'eval' ? last.metrics.accuracy : NaN;
}

async function pool<T>(jobs: (() => Promise<T>)[], width: number): Promise<T[]> {
  const out: T[] = new Array(jobs.length);
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => { while (next < jobs.length) { const i = next++; out[i] = await jobs[i](); } }));
  return out;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'srlora-quality-'));
  const t0 = Date.now();
  const jobs = VARIANTS.flatMap((v) => SEEDS.map((seed) => async () => {
    const runDir = await trainCli([...v.args, '--model.kind', 'mlp', '--steps', String(STEPS), '--seed', String(seed), '--eval-every', '500', '--checkpoint-every', '0', '--runs-dir', join(dir, v.id)]);
    console.log(`${v.id} seed ${seed}: ${(100 * finalAccuracy(runDir)).toFixed(1)} %`);
    return { v: v.id, seed, runDir };
  }));
  const runs = await pool(jobs, 2);
  const by = (id: string, seed: number) => runs.find((r) => r.v === id && r.seed === seed)!.runDir;
  const rows = VARIANTS.map((v) => {
    const acc = SEEDS.map((s) => finalAccuracy(by(v.id, s)));
    const mean = acc.reduce((a, b) => a + b, 0) / acc.length;
    const sd = Math.sqrt(acc.reduce((a, b) => a + (b - mean) ** 2, 0) / (acc.length - 1));
    const reach = SEEDS.map((s) => {
      const target = smoothed(by('lora', s)).get(STEPS)!;
      for (const [step, l] of smoothed(by(v.id, s))) if (l <= target) return step;
      return null;
    });
    return {
      id: v.id, label: v.label, accuracy: acc.map((a) => +a.toFixed(4)), meanAccuracy: +mean.toFixed(4), sdAccuracy: +sd.toFixed(4),
      trainableParams: MLP.reduce((n, [o, i]) => n + v.rank * (o + i), 0), stepReachingLoraFinalLoss: reach,
    };
  });
  for (const r of rows) console.log(`${r.label.padEnd(40)} ${(100 * r.meanAccuracy).toFixed(1)} ± ${(100 * r.sdAccuracy).toFixed(1)} %  params ${r.trainableParams}  reach ${JSON.stringify(r.stepReachingLoraFinalLoss)}`);
  rmSync(dir, { recursive: true, force: true });
  writeResult('quality', {
    command: 'npm run bench:quality', task: 'MLP 784-256-256-10 pretrained on upright digits, fine-tuned on 90°-rotated digits (8,000 train / 2,000 eval)',
    steps: STEPS, seeds: SEEDS, batchSize: 64, learningRate: 3e-3, optimizer: 'adam', minutes: +((Date.now() - t0) / 60000).toFixed(1), rows,
  });
}

void main();
