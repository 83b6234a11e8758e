/**
 * `--fusion-threshold off` is accepted, as the page and palette call it (fresh-user session 5, fixb.4: it was refused
 * while `null` worked), and a value out of range names the range (it said "expected number | null, got -1").
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseFlags } from '../src/cli/trainCommand';
import { applyOverrides, parseRunConfig } from '../src/trainer/config/runConfig';

const configOf = (argv: string[]) => parseRunConfig(applyOverrides({}, parseFlags(argv).overrides), 'flags');

test('--fusion-threshold off (and null) means the paper\'s rule: fusionThreshold null; a number stays τ', () => {
  assert.equal(configOf(['--fusion-threshold', 'off']).fusionThreshold, null);
  assert.equal(configOf(['--fusion-threshold=off']).fusionThreshold, null);
  assert.equal(configOf(['--fusionThreshold', 'null']).fusionThreshold, null);
  assert.equal(configOf(['--fusion-threshold', '0.25']).fusionThreshold, 0.25);
  assert.equal(configOf(['--fusion-threshold', '0']).fusionThreshold, 0);
});

test('--fusion-threshold out of range or not a number says the range (≥ 0, or off)', () => {
  for (const bad of ['-1', 'fast', '', 'Infinity']) {
    assert.throws(() => configOf(['--fusion-threshold', bad]), /--fusion-threshold: .* is not a number ≥ 0 or off/, bad);
  }
});
