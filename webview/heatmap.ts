/**
 * The importance heatmap: one row per adapted layer, one cell per slot, colour = ŝ (1.0 = the layer's average).
 * Cells the fusion rule in force (or being previewed) would fuse are outlined and crossed; on the right, each
 * layer's direction usage p / rTarget. The cells are painted as pixels (one ImageData), so thousands of cells cost well under a
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
  /** The content y (CSS px) at the canvas's top: the scroll box's offset when the canvas shows only its rows. */
  private top = 0;
  readonly tooltip: HTMLDivElement;
  /** Below the canvas in the scroll box: makes the box as tall as every row while the canvas holds the visible ones. */
  private readonly spacer = document.createElement('div');
  onToggleLayer: (name: string) => void = () => {};

  /**
   * `canvas` sits in the scroll box `wrap` (CSS: position sticky, top 0). The canvas is as tall as the box shows, not
   * as every row: at 64 layers the box shows 520 of 1,152 px, and each 10 Hz snapshot paints, uploads and composites
   * only those. Scrolling the box asks for a redraw (onScroll).
   */
  constructor(readonly canvas: HTMLCanvasElement, private readonly wrap: HTMLElement | null = null, onScroll: () => void = () => {}) {
    this.tooltip = document.createElement('div');
    this.tooltip.className = 'tooltip';
    this.tooltip.hidden = true;
    canvas.after(this.tooltip);
    this.spacer.setAttribute('aria-hidden', 'true');
    this.tooltip.after(this.spacer);
    wrap?.addEventListener('scroll', onScroll, { passive: true });
    canvas.addEventListener('mousemove', (e) => this.hover(e));
    canvas.addEventListener('mouseleave', () => { this.tooltip.hidden = true; });
    canvas.addEventListener('click', (e) => {
      const hit = this.hit(e);
      if (hit) this.onToggleLayer(hit.layer.name);
    });
  }

  /** Where the scroll box is (what a redraw would show). */
  get scrollTop(): number { return this.wrap?.scrollTop ?? 0; }

  /** Scrolls the box so that a row is visible (the keyboard's row). */
  reveal(row: number): void {
    const w = this.wrap;
    if (!w || !w.clientHeight) return;
    const y = row * ROW_H;
    if (y < w.scrollTop) w.scrollTop = y;
    else if (y + ROW_H > w.scrollTop + w.clientHeight) w.scrollTop = y + ROW_H - w.clientHeight;
  }

  private hit(e: MouseEvent): { layer: LayerImportance; slot: number | null } | null {
    if (!this.input) return null;
    const r = this.canvas.getBoundingClientRect();
    const x = e.clientX - r.left, y = e.clientY - r.top + this.top;
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
    this.tooltip.style.top = `${e.clientY - r.top + 12 + (this.wrap ? this.top : 0)}px`;
  }

  /** Draws the rows the scroll box shows. */
  render(input: HeatmapInput): void {
    this.input = input;
    const rows = input.layers.length;
    const slots = Math.max(1, ...input.layers.map((l) => l.S.length));
    const content = Math.max(ROW_H, rows * ROW_H);
    const maxH = this.wrap ? parseFloat(getComputedStyle(this.wrap).maxHeight) : NaN;
    const viewH = Number.isFinite(maxH) && maxH > 0 ? Math.min(content, maxH) : content;
    this.top = Math.max(0, Math.min(this.scrollTop, content - viewH));
    this.canvas.style.height = `${viewH}px`;
    this.spacer.style.height = `${content - viewH}px`;
    const cells = input.layers.reduce((n, l) => n + l.S.length, 0);
    this.canvas.dataset.layers = String(rows);
    this.canvas.dataset.slots = String(input.layers.length ? slots : 0);
    this.canvas.dataset.cells = String(cells);
    this.canvas.setAttribute('aria-label', `Importance heatmap: ${rows} layers × ${input.layers.length ? slots : 0} slots`);
    this.draw(this.canvas, this.canvas.clientWidth || 600, input, this.top, viewH, true);
  }

  /** The whole heatmap, every row, on a new canvas (the PNG export; the page's canvas holds the visible rows). */
  renderAll(input: HeatmapInput): HTMLCanvasElement {
    const out = document.createElement('canvas');
    const content = Math.max(ROW_H, input.layers.length * ROW_H);
    this.draw(out, this.canvas.clientWidth || 600, input, 0, content, false);
    return out;
  }

  /** Draws rows in [top, top + viewH) (content CSS px) on `target`, `width` CSS px wide; live: the page's canvas. */
  private draw(target: HTMLCanvasElement, width: number, input: HeatmapInput, top: number, viewH: number, live: boolean): void {
    const rows = input.layers.length;
    const slots = Math.max(1, ...input.layers.map((l) => l.S.length));
    const dpr = window.devicePixelRatio || 1;
    if (target.width !== Math.round(width * dpr) || target.height !== Math.round(viewH * dpr)) {
      target.width = Math.round(width * dpr);
      target.height = Math.round(viewH * dpr);
    }
    const ctx = target.getContext('2d')!;
    // Content coordinates: row r is at y = r × ROW_H, shifted up by top.
    ctx.setTransform(dpr, 0, 0, dpr, 0, -top * dpr);
    this.cellW = Math.max(2, (width - LABEL_W - BAR_W - 8) / slots);
    const r0 = Math.max(0, Math.floor(top / ROW_H)), r1 = Math.min(rows, Math.ceil((top + viewH) / ROW_H));
    const fg = cssVar('--vscode-foreground', '#ccc');
    const mark = cssVar('--vscode-editorError-foreground', '#f14c4c');
    const sel = cssVar('--vscode-focusBorder', '#007fd4');
    const track = cssVar('--vscode-editorWidget-border', '#454545');
    const barFill = cssVar('--vscode-charts-blue', '#3794ff');
    const gapColor = cssVar('--vscode-editor-background', '#1f1f1f');
    const font = `11px ${cssVar('--vscode-font-family', 'sans-serif')}`;
    const paint = () => { if (r1 > r0) this.paintCells(ctx, input, slots, dpr, gapColor, mark, r0, r1, Math.round((r0 * ROW_H - top) * dpr), live); };
    // The cells, the gaps between them and the preview's marks: painted pixel by pixel into one ImageData in device
    // pixels and put in one call. Canvas strokes were the page's costliest raster on a software canvas (a 50 % rule
    // marks 2,048 of 4,096 cells: their outlines and crosses took ~7–20 ms to rasterise at every 10 Hz snapshot).
    // A live snapshot changes only the cells: the labels and usage bars (2 texts a row) are drawn again only when
    // they, the size, the scroll or the theme changed, or a focus ring (drawn across the cells) is shown.
    const frameKey = `${target.width}x${target.height}|${top}|${fg}|${sel}|${track}|${barFill}|${font}|${gapColor}|${[...input.selected].join()}|${input.layers.map((l) => `${l.name}:${l.p}:${l.rTarget}`).join()}`;
    if (live && frameKey === this.frameKey && (input.focusRow ?? -1) < 0) { paint(); return; }
    if (live) this.frameKey = (input.focusRow ?? -1) < 0 ? frameKey : '';
    ctx.clearRect(0, top, width, viewH);
    ctx.font = font;
    ctx.textBaseline = 'middle';
    paint();
    // The usage bar leaves room for its widest "p/rTarget" label (PyTorch runs reach 16/16 and beyond).
    const widest = Math.max(0, ...input.layers.map((l) => l.rTarget));
    const textW = Math.ceil(ctx.measureText(`${widest}/${widest}`).width) + 6;
    const barW = Math.max(12, BAR_W - textW);
    for (let row = r0; row < r1; row++) {
      const l = input.layers[row];
      const y = row * ROW_H;
      ctx.fillStyle = input.selected.has(l.name) ? sel : fg;
      const label = l.name.length > 24 ? '…' + l.name.slice(-23) : l.name;
      ctx.fillText(input.selected.has(l.name) ? `▸ ${label}` : label, 2, y + ROW_H / 2);
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
    }
  }

  private image: ImageData | null = null;
  /** What the labels and bars drawn show ('' : draw them again). */
  private frameKey = '';

  /**
   * Paints the cells of rows [r0, r1) (x from LABEL_W, slots × cellW wide, ROW_H high each, in CSS px) in device
   * pixels at device y `dy` of the canvas: each cell its ŝ colour, a GAP-wide line of `gapColor` between cells (when
   * cells are ≥ 4 px) and rows, and for each marked cell a 2 px outline inset by 1 px with a diagonal cross line, in
   * `markColor`.
   */
  private paintCells(ctx: CanvasRenderingContext2D, input: HeatmapInput, slots: number, dpr: number, gapColor: string, markColor: string, r0: number, r1: number, dy: number, live: boolean): void {
    const x0 = Math.round(LABEL_W * dpr);
    const W = Math.max(1, Math.round(slots * this.cellW * dpr)), rowH = Math.round(ROW_H * dpr), H = (r1 - r0) * rowH;
    let image = live ? this.image : null;
    if (!image || image.width !== W || image.height !== H) image = new ImageData(W, H);
    if (live) this.image = image;
    const px = new Uint32Array(image.data.buffer);
    const gap = rgba32(gapColor), mk = rgba32(markColor);
    const g = Math.max(1, Math.round(GAP * dpr));
    // Each device column's slot (and whether it is the gap after a cell).
    const slotOf = new Int32Array(W), isGap = new Uint8Array(W), cellStart = new Int32Array(slots + 1);
    for (let k = 0; k <= slots; k++) cellStart[k] = Math.min(W, Math.round(k * this.cellW * dpr));
    const gaps = this.cellW >= 4;
    for (let k = 0; k < slots; k++) for (let x = cellStart[k]; x < cellStart[k + 1]; x++) { slotOf[x] = k; isGap[x] = gaps && k < slots - 1 && x >= cellStart[k + 1] - g ? 1 : 0; }
    const line = new Uint32Array(W);
    const rgb = new Uint8ClampedArray(4);
    for (let r = r0; r < r1; r++) {
      const l = input.layers[r];
      const colors = new Uint32Array(slots);
      for (let k = 0; k < slots; k++) {
        if (k < l.S.length) { paintScores(rgb, 0, l.sHat[k], MAX_SHAT); colors[k] = rgb[0] | (rgb[1] << 8) | (rgb[2] << 16) | (0xff << 24); } else colors[k] = 0;
      }
      for (let x = 0; x < W; x++) line[x] = isGap[x] ? gap : colors[slotOf[x]];
      const top = (r - r0) * rowH;
      for (let y = 0; y < rowH; y++) {
        if (y < g) px.fill(gap, (top + y) * W, (top + y + 1) * W); // the line between rows
        else px.set(line, (top + y) * W);
      }
      // The marks: a 2 px outline inside the cell (1 px in from its edges) and a cross line, as the rule preview's.
      const t = Math.max(1, Math.round(2 * dpr)), inset = Math.round(dpr);
      for (const k of input.marked.get(l.name) ?? []) {
        if (k < 0 || k >= slots) continue;
        const left = cellStart[k] + inset, right = cellStart[k + 1] - (gaps ? g : 0) - inset; // [left, right)
        const y0 = top + g + inset, y1 = top + rowH - inset; // [y0, y1)
        // Plain loops: a mark is a few pixels per line, where typed-array fill()'s call costs more than the writes.
        const thin = right - left < 2 * t || y1 - y0 < 2 * t;
        for (let y = y0; y < y1; y++) {
          const base = y * W;
          if (thin || y < y0 + t || y >= y1 - t) { for (let x = left; x < right; x++) px[base + x] = mk; continue; }
          for (let x = left; x < left + t; x++) px[base + x] = mk;
          for (let x = right - t; x < right; x++) px[base + x] = mk;
        }
        if (thin) continue;
        // The cross line from the top-left to the bottom-right corner, about t px wide.
        const span = y1 - y0 - 2 * t, wInner = right - left - 2 * t;
        for (let j = 0; j < span; j++) {
          const cx = left + t + Math.floor(((j + 0.5) * wInner) / span) - (t >> 1);
          const base = (y0 + t + j) * W;
          for (let x = Math.max(left + t, cx); x < Math.min(right - t, cx + t); x++) px[base + x] = mk;
        }
      }
    }
    ctx.putImageData(image, x0, dy);

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

/** A CSS colour as one little-endian RGBA pixel (ImageData's byte order), read back from a 1 × 1 canvas; cached. */
const colorCache = new Map<string, number>();
let probe: CanvasRenderingContext2D | null = null;
function rgba32(css: string): number {
  let v = colorCache.get(css);
  if (v !== undefined) return v;
  probe ??= document.createElement('canvas').getContext('2d', { willReadFrequently: true });
  if (!probe) return 0xff000000;
  probe.clearRect(0, 0, 1, 1);
  probe.fillStyle = '#000';
  probe.fillStyle = css;
  probe.fillRect(0, 0, 1, 1);
  const [r, g, b, a] = probe.getImageData(0, 0, 1, 1).data;
  v = (r | (g << 8) | (b << 16) | (a << 24)) >>> 0;
  colorCache.set(css, v);
  return v;
}
