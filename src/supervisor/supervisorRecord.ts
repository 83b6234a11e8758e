/**
 * What the supervisor knows and the trainer cannot say (docs/protocol.md, "Supervisor records"): how its process
 * ended. Written into the run's own events.jsonl as a `state` message with origin 'supervisor', its exit and the next
 * seq — only by the run's owner, and only after the trainer is proven gone — so every view folds it with the same
 * reducer and shows the same state.
 */
import { closeSync, fstatSync, fsyncSync, ftruncateSync, openSync, readSync, writeSync } from 'node:fs';
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
  const line = usefulLine(tail, exit?.signal ? 'errors' : 'any');
  return { state: 'failed', reason: `${how} without a final state${line ? `: ${clip(line.trim(), REASON_LINE)}` : ''}` };
}

/** A reason quotes one stderr line, cut to this many characters (the whole tail stays in the record's exit). */
const REASON_LINE = 300;
/** Lines that never explain a failure: rules and banners, TensorFlow.js's Node notice, our own start-up lines, the
 * frames of a Python traceback (its last line is the error). */
const NOISE = [
  /^\s*$/, /^\s*[=*#~_+.\-]{3,}\s*$/, /tensorflow\.js in node|tfjs-node|speed things up/i, /^run \S+ (→|->) /, /^srlora on /,
  /^\s*step \d+\/\d+/, /^Traceback \(most recent call last\)/, /^\s+File ".*", line \d+/, /^\s+\S.*$/, /^\s*\^+\s*$/,
];
const ERRORISH = /error|exception|fatal|killed|out of memory|denied|cannot|can't|failed|no such|not found|invalid|abort|refused/i;

/**
 * The stderr line that says why a trainer ended: the last error-like line that is not noise; for an exit without
 * a signal, else the last line that is not noise. Null when none (a SIGKILL after ordinary output says it all).
 */
export function usefulLine(tail: string[], want: 'errors' | 'any'): string | null {
  const lines = tail.filter((l) => !NOISE.some((re) => re.test(l)));
  return [...lines].reverse().find((l) => ERRORISH.test(l)) ?? (want === 'any' ? lines.at(-1) ?? null : null);
}

/** An ExitInfo as the protocol carries it: at most 20 stderr lines of at most 4096 characters. */
export function exitRecord(code: number | null, signal: string | null, stderr: string[]): ExitInfo {
  return { code, signal: signal === null ? null : clip(signal, 32), stderrTail: stderr.slice(-20).map((l) => clip(l, 4096)) };
}

/**
 * Appends the supervisor's `state` record to `file` with seq `lastSeq + 1`. `validBytes` is where the log's complete
 * lines end as the caller folded them. The file's real end is checked first: a torn last line after `validBytes` (the
 * trainer died mid-write) is cut off so the record starts on a line of its own; a COMPLETE line after it means the
 * log grew since the caller folded it (a writer it did not know of): nothing is written and null returned — the caller
 * folds again and decides again, so no seq is ever used twice. Fsynced. Returns the message written.
 */
export function appendSupervisorState(file: string, runId: string, lastSeq: number, validBytes: number, body: { state: State['state']; step: number; reason: string; exit: ExitInfo }): State | null {
  const msg: State = { v: PROTOCOL_MAJOR, type: 'state', runId, seq: lastSeq + 1, time: Date.now(), state: body.state, step: body.step, reason: body.reason, origin: 'supervisor', exit: body.exit };
  const v = validateTrainerMessage(msg);
  if (!v.ok) throw new Error(`supervisor record for ${runId} is invalid: ${v.error}`);
  const fd = openSync(file, 'a+');
  try {
    const size = fstatSync(fd).size;
    if (size > validBytes) {
      const rest = Buffer.alloc(size - validBytes);
      readSync(fd, rest, 0, rest.length, validBytes);
      if (rest.includes(0x0a)) return null; // complete lines the caller has not folded
      ftruncateSync(fd, validBytes);
    }
    writeSync(fd, `${JSON.stringify(msg)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return msg;
}
