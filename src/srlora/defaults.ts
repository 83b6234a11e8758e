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
  /** SwitchLoRA-style reset of the fused slots' Adam moments. */
  resetOptimizerMoments: true,
  adam: { beta1: 0.9, beta2: 0.999, eps: 1e-8 },
} as const;
