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
