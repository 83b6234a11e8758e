export type ReinitOptimizer = 'zero-moments' | 'restart' | 'keep';
export type FusionSelect = 'least-important' | 'random' | 'most-important' | 'oldest';
export const REINIT_OPTIMIZER: readonly ReinitOptimizer[] = ['zero-moments', 'restart', 'keep'];
export const FUSION_SELECT: readonly FusionSelect[] = ['least-important', 'random', 'most-important', 'oldest'];

/** SRLoRA's defaults (SRLORA.md §2–§7), defined once; the run config schema and the engine both read them. */
export const SRLORA_DEFAULTS = {
  /** AdaLoRA's importance EMAs. */
  beta1: 0.85,
  beta2: 0.85,
  /** γ: the paper's rule fuses ceil(γ·r) pairs per layer. */
  fusionRatio: 0.5,
  /** τ off: the paper's rule. */
  fusionThreshold: null as number | null,
  /** rTarget = 4·r when not given. */
  rTargetPerRank: 4,
  /** null → max(1, floor(interval / 10)). */
  minSlotAge: null as number | null,
  /** Legacy switch (false = reinitOptimizer 'keep'); reinitOptimizer is the setting. */
  resetOptimizerMoments: true,
  /**
   * What a recomposition does to the re-initialised slots' Adam state (docs/ALGORITHM.md, "Optimiser after
   * re-initialisation"): 'zero-moments' zeroes their moments under the global step count (no bias-correction
   * warm-up: a per-slot step-size boost), 'restart' zeroes them and restarts their bias correction as a fresh Adam
   * would, 'keep' leaves them. The default is decided by bench/results/quality.json.
   */
  reinitOptimizer: 'zero-moments' as ReinitOptimizer,
  /** Which eligible pairs fuse: the paper's 'least-important', or an ablation ('random', 'most-important', 'oldest'). */
  fusionSelect: 'least-important' as FusionSelect,
  adam: { beta1: 0.9, beta2: 0.999, eps: 1e-8 },
} as const;
