/** The files of a run folder (docs/protocol.md, "Files in a run folder"): one place for their names. */
import { existsSync } from 'node:fs';
import { checkpointDir, checkpointSteps, COMPLETE_MARKER, latestCompleteCheckpoint } from './checkpoints';
import { join } from 'node:path';

export const EVENTS_FILE = 'events.jsonl';
export const CONFIG_FILE = 'config.json';
/** Written by the hub's owner: {url, token, pid}; a trainer re-reads it when its connection drops. */
export const HUB_DISCOVERY_FILE = 'hub.json';
export const PID_FILE = 'trainer.pid';
/** Why a trainer ended without finishing (exit code, signal, last stderr lines). */
export const EXIT_FILE = 'exit.json';

/** A new run id: time, method, 4 random characters (also the run folder's name). */
export function newRunId(method: string): string {
  const t = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return `${t}-${method.replace(/[^a-z0-9]/gi, '')}-${Math.random().toString(36).slice(2, 6)}`;
}
export const EXPORT_DIR_NAME = 'export';
export { CHECKPOINTS_DIR, checkpointDir } from './checkpoints';

/**
 * The folder of the checkpoint a run would continue from, or null: the newest whose COMPLETE.json and file sizes
 * check out (cheap: no hashing; the trainer verifies hashes when it resumes, latestCompleteCheckpoint). A run whose
 * checkpoints all predate the marker (trainers before protocol 1.1) answers its newest folder.
 */
export function latestCheckpoint(runDir: string): string | null {
  const choice = latestCompleteCheckpoint(runDir, { hashes: false });
  if (choice.dir) return choice.dir;
  const legacy = checkpointSteps(runDir).find((s) => !existsSync(join(checkpointDir(runDir, s), COMPLETE_MARKER)));
  return choice.skipped.every((s) => s.reason.startsWith(`no ${COMPLETE_MARKER}`)) && legacy !== undefined ? checkpointDir(runDir, legacy) : null;
}
