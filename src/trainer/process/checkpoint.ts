/**
 * Checkpoints: `checkpoints/step-N/` holding state.safetensors (W, A, B, importance EMAs, Adam moments of every
 * adapted layer) and state.json (directions, ages, pointers, optimiser step, rule in force, live settings, RNG and
 * data position). Written into a temporary folder and renamed, so a crash never leaves a half checkpoint.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { writeDirAtomic } from '../../runfolder/atomic';
import { checkpointDir } from '../../runfolder/runFiles';
import { encodeSafetensors, readSafetensors } from '../../runfolder/safetensors';
import type { EngineStateMeta, SRLoRAEngine } from '../engine/engine';
import type { BatcherState } from '../data/batches';

export interface LiveSettings { importanceEvery: number; evalEvery: number }

export interface CheckpointMeta {
  format: 1;
  step: number;
  engine: EngineStateMeta;
  data: BatcherState;
  settings: LiveSettings;
  /** The last seq in events.jsonl when the checkpoint was written. */
  seq: number;
}

export function saveCheckpoint(runDir: string, engine: SRLoRAEngine, data: BatcherState, settings: LiveSettings, seq: number): string {
  const dir = checkpointDir(runDir, engine.step);
  const rel = relative(runDir, dir);
  if (existsSync(dir)) return rel; // this step is saved already (a stop right after a periodic checkpoint)
  const { tensors, meta } = engine.saveState();
  const m: CheckpointMeta = { format: 1, step: engine.step, engine: meta, data, settings, seq };
  writeDirAtomic(dir, (tmp) => {
    writeFileSync(join(tmp, 'state.safetensors'), encodeSafetensors(tensors, { step: String(engine.step) }));
    writeFileSync(join(tmp, 'state.json'), JSON.stringify(m));
  });
  return rel;
}

export function loadCheckpoint(dir: string, engine: SRLoRAEngine): CheckpointMeta {
  const meta = JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')) as CheckpointMeta;
  if (meta.format !== 1) throw new Error(`${dir}: unknown checkpoint format ${String(meta.format)}`);
  engine.loadState(readSafetensors(join(dir, 'state.safetensors')).tensors, meta.engine);
  return meta;
}
