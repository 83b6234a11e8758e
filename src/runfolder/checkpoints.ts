/**
 * Checkpoint folders (docs/protocol.md, "Checkpoints"): `checkpoints/step-N/` holds a trainer's files and, written
 * last, `COMPLETE.json` = {"step": N, "files": {name: {"bytes": n, "sha256": hex}}}. A folder is filled under a
 * temporary name; every file and the folder are fsynced, then it is renamed into place and its parent fsynced, so after
 * a power cut a checkpoint is either whole or absent. Resume takes the newest folder whose marker and files verify and
 * says which newer ones it skipped and why. Both trainers write and read this same layout.
 */
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, fstatSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { describeWriteError } from './atomic';

export const CHECKPOINTS_DIR = 'checkpoints';
export const COMPLETE_MARKER = 'COMPLETE.json';
/** A marker larger than this is not one of ours. */
const MAX_MARKER_BYTES = 1 << 20;

export interface CompleteMarker {
  step: number;
  files: Record<string, { bytes: number; sha256: string }>;
}

export function checkpointDir(runDir: string, step: number): string {
  return join(runDir, CHECKPOINTS_DIR, `step-${step}`);
}

function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try { fsyncSync(fd); } finally { closeSync(fd); }
}

function sha256File(file: string): { bytes: number; sha256: string } {
  const fd = openSync(file, 'r');
  try {
    const hash = createHash('sha256');
    const buf = Buffer.allocUnsafe(1 << 20);
    let bytes = 0;
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0;) { hash.update(buf.subarray(0, n)); bytes += n; }
    return { bytes, sha256: hash.digest('hex') };
  } finally {
    closeSync(fd);
  }
}

/** Files of a checkpoint folder other than the marker, as relative paths with '/' (sub-folders included). */
function listFiles(dir: string, prefix = ''): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(dir, prefix), { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...listFiles(dir, rel));
    else if (e.isFile() && rel !== COMPLETE_MARKER) out.push(rel);
  }
  return out.sort();
}

/**
 * Writes `checkpoints/step-<step>/`: `fill(tmpDir)` writes the trainer's files into a temporary sibling folder; then
 * every file is hashed and fsynced, COMPLETE.json written and fsynced, the folder fsynced, renamed into place, and
 * `checkpoints/` fsynced. A folder for this step that already verifies is kept (returns it unchanged); one that does
 * not (a torn earlier attempt) is replaced. Returns the folder. Errors: ENOSPC → "disk full: <file>".
 */
export function writeCheckpoint(runDir: string, step: number, fill: (tmpDir: string) => void): string {
  const dir = checkpointDir(runDir, step);
  if (existsSync(dir)) {
    if (verifyCheckpoint(dir, { hashes: true }).ok) return dir;
    rmSync(dir, { recursive: true, force: true });
  }
  const parent = dirname(dir);
  mkdirSync(parent, { recursive: true });
  const tmp = join(parent, `.${basename(dir)}.${randomBytes(4).toString('hex')}.tmp`);
  mkdirSync(tmp);
  let current = tmp;
  try {
    fill(tmp);
    const files: CompleteMarker['files'] = {};
    for (const rel of listFiles(tmp)) {
      current = join(tmp, rel);
      fsyncPath(current);
      files[rel] = sha256File(current);
    }
    const marker: CompleteMarker = { step, files };
    current = join(tmp, COMPLETE_MARKER);
    const fd = openSync(current, 'w');
    try { writeSync(fd, JSON.stringify(marker, null, 1) + '\n'); fsyncSync(fd); } finally { closeSync(fd); }
    current = tmp;
    fsyncPath(tmp);
    renameSync(tmp, dir);
    current = parent;
    fsyncPath(parent);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    if (e instanceof Error && e.message.startsWith('disk full: ')) throw e; // already names the file
    throw describeWriteError(e, current === tmp ? dir : current);
  }
  return dir;
}

export type Verdict = { ok: true; step: number } | { ok: false; reason: string };

/**
 * Checks a checkpoint folder against its COMPLETE.json: the marker parses, names this folder's step, and every file it
 * lists exists with its size (and, with `hashes`, its SHA-256). Never throws for a bad folder: says why.
 */
export function verifyCheckpoint(dir: string, opts: { hashes: boolean } = { hashes: true }): Verdict {
  const file = join(dir, COMPLETE_MARKER);
  let marker: CompleteMarker;
  try {
    if (!existsSync(file)) return { ok: false, reason: `no ${COMPLETE_MARKER} (written incompletely, or by an older version)` };
    if (statSync(file).size > MAX_MARKER_BYTES) return { ok: false, reason: `${COMPLETE_MARKER} is too large` };
    marker = JSON.parse(readFileSync(file, 'utf8')) as CompleteMarker;
  } catch (e) {
    return { ok: false, reason: `${COMPLETE_MARKER} is unreadable: ${(e as Error).message.slice(0, 200)}` };
  }
  const m = /step-(\d+)$/.exec(dir.replace(/[/\\]+$/, ''));
  if (typeof marker !== 'object' || marker === null || typeof marker.files !== 'object' || marker.files === null || !Number.isInteger(marker.step)) {
    return { ok: false, reason: `${COMPLETE_MARKER} is not {step, files}` };
  }
  if (m && Number(m[1]) !== marker.step) return { ok: false, reason: `${COMPLETE_MARKER} says step ${marker.step}` };
  const names = Object.keys(marker.files);
  if (names.length === 0) return { ok: false, reason: `${COMPLETE_MARKER} lists no files` };
  for (const name of names) {
    const want = marker.files[name];
    const path = join(dir, name);
    if (name.split(/[/\\]/).includes('..') || relative(dir, path).startsWith('..')) return { ok: false, reason: `${COMPLETE_MARKER} names a file outside the folder` };
    let size: number;
    try {
      const fd = openSync(path, 'r');
      try { size = fstatSync(fd).size; } finally { closeSync(fd); }
    } catch {
      return { ok: false, reason: `${name} is missing` };
    }
    if (size !== want?.bytes) return { ok: false, reason: `${name} has ${size} bytes, ${COMPLETE_MARKER} says ${String(want?.bytes)}` };
    if (opts.hashes && sha256File(path).sha256 !== want.sha256) return { ok: false, reason: `${name} does not match its sha256 (corrupt)` };
  }
  return { ok: true, step: marker.step };
}

export interface CheckpointChoice {
  /** The newest checkpoint folder that verified, or null. */
  dir: string | null;
  step: number | null;
  /** Newer folders that did not verify, newest first, with the reason. */
  skipped: { dir: string; step: number; reason: string }[];
}

/** The `checkpoints/step-N` folders of a run, newest first. */
export function checkpointSteps(runDir: string): number[] {
  const root = join(runDir, CHECKPOINTS_DIR);
  let names: string[];
  try { names = readdirSync(root); } catch { return []; }
  return names.map((d) => /^step-(\d+)$/.exec(d)).filter((m): m is RegExpExecArray => m !== null).map((m) => Number(m[1])).sort((a, b) => b - a);
}

/**
 * The newest complete, verified checkpoint of a run (sizes and SHA-256 of every file; `hashes: false` checks sizes
 * only, for a cheap "can this run continue" question), and the newer ones it skipped with why.
 */
export function latestCompleteCheckpoint(runDir: string, opts: { hashes: boolean } = { hashes: true }, readable?: (dir: string) => string | null): CheckpointChoice {
  const skipped: CheckpointChoice['skipped'] = [];
  for (const step of checkpointSteps(runDir)) {
    const dir = checkpointDir(runDir, step);
    const v = verifyCheckpoint(dir, opts);
    // readable (the resume's): a verified folder whose content does not read (another version's, a bug's) is
    // skipped with its reason as an unverified one is, and the next older tried
    const why = v.ok ? (readable?.(dir) ?? null) : v.reason;
    if (why === null) return { dir, step, skipped };
    skipped.push({ dir, step, reason: why });
  }
  return { dir: null, step: null, skipped };
}
