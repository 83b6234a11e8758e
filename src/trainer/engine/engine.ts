/**
 * The SRLoRA engine: a set of adapted layers, their optimiser, the schedule and the recomposition rule
 * (SRLORA.md §1–§4), as a pure algorithm module — no I/O, no protocol. The training process (and the
 * conformance runner) drive it one step at a time and apply user commands between steps.
 */
import * as tf from '@tensorflow/tfjs';
import { AdaptedLinear, type LayerSpec, type Method } from './layer';
import { Optimizer, type OptimizerConfig, type Param } from './optimizer';
import { computeSchedule, defaultMinSlotAge, normalizeScores, selectionKey, selectSlots, type RuleSettings, type Schedule } from '../../srlora/rule';
import { SRLORA_DEFAULTS, type FusionSelect, type ReinitOptimizer } from '../../srlora/defaults';
import { Rng } from '../rng';
import { stepBoost } from './measures';
import type { TensorMap } from '../../runfolder/safetensors';

export interface EngineStateMeta {
  step: number;
  optimizerStep: number;
  learningRate: number;
  rng: number;
  rule: RuleSettings;
  /** slotSteps: each slot's Adam step count (reinitOptimizer 'restart'); absent in older checkpoints. */
  layers: { name: string; p: number; directions: number[]; age: number[]; slotSteps?: number[] }[];
}

export interface EngineConfig {
  method: Method;
  r: number;
  /** Default 4·r. */
  rTarget?: number;
  alpha: number;
  beta1?: number;
  beta2?: number;
  fusionRatio?: number;
  fusionThreshold?: number | null;
  /** null/undefined → max(1, floor(interval / 10)). */
  minSlotAge?: number | null;
  totalSteps: number;
  optimizer: OptimizerConfig;
  /** Legacy: false = reinitOptimizer 'keep' (when reinitOptimizer is not given). */
  resetOptimizerMoments?: boolean;
  /** What a recomposition does to the fused slots' Adam state (defaults.ts); default 'zero-moments'. */
  reinitOptimizer?: ReinitOptimizer;
  /** Which eligible pairs fuse (defaults.ts); default 'least-important'. */
  fusionSelect?: FusionSelect;
  /** Default: only srlora tracks importance (lora and pissa have no use for it and stay as cheap as possible). */
  trackImportance?: boolean;
  seed?: number;
  exactSvdMaxDim?: number;
}

export type Trigger = 'schedule' | 'forced';
export type FusionRuleInForce = { kind: 'ratio'; fusionRatio: number } | { kind: 'threshold'; fusionThreshold: number };

export interface LayerRecompositionEvent {
  layer: string;
  slots: number[];
  scores: number[];
  oldDirections: number[];
  newDirections: number[];
  exhausted: boolean;
  deltaNorm: number;
  preservationError: number;
  p: number;
  /** Each selected slot's age (steps since its last (re)initialisation) when it fused, aligned with slots. */
  ages: number[];
}

export interface RecompositionResult {
  step: number;
  trigger: Trigger;
  rule: FusionRuleInForce;
  layers: LayerRecompositionEvent[];
}

export interface LayerImportanceView {
  name: string;
  S: number[];
  sHat: number[];
  age: number[];
  direction: number[];
  p: number;
  rTarget: number;
  /** Per slot: its last Adam update's norm over the layer's mean (measures.ts stepBoost); absent for SGD. */
  stepBoost?: number[];
}

export class SRLoRAEngine {
  readonly layers: AdaptedLinear[];
  readonly optimizer: Optimizer;
  readonly schedule: Schedule;
  readonly method: Method;
  readonly rng: Rng;
  readonly reinitOptimizer: ReinitOptimizer;
  /** The run's seed (fusionSelect 'random' draws from selectionKey(seed, step, layer index)). */
  readonly seed: number;
  /** τ, γ and minSlotAge in force; τ and γ change live (effective at the next recomposition). */
  readonly rule: RuleSettings;
  /** Steps completed. */
  step = 0;
  private readonly byName = new Map<string, AdaptedLinear>();
  private readonly scheduled: Set<number>;

  constructor(specs: LayerSpec[], config: EngineConfig) {
    const d = SRLORA_DEFAULTS;
    this.method = config.method;
    this.seed = config.seed ?? 0;
    this.rng = new Rng(this.seed);
    const rTarget = config.rTarget ?? d.rTargetPerRank * config.r;
    const fusionRatio = config.fusionRatio ?? d.fusionRatio;
    if (specs.length === 0) throw new Error('engine: no layers to adapt');
    this.layers = specs.map((spec) => new AdaptedLinear(spec, {
      method: config.method, r: config.r, rTarget, alpha: config.alpha,
      beta1: config.beta1 ?? d.beta1, beta2: config.beta2 ?? d.beta2,
      trackImportance: config.trackImportance ?? config.method === 'srlora', rng: this.rng, exactSvdMaxDim: config.exactSvdMaxDim,
    }));
    for (const l of this.layers) {
      if (this.byName.has(l.name)) throw new Error(`engine: two layers are named ${l.name}`);
      this.byName.set(l.name, l);
    }
    this.schedule = config.method === 'srlora'
      ? computeSchedule(config.r, rTarget, fusionRatio, config.totalSteps)
      : { perSwitch: 0, switches: 0, interval: 0, steps: [] };
    this.scheduled = new Set(this.schedule.steps);
    this.rule = {
      fusionThreshold: config.fusionThreshold ?? d.fusionThreshold,
      fusionRatio,
      minSlotAge: config.minSlotAge ?? defaultMinSlotAge(this.schedule, config.totalSteps),
      fusionSelect: config.fusionSelect ?? d.fusionSelect,
    };
    this.reinitOptimizer = config.reinitOptimizer ?? (config.resetOptimizerMoments === false ? 'keep' : d.reinitOptimizer);
    const params: Param[] = this.layers.flatMap((l) => [{ variable: l.A, slotAxis: 0 as const }, { variable: l.B, slotAxis: 1 as const }]);
    this.optimizer = new Optimizer(config.optimizer, params);
  }

  layer(name: string): AdaptedLinear {
    const l = this.byName.get(name);
    if (!l) throw new Error(`layer ${JSON.stringify(name)} is not adapted (adapted: ${[...this.byName.keys()].join(', ')})`);
    return l;
  }

  get trainableVariables(): tf.Variable[] {
    return this.layers.flatMap((l) => [l.A, l.B]);
  }

  /**
   * One optimisation step (SRLORA.md §4): forward + backward → importance → ages += 1 → optimiser → scheduled
   * recomposition. Returns the loss computed before the update, and the recomposition if one was scheduled.
   */
  trainStep(lossFn: () => tf.Scalar): { loss: number; recomposition: RecompositionResult | null } {
    const { loss, due } = this.optimizeStep(lossFn);
    return { loss, recomposition: due ? this.recompose('schedule') : null };
  }

  /**
   * trainStep without the scheduled recomposition: `due` says whether one is scheduled after this step, so the
   * caller can measure the model's output around it (the probe batch of SRLORA.md §5) and then call recompose.
   *
   * Non-finite numbers (docs/protocol.md, "Non-finite numbers"): a non-finite loss changes nothing (not even the step
   * count; the caller ends the run); non-finite gradients skip the optimiser update (its moments and step count t)
   * and the importance EMA update, as AMP's GradScaler skips a step, while the step still counts (step number,
   * schedule, slot ages) — `nonFiniteGrad` says so. `gradFault` (tests only) is added to every gradient. `gradNorm`:
   * the L2 norm of every trained variable's gradient (before the update), null when not finite.
   */
  optimizeStep(lossFn: () => tf.Scalar, gradFault?: number): { loss: number; due: boolean; nonFiniteGrad: boolean; gradNorm: number | null } {
    const vars = this.trainableVariables;
    const { value, grads } = tf.variableGrads(lossFn, vars);
    const loss = value.dataSync()[0];
    value.dispose();
    if (!Number.isFinite(loss)) {
      tf.dispose(grads);
      return { loss, due: false, nonFiniteGrad: false, gradNorm: null };
    }
    if (gradFault !== undefined) {
      for (const k of Object.keys(grads)) { const g = grads[k]; grads[k] = tf.add(g, gradFault); g.dispose(); }
    }
    // sum(g·0) is 0 when every entry is finite and NaN otherwise; sum(g²) gives the gradient norm (the grad_norm
    // scalar): two small reductions, one read-back.
    const [probe, sumSq] = tf.tidy(() => {
      const gs = Object.values(grads);
      return tf.stack([tf.addN(gs.map((g) => tf.sum(tf.mul(g, 0)))), tf.addN(gs.map((g) => tf.sum(tf.square(g))))]).dataSync();
    });
    const nonFiniteGrad = !Number.isFinite(probe);
    const gradNorm = nonFiniteGrad || !Number.isFinite(sumSq) ? null : Math.sqrt(sumSq);
    if (!nonFiniteGrad) for (const l of this.layers) l.updateImportance(grads[l.A.name], grads[l.B.name]);
    for (const l of this.layers) for (let k = 0; k < l.r; k++) l.age[k]++;
    if (!nonFiniteGrad) this.optimizer.apply(grads);
    tf.dispose(grads);
    this.step++;
    return { loss, due: this.scheduled.has(this.step), nonFiniteGrad, gradNorm };
  }

  /** The rule in force, as reported with each recomposition. */
  ruleInForce(): FusionRuleInForce {
    return this.rule.fusionThreshold === null
      ? { kind: 'ratio', fusionRatio: this.rule.fusionRatio }
      : { kind: 'threshold', fusionThreshold: this.rule.fusionThreshold };
  }

  /** SRLORA.md §3 on all layers or the named ones (names are checked before anything changes). */
  recompose(trigger: Trigger, layerNames?: readonly string[]): RecompositionResult {
    if (this.method !== 'srlora') throw new Error(`recomposition needs method srlora (this run is ${this.method})`);
    const targets = layerNames ? layerNames.map((n) => this.layer(n)) : this.layers;
    const events = targets.map((l) => {
      const S = l.pairScores();
      const randomKey = selectionKey(this.seed, this.step, this.layers.indexOf(l));
      const { slots, exhausted } = selectSlots({ scores: S, age: l.age, p: l.p, rTarget: l.rTarget, randomKey }, this.rule);
      const ages = slots.map((k) => l.age[k]);
      const res = l.recompose(slots);
      if (this.reinitOptimizer !== 'keep') {
        const restart = this.reinitOptimizer === 'restart';
        this.optimizer.resetSlots(l.A, 0, slots, restart);
        this.optimizer.resetSlots(l.B, 1, slots, restart);
      }
      return {
        layer: l.name, slots, scores: slots.map((k) => S[k]),
        oldDirections: res.oldDirections, newDirections: res.newDirections, exhausted,
        deltaNorm: res.deltaNorm, preservationError: res.preservationError, p: l.p, ages,
      };
    });
    return { step: this.step, trigger, rule: this.ruleInForce(), layers: events };
  }

  /** Live change of τ and/or γ (takes effect at the next recomposition; the schedule stays as computed). */
  set(change: { fusionThreshold?: number | null; fusionRatio?: number }): void {
    if (change.fusionRatio !== undefined && !(change.fusionRatio > 0 && change.fusionRatio <= 1)) {
      throw new Error(`fusionRatio must be in (0, 1], got ${change.fusionRatio}`);
    }
    if (change.fusionThreshold !== undefined && change.fusionThreshold !== null && !(change.fusionThreshold >= 0)) {
      throw new Error(`fusionThreshold must be ≥ 0 or null (off), got ${change.fusionThreshold}`);
    }
    if (change.fusionRatio !== undefined) this.rule.fusionRatio = change.fusionRatio;
    if (change.fusionThreshold !== undefined) this.rule.fusionThreshold = change.fusionThreshold;
  }

  importance(): LayerImportanceView[] {
    return this.layers.map((l) => {
      const S = Array.from(l.pairScores());
      const stepBoost = this.stepBoost(l);
      return {
        name: l.name, S, sHat: normalizeScores(S), age: Array.from(l.age), direction: Array.from(l.directions), p: l.p, rTarget: l.rTarget,
        ...(stepBoost ? { stepBoost } : {}),
      };
    });
  }

  /** The per-slot step boost of one layer from the optimiser's moments (null for SGD). */
  private stepBoost(l: AdaptedLinear): number[] | null {
    const c = this.optimizer.config, mA = this.optimizer.moments(l.A), mB = this.optimizer.moments(l.B);
    if (c.type === 'sgd' || !mA || !mB) return null;
    return stepBoost({ mA: mA.m.dataSync(), vA: mA.v.dataSync(), mB: mB.m.dataSync(), vB: mB.v.dataSync() },
      l.r, l.in, l.out, this.optimizer.slotSteps(l.A), c.beta1, c.beta2, c.eps);
  }

  /** Per layer, the effective rank and norm of its accumulated update ΔW (docs/ALGORITHM.md; every method). */
  deltaRank(): { name: string; effectiveRank: number; norm: number }[] {
    return this.layers.map((l) => ({ name: l.name, ...l.deltaRank() }));
  }

  /** Everything a checkpoint needs to continue exactly: tensors (W, A, B, EMAs, Adam moments) and bookkeeping. */
  saveState(): { tensors: TensorMap; meta: EngineStateMeta } {
    const tensors: TensorMap = {};
    for (const l of this.layers) {
      for (const [k, v] of Object.entries(l.stateTensors())) tensors[`${l.name}/${k}`] = { shape: v.shape, data: v.dataSync() as Float32Array };
      const mA = this.optimizer.moments(l.A), mB = this.optimizer.moments(l.B);
      if (mA && mB) {
        for (const [k, v] of Object.entries({ adamMA: mA.m, adamVA: mA.v, adamMB: mB.m, adamVB: mB.v })) tensors[`${l.name}/${k}`] = { shape: v.shape, data: v.dataSync() as Float32Array };
      }
    }
    return {
      tensors,
      meta: {
        step: this.step, optimizerStep: this.optimizer.t, learningRate: this.optimizer.lr, rng: this.rng.state, rule: { ...this.rule },
        layers: this.layers.map((l) => ({ name: l.name, p: l.p, directions: Array.from(l.directions), age: Array.from(l.age), slotSteps: this.optimizer.slotSteps(l.A) })),
      },
    };
  }

  loadState(tensors: TensorMap, meta: EngineStateMeta): void {
    const get = (name: string, shape: number[]) => {
      const t = tensors[name];
      if (!t || t.shape.join('x') !== shape.join('x')) throw new Error(`checkpoint: ${name} missing or of another shape`);
      return tf.tensor(t.data, shape);
    };
    tf.tidy(() => {
      for (const l of this.layers) {
        for (const [k, v] of Object.entries(l.stateTensors())) {
          // checkpoints from before protocol 1.2 hold no fused factors: zeros (only deltaRank reads them)
          if ((k === 'fusedA' || k === 'fusedB') && !tensors[`${l.name}/${k}`]) { v.assign(tf.zerosLike(v)); continue; }
          v.assign(get(`${l.name}/${k}`, v.shape));
        }
        const mA = this.optimizer.moments(l.A), mB = this.optimizer.moments(l.B);
        if (mA && mB) {
          for (const [k, v] of Object.entries({ adamMA: mA.m, adamVA: mA.v, adamMB: mB.m, adamVB: mB.v })) v.assign(get(`${l.name}/${k}`, v.shape));
        }
        const m = meta.layers.find((x) => x.name === l.name);
        if (!m) throw new Error(`checkpoint has no layer ${l.name}`);
        l.p = m.p;
        l.directions.set(m.directions);
        l.age.set(m.age);
      }
    });
    this.step = meta.step;
    this.optimizer.t = meta.optimizerStep;
    for (const l of this.layers) {
      const steps = meta.layers.find((x) => x.name === l.name)?.slotSteps;
      this.optimizer.loadSlotSteps(l.A, steps);
      this.optimizer.loadSlotSteps(l.B, steps);
    }
    this.optimizer.lr = meta.learningRate;
    this.rng.state = meta.rng;
    Object.assign(this.rule, { fusionSelect: this.rule.fusionSelect }, meta.rule);
  }

  dispose(): void {
    for (const l of this.layers) l.dispose();
    this.optimizer.dispose();
  }
}
