/**
 * The slot history of one layer: time runs left to right (one column per importance snapshot), one row per slot,
 * colour = ŝ; a white tick marks where a slot took a new direction (a recomposition).
 */
import type { ImportanceFrame } from './runData';
import { scoreColor } from './colors';
import { MAX_SHAT } from './heatmap';
import { cssVar } from './dom';

export function drawSlotHistory(canvas: HTMLCanvasElement, frames: ImportanceFrame[], layer: string): void {
  const dpr = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 600, height = canvas.clientHeight || 120;
  canvas.width = Math.round(width * dpr);
  canvas.height = Math.round(height * dpr);
  const ctx = canvas.getContext('2d')!;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const rows = frames.map((f) => f.layers.get(layer)).filter((x): x is NonNullable<typeof x> => x !== undefined);
  if (rows.length === 0) {
    ctx.fillStyle = cssVar('--vscode-descriptionForeground', '#999');
    ctx.fillText('No importance snapshots for this layer yet.', 8, 20);
    return;
  }
  const slots = rows[0].sHat.length;
  const colW = width / rows.length, rowH = height / slots;
  rows.forEach((f, c) => {
    for (let k = 0; k < slots; k++) {
      ctx.fillStyle = scoreColor(f.sHat[k] ?? 0, MAX_SHAT);
      ctx.fillRect(c * colW, k * rowH, Math.ceil(colW), Math.ceil(rowH));
      if (c > 0 && rows[c - 1].direction[k] !== f.direction[k]) {
        ctx.fillStyle = '#fff';
        ctx.fillRect(c * colW, k * rowH, Math.max(1, colW / 3), rowH);
      }
    }
  });
}
