/** The files of a run folder (docs/protocol.md, "Files in a run folder"): one place for their names. */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

export const EVENTS_FILE = 'events.jsonl';
export const HUB_LOG_FILE = 'hub-events.jsonl';
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
export const CHECKPOINTS_DIR = 'checkpoints';

export function checkpointDir(runDir: string, step: number): string {
  return join(runDir, CHECKPOINTS_DIR, `step-${step}`);
}

/** The folder of a run's newest checkpoint, or null when it has none. */
export function latestCheckpoint(runDir: string): string | null {
  const root = join(runDir, CHECKPOINTS_DIR);
  if (!existsSync(root)) return null;
  const steps = readdirSync(root).map((d) => /^step-(\d+)$/.exec(d)).filter((m): m is RegExpExecArray => m !== null).map((m) => Number(m[1]));
  if (steps.length === 0) return null;
  return checkpointDir(runDir, Math.max(...steps));
}
