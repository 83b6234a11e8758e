/**
 * Picks the tfjs backend at start: `tensorflow` (libtensorflow through @tensorflow/tfjs-node-gpu or -node, when a
 * user has installed one; never a dependency of ours), else `wasm` (the default here), else `cpu`. The choice is
 * reported; a requested backend that cannot load is a clear error, not a crash deep inside tfjs.
 */
import * as tf from '@tensorflow/tfjs';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';

export type BackendName = 'tensorflow' | 'wasm' | 'cpu';
export const BACKENDS: readonly BackendName[] = ['tensorflow', 'wasm', 'cpu'];

export interface BackendChoice {
  name: BackendName;
  /** Human-readable device, e.g. "CPU (WebAssembly SIMD, 1 thread)". */
  device: string;
  /** Why better backends were skipped, for the log. */
  notes: string[];
}

/** Folder holding tfjs-backend-wasm's .wasm files: next to the bundle (dist/) or in node_modules during tests. */
function wasmDir(): string | null {
  const candidates = [
    typeof __dirname === 'string' ? __dirname : '',
    join(process.cwd(), 'dist'),
    join(process.cwd(), 'node_modules/@tensorflow/tfjs-backend-wasm/dist'),
  ];
  try {
    candidates.push(dirname(require.resolve('@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm')));
  } catch { /* bundled: resolved from dist/ above */ }
  return candidates.find((d) => d && existsSync(join(d, 'tfjs-backend-wasm-simd.wasm'))) ?? null;
}

/** A `require` the bundler does not follow, so optional native packages are looked up at run time only. */
const runtimeRequire = createRequire(typeof __filename === 'string' ? __filename : join(process.cwd(), 'noop.js'));

function loadTensorflow(notes: string[]): boolean {
  for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    try {
      runtimeRequire.resolve(pkg);
    } catch {
      notes.push(`${pkg} is not installed`);
      continue;
    }
    try {
      runtimeRequire(pkg); // registers the 'tensorflow' backend
      return true;
    } catch (e) {
      notes.push(`${pkg} is installed but failed to load: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  return false;
}

async function tryBackend(name: BackendName, notes: string[]): Promise<boolean> {
  if (name === 'tensorflow' && !loadTensorflow(notes)) return false;
  if (name === 'wasm') {
    const dir = wasmDir();
    if (!dir) { notes.push('wasm: tfjs-backend-wasm binaries not found'); return false; }
    setWasmPaths(dir.endsWith('/') ? dir : dir + '/');
  }
  try {
    const ok = await tf.setBackend(name);
    if (ok) await tf.ready();
    if (!ok) notes.push(`${name}: failed to initialise`);
    return ok;
  } catch (e) {
    notes.push(`${name}: ${(e as Error).message}`);
    return false;
  }
}

function describe(name: BackendName): string {
  if (name === 'wasm') return 'CPU (WebAssembly SIMD, 1 thread)';
  if (name === 'cpu') return 'CPU (JavaScript)';
  return 'libtensorflow';
}

/** `requested` undefined or 'auto' → best available. */
export async function selectBackend(requested?: BackendName | 'auto'): Promise<BackendChoice> {
  const notes: string[] = [];
  if (requested && requested !== 'auto') {
    if (!BACKENDS.includes(requested)) throw new Error(`unknown backend ${JSON.stringify(requested)}; expected one of auto, ${BACKENDS.join(', ')}`);
    if (!(await tryBackend(requested, notes))) {
      const hint = requested === 'tensorflow' ? ' (install @tensorflow/tfjs-node or @tensorflow/tfjs-node-gpu next to the extension, or use wasm)' : '';
      throw new Error(`backend ${requested} is not available: ${notes.join('; ')}${hint}`);
    }
    return { name: requested, device: describe(requested), notes };
  }
  for (const name of BACKENDS) {
    if (await tryBackend(name, notes)) return { name, device: describe(name), notes };
  }
  throw new Error(`no tfjs backend could start: ${notes.join('; ')}`);
}
