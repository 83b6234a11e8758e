/** The dashboard's pure parts, in Node: decimation and smoothing must equal their brute-force definitions. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GridDecimator, MinMaxIndex } from '../webview/minMaxIndex';
import { DebiasedEma } from '../webview/smoothing';
import type { Point } from '../webview/minMaxIndex';
import { Rng } from '../src/trainer/rng';

/** The definition: scan every point of each equal-width bucket. */
/** Min-max decimation of (x, y) into at most 2·buckets points, order kept: the envelope a plot at that width shows. */
function minMaxDecimate(x: ArrayLike<number>, y: ArrayLike<number>, buckets: number): Point[] {
  const n = y.length;
  if (n <= 2 * buckets) return Array.from({ length: n }, (_, i) => ({ x: x[i], y: y[i] }));
  const out: Point[] = [];
  const x0 = x[0], span = x[n - 1] - x0 || 1;
  let i = 0;
  for (let b = 0; b < buckets && i < n; b++) {
    const end = x0 + ((b + 1) * span) / buckets;
    let lo = i, hi = i;
    while (i < n && (x[i] <= end || b === buckets - 1)) {
      if (y[i] < y[lo]) lo = i;
      if (y[i] > y[hi]) hi = i;
      i++;
    }
    if (lo <= hi) { out.push({ x: x[lo], y: y[lo] }); if (hi !== lo) out.push({ x: x[hi], y: y[hi] }); }
    else { out.push({ x: x[hi], y: y[hi] }); out.push({ x: x[lo], y: y[lo] }); }
  }
  return out;
}

test('the block-indexed min-max decimation equals the brute-force one, also while points are appended', () => {
  const rng = new Rng(5);
  const n = 50_000;
  const x = Float64Array.from({ length: n }, (_, i) => i + 1);
  const y = Float64Array.from({ length: n }, () => rng.normal());
  const idx = new MinMaxIndex();
  for (const len of [100, 1000, 1001, 33_333, 50_000]) {
    for (const buckets of [10, 37, 400]) {
      const a = idx.decimate(x.subarray(0, len), y.subarray(0, len), buckets);
      const b = minMaxDecimate(x.subarray(0, len), y.subarray(0, len), buckets);
      assert.deepEqual(a, b, `len ${len}, buckets ${buckets}`);
    }
  }
});

/** The definition of the fixed-grid decimation: every point scanned, per bucket of the axis [lo, hi]. */
function gridDecimate(x: ArrayLike<number>, y: ArrayLike<number>, lo: number, hi: number, buckets: number): Point[] {
  const out: Point[] = [];
  const n = y.length, w = (hi - lo) / buckets;
  let i = 0;
  while (i < n && x[i] < lo) i++;
  if (i > 0) out.push({ x: x[i - 1], y: y[i - 1] });
  for (let b = 0; b < buckets; b++) {
    const edge = b === buckets - 1 ? hi : lo + (b + 1) * w;
    let mn = -1, mx = -1;
    for (; i < n && x[i] <= edge; i++) { if (mn < 0 || y[i] < y[mn]) mn = i; if (mx < 0 || y[i] > y[mx]) mx = i; }
    if (mn < 0) continue;
    const [a, c] = mn <= mx ? [mn, mx] : [mx, mn];
    out.push({ x: x[a], y: y[a] });
    if (c !== a) out.push({ x: x[c], y: y[c] });
  }
  if (i < n) out.push({ x: x[i], y: y[i] });
  return out;
}

test('the fixed-grid decimation equals its definition while points are appended, for the whole axis and a zoomed slice', () => {
  const rng = new Rng(7);
  const n = 40_000;
  // Steps with repeats and gaps (a resumed or paused run's x), and a spike the envelope must keep.
  const x = new Float64Array(n), y = new Float64Array(n);
  for (let i = 0, s = 0; i < n; i++) { s += rng.next() < 0.1 ? 0 : rng.next() < 0.02 ? 50 : 1; x[i] = s; y[i] = rng.normal(); }
  y[12_345] = 1e6;
  const last = x[n - 1];
  for (const [lo, hi, buckets] of [[0, Math.ceil(last / 1000) * 1000, 400], [x[5000] + 0.5, x[9000], 37], [0, last, 1], [-100, last + 100, 1000]] as const) {
    const d = new GridDecimator();
    for (const len of [0, 1, 2, 100, 1000, 1001, 9000, 12_346, 30_000, n]) {
      const a = d.decimate(x.subarray(0, len), y.subarray(0, len), lo, hi, buckets);
      assert.deepEqual(a, gridDecimate(x.subarray(0, len), y.subarray(0, len), lo, hi, buckets), `grid [${lo}, ${hi}] × ${buckets}, ${len} points`);
    }
    if (hi > x[12_345]) assert.ok(d.decimate(x, y, lo, hi, buckets).some((p) => p.y === 1e6), 'the spike is drawn');
    // Replaced (fewer points): starts over.
    assert.deepEqual(d.decimate(x.subarray(0, 500), y.subarray(0, 500), lo, hi, buckets), gridDecimate(x.subarray(0, 500), y.subarray(0, 500), lo, hi, buckets));
  }
});

test('the incremental debiased EMA equals the definition, point by point', () => {
  const y = [3, 1, 4, 1, 5, 9, 2, 6];
  const beta = 0.8;
  const ema = new DebiasedEma(beta);
  ema.update(y.slice(0, 3));
  const got = Array.from(ema.update(y));
  let a = 0;
  const want = y.map((v, t) => { a = beta * a + (1 - beta) * v; return a / (1 - beta ** (t + 1)); });
  got.forEach((g, i) => assert.ok(Math.abs(g - want[i]) < 1e-12, `${i}: ${g} vs ${want[i]}`));
  assert.equal(got[0], 3, 'debiased: the first point is the first value');
});

test('τ and γ parse as the palette does (one function for the palette and the page)', async () => {
  const { parseThreshold, parseRatio } = await import('../src/srlora/commandInput');
  const palette = await import('../src/supervisor/commandHandlers');
  assert.equal(palette.parseThreshold, parseThreshold, 'the palette uses the shared parser');
  for (const bad of ['-1.5', '-', 'abc', 'NaN', 'Infinity', '1e999']) assert.equal(parseThreshold(bad).ok, false, bad);
  for (const [text, value] of [['', null], ['off', null], [' OFF ', null], ['0', 0], ['1.25', 1.25]] as const) assert.deepEqual(parseThreshold(text), { ok: true, value }, text);
  for (const bad of ['2', '0', '-0.5', '', '-', 'x']) assert.equal(parseRatio(bad).ok, false, bad);
  assert.deepEqual(parseRatio('0.25'), { ok: true, value: 0.25 });
  assert.deepEqual(parseRatio('1'), { ok: true, value: 1 });
});

// ---------------------------------------------------------------- the dashboard's views of a run (issue 15/16)

import { RunData } from '../webview/runData';
import { FixtureLog } from './helpers/runFixtures';
import type { TrainerMessage } from '../src/protocol/messages';

/** A RunData fed the fixture's lines, as the page folds a snapshot. */
function runOf(f: FixtureLog): RunData {
  const r = new RunData(f.runId);
  for (const l of f.lines) r.apply(JSON.parse(l) as TrainerMessage);
  return r;
}
const SRLORA = { schedule: [12, 24], minSlotAge: 7, rule: { kind: 'ratio' as const, fusionRatio: 0.5 } };

test('the header names the eval\'s step and says when it is stale; a rewind past it drops it; 1 recomposition (singular)', async () => {
  const { runFacts, evalFact } = await import('../webview/panels/header');
  const f = new FixtureLog('e').hello({ name: 'e', totalSteps: 100, srlora: SRLORA }).state('running', 0).metrics(1, 10, () => 1).evalAt(10, 0.5, 0.884).recomposition(12, true);
  const r = runOf(f);
  assert.match(runFacts(r), /eval acc 88\.4 % at step 10 · 1 recomposition ·/);
  f.metrics(11, 35, () => 1);
  const later = runOf(f);
  assert.equal(evalFact(later.model), 'eval acc 88.4 % at step 10 (stale: 25 steps old)', 'evalEvery is 10: the eval due at 20 and 30 never came');
  f.rewind(5).state('running', 5);
  const rewound = runOf(f);
  assert.equal(rewound.model.evalStep, null, 'the eval at step 10 belongs to the attempt the rewind superseded');
  assert.doesNotMatch(runFacts(rewound), /eval acc/);
  assert.match(runFacts(rewound), /· 0 recompositions ·/);
});

test('a never-negative series gets no negative y axis (a loss axis went to -0.1); a signed one keeps its padding', async () => {
  const { robustRange } = await import('../webview/axisRange');
  const loss = robustRange([0, 0.5, 1, 2, 0.25], false)!;
  assert.equal(loss.min, 0);
  assert.ok(loss.max > 2);
  assert.ok(robustRange([-1, 0, 1], false)!.min < -1);
});

test('the y fit keeps every point of a sparse series (a forced recomposition\'s age 187 fell under an axis from 200)', async () => {
  const { robustRange } = await import('../webview/axisRange');
  const ages = [...Array.from({ length: 40 }, (_, i) => 285 + (i % 6)), 187];
  const kept = robustRange([], false, ages)!;
  assert.ok(kept.min < 187 && kept.max > 290, `${kept.min}..${kept.max}`);
  // A dense series still drops its first-step spike, while a sparse one beside it (the evals) is whole.
  const dense = Array.from({ length: 200 }, (_, i) => (i === 0 ? 500 : 1 + (i % 7) / 10));
  assert.ok(robustRange(dense, false)!.max < 10);
  assert.ok(robustRange(dense, false, [7])!.max > 7);
  assert.ok(robustRange(ages.slice(-10), false)!.min < 187, 'ten values are too few to call one an outlier');
});

test('the y axis is widened to labelled ticks: its lowest and highest labels hold every fitted point (ticks 50–80 over ages at 42), linear and log, at each extreme', async () => {
  const { robustRange, niceAxis } = await import('../webview/axisRange');
  const cases: { name: string; values: number[]; keep?: number[] }[] = [
    { name: 'fused ages 47 × 42 and one 84 (pt-part0.png)', values: [], keep: [...Array(47).fill(42), 84] },
    { name: 'one value', values: [], keep: [0.003] },
    { name: 'a flat line', values: Array(500).fill(0.003) },
    { name: 'a loss to 0', values: Array.from({ length: 300 }, (_, i) => 2 * Math.exp(-i / 30)) },
    { name: 'signed', values: Array.from({ length: 100 }, (_, i) => Math.sin(i) * 3.3) },
    { name: 'large', values: [692.4, 702.9, 697] },
    { name: 'tiny', values: Array.from({ length: 50 }, (_, i) => 1e-7 * (1 + i)) },
  ];
  for (const { name, values, keep } of cases) {
    for (const log of [false, true]) {
      if (log && [...values, ...(keep ?? [])].some((v) => v <= 0)) continue;
      for (const spaces of [2, 3, 6, 10]) {
        const fit = robustRange(values, log, keep)!;
        const axis = niceAxis(fit, log, spaces);
        const what = `${name}${log ? ' (log)' : ''}, ${spaces} spaces: labels ${axis.labels.join(' ')} for ${fit.min}..${fit.max}`;
        assert.ok(axis.labels[0] <= fit.min && axis.labels.at(-1)! >= fit.max, what);
        assert.equal(axis.labels[0], axis.min, what);
        assert.equal(axis.labels.at(-1), axis.max, what);
        assert.ok(axis.labels.length >= 2, what);
        if (!log) assert.ok(axis.ticks.length - 1 <= spaces, what);
        if (log) for (const l of axis.labels) { const sig = l / 10 ** Math.floor(Math.log10(l) + 1e-9); assert.ok(Math.abs(sig - Math.round(sig)) < 1e-6, `${what}: ${l} is not round`); }
      }
    }
  }
  // the finding's case: ticks every 10 from 40 (not 50) up to 90
  assert.deepEqual(niceAxis(robustRange([], false, [...Array(47).fill(42), 84])!, false, 6).labels, [40, 50, 60, 70, 80, 90]);
  // a log axis over two decades labels 1, 2, 5 × 10^k, under one decade every whole significand
  assert.deepEqual(niceAxis({ min: 0.13, max: 8 }, true, 10).labels, [0.1, 0.2, 0.5, 1, 2, 5, 10]);
  assert.deepEqual(niceAxis({ min: 187, max: 290 }, true, 10).labels, [100, 200, 300]);
  assert.deepEqual(niceAxis({ min: 1e-6, max: 5 }, true, 4).labels, [1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.1, 1, 10], 'many decades: 10^k only');
});

test('the Stop question names what this user can do: the VS Code command in VS Code, the command line in the browser', async () => {
  const { stopQuestion } = await import('../webview/panels/header');
  const r = runOf(new FixtureLog('my-run').hello({ name: 'x', totalSteps: 10 }));
  const browser = stopQuestion(r, 'browser');
  assert.doesNotMatch(browser, /Continue Run/, 'a VS Code command means nothing in the browser page');
  assert.match(browser, /srlora serve --resume my-run in a terminal/, 'a hub that does not say the folder: serve takes the id');
  assert.match(stopQuestion(r, 'vscode'), /"SRLoRA: Continue Run from Checkpoint"/);
  // fresh6 fixres.2: the real folder (from the hub's run list), and a 2-rank PyTorch run's launcher on 2 processes.
  assert.match(stopQuestion(r, 'browser', '/runs/my-run'), /run srlora train --resume \/runs\/my-run in a terminal/);
  const ddp = runOf(new FixtureLog('ddp').hello({ name: 'x', totalSteps: 10, worldSize: 2 }));
  ddp.model.pytorch = true; // the fixture's backend is 'fixture'; a PyTorch run's hello names 'pytorch'
  assert.equal(ddp.model.worldSize, 2);
  const q = stopQuestion(ddp, 'browser', '/runs/ddp');
  assert.match(q, /run python -m srlora_torch\.launch --standalone --nproc_per_node=2 -m srlora_torch\.train --resume \/runs\/ddp in a terminal/, q);
  assert.doesNotMatch(q, /<runs folder>/);
});

test('commands are named from the log after a reload: pause, resume, checkpoint, stop, set and rejections (acks name only ids)', async () => {
  const { commandLabel } = await import('../webview/panels/commandsPanel');
  const f = new FixtureLog('c').hello({ name: 'c', totalSteps: 100, srlora: SRLORA }).state('running', 0).metrics(1, 3, () => 1)
    .ack('c-1', 'received', null).ack('c-1', 'applied', 3).state('paused', 3)
    .ack('c-2', 'received', null).add('ack', { commandId: 'c-2', status: 'rejected', step: null, reason: 'the run is already paused' })
    .ack('c-3', 'received', null).add('checkpoint', { step: 3, path: 'checkpoints/step-3' }).ack('c-3', 'applied', 3)
    .ack('c-4', 'received', null).ack('c-4', 'applied', 3).state('running', 3)
    .ack('c-5', 'received', null).add('ack', { commandId: 'c-5', status: 'applied', step: 4, settings: { fusionThreshold: 1.5, fusionRatio: 0.5, learningRate: 0.01, importanceEvery: 5, evalEvery: 10 } })
    .metrics(4, 5, () => 1).ack('c-6', 'received', null).ack('c-6', 'applied', 5).metrics(6, 6, () => 1).state('stopping', 6, 'stopped by the user');
  const r = runOf(f);
  const label = (id: string) => commandLabel(r, id, r.acks.get(id)!);
  assert.deepEqual(['c-1', 'c-2', 'c-3', 'c-4', 'c-5', 'c-6'].map(label), ['Pause', 'Pause', 'Checkpoint', 'Resume', 'Set τ = 1.5, γ = 0.5', 'Stop']);
  assert.equal(commandLabel(r, 'c-1', r.acks.get('c-1')!, 'Pause (from this page)'), 'Pause (from this page)', 'the page\'s own label wins');
});

test('fused pairs: the ages the trainer states, or derived from the directions in an older log; the freshest pairs fused again are counted', async () => {
  const { freshSummary, freshText } = await import('../webview/panels/fusionSummary');
  const stated = runOf(FixtureLog.dynamics('d'));
  const fusions = stated.model.fusions;
  assert.equal(fusions.length, 12, '3 recompositions × 4 layers');
  assert.deepEqual(fusions.map((x) => x.ages[0]), Array(12).fill(75));
  assert.deepEqual(fusions.slice(4).map((x) => x.fresh), Array(8).fill(2), 'after the first switch each fused the 2 pairs the previous one re-initialised');
  assert.deepEqual(freshSummary(fusions), { selections: 12, later: 8, allFresh: 8, pairs: 24, freshPairs: 16, medianAge: 75 });
  assert.equal(freshText(stated).warn, true);
  // The same log without `ages` (protocol 1.1): the reducer derives the same ages from the directions.
  const older = new FixtureLog('d');
  for (const line of FixtureLog.dynamics('d').lines) {
    const m = JSON.parse(line) as Record<string, unknown> & { layers?: Record<string, unknown>[] };
    if (m.type === 'recomposition') for (const l of m.layers!) delete l.ages;
    older.lines.push(JSON.stringify(m));
  }
  assert.deepEqual(runOf(older).model.fusions.map((x) => [x.step, x.layer, x.ages, x.fresh]), fusions.map((x) => [x.step, x.layer, x.ages, x.fresh]));
  // A rewind drops what the superseded attempt fused.
  const f = FixtureLog.dynamics('d');
  f.lines.pop(); // the final state
  f.rewind(100).state('running', 100);
  assert.deepEqual(runOf(f).model.fusions.map((x) => x.step), [75, 75, 75, 75]);
});

test('effective rank and step boost: the trainer\'s deltaRank per layer (mean/min/max across layers) and importance stepBoost', () => {
  const r = runOf(FixtureLog.dynamics('d'));
  assert.equal(r.ranks.size, 4);
  assert.equal(r.rankSummary.mean.length, 12, 'one per eval');
  const last = r.model.deltaRank!;
  assert.equal(last.step, 300);
  const values = last.layers.map((l) => l.effectiveRank);
  assert.equal(r.rankSummary.max.value.last(), Math.max(...values));
  assert.equal(r.rankSummary.min.value.last(), Math.min(...values));
  assert.ok(Math.abs(r.rankSummary.mean.value.last()! - values.reduce((a, b) => a + b, 0) / 4) < 1e-12);
  const boost = r.frames.map((f) => f.layers.get('head')!.stepBoost!);
  assert.equal(boost.length, 60);
  assert.ok(Math.max(...boost[15]) > 1.2, 'just after the step-75 reset the fresh pairs\' steps stand out');
});

test('the preview calls the pairs too young to fuse "other" pairs: they are never among those it says would fuse ("24 pairs would fuse; 24 pairs are younger" read as a contradiction)', async () => {
  const { previewMarks, youngClause } = await import('../webview/panels/rulePanel');
  // As FINDINGS' run: half of each layer's pairs were just re-initialised (age 2 < min slot age 10).
  const f = new FixtureLog('young').hello({ name: 'young', totalSteps: 100, srlora: { ...SRLORA, minSlotAge: 10 } }).state('running', 0).metrics(1, 40, () => 1).importance(40, [40, 40, 2, 2]);
  const r = runOf(f);
  const imp = r.latestImportance!;
  const marks = previewMarks(r, imp, { fusionThreshold: null, fusionRatio: 0.5, minSlotAge: 10 });
  const fusing = [...marks.values()].flat().length;
  for (const l of imp.layers) for (const k of marks.get(l.name)!) assert.ok(l.age[k] >= 10, `slot ${k} of ${l.name} is old enough`);
  const young = imp.layers.reduce((n, l) => n + l.age.filter((a) => a < 10).length, 0);
  assert.equal(fusing, 4);
  assert.equal(youngClause(young, fusing, 10), '; 4 other pairs are younger than the min slot age 10 and cannot fuse yet');
  assert.equal(youngClause(1, 3, 10), '; 1 other pair is younger than the min slot age 10 and cannot fuse yet');
  assert.equal(youngClause(4, 0, 10), '; 4 pairs are younger than the min slot age 10 and cannot fuse yet', 'none fuses: no "other"');
  assert.equal(youngClause(0, 4, 10), '');
});

test('the rule preview selects as the trainer states (hello.srlora.fusionSelect), random with the trainers\' seeded key', async () => {
  const { previewMarks } = await import('../webview/panels/rulePanel');
  const { selectSlots, selectionKey } = await import('../src/srlora/rule');
  const layer = { name: 'l0', S: [4, 1, 3, 2], sHat: [1.6, 0.4, 1.2, 0.8], age: [50, 40, 30, 20], direction: [0, 1, 2, 3], p: 4, rTarget: 16 };
  const imp = { layers: [layer, { ...layer, name: 'l1' }] };
  const rule = { fusionThreshold: null, fusionRatio: 0.5, minSlotAge: 1 };
  const picks = (select: string | undefined) => {
    const f = new FixtureLog('p').hello({ name: 'p', totalSteps: 100, config: { seed: 11 }, srlora: { ...SRLORA, ...(select ? { fusionSelect: select } : {}) } as typeof SRLORA }).state('running', 0).metrics(1, 9, () => 1);
    return previewMarks(runOf(f), imp, rule);
  };
  assert.deepEqual(picks(undefined).get('l0'), [1, 3], 'an older trainer: the paper\'s least important');
  assert.deepEqual(picks('most-important').get('l0'), [0, 2]);
  assert.deepEqual(picks('oldest').get('l0'), [0, 1]);
  const random = picks('random');
  for (const [i, name] of ['l0', 'l1'].entries()) {
    const want = selectSlots({ scores: layer.S, age: layer.age, p: 4, rTarget: 16, randomKey: selectionKey(11, 10, i) }, { ...rule, fusionSelect: 'random' }).slots;
    assert.deepEqual(random.get(name), want, `${name}: the draw of step 10 (the next step of a running run), layer index ${i}`);
  }
});

test('the header says how many data-parallel ranks train the run (hello.worldSize, issue 17)', async () => {
  const { runFacts } = await import('../webview/panels/header');
  const f = new FixtureLog('w').hello({ name: 'w', totalSteps: 10 }).state('running', 0);
  assert.doesNotMatch(runFacts(runOf(f)), /ranks/);
  f.lines[0] = JSON.stringify({ ...(JSON.parse(f.lines[0]!) as object), worldSize: 2 });
  assert.match(runFacts(runOf(f)), / · 2 ranks \(DDP\) · /);
});

test('Reveal Run Folder and Export Model say where, in every VS Code (code-server showed nothing for revealFileInOS)', async () => {
  const { locationPlan } = await import('../src/extension/location');
  const web = locationPlan('the run folder of r1', '/w/.srlora/runs/r1', { desktop: false, remoteName: undefined, inWorkspace: true });
  assert.deepEqual(web, { revealInOS: false, message: 'SRLoRA: the run folder of r1: /w/.srlora/runs/r1', actions: ['Copy Path', 'Reveal in Explorer'] });
  assert.equal(locationPlan('x', '/p', { desktop: true, remoteName: 'ssh-remote', inWorkspace: false }).revealInOS, false, 'a remote host\'s file manager is not the user\'s');
  const desktop = locationPlan('x', '/p', { desktop: true, remoteName: undefined, inWorkspace: false });
  assert.equal(desktop.revealInOS, true);
  assert.deepEqual(desktop.actions, ['Copy Path'], 'outside the workspace the Explorer cannot show it');
});

test('Start Run offers only a trainer that can run the config: a text task / Hugging Face model puts PyTorch first, the built-in one marked unable with why', async () => {
  const { builtInRefusal, configProblem, trainerRows } = await import('../src/extension/trainerChoice');
  const { mkdtempSync, writeFileSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const probe = { ok: true as const, label: 'PyTorch · CPU', torch: '2.11', gpus: 0, missing: [] };
  const text = 'examples/minilm-spam-lora32.srlora.json';
  const refusal = builtInRefusal(text);
  assert.equal(refusal, '/task/kind: "text" runs on the PyTorch trainer only');
  const rows = trainerRows(refusal, 'cpu', probe, 'python3');
  assert.match(rows[0].label, /PyTorch/, 'the default (first) row runs the config');
  assert.equal(rows[0].unable, undefined);
  const builtIn = rows.find((r) => /Built-in/.test(r.label))!;
  assert.equal(builtIn.id, 'unable');
  assert.match(builtIn.unable ?? '', /built-in trainer cannot run this config: \/task\/kind: "text" runs on the PyTorch trainer only/);
  // PyTorch missing too: no row that would start a run is first
  const none = trainerRows(refusal, 'cpu', { ok: false, error: 'No module named torch' }, 'python3');
  assert.ok(none.every((r) => r.id === 'unable'), 'neither trainer can run it: every row says why');
  const dir = mkdtempSync(join(tmpdir(), 'srlora-pick-'));
  const hf = join(dir, 'hf.srlora.json');
  writeFileSync(hf, '{ "model": { "kind": "huggingface", "path": "m" }, // comment\n }');
  assert.equal(builtInRefusal(hf), '/model/kind: "huggingface" runs on the PyTorch trainer only');
  const digits = join(dir, 'digits.srlora.json');
  writeFileSync(digits, '{ "method": "srlora", "steps": 10 }');
  assert.equal(builtInRefusal(digits), null);
  assert.match(trainerRows(null, 'cpu', probe, 'python3')[0].label, /Built-in trainer/, 'a config both trainers run: built-in stays the default');
  // the chosen trainer's own check runs before a run folder is made
  assert.equal(configProblem(digits, false), null);
  assert.equal(configProblem(text, true), null);
  assert.match(configProblem(text, false) ?? '', /PyTorch trainer only/);
  const bad = join(dir, 'bad.srlora.json');
  writeFileSync(bad, '{ "r": 0, "stepz": 3 }');
  assert.match(configProblem(bad, false) ?? '', /stepz/);
  assert.match(configProblem(bad, true) ?? '', /stepz|\/r/);
});

test('a run that failed before its hello is not called a non-SRLoRA run ("Recomposition is off for this runs.")', async () => {
  const { freshText, noRecompositionText } = await import('../webview/panels/fusionSummary');
  const failed = runOf(new FixtureLog('f').state('failed', 0, 'the trainer exited with code 1: config.json: /task/kind: "text" runs on the PyTorch trainer only'));
  assert.equal(failed.model.method, null);
  for (const t of [freshText(failed).text, noRecompositionText(failed.model) ?? '']) {
    assert.doesNotMatch(t, /this runs|is off/, t);
    assert.match(t, /^Nothing was recomposed: the run failed before its trainer started training \(the trainer exited with code 1: .*PyTorch trainer only\)\.$/);
  }
  assert.match(noRecompositionText(runOf(new FixtureLog('s').state('starting', 0)).model) ?? '', /Waiting for the trainer's hello/);
  const lora = runOf(new FixtureLog('l').hello({ name: 'l', totalSteps: 10 }).state('running', 0));
  lora.model.method = 'lora'; // the fixture's hello says srlora
  assert.equal(noRecompositionText(lora.model), 'Recomposition is off in lora runs (only srlora recomposes).');
  assert.equal(freshText(lora).text, 'Nothing fuses in lora runs.');
  assert.equal(noRecompositionText(runOf(new FixtureLog('e').hello({ name: 'e', totalSteps: 10, srlora: SRLORA }).state('running', 0)).model), null);
});

test('the page\'s viewer checks are compiled at build time from the one schema, up to date, and judge as the schema does', async () => {
  const { readFileSync, readdirSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { viewerChecksModuleText } = await import('../src/protocol/precompile');
  const { viewerChecks } = await import('../src/protocol/viewerChecks.generated');
  const { Value } = await import('@sinclair/typebox/value');
  const M = await import('../src/protocol/messages');
  assert.equal(readFileSync(join(import.meta.dirname, '../src/protocol/viewerChecks.generated.ts'), 'utf8'), viewerChecksModuleText(), 'stale: run npm run gen:schema');
  const refs = [...M.TrainerMessageSchemas, M.CommandBody];
  const eventSchema = M.HubToViewerSchemas.find((s) => (s.properties.type as unknown as { const: string }).const === 'event')!;
  let n = 0;
  for (const kind of ['valid', 'invalid']) {
    const folder = join(import.meta.dirname, 'vectors/protocol', kind);
    for (const f of readdirSync(folder)) {
      const message = JSON.parse(readFileSync(join(folder, f), 'utf8')) as { runId?: string };
      const event = { v: 1, type: 'event', runId: typeof message.runId === 'string' ? message.runId : 'r', event: message };
      assert.equal(viewerChecks.event(event), Value.Check(eventSchema, refs, event), `${kind}/${f}`);
      n++;
    }
  }
  assert.ok(n > 20, `${n} vectors`);
});

test('a scalar sent with every row shares the run\'s step and time arrays (memory at 1,000,000 steps); a gap or a rewind keeps it right', () => {
  const f = new FixtureLog('s').hello({ name: 's', totalSteps: 100 }).state('running', 0).metrics(1, 10, (s) => s, (s) => ({ scalars: { g: 10 * s } }));
  const r = runOf(f);
  const g = r.scalars.get('g')!;
  assert.equal(g.step, r.step, 'shared');
  assert.equal(g.length, 10);
  f.rewind(6).state('running', 6).metrics(7, 8, (s) => s, (s) => ({ scalars: { g: 100 * s } }));
  const rewound = runOf(f);
  const g2 = rewound.scalars.get('g')!;
  assert.equal(g2.step, rewound.step, 'still shared after a rewind');
  assert.deepEqual(Array.from(g2.value.view()), [10, 20, 30, 40, 50, 60, 700, 800]);
  f.metrics(9, 9, (s) => s).metrics(10, 11, (s) => s, (s) => ({ scalars: { g: 1000 * s } })); // step 9 has no g
  const withGap = runOf(f), gap = withGap.scalars.get('g')!;
  assert.notEqual(gap.step, withGap.step, 'a row without it: its own steps from then on');
  assert.deepEqual(Array.from(gap.step.data.subarray(0, gap.length)), [1, 2, 3, 4, 5, 6, 7, 8, 10, 11]);
  assert.deepEqual(Array.from(gap.value.view()), [10, 20, 30, 40, 50, 60, 700, 800, 10000, 11000]);
});

test('a snapshot after a recomposition at the same step replaces the earlier one: the views\' key, the slot history\'s frame, a rewind', async () => {
  const { importanceKey } = await import('../webview/runData');
  const f = new FixtureLog('same').hello({ name: 'same', totalSteps: 400, srlora: SRLORA }).state('running', 0).metrics(1, 10, () => 1)
    .importance(10, [20, 20, 2, 2]).state('paused', 10);
  const before = runOf(f);
  f.recomposition(10, true, 'forced').importance(10, [0, 20, 2, 2]);
  const after = runOf(f);
  assert.deepEqual(after.latestImportance?.layers[0].age, [0, 20, 2, 2], 'record order wins');
  assert.notEqual(importanceKey(after), importanceKey(before), 'the heatmap, fuse preview and bars redraw (they were keyed on the step)');
  assert.deepEqual(after.frames.map((fr) => fr.step), [10], 'one frame per step in the slot history');
  assert.deepEqual(after.model.latestImportance?.layers[0].age, [0, 20, 2, 2]);
  f.metrics(11, 12, () => 1).rewind(10);
  const rewound = runOf(f);
  assert.deepEqual(rewound.latestImportance?.layers[0].age, [0, 20, 2, 2], 'a rewind to the step keeps its latest snapshot');
});

test('two recompositions at one step (forced twice while paused): each table row shows its own ages and no-fusion reasons', async () => {
  const { recompositionRows } = await import('../webview/panels/recompositionsPanel');
  const layer = (name: string, fused: boolean, ages: number[]) => ({
    name, slots: fused ? [0, 1] : [], scores: fused ? [1, 2] : [], oldDirections: fused ? [0, 1] : [], newDirections: fused ? [4, 5] : [],
    ...(fused ? { ages } : {}), exhausted: !fused, deltaNorm: 0, preservationError: 0, p: fused ? 6 : 4,
  });
  const rec = (layers: unknown[]) => ({ step: 10, trigger: 'forced', rule: { kind: 'ratio', fusionRatio: 0.5 }, outputChange: null, layers });
  const f = new FixtureLog('twice').hello({ name: 'twice', totalSteps: 100, srlora: SRLORA }).state('running', 0).metrics(1, 10, () => 1).state('paused', 10)
    .add('recomposition', rec([layer('a', true, [10, 9]), layer('b', false, [])]))
    .add('recomposition', rec([layer('a', false, []), layer('b', true, [7, 3])]));
  const rows = recompositionRows(runOf(f));
  const by = (seq: number, name: string) => rows.find((x) => x.seq === seq && x.layer === name)!;
  const [second, first] = [...new Set(rows.map((x) => x.seq))];
  assert.ok(first < second && rows.length === 4);
  assert.deepEqual(by(first, 'a').fusion?.ages, [10, 9]);
  assert.equal(by(first, 'b').fusion, undefined);
  assert.match(by(first, 'b').directions, /nothing fused: no direction/);
  assert.equal(by(second, 'a').fusion, undefined, 'the second recomposition fused nothing in a: no ages from the first');
  assert.match(by(second, 'a').directions, /nothing fused: no direction/);
  assert.deepEqual(by(second, 'b').fusion?.ages, [7, 3]);
});

test('every recomposition counts, as summary.json and the terminal count it ("2 recompositions, 1 fused nothing"); one that fused nothing gets a hollow chart marker', async () => {
  const { runFacts } = await import('../webview/panels/header');
  const { recompositionMarkers } = await import('../webview/panels/markers');
  const { recompositionsText } = await import('../src/viewmodel/runModel');
  const f = new FixtureLog('count').hello({ name: 'count', totalSteps: 400, srlora: SRLORA }).state('running', 0).metrics(1, 12, () => 1)
    .recomposition(12, true).state('paused', 12).recomposition(12, false, 'forced');
  const r = runOf(f);
  assert.equal(r.model.recompositions, 2, 'summary.json counts both');
  assert.match(runFacts(r), /· 2 recompositions, 1 fused nothing ·/);
  assert.equal(recompositionsText(r.model.recompositions, 1), '2 recompositions, 1 fused nothing');
  const g = globalThis as unknown as Record<string, unknown>;
  g.document = { body: {} };
  g.getComputedStyle = () => ({ getPropertyValue: () => '' });
  try {
    const marks = recompositionMarkers([r]);
    assert.deepEqual(marks.map((m) => [m.x, m.dashed, m.hollow === true]), [[12, false, false], [12, true, true]], 'the forced one that fused nothing is marked, hollow');
  } finally {
    delete g.document;
    delete g.getComputedStyle;
  }
});

test('a resumed run gets a "resumed" marker on every chart where it continued; a later rewind to before it drops it', async () => {
  const { resumeMarkers } = await import('../webview/panels/markers');
  const f = new FixtureLog('res').hello({ name: 'res', totalSteps: 100 }).state('running', 0).metrics(1, 30, () => 1)
    .state('interrupted', 30, 'SIGTERM').rewind(20).state('running', 20).metrics(21, 40, () => 1);
  const g = globalThis as unknown as Record<string, unknown>;
  g.document = { body: {} };
  g.getComputedStyle = () => ({ getPropertyValue: () => '' });
  try {
    const rewindTime = (JSON.parse(f.lines.find((l) => l.includes('"rewind"'))!) as { time: number }).time;
    assert.deepEqual(resumeMarkers([runOf(f)]).map((m) => [m.x, m.time, m.label, m.dashed]), [[20, rewindTime, 'resumed', true]]);
    f.state('interrupted', 40, 'SIGTERM').rewind(10).state('running', 10);
    assert.deepEqual(resumeMarkers([runOf(f)]).map((m) => m.x), [10], 'the resume at 20 belongs to the attempt the second rewind superseded');
    f.state('interrupted', 12, 'SIGTERM').rewind(10).state('running', 10); // the same checkpoint again (died before the next)
    assert.deepEqual(resumeMarkers([runOf(f)]).map((m) => m.x), [10], 'one marker per resume point, not one per attempt');
    assert.deepEqual(resumeMarkers([runOf(new FixtureLog('plain').hello({ name: 'p', totalSteps: 10 }).state('running', 0).metrics(1, 5, () => 1))]), []);
  } finally {
    delete g.document;
    delete g.getComputedStyle;
  }
});

test('the slot history\'s new-direction tick shows on light and dark pages and reads as no score (white vanished on the light theme)', async () => {
  const { NEW_DIRECTION_RGB, SCORE_LUT } = await import('../webview/colors');
  const lum = ([r, g, b]: readonly number[]) => {
    const c = (v: number) => { const s = v / 255; return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * c(r) + 0.7152 * c(g) + 0.0722 * c(b);
  };
  const contrast = (a: readonly number[], b: readonly number[]) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
  for (const page of [[255, 255, 255], [30, 30, 30]]) assert.ok(contrast(NEW_DIRECTION_RGB, page) >= 3, `contrast with page ${page}: ${contrast(NEW_DIRECTION_RGB, page)}`);
  let nearest = Infinity;
  for (let i = 0; i < 256; i++) nearest = Math.min(nearest, Math.hypot(...[0, 1, 2].map((c) => SCORE_LUT[i * 3 + c] - NEW_DIRECTION_RGB[c])));
  assert.ok(nearest > 100, `a score colour is too close: ${nearest}`);
});

test('the saved runs come back in VS Code\'s tab (a window reload), never on the browser page (its URL is the truth): the Store asks the host\'s kind', async () => {
  const { Store } = await import('../webview/store');
  const g = globalThis as { document?: unknown };
  g.document = { body: { dataset: {} } }; // what the Store reads of the page's DOM
  try {
    const focus = (kind: 'vscode' | 'browser', named: string[]) => new Store({ kind, send: () => {}, onMessage: () => {}, onStatus: () => {},
      getState: () => ({ runIds: ['saved-a', 'saved-b'] }), setState: () => {} }, named).focus;
    assert.deepEqual(focus('vscode', []), ['saved-a', 'saved-b']);
    assert.deepEqual(focus('browser', []), [], 'a plain URL shows the default run, not the last comparison');
    assert.deepEqual(focus('vscode', ['named']), ['named']);
    assert.deepEqual(focus('browser', ['named']), ['named']);
  } finally { delete g.document; }
});

test('compare: every field both runs record is compared, whatever its shape; the backend is the hello\'s (FRESH8 F7: a PyTorch run beside a built-in one listed backend as one-sided)', async () => {
  const { differingFields, comparedConfig, fieldValue } = await import('../webview/panels/compareTable');
  // The PyTorch trainer's config has no `backend` (the built-in's "auto" is a request); both hellos state one.
  const pt = comparedConfig({ config: { r: 4, torch: '2.11.0', task: { kind: 'digits' } }, worldSize: 1, backend: 'pytorch · CPU' });
  const bi = comparedConfig({ config: { r: 4, backend: 'auto', baseModel: 'mlp.safetensors', task: { kind: 'digits', transform: 'rot90' } }, worldSize: 1, backend: 'wasm · CPU' });
  const { differ, oneSided } = differingFields([pt, bi]);
  assert.ok(differ.includes('backend'), `backend is compared: ${differ.join(', ')}`);
  assert.deepEqual([fieldValue(pt, 'backend'), fieldValue(bi, 'backend')], ['pytorch · CPU', 'wasm · CPU']);
  assert.deepEqual(oneSided, ['baseModel', 'task.transform', 'torch']);
  // Shapes that differ (an object in one run, a string in the other) are compared whole, not called one-sided.
  const shapes = differingFields([{ device: { kind: 'cuda', index: 0 }, r: 4 }, { device: 'cpu', r: 4 }]);
  assert.deepEqual(shapes, { differ: ['device'], oneSided: [] });
  assert.deepEqual(fieldValue({ device: { kind: 'cuda', index: 0 } }, 'device'), { kind: 'cuda', index: 0 });
  assert.deepEqual(differingFields([{ device: { kind: 'cuda', index: 0 } }, { device: { kind: 'cuda', index: 1 } }]).differ, ['device.index']);
});
