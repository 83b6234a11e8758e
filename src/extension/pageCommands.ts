/**
 * A dashboard page's steering commands in VS Code (no `vscode` import, so tests drive it): each goes through the
 * RunManager (which holds commands sent before the run's trainer connects, see RunManager.command) and is answered
 * with `commandResult {requestId, commandId | error}`. A command the RunManager accepted and later could not deliver
 * (its trainer did not connect within the wait, or the hub refused it then: the `commandRefused` event) is answered
 * again, `commandResult {requestId, commandId, error}`, so the page shows the refusal and its reason instead of a
 * command that stays "sent" for ever — also for a command of a run the page shows that came from the palette or the
 * Runs view (then requestId is its command id).
 */
import type { HubToViewer, ViewerCommand } from '../protocol/messages';
import { PROTOCOL_MAJOR } from '../protocol/messages';
import type { RunManager } from '../supervisor/runManager';

/** Command ids this page sent and whose fate is still open, newest kept (a command's refusal comes within ~30 s). */
const MAX_OPEN = 64;

export class PageCommands {
  /** Command id → the page's request id. */
  private readonly open = new Map<string, string>();
  private readonly onRefused = (runId: string, commandId: string, message: string): void => {
    const requestId = this.open.get(commandId);
    if (requestId === undefined && !this.shows(runId)) return;
    this.open.delete(commandId);
    this.post({ v: PROTOCOL_MAJOR, type: 'commandResult', requestId: requestId ?? commandId, commandId, error: message.slice(0, 300) });
  };

  /** `shows(runId)`: the page shows that run (it hears the refusals of every command sent to it). */
  constructor(private readonly runs: RunManager, private readonly post: (msg: HubToViewer) => void, private readonly shows: (runId: string) => boolean) {
    runs.on('commandRefused', this.onRefused);
  }

  /** Forwards the page's command; the answer is posted (never thrown). */
  command(msg: ViewerCommand): void {
    let r;
    try { r = this.runs.command(msg.runId, msg.command); } catch (e) { r = { ok: false as const, error: (e as Error).message }; }
    if (r.ok) {
      this.open.set(r.commandId, msg.requestId);
      if (this.open.size > MAX_OPEN) this.open.delete(this.open.keys().next().value as string);
    }
    this.post({ v: PROTOCOL_MAJOR, type: 'commandResult', requestId: msg.requestId, ...(r.ok ? { commandId: r.commandId } : { error: r.error }) });
  }

  dispose(): void {
    this.runs.off('commandRefused', this.onRefused);
    this.open.clear();
  }
}
