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
import { processIdentity, sameProcess, type ProcessIdentity } from './pidfile';

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
  try {
    const r = JSON.parse(readFileSync(join(dir, OWNER_FILE), 'utf8')) as Partial<OwnerRecord> | null;
    if (typeof r !== 'object' || r === null || !Number.isInteger(r.pid) || !Number.isInteger(r.startTime) || typeof r.instance !== 'string' || typeof r.bootId !== 'string') return null;
    return r as OwnerRecord;
  } catch {
    return null;
  }
}

/** Is the process named by an owner record still the one that wrote it? */
export function ownerAlive(r: OwnerRecord): boolean {
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
