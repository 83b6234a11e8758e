/**
 * The runs folder's listing (issue 13.10 and 13.15): which entries are runs, under which id. One odd entry — a dangling
 * symlink, a file where a run folder should be, a folder whose events.jsonl is not a file, a name the protocol's id
 * pattern refuses — never stops the listing: it is skipped with a warning naming it, or listed under the id the shared
 * rule derives from its name (the one the trainer derives too). Reads names and stats only, never a log.
 */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { EVENTS_FILE } from './runFiles';
import { runIdOf } from './runId';

export { runIdOf };

export interface RunFolder {
  /** The entry's name in the runs folder. */
  name: string;
  dir: string;
  runId: string;
  /** Has an events.jsonl (a regular file); a folder without one yet may be a run that is starting. */
  hasLog: boolean;
}

export interface RunsListing {
  runs: RunFolder[];
  /** One line per entry skipped, naming it and why. */
  warnings: string[];
}

/**
 * Lists the run folders in `runsDir` (no error when it does not exist: no runs). Entries whose names start with '.'
 * (temporary folders of atomic writes) are ignored silently. Two names deriving the same id: the first listed wins,
 * the other is skipped with a warning.
 */
export function listRunFolders(runsDir: string): RunsListing {
  const runs: RunFolder[] = [];
  const warnings: string[] = [];
  let names: string[];
  try {
    names = readdirSync(runsDir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { runs, warnings };
    throw new Error(`runs folder ${runsDir}: ${code ?? (e as Error).message}`);
  }
  const seen = new Map<string, string>();
  for (const name of names.sort()) {
    if (name.startsWith('.')) continue;
    const dir = join(runsDir, name);
    const shown = JSON.stringify(name.length > 80 ? `${name.slice(0, 80)}…` : name);
    let st;
    try { st = statSync(dir); } catch (e) { warnings.push(`skipped ${shown}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'a dangling symlink' : (e as Error).message}`); continue; }
    if (!st.isDirectory()) continue; // a stray file in the runs folder is not a run (not worth a warning)
    let hasLog = false;
    try {
      const log = statSync(join(dir, EVENTS_FILE));
      if (!log.isFile()) { warnings.push(`skipped ${shown}: its ${EVENTS_FILE} is not a file`); continue; }
      hasLog = true;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT') { warnings.push(`skipped ${shown}: ${EVENTS_FILE}: ${code ?? (e as Error).message}`); continue; }
    }
    const runId = runIdOf(name);
    const other = seen.get(runId);
    if (other !== undefined) { warnings.push(`skipped ${shown}: its run id ${runId} is also ${JSON.stringify(other)}'s`); continue; }
    seen.set(runId, name);
    runs.push({ name, dir, runId, hasLog });
  }
  return { runs, warnings };
}
