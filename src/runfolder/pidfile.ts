/**
 * Process identity, so that a pid read from a file is trusted only while it still names the process that wrote it
 * (docs/protocol.md, "Ownership and signals"). A pid alone is not an identity: after a crash or a reboot the number is
 * reused by an unrelated process, and `kill(pid, 0)` cannot tell. Linux gives each process a start time (field 22 of
 * /proc/PID/stat, clock ticks since boot) and each boot an id (/proc/sys/kernel/random/boot_id); together with the pid
 * they name one process for ever. Where /proc is missing the identity is unknown and nothing is ever signalled.
 */
import { readFileSync, rmSync } from 'node:fs';
import { writePrivateFileAtomic } from './lock';

export interface ProcessIdentity {
  pid: number;
  /** Field 22 of /proc/PID/stat: the process's start, in clock ticks after boot. */
  startTime: number;
  /** Its process group when recorded (a trainer we spawned leads its own: pgid === pid). */
  pgid: number;
  /** /proc/sys/kernel/random/boot_id of the boot it ran in. */
  bootId: string;
  /**
   * Written by the trainer itself because no supervisor launched it (a terminal, a user's script): a watcher may
   * record that it is gone, but nobody here started it, so nobody here owns or signals it.
   */
  selfStarted?: true;
}

let cachedBootId: string | null | undefined;

/** This boot's id, or null where the kernel does not say (not Linux). */
export function bootId(): string | null {
  if (cachedBootId === undefined) {
    try { cachedBootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || null; } catch { cachedBootId = null; }
  }
  return cachedBootId;
}

/** The identity of a live process now, or null when there is none with that pid (or it cannot be read). Never for pid ≤ 1. */
export function processIdentity(pid: number): ProcessIdentity | null {
  if (!Number.isInteger(pid) || pid <= 1) return null;
  const boot = bootId();
  if (boot === null) return null;
  let stat: string;
  try { stat = readFileSync(`/proc/${pid}/stat`, 'utf8'); } catch { return null; }
  // "pid (comm) state ppid pgrp …": comm may hold spaces and parentheses, so split after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state): field n is fields[n - 3].
  if (fields[0] === 'Z' || fields[0] === 'X') return null; // a zombie has ended; only its parent's wait is missing
  const pgid = Number(fields[5 - 3]);
  const startTime = Number(fields[22 - 3]);
  if (!Number.isInteger(pgid) || !Number.isInteger(startTime)) return null;
  return { pid, startTime, pgid, bootId: boot };
}

/** Is the process recorded as `rec` still alive (same pid, start time, boot, process group)? False for pid ≤ 1. */
export function sameProcess(rec: ProcessIdentity): boolean {
  const now = processIdentity(rec.pid);
  return now !== null && now.startTime === rec.startTime && now.bootId === rec.bootId && now.pgid === rec.pgid;
}

/**
 * How to signal a process recorded as `rec` and proven alive: its group when it leads the group it was spawned
 * into (`groupOurs`: we created that group), else the pid alone; null when it is not provably the same process
 * (then nothing may be signalled).
 */
export function signalTarget(rec: ProcessIdentity, groupOurs: boolean): number | null {
  if (rec.pid <= 1 || !sameProcess(rec)) return null;
  return groupOurs && rec.pgid === rec.pid ? -rec.pid : rec.pid;
}

/**
 * A trainer that no supervisor launched records its own identity (selfStarted), so that a watcher can tell within
 * seconds that it is gone without a final state (killed, crashed). Does nothing where the identity cannot be read.
 */
export function writeOwnPidFile(file: string): void {
  const id = processIdentity(process.pid);
  if (id) writePidFile(file, { ...id, selfStarted: true });
}

/** Removes the trainer.pid writeOwnPidFile wrote, when it still names this process (a trainer that ends says so). */
export function removeOwnPidFile(file: string): void {
  const r = readPidFile(file);
  if (r.ok && r.id.selfStarted && r.id.pid === process.pid) rmSync(file, { force: true });
}

/** Writes trainer.pid: the JSON identity, mode 0600, atomically. */
export function writePidFile(file: string, id: ProcessIdentity): void {
  writePrivateFileAtomic(file, JSON.stringify(id));
}

export type PidFileRead = { ok: true; id: ProcessIdentity } | { ok: false; error: string };

/** Reads trainer.pid. A bare number (older versions) or any other shape is refused: it cannot prove identity. */
export function readPidFile(file: string): PidFileRead {
  let text: string;
  try { text = readFileSync(file, 'utf8'); } catch (e) { return { ok: false, error: `${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}` }; }
  return parsePidText(text, file);
}

/** trainer.pid's text (read from `file`, named in errors) as a process identity: readPidFile's rule. */
export function parsePidText(text: string, file: string): PidFileRead {
  let v: unknown;
  try { v = JSON.parse(text); } catch { return { ok: false, error: `${file}: not JSON (${JSON.stringify(text.slice(0, 40))})` }; }
  const r = v as Partial<ProcessIdentity> | null;
  if (typeof r !== 'object' || r === null || !Number.isInteger(r.pid) || !Number.isInteger(r.startTime) || !Number.isInteger(r.pgid) || typeof r.bootId !== 'string') {
    return { ok: false, error: `${file}: not a process identity {pid, startTime, pgid, bootId}` };
  }
  if ((r.pid as number) <= 1) return { ok: false, error: `${file}: pid ${r.pid} refused (≤ 1)` };
  return { ok: true, id: { pid: r.pid as number, startTime: r.startTime as number, pgid: r.pgid as number, bootId: r.bootId, ...(r.selfStarted === true ? { selfStarted: true as const } : {}) } };
}
