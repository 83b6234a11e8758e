/**
 * The importance heatmap: one row per adapted layer, one cell per slot, colour = ŝ (1.0 = the layer's average).
 * Cells the fusion rule in force (or being previewed) would fuse are outlined and crossed; on the right, each
 * layer's direction usage p / rTarget. Drawn on a canvas with fillRect, so thousands of cells cost well under a
 * millisecond; a tooltip shows S, ŝ, age and the direction held.
 */
import type { LayerImportance } from '../src/protocol/messages';
import { paintScores, scoreColor } from './colors';
import { cssVar, formatNumber } from './dom';

export interface HeatmapInput {
  layers: LayerImportance[];
  /** Per layer: the slots the rule would fuse now. */
  marked: Map<string, number[]>;
  selected: Set<string>;
  /** The row the keyboard is on (drawn with a focus ring while the row list has focus), or -1. */
  focusRow?: number;
}

const LABEL_W = 150, BAR_W = 84, ROW_H = 18, GAP = 1, MAX_SHAT = 2.5;

export class Heatmap {
  private input: HeatmapInput | null = null;
  private cellW = 10;
  private readonly cells = document.createElement('canvas');
  readonly tooltip: HTMLDivElement;
  onToggleLayer: (name: string) => void = () => {};

  constructor(readonly canvas: HTMLCanvasElement) {
    this.tooltip = document.createElement('div');
    this.tooltip.className = 'tooltip';
    this.tooltip.hidden = true;
    canvas.after(this.tooltip);
    canvas.addEventListener('mousemove', (e) => this.hover(e));
    canvas.addEventListener('mouseleave', () => { this.tooltip.hidden = true; });
    canvas.addEventListener('click', (e) => {
      const hit = this.hit(e);
      if (hit) this.onToggleLayer(hit.layer.name);
    });
  }

  private hit(e: MouseEvent): { layer: LayerImportance; slot: number | null } | null {
    if (!this.input) return null;
    const r = this.canvas.getBoundingClientRect();
    const x = e.clientX - r.left, y = e.clientY - r.top;
    const row = Math.floor(y / ROW_H);
    const layer = this.input.layers[row];
    if (!layer) return null;
    const slot = x >= LABEL_W ? Math.floor((x - LABEL_W) / this.cellW) : null;
    return { layer, slot: slot !== null && slot < layer.S.length ? slot : null };
  }

  private hover(e: MouseEvent): void {
    const hit = this.hit(e);
    if (!hit || hit.slot === null) { this.tooltip.hidden = true; return; }
    const { layer, slot } = hit;
    const fuse = this.input?.marked.get(layer.name)?.includes(slot) ? '\nwould fuse now' : '';
    this.tooltip.textContent = `${layer.name} · slot ${slot}\nS = ${formatNumber(layer.S[slot], 6)}\nŝ = ${layer.sHat[slot].toFixed(3)}\nage ${layer.age[slot]} steps\ndirection ${layer.direction[slot]}${fuse}`;
    this.tooltip.hidden = false;
    const r = this.canvas.getBoundingClientRect();
    this.tooltip.style.left = `${e.clientX - r.left + 12}px`;
    this.tooltip.style.top = `${e.clientY - r.top + 12}px`;
  }

  render(input: HeatmapInput): void {
    this.input = input;
    const rows = input.layers.length;
    const slots = Math.max(1, ...input.layers.map((l) => l.S.length));
    const dpr = window.devicePixelRatio || 1;
    const width = this.canvas.clientWidth || 600;
    const height = Math.max(ROW_H, rows * ROW_H);
    this.canvas.style.height = `${height}px`;
    const cells = input.layers.reduce((n, l) => n + l.S.length, 0);
    this.canvas.dataset.layers = String(rows);
    this.canvas.dataset.slots = String(input.layers.length ? slots : 0);
    this.canvas.dataset.cells = String(cells);
    this.canvas.setAttribute('aria-label', `Importance heatmap: ${rows} layers × ${input.layers.length ? slots : 0} slots`);
    if (this.canvas.width !== Math.round(width * dpr) || this.canvas.height !== Math.round(height * dpr)) {
      this.canvas.width = Math.round(width * dpr);
      this.canvas.height = Math.round(height * dpr);
    }
    const ctx = this.canvas.getContext('2d')!;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    this.cellW = Math.max(2, (width - LABEL_W - BAR_W - 8) / slots);
    const fg = cssVar('--vscode-foreground', '#ccc');
    const mark = cssVar('--vscode-editorError-foreground', '#f14c4c');
    const sel = cssVar('--vscode-focusBorder', '#007fd4');
    const track = cssVar('--vscode-editorWidget-border', '#454545');
    const barFill = cssVar('--vscode-charts-blue', '#3794ff');
    ctx.font = `11px ${cssVar('--vscode-font-family', 'sans-serif')}`;
    ctx.textBaseline = 'middle';
    // The cells: one pixel per cell in an ImageData, scaled up in one drawImage (thousands of cells, one call).
    if (rows > 0) {
      if (this.cells.width !== slots || this.cells.height !== rows) { this.cells.width = slots; this.cells.height = rows; }
      const cctx = this.cells.getContext('2d')!;
      const img = cctx.createImageData(slots, rows);
      input.layers.forEach((l, row) => { for (let k = 0; k < l.S.length; k++) paintScores(img.data, (row * slots + k) * 4, l.sHat[k], MAX_SHAT); });
      cctx.putImageData(img, 0, 0);
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(this.cells, LABEL_W, 0, slots * this.cellW, rows * ROW_H);
      // Gaps between cells, so neighbours stay distinguishable.
      ctx.fillStyle = cssVar('--vscode-editor-background', '#1f1f1f');
      if (this.cellW >= 4) for (let k = 1; k < slots; k++) ctx.fillRect(LABEL_W + k * this.cellW - GAP, 0, GAP, rows * ROW_H);
      for (let r = 0; r <= rows; r++) ctx.fillRect(LABEL_W, r * ROW_H, slots * this.cellW, GAP);
    }
    // The usage bar leaves room for its widest "p/rTarget" label (PyTorch runs reach 16/16 and beyond).
    const widest = Math.max(0, ...input.layers.map((l) => l.rTarget));
    const textW = Math.ceil(ctx.measureText(`${widest}/${widest}`).width) + 6;
    const barW = Math.max(12, BAR_W - textW);
    input.layers.forEach((l, row) => {
      const y = row * ROW_H;
      ctx.fillStyle = input.selected.has(l.name) ? sel : fg;
      const label = l.name.length > 24 ? '…' + l.name.slice(-23) : l.name;
      ctx.fillText(input.selected.has(l.name) ? `▸ ${label}` : label, 2, y + ROW_H / 2);
      for (const k of input.marked.get(l.name) ?? []) {
        const x = LABEL_W + k * this.cellW;
        ctx.strokeStyle = mark;
        ctx.lineWidth = 2;
        ctx.strokeRect(x + 1, y + GAP + 1, this.cellW - GAP - 2, ROW_H - 2 * GAP - 2);
        ctx.beginPath();
        ctx.moveTo(x + 3, y + 4);
        ctx.lineTo(x + this.cellW - 4, y + ROW_H - 4);
        ctx.stroke();
      }
      // Direction usage p / rTarget.
      const bx = width - BAR_W;
      ctx.fillStyle = track;
      ctx.fillRect(bx, y + 5, barW, ROW_H - 10);
      ctx.fillStyle = barFill;
      ctx.fillRect(bx, y + 5, (barW * l.p) / Math.max(1, l.rTarget), ROW_H - 10);
      ctx.fillStyle = fg;
      ctx.fillText(`${l.p}/${l.rTarget}`, bx + barW + 4, y + ROW_H / 2);
      if (row === input.focusRow) {
        ctx.strokeStyle = sel;
        ctx.lineWidth = 2;
        ctx.setLineDash([]);
        ctx.strokeRect(1, y + 1, width - 2, ROW_H - 2);
      }
    });
  }
}

/** A colour legend for ŝ. */
export function drawLegend(canvas: HTMLCanvasElement): void {
  const ctx = canvas.getContext('2d')!;
  drawScale(ctx, 0, 0, canvas.width, canvas.height);
}

/** The ŝ colour scale as a bar at (x, y), w × h. */
export function drawScale(ctx: CanvasRenderingContext2D, x0: number, y0: number, w: number, h: number): void {
  for (let x = 0; x < w; x++) {
    ctx.fillStyle = scoreColor((x / (w - 1)) * MAX_SHAT, MAX_SHAT);
    ctx.fillRect(x0 + x, y0, 1, h);
  }
}

export { MAX_SHAT };
