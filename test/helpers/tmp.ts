import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { readPidFile, signalTarget } from '../../src/runfolder/pidfile';

/** Temp folders of this test process not yet removed. */
const live = new Set<string>();

/**
 * Kills every trainer recorded (trainer.pid) in a run folder under `dir` that is still that process: its process group
 * when it leads one (a supervisor spawned it detached: its children too), else the pid alone. A test that started a
 * trainer and failed before ending it — or was interrupted — would otherwise leave it running, detached, with ppid 1
 * (seen: a built-in trainer with 100,000 steps, 45 minutes after its test). Never signals anything not provably it.
 */
export function killTrainersUnder(dir: string, depth = 4): number {
  let killed = 0;
  let entries;
  try { entries = readdirSync(dir, { withFileTypes: true }); } catch { return 0; }
  for (const e of entries) {
    if (e.isDirectory() && depth > 0) killed += killTrainersUnder(join(dir, e.name), depth - 1);
    else if (e.isFile() && e.name === 'trainer.pid') {
      const rec = readPidFile(join(dir, e.name));
      if (!rec.ok || rec.id.pid === process.pid) continue;
      const target = signalTarget(rec.id, rec.id.pgid === rec.id.pid);
      if (target === null) continue;
      try { process.kill(target, 'SIGKILL'); killed++; } catch { /* gone meanwhile */ }
    }
  }
  return killed;
}

function cleanUp(dir: string): void {
  killTrainersUnder(dir);
  rmSync(dir, { recursive: true, force: true });
  live.delete(dir);
}

let guarded = false;
/** An interrupted test process (a timeout's SIGTERM, Ctrl+C) ends the trainers its tests started, then dies of the signal. */
function guardSignals(): void {
  if (guarded) return;
  guarded = true;
  for (const [sig, n] of [['SIGTERM', 15], ['SIGINT', 2], ['SIGHUP', 1]] as const) {
    process.once(sig, () => {
      for (const dir of [...live]) cleanUp(dir);
      process.kill(process.pid, sig); // our handler is gone: the default action, unless someone else listens
      setTimeout(() => process.exit(128 + n), 200);
    });
  }
  process.once('exit', () => { for (const dir of [...live]) killTrainersUnder(dir); });
}

/** A temp folder removed when the test that made it ends, after every trainer started in it is killed. */
export function tempDir(prefix = 'srlora-test-'): string {
  guardSignals();
  const dir = mkdtempSync(join(tmpdir(), prefix));
  live.add(dir);
  after(() => cleanUp(dir));
  return dir;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls until `cond` holds or the deadline passes; returns whether it held (assert on the result). */
export async function until(cond: () => boolean, timeoutMs = 5000, everyMs = 10): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (cond()) return true;
    await sleep(everyMs);
  }
  return cond();
}
