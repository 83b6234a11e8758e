/**
 * The commands a run received, newest first, as its log tells them (every ack: from this page, the palette, the
 * Runs view, another window), so the list survives a reload. The labels of commands this page sent are kept in the
 * page state (an ack names only the command id); others are named from what the log shows (an applied set's
 * settings, a forced recomposition). A recomposition that fused nothing says so instead of a green "applied".
 */
import type { Ack } from '../../src/protocol/messages';
import { noFusionReasons, type CommandKind } from '../../src/viewmodel/runModel';
import type { Store } from '../store';
import type { RunData } from '../runData';
import { h } from '../dom';
import type { Panel } from './panel';

const MAX_SHOWN = 30;

const KIND_LABEL: Record<CommandKind, string> = { pause: 'Pause', resume: 'Resume', stop: 'Stop', checkpoint: 'Checkpoint', set: 'Set', recompose: 'Recompose' };

/**
 * A command's name in the list: the label this page gave it when it sent it, else what the log shows (an applied
 * set's settings, a forced recomposition's layers, the kind the one reducer told from what followed the ack), so a
 * reload, the palette's and the Runs view's commands read "Pause — applied at step 40", not an id.
 */
export function commandLabel(r: RunData, id: string, acks: Ack[], own?: string): string {
  if (own) return own;
  const settings = acks.find((a) => a.settings)?.settings;
  if (settings) return `Set ${settings.fusionThreshold === null ? 'τ off' : `τ = ${settings.fusionThreshold}`}, γ = ${settings.fusionRatio}`;
  const rec = r.recompositions.find((e) => e.commandId === id);
  if (rec) return rec.layers.length === r.model.layers.length ? 'Recompose all layers' : `Recompose ${rec.layers.map((l) => l.name).join(', ')}`;
  const kind = r.model.commandKinds[id];
  return kind ? KIND_LABEL[kind] : `Command ${id}`;
}

export class CommandsPanel implements Panel {
  readonly element = h('div', {}, h('h2', {}, 'Commands'), h('ul', { class: 'commands', 'aria-live': 'polite', 'aria-label': 'Commands sent to the run' }));
  private readonly list = this.element.querySelector('ul')!;
  private key = '';

  constructor(private readonly store: Store) {}

  private label(r: RunData, id: string, acks: Ack[]): string { return commandLabel(r, id, acks, this.store.sentLabels.get(id)); }

  private status(r: RunData, id: string, acks: Ack[]): { text: string; cls: string } {
    const last = acks[acks.length - 1];
    if (last.status === 'rejected') return { text: `rejected: ${last.reason ?? ''}`, cls: 'bad' };
    if (last.status !== 'applied') return { text: 'received', cls: '' };
    const rec = r.recompositions.find((e) => e.commandId === id);
    if (rec && !rec.layers.some((l) => l.slots.length > 0)) {
      // Which condition stopped each layer (the one reducer's idleLayers); one phrase when they agree.
      const names = new Set(rec.layers.map((l) => l.name));
      const why = noFusionReasons(r.model, rec.seq, names);
      return { text: `applied at step ${last.step} — fused nothing (${why.length ? why.join('; ') : 'no pair selected'})`, cls: 'none' };
    }
    return { text: `applied at step ${last.step}`, cls: 'ok' };
  }

  update(): void {
    const r = this.store.current();
    const key = `${this.store.focus.join()}:${r?.resets}:${r?.ackCount}:${r?.recompositions.length}:${this.store.pending.map((c) => c.status).join()}:${this.store.sentLabels.size}`;
    if (key === this.key) return;
    this.key = key;
    const items: HTMLElement[] = this.store.pending.filter((c) => c.runId === r?.runId)
      .map((c) => h('li', { class: /^(refused|not acknowledged)/.test(c.status) ? 'bad' : '' }, `${c.label} — ${c.status}`));
    if (r && this.store.focus.length === 1) {
      const ids = [...r.acks.keys()].reverse();
      for (const id of ids.slice(0, MAX_SHOWN)) {
        const acks = r.acks.get(id)!;
        const s = this.status(r, id, acks);
        items.push(h('li', { class: s.cls }, `${this.label(r, id, acks)} — ${s.text}`));
      }
    }
    this.list.replaceChildren(...items);
  }
}
