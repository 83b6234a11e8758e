/**
 * The pure parts of SRLORA.md §3–4 — the schedule, eligibility and which slots a recomposition selects — with no
 * tensor code, so that the engine, the PyTorch trainer's tests and the dashboard's live preview all apply exactly
 * the same rule.
 */

export interface RuleSettings {
  /** τ: null = off (the paper's rule: the ceil(γ·r) lowest pairs); a number ≥ 0 = every eligible pair with ŝ < τ. */
  fusionThreshold: number | null;
  /** γ in (0, 1]. */
  fusionRatio: number;
  /** Slots younger than this (steps since their last (re)initialisation) are not eligible. */
  minSlotAge: number;
  /** Which eligible pairs go first (default 'least-important', the paper's rule); an ablation setting. */
  fusionSelect?: FusionSelect;
}

import type { FusionSelect } from './defaults';

export interface Schedule {
  /** n = ceil(γ·r): pairs per scheduled recomposition under the ratio rule. */
  perSwitch: number;
  /** N = floor((rTarget − r) / n). */
  switches: number;
  /** T = floor(totalSteps / (N + 1)); 0 when there is no scheduled recomposition. */
  interval: number;
  /** After these steps a scheduled recomposition runs: T, 2T, …, N·T. */
  steps: number[];
}

/** §4: computed once at the start from the configured rTarget and γ. */
export function computeSchedule(r: number, rTarget: number, fusionRatio: number, totalSteps: number): Schedule {
  const perSwitch = Math.ceil(fusionRatio * r);
  const switches = Math.max(0, Math.floor((rTarget - r) / perSwitch));
  const interval = switches > 0 ? Math.floor(totalSteps / (switches + 1)) : 0;
  const steps = interval > 0 ? Array.from({ length: switches }, (_, i) => (i + 1) * interval) : [];
  return { perSwitch, switches, interval: steps.length ? interval : 0, steps };
}

/** §3 default: max(1, floor(interval / 10)); with no schedule the interval is the whole run. */
export function defaultMinSlotAge(schedule: Schedule, totalSteps: number): number {
  return Math.max(1, Math.floor((schedule.interval || totalSteps) / 10));
}

/** ŝ_k = S_k / mean_j S_j over the layer's slots; all 0 when every S_j is 0. */
export function normalizeScores(S: ArrayLike<number>): number[] {
  let sum = 0;
  for (let i = 0; i < S.length; i++) sum += S[i];
  const mean = S.length ? sum / S.length : 0;
  return Array.from(S, (s) => (mean > 0 ? s / mean : 0));
}

export interface LayerSlots {
  /** S_k per slot. */
  scores: ArrayLike<number>;
  /** Steps since each slot's last (re)initialisation. */
  age: ArrayLike<number>;
  /** Next unused direction. */
  p: number;
  /** Directions this layer can use (rTarget capped at min(out, in)). */
  rTarget: number;
  /** fusionSelect 'random' only: the uint32 seed of this draw, selectionKey(run seed, step, layer index). */
  randomKey?: number;
}

/**
 * The seed of one random selection: the run's seed, the step after which the recomposition runs and the layer's
 * index among the adapted layers (model order), mixed in uint32 arithmetic — python/srlora_torch/rule.py computes
 * the same number, so both trainers fuse the same pairs.
 */
export function selectionKey(seed: number, step: number, layerIndex: number): number {
  return (Math.imul(seed >>> 0, 0x9e3779b1) + Math.imul(step >>> 0, 0x85ebca77) + layerIndex) >>> 0;
}

/** Uniform draws in [0, 1) from a uint32 seed: src/trainer/rng.ts's SplitMix32-style generator (same numbers). */
export function uniformDraws(seed: number, n: number): number[] {
  let state = seed >>> 0;
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    state = (state + 0x9e3779b9) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    z ^= z >>> 16;
    out.push((z >>> 0) / 4294967296);
  }
  return out;
}

export interface Selection {
  /** Selected slots, in selection order (by fusionSelect: S ascending by default; slot index breaking ties). */
  slots: number[];
  /** No direction was left: the recomposition is a no-op. */
  exhausted: boolean;
}

/** §3: which slots of one layer a recomposition (scheduled or forced) would fuse now. */
export function selectSlots(layer: LayerSlots, rule: RuleSettings): Selection {
  const left = layer.rTarget - layer.p;
  if (left <= 0) return { slots: [], exhausted: true };
  const r = layer.scores.length;
  const eligible: number[] = [];
  for (let k = 0; k < r; k++) if (layer.age[k] >= rule.minSlotAge) eligible.push(k);
  const S = layer.scores, age = layer.age;
  switch (rule.fusionSelect ?? 'least-important') {
    case 'least-important': eligible.sort((a, b) => S[a] - S[b] || a - b); break;
    case 'most-important': eligible.sort((a, b) => S[b] - S[a] || a - b); break;
    case 'oldest': eligible.sort((a, b) => age[b] - age[a] || a - b); break;
    case 'random': {
      // One draw per slot (all r, in slot order, so the draws do not depend on eligibility), ascending.
      if (layer.randomKey === undefined) throw new Error('selectSlots: fusionSelect random needs the layer\'s randomKey');
      const u = uniformDraws(layer.randomKey, r);
      eligible.sort((a, b) => u[a] - u[b] || a - b);
      break;
    }
  }
  let chosen: number[];
  if (rule.fusionThreshold === null) {
    chosen = eligible.slice(0, Math.ceil(rule.fusionRatio * r));
  } else {
    const sHat = normalizeScores(layer.scores);
    const tau = rule.fusionThreshold;
    chosen = eligible.filter((k) => sHat[k] < tau); // τ fuses by score; fusionSelect orders the cut below
  }
  return { slots: chosen.slice(0, left), exhausted: false };
}
