/**
 * The run a command's RUN argument names (`serve --resume RUN`, `export RUN`): a run folder's path, or a run id (or
 * folder name) in the runs folder (`--runs-dir`, else the default `.srlora/runs`) — one rule for every command.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { readJsonl } from '../runfolder/eventLog';
import { CONFIG_FILE, EVENTS_FILE } from '../runfolder/runFiles';
import { runIdOf } from '../runfolder/runId';
import type { TrainerMessage } from '../protocol/messages';
import { DEFAULT_RUNS_DIR } from './usage';

/** A resolved RUN argument. `dir`: the run folder's absolute path, null for an id that no folder (yet) has;
 * `runsDir`: the folder that holds it (the runs folder an id was looked up in); `id`: what was asked for. */
export interface RunTarget { dir: string | null; runsDir: string; id: string }

/**
 * Resolves RUN (`flag` names the option in errors, e.g. "--resume" or "export"). A value with a path separator, or
 * an existing folder when no --runs-dir is given, is a run folder (it must hold events.jsonl or config.json, and be
 * in --runs-dir when one is given); otherwise it is an id or folder name in the runs folder. An id no folder matches
 * gives `dir: null` (the caller says "no run …" in its own words). Throws, naming the value, for a path that is not a
 * run folder or an empty value.
 */
export function resolveRunArg(value: string, runsDirFlag: string | undefined, flag: string): RunTarget {
  const shown = JSON.stringify(value.slice(0, 200));
  if (!value) throw new Error(`${flag}: give a run folder or a run id`);
  const dir = resolve(value);
  let isDir = false;
  // A bare name with --runs-dir is an id in that folder, whatever the current folder holds.
  if (runsDirFlag === undefined || /[\\/]/.test(value)) { try { isDir = statSync(dir).isDirectory(); } catch { /* not a path: an id */ } }
  if (!isDir) {
    if (/[\\/]/.test(value) || value === '.' || value === '..') throw new Error(`${flag}: no run folder ${shown}`);
    const runsDir = resolve(runsDirFlag ?? DEFAULT_RUNS_DIR);
    return { dir: findRunDir(runsDir, value), runsDir, id: value };
  }
  if (!existsSync(join(dir, EVENTS_FILE)) && !existsSync(join(dir, CONFIG_FILE))) throw new Error(`${flag}: ${shown} is not a run folder (no ${EVENTS_FILE} or ${CONFIG_FILE})`);
  if (runsDirFlag !== undefined && resolve(runsDirFlag) !== dirname(dir)) throw new Error(`${flag}: the run folder ${shown} is not in --runs-dir ${runsDirFlag.slice(0, 200)}`);
  return { runsDir: dirname(dir), dir, id: basename(dir) };
}

/** The folder in `runsDir` whose name or run id is `id`, or null (also when runsDir does not exist). */
function findRunDir(runsDir: string, id: string): string | null {
  let names: string[];
  try { names = readdirSync(runsDir); } catch { return null; }
  const name = names.find((n) => n === id) ?? names.find((n) => runIdOf(n) === id);
  return name === undefined ? null : join(runsDir, name);
}

/** Which trainer wrote the run in `dir` (its first hello's backend), or null when it has not said yet. */
export function runTrainerOf(dir: string): 'pytorch' | 'builtin' | null {
  const events = join(dir, EVENTS_FILE);
  if (!existsSync(events)) return null;
  const hello = readJsonl<TrainerMessage>(events).events.find((m) => m.type === 'hello');
  if (!hello || hello.type !== 'hello') return null;
  return hello.backend.name === 'pytorch' ? 'pytorch' : 'builtin';
}

/**
 * Why a run folder cannot be continued because its run never started — its events.jsonl holds no hello (a trainer
 * stopped while it still loaded, by an older supervisor that left the folder: FINDINGS F1) — or null. Every continue
 * path says this, in these words (python/srlora_torch/train.py never_started_message), instead of guessing a trainer.
 */
export function neverStartedMessage(dir: string): string | null {
  const events = join(dir, EVENTS_FILE);
  if (!existsSync(events) || runTrainerOf(dir) !== null) return null;
  return `${dir} never started: its ${EVENTS_FILE} holds no hello (nothing was trained, there is no checkpoint): there is nothing to continue; start a new run`;
}
