/** Compares an answer with a case's `expected`, as ../shared/VECTORS.md says. Returns every mismatch found. */
import type { CaseAnswer, ConformanceCase } from './caseFormat';

type Num = number | number[] | number[][];

const flat = (x: Num): number[] => (Array.isArray(x) ? (x as (number | number[])[]).flat() as number[] : [x]);

/** numpy.allclose(actual, expected, rtol, atol · max|expected|). */
function allclose(actual: Num, expected: Num, rtol: number, atol: number): string | null {
  const a = flat(actual), e = flat(expected);
  if (a.length !== e.length) return `length ${a.length} ≠ ${e.length}`;
  const scale = e.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  for (let i = 0; i < e.length; i++) {
    if (!(Math.abs(a[i] - e[i]) <= atol * scale + rtol * Math.abs(e[i]))) return `[${i}]: ${a[i]} vs ${e[i]} (scale ${scale})`;
  }
  return null;
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

export function compareAnswer(c: ConformanceCase, got: CaseAnswer): string[] {
  const exp = c.expected;
  if (!exp) return ['the case has no expected answer'];
  const { rtol, atol, preservation } = c.tolerance ?? { rtol: 2e-3, atol: 1e-5, preservation: 1e-5 };
  const errs: string[] = [];
  const close = (what: string, a: Num, e: Num) => { const m = allclose(a, e, rtol, atol); if (m) errs.push(`${what}: ${m}`); };
  if (!same(got.scheduledSteps, exp.scheduledSteps)) errs.push(`scheduledSteps: ${JSON.stringify(got.scheduledSteps)} vs ${JSON.stringify(exp.scheduledSteps)}`);
  close('losses', got.losses, exp.losses);
  if (got.events.length !== exp.events.length) errs.push(`events: ${got.events.length} vs ${exp.events.length}`);
  exp.events.forEach((e, i) => {
    const g = got.events[i];
    if (!g) return;
    for (const k of ['afterStep', 'trigger', 'layer', 'slots', 'oldDirections', 'newDirections'] as const) {
      if (!same(g[k], e[k])) errs.push(`events[${i}].${k}: ${JSON.stringify(g[k])} vs ${JSON.stringify(e[k])}`);
    }
    if (g.exhausted !== e.exhausted) errs.push(`events[${i}].exhausted: ${g.exhausted} vs ${e.exhausted}`);
    if (e.scores.length) close(`events[${i}].scores`, g.scores, e.scores);
    if (!(g.preservationError <= preservation)) errs.push(`events[${i}].preservationError ${g.preservationError} > ${preservation}`);
  });
  if (got.final.length !== exp.final.length) errs.push(`final: ${got.final.length} layers vs ${exp.final.length}`);
  exp.final.forEach((e, i) => {
    const g = got.final[i];
    if (!g) return;
    if (g.layer !== e.layer) errs.push(`final[${i}].layer: ${g.layer} vs ${e.layer}`);
    if (g.p !== e.p) errs.push(`final[${i}].p: ${g.p} vs ${e.p}`);
    if (!same(g.directions, e.directions)) errs.push(`final[${i}].directions: ${JSON.stringify(g.directions)} vs ${JSON.stringify(e.directions)}`);
    close(`final[${i}].W`, g.W, e.W);
    close(`final[${i}].delta`, g.delta, e.delta);
    close(`final[${i}].scores`, g.scores, e.scores);
  });
  return errs;
}
