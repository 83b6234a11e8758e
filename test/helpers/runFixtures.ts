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
      ...(o.srlora ? { srlora: o.srlora } : {}),
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

  writeTo(runsDir: string): string {
    const dir = join(runsDir, this.runId);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'events.jsonl'), this.lines.join('\n') + '\n');
    return dir;
  }
}
