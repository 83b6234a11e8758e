/**
 * Checkpoints: `checkpoints/step-N/` holding state.safetensors (W, A, B, importance EMAs, Adam moments of every
 * adapted layer) and state.json (directions, ages, pointers, optimiser step, rule in force, live settings, RNG and
 * data position), and COMPLETE.json (sizes and SHA-256 of both, written last): a crash or a power cut never leaves a
 * half checkpoint that resume would take.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { checkpointDir, COMPLETE_MARKER, verifyCheckpoint, writeCheckpoint } from '../../runfolder/checkpoints';
import { describeWriteError } from '../../runfolder/atomic';
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

/** Writes checkpoints/step-N (runfolder/checkpoints.ts: COMPLETE.json marker, fsynced, renamed); returns its path relative to the run. */
export function saveCheckpoint(runDir: string, engine: SRLoRAEngine, data: BatcherState, settings: LiveSettings, seq: number): string {
  const { tensors, meta } = engine.saveState();
  const m: CheckpointMeta = { format: 1, step: engine.step, engine: meta, data, settings, seq };
  const write = (tmp: string, name: string, data: string | Buffer) => {
    try {
      writeFileSync(join(tmp, name), data);
    } catch (e) {
      throw describeWriteError(e, join(checkpointDir(runDir, engine.step), name)); // the name the user knows
    }
  };
  const dir = writeCheckpoint(runDir, engine.step, (tmp) => {
    write(tmp, 'state.safetensors', encodeSafetensors(tensors, { step: String(engine.step) }));
    write(tmp, 'state.json', JSON.stringify(m));
  });
  return relative(runDir, dir);
}

/** A checkpoint read and checked, nothing applied yet: what loadCheckpoint applies. */
export interface ReadCheckpoint { meta: CheckpointMeta; tensors: ReturnType<typeof readSafetensors>['tensors'] }

/**
 * Reads a checkpoint folder and checks its state.json; applies nothing. A folder with COMPLETE.json is verified first
 * (sizes and SHA-256; `verified`: the caller just did), so a corrupt checkpoint is never loaded silently. Throws
 * naming the file (and field).
 */
export function readCheckpoint(dir: string, verified = false): ReadCheckpoint {
  if (!verified && existsSync(join(dir, COMPLETE_MARKER))) {
    const v = verifyCheckpoint(dir);
    if (!v.ok) throw new Error(`${dir}: ${v.reason}`);
  }
  const file = join(dir, 'state.json');
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) { // a state.json another program wrote, a bug's: name the file, not only the parser's word
    throw new Error(`${file}: not a checkpoint's JSON (${(e as Error).message.slice(0, 200)})`);
  }
  if (typeof parsed !== 'object' || parsed === null) throw new Error(`${file}: expected an object, got ${JSON.stringify(parsed).slice(0, 40)}`);
  const meta = parsed as CheckpointMeta;
  if (meta.format !== 1) throw new Error(`${file}: /format: expected 1 (this trainer's checkpoint format), got ${JSON.stringify(meta.format ?? null)}`);
  return { meta, tensors: readSafetensors(join(dir, 'state.safetensors')).tensors };
}

/** Loads a checkpoint folder into the engine (readCheckpoint, then the engine's state; resume, srlora export). */
export function loadCheckpoint(dir: string, engine: SRLoRAEngine, read: ReadCheckpoint = readCheckpoint(dir)): CheckpointMeta {
  engine.loadState(read.tensors, read.meta.engine);
  return read.meta;
}
