/**
 * What the hub keeps for one run: its secret, its persisted stream (hub-events.jsonl), the in-memory history
 * that snapshots are made from, and the commands still waiting for a final ack.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { WebSocket } from 'ws';
import { JsonlWriter, readJsonl } from '../runfolder/eventLog';
import { EVENTS_FILE, HUB_LOG_FILE } from '../runfolder/runFiles';
import { validateTrainerMessage } from '../protocol/validate';
import type { Hello, RunStateName, RunSummary, TrainerMessage } from '../protocol/messages';


/** Importance snapshots kept for a new viewer's snapshot; older ones are thinned to every other one. */
const MAX_IMPORTANCE_KEPT = 400;

export class RunChannel {
  readonly logFile: string;
  private writer: JsonlWriter | null = null;
  /** Highest trainer seq stored. */
  lastSeq = 0;
  hello: Hello | null = null;
  state: RunStateName = 'starting';
  step = 0;
  trainer: WebSocket | null = null;
  /** Hub → trainer seq for this run. */
  outSeq = 0;
  readonly inFlight = new Set<string>();
  private history: TrainerMessage[] = [];
  private importanceCount = 0;
  truncated = false;

  constructor(readonly runId: string, readonly dir: string, readonly token: string) {
    mkdirSync(dir, { recursive: true });
    this.logFile = join(dir, HUB_LOG_FILE);
    // A hub restarted on the same folder resumes where the last one stopped: the trainer resends after lastSeq.
    // A folder with no hub log yet (a run trained without a hub) is imported from the trainer's events.jsonl.
    const imported = !existsSync(this.logFile);
    const { events } = readJsonl(imported ? join(dir, EVENTS_FILE) : this.logFile);
    const accepted: TrainerMessage[] = [];
    for (const e of events) {
      const v = validateTrainerMessage(e);
      if (v.ok && v.value.runId === runId && v.value.seq === this.lastSeq + 1) { this.remember(v.value); accepted.push(v.value); }
    }
    this.writer = new JsonlWriter(this.logFile);
    if (imported) for (const m of accepted) this.writer.append(m);
  }

  /** Persist, then remember. `raw` is the text as received, reused to avoid a second stringify. */
  store(msg: TrainerMessage, raw: string | null): void {
    if (!this.writer) throw new Error(`run ${this.runId} is closed`);
    if (raw !== null && !raw.includes('\n')) this.writer.appendLine(raw);
    else this.writer.append(msg);
    this.remember(msg);
  }

  private remember(msg: TrainerMessage): void {
    this.lastSeq = msg.seq;
    switch (msg.type) {
      case 'hello': this.hello = msg; break;
      case 'state': this.state = msg.state; this.step = Math.max(this.step, msg.step); break;
      case 'metrics': this.step = Math.max(this.step, msg.rows[msg.rows.length - 1].step); break;
      case 'ack': if (msg.status !== 'received') this.inFlight.delete(msg.commandId); break;
      case 'importance': this.importanceCount++; break;
      default: break;
    }
    this.history.push(msg);
    if (msg.type === 'importance' && this.importanceCount > MAX_IMPORTANCE_KEPT) this.thinImportance();
  }

  /** Drop every other importance snapshot from the older half, so memory stays bounded on long runs. */
  private thinImportance(): void {
    let seen = 0;
    const half = this.importanceCount / 2;
    this.history = this.history.filter((m) => {
      if (m.type !== 'importance') return true;
      seen++;
      return seen > half || seen % 2 === 0;
    });
    this.importanceCount = this.history.reduce((n, m) => n + (m.type === 'importance' ? 1 : 0), 0);
    this.truncated = true;
  }

  snapshot(): TrainerMessage[] {
    return this.history.slice();
  }

  summary(): RunSummary {
    return {
      runId: this.runId,
      name: this.hello?.name,
      method: this.hello?.method,
      state: this.state,
      step: this.step,
      totalSteps: this.hello?.totalSteps ?? null,
      connected: this.trainer !== null,
    };
  }

  close(): void {
    this.writer?.close();
    this.writer = null;
  }
}
