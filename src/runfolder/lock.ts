/**
 * One owner per live run (docs/protocol.md, "Ownership and signals"), as PostgreSQL's postmaster.pid: the process that
 * supervises a run holds `owner.json` in its folder — its identity (pid, start time, boot id) and a random instance id
 * (two supervisors may share a process, e.g. in tests) — created with O_EXCL, mode 0600. A lock whose owner's identity
 * is gone is stale and may be taken over. Only the owner writes the run's hub.json, signals its trainer, and appends
 * supervisor records to its events.jsonl; everyone else views the run read-only.
 *
 * Also the private-file helpers: secrets 0600 in 0700 folders, as Jupyter's runtime files.
 */
import { chmodSync, closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync, existsSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { PID_FILE } from './runFiles';
import { parsePidText, processIdentity, sameProcess, type ProcessIdentity } from './pidfile';

export const OWNER_FILE = 'owner.json';

export interface OwnerRecord extends ProcessIdentity {
  /** Random per supervisor instance: tells two supervisors in one process apart. */
  instance: string;
  /** What the owner is, for the humans reading the file and the log ("srlora serve", "VS Code"). */
  by: string;
  /** When it took the run, ms since the epoch. */
  since: number;
}

/** A folder only its owner may enter (created with 0700; an existing one is left as it is). */
export function ensurePrivateDir(dir: string): void {
  if (existsSync(dir)) return;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700); // the umask could only have narrowed it; say it exactly
}

/** Write-then-rename a file readable by its owner only (0600), fsynced, its folder fsynced after the rename. */
export function writePrivateFileAtomic(file: string, data: string): void {
  const tmp = join(dirname(file), `.${basename(file)}.${randomBytes(4).toString('hex')}.tmp`);
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
  syncDir(dirname(file));
}

function syncDir(dir: string): void {
  try { const fd = openSync(dir, 'r'); try { fsyncSync(fd); } finally { closeSync(fd); } } catch { /* not every platform syncs folders */ }
}

/** The identity of this process, for lock files: falls back to the pid alone where /proc is missing. */
function selfIdentity(): ProcessIdentity {
  return processIdentity(process.pid) ?? { pid: process.pid, startTime: -1, pgid: -1, bootId: '' };
}

/** The run's owner record, or null when there is none or it is not one (garbage counts as no owner: it is stale). */
export function readOwner(dir: string): OwnerRecord | null {
  let text: string;
  try { text = readFileSync(join(dir, OWNER_FILE), 'utf8'); } catch { return null; }
  return parseOwner(text);
}

/** owner.json's text as an owner record, or null when it is not one (test/vectors/ownership/resume.json holds both
 * languages to the same reading). A missing `by` reads as "another supervisor". */
export function parseOwner(text: string): OwnerRecord | null {
  let r: Partial<OwnerRecord> | null;
  try { r = JSON.parse(text) as Partial<OwnerRecord> | null; } catch { return null; }
  if (typeof r !== 'object' || r === null || Array.isArray(r) || !Number.isInteger(r.pid) || !Number.isInteger(r.startTime) || typeof r.instance !== 'string' || typeof r.bootId !== 'string') return null;
  return { ...r, by: typeof r.by === 'string' ? r.by : 'another supervisor' } as OwnerRecord;
}

/** Is the process named by an owner record still the one that wrote it? */
export function ownerAlive(r: ProcessIdentity): boolean {
  if (r.bootId === '') { // written where /proc is missing: the pid alone, erring towards "alive" (never steals a live run)
    try { process.kill(r.pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
  }
  return sameProcess(r);
}

export interface OwnerLock {
  readonly dir: string;
  readonly record: OwnerRecord;
  /** Removes owner.json if it is still ours. */
  release(): void;
}

export type AcquireResult = { ok: true; lock: OwnerLock; tookOver: OwnerRecord | null } | { ok: false; owner: OwnerRecord };

/**
 * Takes the run in `dir` for this supervisor instance: creates owner.json with O_EXCL; if one exists whose owner is
 * gone (or it is unreadable), removes it and tries once more. Fails (with the live owner) when someone else holds it;
 * succeeds at once when `instance` already holds it.
 */
export function acquireOwner(dir: string, instance: string, by: string): AcquireResult {
  const file = join(dir, OWNER_FILE);
  let tookOver: OwnerRecord | null = null;
  for (let attempt = 0; attempt < 2; attempt++) {
    const record: OwnerRecord = { ...selfIdentity(), instance, by, since: Date.now() };
    try {
      const fd = openSync(file, 'wx', 0o600);
      try { writeSync(fd, JSON.stringify(record)); fsyncSync(fd); } finally { closeSync(fd); }
      syncDir(dir);
      return { ok: true, lock: makeLock(dir, record), tookOver };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const owner = readOwner(dir);
    if (owner && owner.instance === instance) return { ok: true, lock: makeLock(dir, owner), tookOver: null };
    if (owner && ownerAlive(owner)) return { ok: false, owner };
    // Stale: its owner is gone. (Two takers noticing the same stale lock at the same instant is the one race left, as
    // with PostgreSQL's postmaster.pid; the second O_EXCL create then fails and it views the run read-only.)
    tookOver = owner;
    rmSync(file, { force: true });
  }
  const owner = readOwner(dir);
  if (owner) return { ok: false, owner };
  throw new Error(`${file}: could not be created`);
}

function makeLock(dir: string, record: OwnerRecord): OwnerLock {
  return {
    dir, record,
    release: () => {
      const now = readOwner(dir);
      if (now && now.instance === record.instance) rmSync(join(dir, OWNER_FILE), { force: true });
    },
  };
}

/** What a resume needs to know of a run folder: its owner.json and trainer.pid (parsed; null when absent or not one). */
export interface ResumeFacts {
  owner: OwnerRecord | null;
  trainer: ProcessIdentity | null;
  /** Is the process a record names still that process (ownerAlive: errs towards alive where identity is unknown)? */
  alive: (r: ProcessIdentity) => boolean;
  /** SRLORA_OWNER: the owner instance of the supervisor that launched this trainer (it holds the run and checked). */
  launchedBy: string | null;
  /** This process: a trainer.pid naming it is its own. */
  selfPid: number;
}

/**
 * The one rule every resume path follows (`srlora train --resume`, `python -m srlora_torch.train --resume`, serve and
 * VS Code continuing a run; python/srlora_torch/ownership.py is its twin, test/vectors/ownership/resume.json holds
 * both): a run with a live owner other than the supervisor that launched us, or a live trainer other than us, is
 * being trained by someone else — two trainers would append to one events.jsonl. Returns the refusal naming who, or
 * null when the run may be resumed.
 */
export function resumeRefusalOf(runDir: string, f: ResumeFacts): string | null {
  const { owner, trainer } = f;
  if (owner && f.alive(owner)) {
    if (f.launchedBy !== null && owner.instance === f.launchedBy) return null; // our supervisor holds it (and its trainer.pid names us)
    return `run ${runDir} belongs to ${owner.by} (pid ${owner.pid}): it is being trained or watched there; stop it there, then continue it`;
  }
  if (trainer && trainer.pid !== f.selfPid && f.alive(trainer)) {
    return trainer.selfStarted
      ? `run ${runDir} is being trained by pid ${trainer.pid}, started from a terminal; stop it there (Ctrl+C: it checkpoints), then continue it`
      : `run ${runDir} is being trained by pid ${trainer.pid}, whose supervisor is gone; stop it (SIGINT: it checkpoints), then continue it`;
  }
  return null;
}

/** The facts of the run folder `runDir` as it is now, for this process (SRLORA_OWNER from `env`). */
export function resumeFactsOf(runDir: string, env: NodeJS.ProcessEnv = process.env): ResumeFacts {
  let pidText: string | null = null;
  try { pidText = readFileSync(join(runDir, PID_FILE), 'utf8'); } catch { /* none */ }
  const pid = pidText === null ? null : parsePidText(pidText, PID_FILE);
  return { owner: readOwner(runDir), trainer: pid?.ok ? pid.id : null, alive: ownerAlive, launchedBy: env.SRLORA_OWNER || null, selfPid: process.pid };
}

/** resumeRefusalOf for the run folder `runDir` as it is now, for this process. */
export function resumeRefusal(runDir: string, env: NodeJS.ProcessEnv = process.env): string | null {
  return resumeRefusalOf(runDir, resumeFactsOf(runDir, env));
}
