/**
 * The slot history of one layer: time runs left to right (one column per importance snapshot), one row per slot,
 * colour = ŝ; a red tick (NEW_DIRECTION_RGB, visible on light and dark themes) marks where a slot took a new direction (a recomposition). Painted as one pixel per
 * (snapshot, slot) into an ImageData and scaled up, so a long history costs one drawImage.
 */
import type { ImportanceFrame } from './runData';
import { NEW_DIRECTION_RGB, paintScores } from './colors';
import { MAX_SHAT } from './heatmap';
import { cssVar } from './dom';

const buffer = document.createElement('canvas');

export function drawSlotHistory(canvas: HTMLCanvasElement, frames: ImportanceFrame[], layer: string): void {
  const dpr = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 600, height = canvas.clientHeight || 120;
  if (canvas.width !== Math.round(width * dpr)) canvas.width = Math.round(width * dpr);
  if (canvas.height !== Math.round(height * dpr)) canvas.height = Math.round(height * dpr);
  const ctx = canvas.getContext('2d')!;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const rows = frames.map((f) => f.layers.get(layer)).filter((x): x is NonNullable<typeof x> => x !== undefined);
  if (rows.length === 0) {
    ctx.fillStyle = cssVar('--vscode-descriptionForeground', '#999');
    ctx.fillText('No importance snapshots for this layer yet.', 8, 20);
    return;
  }
  const slots = rows[0].sHat.length, cols = rows.length;
  if (buffer.width !== cols || buffer.height !== slots) { buffer.width = cols; buffer.height = slots; }
  const bctx = buffer.getContext('2d')!;
  const img = bctx.createImageData(cols, slots);
  rows.forEach((f, c) => {
    for (let k = 0; k < slots; k++) {
      const i = (k * cols + c) * 4;
      if (c > 0 && rows[c - 1].direction[k] !== f.direction[k]) img.data.set([...NEW_DIRECTION_RGB, 255], i);
      else paintScores(img.data, i, f.sHat[k] ?? 0, MAX_SHAT);
    }
  });
  bctx.putImageData(img, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(buffer, 0, 0, width, height);
}
