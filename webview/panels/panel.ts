/**
 * What every panel of the page is: a component with its own DOM, inputs and state, fed by the one store (which
 * folds each run through the one reducer). A new chart or view is one more Panel; the others do not change.
 */
import type { Store } from '../store';
import type { RunData } from '../runData';
import { cssVar, h } from '../dom';

export interface Panel {
  readonly element: HTMLElement;
  /** Cheap DOM work, on every store change. */
  update(): void;
  /**
   * Canvas drawing, when `dirty()`; the frame loop spreads these over frames to keep each frame short. false: it
   * found nothing to change on the canvas (a cheap check, not counted as the frame's draw).
   */
  draw?(): boolean | void;
  dirty?(): boolean;
  /** The pending draw is for something the user did (view, focus, zoom, theme): it is never deferred. */
  urgent?(): boolean;
  /** The theme changed: redraw every colour. */
  retheme?(): void;
  /**
   * Off screen, the canvas is not drawn (the frame loop skips it until it scrolls into view); this keeps what it
   * tells screen readers (its label: runs, points, last value) current without drawing. Cheap.
   */
  describe?(): void;
}

export type Btn = HTMLElement & { disabled: boolean };
export type Field = HTMLElement & { value: string; disabled: boolean; invalid?: boolean };
export type Check = HTMLElement & { checked: boolean; disabled: boolean };

export function button(label: string, name: string, onClick: () => void, secondary = true): Btn {
  const b = h('vscode-button', { secondary, 'aria-label': name, title: name }, label) as Btn;
  b.addEventListener('click', onClick);
  return b;
}

export function section(title: string, ...children: (Node | string | null)[]): HTMLElement {
  return h('section', { class: 'panel', 'aria-label': title }, h('h2', {}, title), ...children);
}

const RUN_COLORS = ['--vscode-charts-blue', '--vscode-charts-orange', '--vscode-charts-green', '--vscode-charts-purple', '--vscode-charts-red', '--vscode-charts-yellow'];
const RUN_FALLBACK = ['#3794ff', '#d18616', '#89d185', '#b180d7', '#f14c4c', '#cca700'];

/** One colour per run (its place in the compare list), the same in every chart. */
export function runColor(i: number): string {
  return cssVar(RUN_COLORS[i % RUN_COLORS.length], RUN_FALLBACK[i % RUN_FALLBACK.length]);
}

/** The run's display name: its config name (or --name), else its id. */
export const runName = (r: RunData) => r.model.name || r.runId;

/**
 * Names the run a one-run view shows while runs are compared (the heatmap, the slot history, the recompositions, the
 * step boost show the first): "NAME (the first compared run)"; '?' while it has not loaded.
 */
export const firstComparedRun = (r: RunData | undefined) => `${r ? runName(r) : '?'} (the first compared run)`;

/** A file name prefix from the run's name. */
export const filePrefix = (store: Store) => (store.current()?.model.name ?? 'srlora').replace(/[^\w.-]+/g, '_');
