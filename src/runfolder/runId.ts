/**
 * The run id of a run folder: one rule (docs/protocol.md, "Run ids"), used by the trainer, the run listing and the
 * hub, and implemented the same way in Python (srlora_torch run_id_of); test/vectors/runid.json holds both to it.
 */
import { createHash } from 'node:crypto';

const PLAIN_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]*$/;
const MAX_ID = 128;
const MAX_STEM = 100;

/**
 * The run id for a folder path (or a bare folder name).
 * - A basename that already is a valid protocol id (`^[A-Za-z0-9][A-Za-z0-9._:-]*$`, ≤ 128 characters) is the id.
 * - Otherwise: every run of characters outside `[A-Za-z0-9._-]` becomes one `-`, leading non-alphanumerics are
 *   stripped, the first 100 characters kept, trailing `-` stripped, and `-` + the first 8 hex digits of the
 *   SHA-256 of the name's UTF-8 bytes appended (`run-<hash>` when nothing is left), so two different names never
 *   collide by sanitising alike.
 * The result always matches the protocol's id pattern.
 */
export function runIdOf(dir: string): string {
  const trimmed = dir.replace(/[/\\]+$/, '');
  const name = trimmed.slice(Math.max(trimmed.lastIndexOf('/'), trimmed.lastIndexOf('\\')) + 1);
  if (name.length <= MAX_ID && PLAIN_ID.test(name)) return name;
  const h = createHash('sha256').update(name, 'utf8').digest('hex').slice(0, 8);
  // After the replacement only ASCII is left, so "the first 100 characters" means the same in every language.
  const s = name.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, MAX_STEM).replace(/-+$/, '');
  return s ? `${s}-${h}` : `run-${h}`;
}
