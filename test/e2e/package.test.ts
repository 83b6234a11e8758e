/** The .vsix holds only what runs: a listing of the real package, read from its zip central directory. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

const root = join(import.meta.dirname, '../..');
const version = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version;
const vsix = join(root, `srlora-studio-${version}.vsix`);

/** File names in a zip, from its end-of-central-directory record. */
function zipEntries(buf: Buffer): string[] {
  let eocd = buf.length - 22;
  while (eocd >= 0 && buf.readUInt32LE(eocd) !== 0x06054b50) eocd--;
  assert.ok(eocd >= 0, 'not a zip file');
  const count = buf.readUInt16LE(eocd + 10);
  let p = buf.readUInt32LE(eocd + 16);
  const names: string[] = [];
  for (let i = 0; i < count; i++) {
    assert.equal(buf.readUInt32LE(p), 0x02014b50, 'central directory entry');
    const n = buf.readUInt16LE(p + 28), extra = buf.readUInt16LE(p + 30), comment = buf.readUInt16LE(p + 32);
    names.push(buf.toString('utf8', p + 46, p + 46 + n));
    p += 46 + n + extra + comment;
  }
  return names;
}

const ALLOWED = [
  /^extension\.vsixmanifest$/, /^\[Content_Types\]\.xml$/,
  /^extension\/(package\.json|readme\.md|LICENSE\.txt|changelog\.md)$/,
  /^extension\/dist\/(extension|cli|webview)\.js$/, /^extension\/dist\/tfjs-backend-wasm(-simd|-threaded-simd)?\.wasm$/,
  /^extension\/media\/(dashboard\.css|icon\.svg|run-config\.schema\.json)$/,
  /^extension\/media\/models\/(mlp|vit)\.safetensors$/, /^extension\/media\/data\/mnist-10k\.u8\.gz$/,
  /^extension\/python\/srlora_torch\/[\w.-]+\.(py|json)$/,
];

test('the .vsix holds only what runs (no sources, tests, source maps or node_modules)', () => {
  const names = zipEntries(readFileSync(vsix));
  const unexpected = names.filter((n) => !ALLOWED.some((re) => re.test(n)));
  assert.deepEqual(unexpected, []);
  for (const needed of ['extension/dist/extension.js', 'extension/dist/cli.js', 'extension/dist/webview.js', 'extension/dist/tfjs-backend-wasm-simd.wasm', 'extension/media/models/vit.safetensors', 'extension/media/data/mnist-10k.u8.gz']) {
    assert.ok(names.includes(needed), needed);
  }
  // The PyTorch trainer travels whole (every module and schema of python/srlora_torch, no caches): "Start Run… →
  // PyTorch" runs it from the extension's python/ folder.
  const pkg = join(root, 'python/srlora_torch');
  const shipped = readdirSync(pkg).filter((f) => /\.(py|json)$/.test(f)).map((f) => `extension/python/srlora_torch/${f}`);
  assert.ok(shipped.includes('extension/python/srlora_torch/train.py') && shipped.includes('extension/python/srlora_torch/run-config.schema.json'));
  assert.deepEqual(shipped.filter((n) => !names.includes(n)), []);
  console.log(`${vsix}: ${names.length} files, ${(statSync(vsix).size / 2 ** 20).toFixed(2)} MiB`);
});

test('every command the manifest contributes is registered by the extension, and every menu names a contributed one', () => {
  const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
    contributes: { commands: { command: string }[]; menus: Record<string, { command: string }[]> };
  };
  const contributed = manifest.contributes.commands.map((c) => c.command).sort();
  const source = readFileSync(join(root, 'src/extension/extension.ts'), 'utf8');
  const registered = [...source.matchAll(/register\('([\w.]+)'/g)].map((m) => m[1]).sort();
  assert.deepEqual(registered, contributed);
  const inMenus = Object.values(manifest.contributes.menus).flat().map((m) => m.command);
  assert.deepEqual(inMenus.filter((c) => !contributed.includes(c)), []);
});
