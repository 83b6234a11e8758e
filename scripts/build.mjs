// Bundles the extension host, the CLI (trainer, hub, serve) and the dashboard page with esbuild, and copies
// the tfjs WebAssembly binaries next to the CLI so the packaged extension needs no node_modules.
import * as esbuild from 'esbuild';
import { copyFileSync, existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const watch = process.argv.includes('--watch');
const production = process.argv.includes('--production');
// 'module' first: some packages (jsonc-parser) ship a UMD main whose dynamic requires a bundle cannot follow.
const common = { bundle: true, sourcemap: true, minify: production, logLevel: 'warning', legalComments: 'none', mainFields: ['module', 'main'] };

const builds = [
  { entryPoints: ['src/extension/extension.ts'], outfile: 'dist/extension.js', platform: 'node', format: 'cjs', target: 'node20', external: ['vscode'] },
  {
    entryPoints: ['src/cli/main.ts'], outfile: 'dist/cli.js', platform: 'node', format: 'cjs', target: 'node20',
    banner: { js: '#!/usr/bin/env node' },
    // Optional native backends: loaded at run time when a user has them, never bundled.
    external: ['@tensorflow/tfjs-node', '@tensorflow/tfjs-node-gpu'],
  },
];
if (existsSync('webview/main.ts')) {
  builds.push({ entryPoints: ['webview/main.ts'], outfile: 'dist/webview.js', platform: 'browser', format: 'iife', target: 'es2022' });
}

mkdirSync('dist', { recursive: true });
const wasmDir = 'node_modules/@tensorflow/tfjs-backend-wasm/dist';
for (const f of readdirSync(wasmDir).filter((f) => f.endsWith('.wasm'))) copyFileSync(join(wasmDir, f), join('dist', f));

if (watch) {
  for (const b of builds) await (await esbuild.context({ ...common, ...b })).watch();
} else {
  await Promise.all(builds.map((b) => esbuild.build({ ...common, ...b })));
}
