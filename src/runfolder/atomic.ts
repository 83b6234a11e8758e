/** Write-then-rename, so a crash never leaves a half-written file or folder where a complete one is expected. */
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname, join, basename } from 'node:path';
import { randomBytes } from 'node:crypto';

/**
 * A write error as users need it: ENOSPC/EDQUOT become "disk full: <file>" (the supervisor and the user see which
 * file could not be written); others keep their message with the file named. Returns an Error to throw.
 */
export function describeWriteError(e: unknown, file: string): Error {
  const code = (e as NodeJS.ErrnoException | null)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT') return Object.assign(new Error(`disk full: ${file}`), { code });
  const message = e instanceof Error ? e.message : String(e);
  return message.includes(file) ? (e as Error) : Object.assign(new Error(`${file}: ${message}`), { code });
}

export function writeFileAtomic(file: string, data: string | Buffer): void {
  const tmp = join(dirname(file), `.${basename(file)}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    mkdirSync(dirname(file), { recursive: true });
    const fd = openSync(tmp, 'w');
    try {
      writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw describeWriteError(e, file);
  }
}

/** Fills a temporary sibling folder, then renames it into place (replacing nothing: the target must not exist). */
export function writeDirAtomic(dir: string, fill: (tmpDir: string) => void): void {
  const tmp = join(dirname(dir), `.${basename(dir)}.${randomBytes(4).toString('hex')}.tmp`);
  mkdirSync(tmp, { recursive: true });
  try {
    fill(tmp);
    renameSync(tmp, dir);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}
