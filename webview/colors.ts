/** The heatmap's colour scale: viridis (perceptually uniform, readable for colour-blind users), sampled at 9 stops. */
const VIRIDIS = [
  [68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141], [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37],
];

/** ŝ in [0, max] → rgb(). ŝ = 1 is the layer's average. */
export function scoreColor(v: number, max: number): string {
  const t = Math.max(0, Math.min(1, max > 0 ? v / max : 0)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(t));
  const f = t - i;
  const c = VIRIDIS[i].map((a, k) => Math.round(a + (VIRIDIS[i + 1][k] - a) * f));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

/** 256-entry RGB lookup of the same scale, for ImageData painting. */
export const SCORE_LUT: Uint8ClampedArray = (() => {
  const lut = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const t = (i / 255) * (VIRIDIS.length - 1);
    const k = Math.min(VIRIDIS.length - 2, Math.floor(t));
    const f = t - k;
    for (let c = 0; c < 3; c++) lut[i * 3 + c] = VIRIDIS[k][c] + (VIRIDIS[k + 1][c] - VIRIDIS[k][c]) * f;
  }
  return lut;
})();

/**
 * The slot history's "took a new direction" tick: a red outside viridis (no score reads as it), with contrast ≥ 3:1
 * on a white page and on a dark one (white vanished on the light theme, looking like a gap).
 */
export const NEW_DIRECTION_RGB: readonly [number, number, number] = [228, 26, 28];

/** Paints one cell (one RGBA pixel at byte `index`) with the colour of score v on the scale above. */
export function paintScores(data: Uint8ClampedArray, index: number, v: number, max: number): void {
  const i = Math.max(0, Math.min(255, Math.round((max > 0 ? v / max : 0) * 255))) * 3;
  data[index] = SCORE_LUT[i];
  data[index + 1] = SCORE_LUT[i + 1];
  data[index + 2] = SCORE_LUT[i + 2];
  data[index + 3] = 255;
}
