/**
 * The PyTorch trainer as the installed extension runs it: srlora_torch from the extension's own python/ folder (on
 * PYTHONPATH), nothing installed into the user's Python; the probe names exactly what is missing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Hub } from '../src/hub/hub';
import { RunManager } from '../src/supervisor/runManager';
import { probePython, pythonEnv, pythonPackageDir } from '../src/supervisor/pythonTrainer';
import { tempDir, until } from './helpers/tmp';

const python = process.env.SRLORA_TEST_PYTHON ?? resolve('.venv/bin/python');
const root = join(import.meta.dirname, '..');
const cli = join(root, 'dist/cli.js');

test('with the extension\'s python/ on PYTHONPATH a Python with torch runs srlora_torch; the probe lists optional packages missing', async () => {
  const probe = await probePython(python, pythonEnv(pythonPackageDir(root), {}));
  assert.ok(probe.ok, probe.ok ? '' : probe.error);
  if (probe.ok) assert.deepEqual(probe.missing, []); // .venv has transformers and peft
  // the user's own PYTHONPATH is kept, after ours
  assert.deepEqual(pythonEnv('/ext/python', { PYTHONPATH: '/mine' }), { PYTHONPATH: '/ext/python:/mine' });
});

test('a Python without torch is refused naming torch and srlora_torch with their import errors', async () => {
  // A bare venv: no torch, no transformers, and (without our PYTHONPATH) no srlora_torch.
  const dir = tempDir();
  execFileSync('python3', ['-m', 'venv', '--without-pip', join(dir, 'venv')]);
  const bare = join(dir, 'venv/bin/python');
  const without = await probePython(bare, { PYTHONPATH: '' });
  assert.equal(without.ok, false);
  if (!without.ok) assert.match(without.error, /missing torch \(ModuleNotFoundError: No module named 'torch'\); srlora_torch \(ModuleNotFoundError: No module named 'srlora_torch'\) — install PyTorch/);
  const withOurs = await probePython(bare, pythonEnv(pythonPackageDir(root), {}));
  assert.equal(withOurs.ok, false);
  // srlora_torch itself imports torch: only torch is named as what to install
  if (!withOurs.ok) assert.match(withOurs.error, /missing torch \(ModuleNotFoundError: No module named 'torch'\)/);
});

test('every trainer the run manager launches finds the shipped srlora_torch first on PYTHONPATH', async () => {
  const dir = tempDir();
  const hub = await Hub.start({ heartbeatMs: 60_000 });
  const pkg = join(dir, 'ext/python');
  const runs = new RunManager({ runsDir: join(dir, 'runs'), hub, cliPath: cli, pythonPackageDir: pkg,
    trainerCommand: 'echo "$PYTHONPATH" > env.txt; exit 3' });
  try {
    const run = await runs.start({ cwd: dir });
    assert.ok(await until(() => run.model.state === 'failed', 5000));
    const seen = readFileSync(join(dir, 'env.txt'), 'utf8').trim();
    assert.equal(seen.split(':')[0], pkg);
  } finally { await hub.close(); }
});

test('an interpreter typed as a relative path is made absolute against the folder it was typed in (serve\'s, VS Code\'s workspace), a bare name is left to PATH', async () => {
  // serve made --python absolute only for itself; VS Code's srlora.python.path ".venv/bin/python" named nothing in the
  // run's folder, where the trainer runs (exit 127): one rule for both now
  const { interpreterPath } = await import('../src/supervisor/pythonTrainer');
  assert.equal(interpreterPath('.venv/bin/python', '/work/proj'), '/work/proj/.venv/bin/python');
  assert.equal(interpreterPath('./py/python3', '/w'), '/w/py/python3');
  assert.equal(interpreterPath('/usr/bin/python3', '/w'), '/usr/bin/python3');
  assert.equal(interpreterPath('python3', '/w'), 'python3');
});
