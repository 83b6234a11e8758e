// npm run demo — the built-in demo: the tiny vision transformer fine-tuned with SRLoRA on 90°-rotated digits, with
// its live dashboard in the browser (srlora serve). Builds first when dist/ is missing or older than the sources.
// `npm run demo -- --headless` trains in the terminal with a progress line and no dashboard.
// 4,500 steps (minutes, a scheduled recomposition every ~640 steps): long enough to pause, change τ and force a
// recomposition while it trains; `npm run demo -- --steps N` for another length.
// SRLORA_DEMO_DRY_RUN=1 prints the CLI arguments as JSON instead of running them (the test checks them).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const args = process.argv.slice(2);
const headless = args.includes('--headless');

function newest(dir) {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}
const DEMO_STEPS = '4500';
const dryRun = process.env.SRLORA_DEMO_DRY_RUN === '1';
const built = ['dist/cli.js', 'dist/webview.js'].every((f) => existsSync(join(root, f)));
const stale = !built || Math.max(newest(join(root, 'src')), newest(join(root, 'webview'))) > statSync(join(root, 'dist/cli.js')).mtimeMs;
if (stale && !dryRun) {
  console.log('building…');
  const b = spawnSync(process.execPath, [join(root, 'scripts/build.mjs')], { stdio: 'inherit', cwd: root });
  if (b.status !== 0) process.exit(b.status ?? 1);
}
const rest = args.filter((a) => a !== '--headless');
const steps = rest.some((a) => a === '--steps' || a.startsWith('--steps=')) ? [] : ['--steps', DEMO_STEPS];
const cliArgs = headless
  ? ['train', '--runs-dir', '.srlora/runs', ...steps, ...rest]
  : ['serve', '--demo', '--runs-dir', '.srlora/runs', ...steps, ...rest];
if (dryRun) {
  console.log(JSON.stringify(cliArgs));
  process.exit(0);
}
const child = spawn(process.execPath, [join(root, 'dist/cli.js'), ...cliArgs], { stdio: 'inherit', cwd: root });
// Ctrl+C reaches the child through the terminal's process group; it stops the run cleanly (a checkpoint first).
process.on('SIGINT', () => {});
process.on('SIGTERM', () => child.kill('SIGTERM'));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
