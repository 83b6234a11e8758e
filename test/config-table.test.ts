/**
 * The shared bad-config table (test/vectors/config/invalid.json, also run by python/tests/test_config_table.py)
 * through the built-in trainer's config loading: readRunConfig, then TrainingRun.create, as `srlora train --config`
 * does. Each case is refused before any work, with one short message naming its field (a JSON pointer; "" = the config
 * file, whose name it then contains) and the files in `names`, and no run folder is made.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { readRunConfig, withAbsolutePaths } from '../src/trainer/config/runConfig';
import { TrainingRun } from '../src/trainer/process/trainingRun';
import { selectBackend } from '../src/trainer/engine/backend';
import { tempDir } from './helpers/tmp';

interface Case {
  name: string;
  field: string;
  config?: Record<string, unknown>;
  text?: string;
  special?: 'missing' | 'directory' | 'nul-small' | 'nul-large';
  files?: Record<string, string | { directory: true }>;
  names?: string[];
}
const file = process.env.SRLORA_CONFIG_TABLE ?? join(import.meta.dirname, 'vectors/config/invalid.json');
const table = JSON.parse(readFileSync(file, 'utf8')) as { configFile: string; cases: Case[] };

before(async () => { await selectBackend('auto'); });

test('the bad-config table has its cases', () => assert.ok(table.cases.length >= 40));

for (const c of table.cases) {
  test(`bad config: ${c.name}`, async () => {
    const dir = tempDir();
    const cfg = join(dir, table.configFile);
    for (const [name, content] of Object.entries(c.files ?? {})) {
      mkdirSync(dirname(join(dir, name)), { recursive: true });
      if (typeof content === 'string') writeFileSync(join(dir, name), content);
      else mkdirSync(join(dir, name));
    }
    if (c.special === 'directory') mkdirSync(cfg);
    else if (c.special === 'nul-small') writeFileSync(cfg, Buffer.alloc(64));
    else if (c.special === 'nul-large') writeFileSync(cfg, Buffer.alloc(2 << 20));
    else if (c.special !== 'missing') writeFileSync(cfg, c.text ?? JSON.stringify(c.config));
    const runDir = join(dir, 'runs', 'run-x');
    let message = '';
    try {
      const config = withAbsolutePaths(readRunConfig(cfg), dir);
      const run = await TrainingRun.create({ config, runDir, baseDir: dir });
      await run.run();
    } catch (e) {
      message = (e as Error).message;
    }
    assert.ok(message, 'refused');
    assert.ok(!message.includes('\n'), `one line: ${message}`);
    assert.ok(message.length < 600, `short (${message.length} characters)`);
    if (c.field) assert.ok(message.startsWith(`${c.field}:`) || message.includes(`: ${c.field}:`), `names ${c.field}: ${message}`);
    else assert.ok(message.includes(table.configFile), `names the config file: ${message}`);
    for (const n of c.names ?? []) assert.ok(message.includes(n), `names ${n}: ${message}`);
    assert.equal(existsSync(runDir), false, 'no run folder');
  });
}
