/**
 * Export (SRLORA.md §6), into `<run>/export/`:
 * - `merged.safetensors`: the whole fine-tuned model, W + s·B·A for every adapted layer (PyTorch layout, out × in);
 * - `delta.safetensors`: ΔW = (W + s·B·A) − W0 per adapted layer, dense (`<layer>.weight`);
 * - `directions.json`: per layer, every recomposition (step, trigger, slots, old → new directions) and the final
 *   direction held by each slot and pointer p;
 * - `config.json`: the run config.
 * At a run's end from the live model; `srlora export` writes the same from a checkpoint (`from` names it, and only the
 * recompositions up to its step are listed).
 * An adapter-only (PEFT-style) export would be wrong for SRLoRA: the frozen weight itself changes at every fusion.
 */
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { readJsonl } from '../../runfolder/eventLog';
import { readSafetensors, writeSafetensors, type TensorMap } from '../../runfolder/safetensors';
import { writeFileAtomic } from '../../runfolder/atomic';
import { EXPORT_DIR_NAME } from '../../runfolder/runFiles';
import type { FineTuneModel } from '../models/model';
import type { TrainerMessage } from '../../protocol/messages';


export interface ExportSource { checkpoint: string; step: number }

export function exportRun(runDir: string, model: FineTuneModel, baseFile: string, eventsFile: string, from?: ExportSource): string {
  const dir = join(runDir, EXPORT_DIR_NAME);
  mkdirSync(dir, { recursive: true });
  const merged = model.mergedWeights();
  const base = readSafetensors(baseFile).tensors;
  const delta: TensorMap = {};
  for (const l of model.engine.layers) {
    const key = `${l.name}.weight`;
    const m = merged[key].data, w0 = base[key].data;
    delta[key] = { shape: merged[key].shape, data: Float32Array.from(m, (v, i) => v - w0[i]) };
  }
  const meta = { method: model.engine.method, format: 'srlora-studio export 1' };
  writeSafetensors(join(dir, 'merged.safetensors'), merged, meta);
  writeSafetensors(join(dir, 'delta.safetensors'), delta, meta);
  const history: Record<string, { step: number; trigger: string; slots: number[]; oldDirections: number[]; newDirections: number[] }[]> = {};
  for (const e of readJsonl<TrainerMessage>(eventsFile).events) {
    if (e.type === 'rewind') {
      // A resumed run continues from e.step: what the log holds for later steps was redone (one value per step).
      for (const name of Object.keys(history)) history[name] = history[name].filter((h) => h.step <= e.step);
      continue;
    }
    if (e.type !== 'recomposition' || (from && e.step > from.step)) continue;
    for (const l of e.layers) {
      if (!l.slots.length) continue;
      (history[l.name] ??= []).push({ step: e.step, trigger: e.trigger, slots: l.slots, oldDirections: l.oldDirections, newDirections: l.newDirections });
    }
  }
  const directions = model.engine.layers.map((l) => ({
    layer: l.name, r: l.r, rTarget: l.rTarget, p: l.p, final: Array.from(l.directions), recompositions: history[l.name] ?? [],
  }));
  writeFileAtomic(join(dir, 'directions.json'), JSON.stringify({ ...(from ? { from } : {}), layers: directions }, null, 2) + '\n');
  const cfg = join(runDir, 'config.json');
  if (existsSync(cfg)) copyFileSync(cfg, join(dir, 'config.json'));
  return dir;
}

