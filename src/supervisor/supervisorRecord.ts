/**
 * What the supervisor knows and the trainer cannot say (docs/protocol.md, "Supervisor records"): how its process
 * ended. Written into the run's own events.jsonl as a `state` message with origin 'supervisor', its exit and the next
 * seq — only by the run's owner, and only after the trainer is proven gone — so every view folds it with the same
 * reducer and shows the same state.
 */
import { closeSync, fsyncSync, openSync, statSync, truncateSync, writeSync } from 'node:fs';
import { PROTOCOL_MAJOR, type ExitInfo, type State } from '../protocol/messages';
import { validateTrainerMessage } from '../protocol/validate';

/** Why the supervisor ended the trainer, if it did: its own interruption (window reload, Ctrl+C) or the user's stop. */
export type Intent = { kind: 'interrupt'; reason: string } | { kind: 'stop' } | null;

export interface Ending { state: 'failed' | 'interrupted' | 'stopped'; reason: string }

const DISK_FULL = /disk full|ENOSPC|no space left on device/i;
const clip = (s: string, n: number) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

/**
 * The state of a run whose trainer ended without writing a final one. `exit` null: the process vanished (a reattached
 * trainer, whose exit status only its parent could read). Disk full (the trainer says so on stderr) is a failure
 * whatever ended it; else our own interruption → interrupted, the user's stop → stopped, anything else → failed.
 */
export function judgeEnding(exit: ExitInfo | null, pid: number, intent: Intent): Ending {
  const tail = exit?.stderrTail ?? [];
  const disk = [...tail].reverse().find((l) => DISK_FULL.test(l));
  const how = exit === null ? `the trainer process (pid ${pid}) is gone`
    : exit.signal ? `the trainer was killed by ${exit.signal}` : `the trainer exited with code ${exit.code}`;
  if (disk) return { state: 'failed', reason: clip(`disk full: ${disk.replace(/^srlora: /, '').replace(/^disk full:\s*/i, '')} (${how})`, 4096) };
  if (intent?.kind === 'interrupt') return { state: 'interrupted', reason: clip(`${intent.reason}; ${how} without writing its final state`, 4096) };
  if (intent?.kind === 'stop') return { state: 'stopped', reason: clip(`stopped by the user; ${how} without writing its final state`, 4096) };
  const last = tail.slice(-3).join(' | ');
  return { state: 'failed', reason: clip(`${how} without a final state${last ? `: ${last}` : ''}`, 4096) };
}

/** An ExitInfo as the protocol carries it: at most 20 stderr lines of at most 4096 characters. */
export function exitRecord(code: number | null, signal: string | null, stderr: string[]): ExitInfo {
  return { code, signal: signal === null ? null : clip(signal, 32), stderrTail: stderr.slice(-20).map((l) => clip(l, 4096)) };
}

/**
 * Appends the supervisor's `state` record to `file` with seq `lastSeq + 1`. `validBytes` is where the log's complete
 * lines end (the caller has folded them all): anything after it is a line torn when the trainer died, cut off first
 * so the record starts on a line of its own. Fsynced. Returns the message written.
 */
export function appendSupervisorState(file: string, runId: string, lastSeq: number, validBytes: number, body: { state: State['state']; step: number; reason: string; exit: ExitInfo }): State {
  const msg: State = { v: PROTOCOL_MAJOR, type: 'state', runId, seq: lastSeq + 1, time: Date.now(), state: body.state, step: body.step, reason: body.reason, origin: 'supervisor', exit: body.exit };
  const v = validateTrainerMessage(msg);
  if (!v.ok) throw new Error(`supervisor record for ${runId} is invalid: ${v.error}`);
  let size = 0;
  try { size = statSync(file).size; } catch { /* no log yet: the trainer never started */ }
  if (size > validBytes) truncateSync(file, validBytes);
  const fd = openSync(file, 'a');
  try {
    writeSync(fd, `${JSON.stringify(msg)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return msg;
}
