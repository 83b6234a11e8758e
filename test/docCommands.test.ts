import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

// Fresh-user finding (session 6, fixsup.4): README's `.venv/bin/python -m srlora_torch.bench_real --write-model …`
// failed from the repository root (No module named 'srlora_torch': the package lives in python/). Every
// `-m srlora_torch.X` command the README or an example config gives to run from the repository root (it names a
// path there: .venv/, examples/, bench/) must put python/ on the path, and name a module that exists.

const root = join(import.meta.dirname, '..');

/** Commands in a Markdown file: inline code spans (joined across line breaks) and lines of fenced blocks. */
function markdownCommands(text: string): string[] {
  const out: string[] = [];
  const prose: string[] = [];
  let fenced = false;
  for (const line of text.split('\n')) {
    if (line.trimStart().startsWith('```')) { fenced = !fenced; continue; }
    if (fenced) out.push(line.replace(/#.*$/, '').trim());
    else prose.push(line.trim());
  }
  for (const m of prose.join(' ').matchAll(/`([^`]+)`/g)) out.push(m[1]);
  return out;
}

/** Commands in a JSONC example's `//` comments, one per line. */
function commentCommands(text: string): string[] {
  return text.split('\n').filter((l) => l.trimStart().startsWith('//')).map((l) => l.replace(/^\s*\/\/\s*/, ''));
}

function check(file: string, commands: string[]): string[] {
  const bad: string[] = [];
  for (const cmd of commands) {
    const m = /-m srlora_torch\.([A-Za-z_]+)/.exec(cmd);
    if (!m) continue;
    if (!existsSync(join(root, 'python', 'srlora_torch', `${m[1]}.py`))) bad.push(`${file}: no module srlora_torch.${m[1]}: ${cmd}`);
    const fromRoot = /(^|\s)(\.venv\/|examples\/|bench\/)/.test(cmd);
    const onPath = /^PYTHONPATH=(\.\/)?python\s/.test(cmd) || /^cd python\s*&&/.test(cmd);
    if (fromRoot && !onPath) bad.push(`${file}: runs from the repository root without python/ on the path: ${cmd}`);
  }
  return bad;
}

test('every srlora_torch command in the README and the examples runs as written from the repository root', () => {
  const bad = check('README.md', markdownCommands(readFileSync(join(root, 'README.md'), 'utf8')));
  let seen = 0;
  for (const name of readdirSync(join(root, 'examples')).filter((n) => n.endsWith('.json'))) {
    const cmds = commentCommands(readFileSync(join(root, 'examples', name), 'utf8'));
    seen += cmds.filter((c) => c.includes('-m srlora_torch.')).length;
    bad.push(...check(`examples/${name}`, cmds));
  }
  assert.ok(seen >= 2, 'the example config names its commands');
  assert.deepEqual(bad, []);
});

test('the check itself refuses the command the fresh user ran', () => {
  assert.equal(check('x', ['.venv/bin/python -m srlora_torch.bench_real --write-model examples/models/m']).length, 1);
  assert.equal(check('x', ['PYTHONPATH=python .venv/bin/python -m srlora_torch.bench_real --write-model examples/m']).length, 0);
  assert.equal(check('x', ['PYTHONPATH=python .venv/bin/python -m srlora_torch.nosuch --x examples/m']).length, 1);
});
