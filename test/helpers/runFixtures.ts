/**
 * Run folders written by hand (an events.jsonl as a trainer would write it), for views that must show a record
 * exactly: a resumed run with a rewind, ended runs, a log from before protocol 1.1. Every line is strict JSON and
 * valid against the protocol schema (the page drops invalid messages, so a bad fixture would fail the test).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface FixtureOptions {
  name: string;
  /** hello.srlora as the trainer states it; omitted = a log from before protocol 1.1. */
  srlora?: { schedule: number[]; minSlotAge: number; rule: { kind: 'ratio'; fusionRatio: number } | { kind: 'threshold'; fusionThreshold: number } };
  totalSteps: number;
  /** Config fields that differ from the fixture's defaults. */
  config?: Record<string, unknown>;
  /** hello.worldSize: data-parallel ranks (omitted: 1). */
  worldSize?: number;
}

const LAYERS = ['l0', 'l1'];

/** Builds messages with the envelope filled in (seq from 1, time from `t0` one second per message unless given). */
export class FixtureLog {
  readonly lines: string[] = [];
  private seq = 0;
  time = Date.UTC(2026, 10, 1, 12, 0, 0);
  constructor(readonly runId: string) {}
  add(type: string, body: Record<string, unknown>, dt = 1000): this {
    this.time += dt;
    this.lines.push(JSON.stringify({ v: 1, type, runId: this.runId, seq: ++this.seq, time: this.time, ...body }));
    return this;
  }
  hello(o: FixtureOptions): this {
    return this.add('hello', {
      protocol: { major: 1, minor: 1 }, name: o.name, method: 'srlora', backend: { name: 'fixture', device: 'cpu' }, totalSteps: o.totalSteps,
      config: { r: 4, rTarget: 16, fusionRatio: 0.5, fusionThreshold: null, importanceEvery: 5, evalEvery: 10, learningRate: 0.01, ...o.config },
      layers: LAYERS.map((name) => ({ name, shape: [8, 8], r: 4, rTarget: 16 })),
      ...(o.srlora ? { srlora: o.srlora } : {}), ...(o.worldSize ? { worldSize: o.worldSize } : {}),
    });
  }
  metrics(from: number, to: number, loss: (step: number) => number, extra: (step: number) => Record<string, unknown> = () => ({})): this {
    for (let s = from; s <= to; s++) this.add('metrics', { rows: [{ step: s, loss: loss(s), lr: 0.01, examplesPerSec: 100, ...extra(s) }] });
    return this;
  }
  importance(step: number, ages: number[] = [20, 20, 2, 2]): this {
    return this.add('importance', {
      step, layers: LAYERS.map((name) => ({ name, S: [1, 2, 3, 4], sHat: [0.4, 0.8, 1.2, 1.6], age: ages, direction: [0, 1, 2, 3], p: 4, rTarget: 16 })),
    });
  }
  recomposition(step: number, fused: boolean, trigger: 'schedule' | 'forced' = 'schedule', commandId?: string): this {
    return this.add('recomposition', {
      step, trigger, ...(commandId ? { commandId } : {}), rule: { kind: 'ratio', fusionRatio: 0.5 }, outputChange: null,
      layers: LAYERS.map((name) => ({
        name, slots: fused ? [0] : [], scores: fused ? [1] : [], oldDirections: fused ? [0] : [], newDirections: fused ? [4] : [],
        exhausted: false, deltaNorm: 0, preservationError: 0, p: fused ? 5 : 4,
      })),
    });
  }
  evalAt(step: number, loss: number, accuracy: number): this { return this.add('eval', { step, loss, metrics: { accuracy } }); }
  state(state: string, step: number, reason?: string): this { return this.add('state', { state, step, ...(reason ? { reason } : {}) }); }
  ack(commandId: string, status: 'received' | 'applied' | 'rejected', step: number | null): this { return this.add('ack', { commandId, status, step }); }
  rewind(step: number): this { return this.add('rewind', { step, checkpoint: `checkpoints/step-${step}`, incarnation: 'fixture-2' }); }

  /**
   * A srlora run with the protocol 1.2 measures, as a trainer under the paper's rule tends to record it: 4 layers,
   * r = 4, a schedule every 75 of 300 steps fusing 2 pairs per layer — after the first switch always the 2 pairs the
   * previous switch had re-initialised (the "freshest pairs fused again"); importance snapshots with stepBoost (a
   * re-initialised pair's step ~3× the layer's mean right after its reset); deltaRank with each eval, growing past r.
   */
  static dynamics(runId: string, name = 'dynamics'): FixtureLog {
    const layers = ['blocks.0.attn.q', 'blocks.0.attn.v', 'blocks.0.ffn.fc1', 'head'];
    const f = new FixtureLog(runId);
    f.add('hello', {
      protocol: { major: 1, minor: 2 }, name, method: 'srlora', backend: { name: 'fixture', device: 'cpu' }, totalSteps: 300,
      config: { r: 4, rTarget: 16, fusionRatio: 0.5, fusionThreshold: null, importanceEvery: 5, evalEvery: 25, learningRate: 0.01, seed: 3 },
      layers: layers.map((n) => ({ name: n, shape: [32, 32], r: 4, rTarget: 16 })),
      srlora: { schedule: [75, 150, 225], minSlotAge: 7, rule: { kind: 'ratio', fusionRatio: 0.5 }, fusionSelect: 'least-important', reinitOptimizer: 'zero-moments' },
    }, 0).state('running', 0);
    // Per layer: the direction each slot holds and when it was (re)initialised.
    const dir = layers.map(() => [0, 1, 2, 3]), since = layers.map(() => [0, 0, 0, 0]), next = layers.map(() => 4);
    let fresh = layers.map(() => [2, 3]); // the first switch fuses the two smallest starting pairs
    for (let step = 1; step <= 300; step++) {
      f.add('metrics', { rows: [{ step, loss: 2.3 * Math.exp(-step / 90) + 0.12 + 0.03 * Math.sin(step), lr: 0.01, examplesPerSec: 800 }] }, 200);
      if (step % 5 === 0) {
        f.add('importance', {
          step, layers: layers.map((n, li) => {
            const age = since[li].map((s) => step - s);
            const S = age.map((a, k) => (1 + k) * 1e-4 * Math.min(1, a / 40));
            const mean = S.reduce((x, y) => x + y, 0) / 4;
            const u = age.map((a) => 1 + 2.2 * Math.exp(-a / 6));
            const um = u.reduce((x, y) => x + y, 0) / 4;
            return { name: n, S, sHat: S.map((x) => x / mean), age, direction: dir[li], p: next[li], rTarget: 16, stepBoost: u.map((x) => +(x / um).toFixed(4)) };
          }),
        }, 0);
      }
      if (step % 75 === 0 && step < 300) {
        f.add('recomposition', {
          step, trigger: 'schedule', rule: { kind: 'ratio', fusionRatio: 0.5 }, outputChange: 3e-8,
          layers: layers.map((n, li) => {
            const slots = fresh[li];
            const oldDirections = slots.map((k) => dir[li][k]);
            const ages = slots.map((k) => step - since[li][k]);
            const newDirections = slots.map(() => next[li]++);
            slots.forEach((k, j) => { dir[li][k] = newDirections[j]; since[li][k] = step; });
            return { name: n, slots, scores: slots.map(() => 1e-5), oldDirections, newDirections, exhausted: false, deltaNorm: 0.05, preservationError: 4e-8, p: next[li], ages };
          }),
        }, 0);
        fresh = layers.map(() => [2, 3]); // the re-initialised pairs look least important next time
      }
      if (step % 25 === 0) {
        f.add('eval', { step, loss: 2 * Math.exp(-step / 100) + 0.2, metrics: { accuracy: 0.5 + 0.4 * (1 - Math.exp(-step / 80)) } }, 0);
        f.add('deltaRank', { step, layers: layers.map((n, li) => ({ name: n, effectiveRank: +(Math.min(4, 1 + step / 20) + (li + 1) * Math.floor(step / 75) * 0.9).toFixed(3), norm: +(0.02 * step).toFixed(3) })) }, 0);
      }
    }
    return f.state('finished', 300);
  }

  writeTo(runsDir: string): string {
    const dir = join(runsDir, this.runId);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'events.jsonl'), this.lines.join('\n') + '\n');
    return dir;
  }
}
