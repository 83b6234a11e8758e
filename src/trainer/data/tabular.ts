/**
 * A user's own data: CSV (header row, numeric feature columns, one label column) or JSONL
 * ({"features": [...], "label": k} per line). Every problem is reported with its line number.
 */
import { readFileSync, statSync } from 'node:fs';
import type { Dataset } from './dataset';

/** The built-in trainer holds a data file in memory as text and numbers: larger files are for the PyTorch trainer. */
export const MAX_TABULAR_BYTES = 256 * 2 ** 20;

/** A value quoted in an error, cut to a readable length. */
export const quote = (s: string, max = 40): string => JSON.stringify(s.length > max ? `${s.slice(0, max)}…` : s);

/**
 * Reads a tabular data file. `field` names the config field that points at it (/task/train, /task/eval), so every error
 * names the field and the file. Errors: missing, a directory, larger than MAX_TABULAR_BYTES, a bad line (its number).
 */
export function loadTabular(file: string, labelColumn = 'label', field = '/task/train'): Dataset {
  let size: number;
  try {
    const st = statSync(file);
    if (st.isDirectory()) throw new Error('is a directory, not a .csv or .jsonl file');
    size = st.size;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(`${field}: ${file}: ${code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
  if (size > MAX_TABULAR_BYTES) {
    throw new Error(`${field}: ${file} is ${(size / 2 ** 20).toFixed(0)} MiB; the built-in trainer reads data files up to ${MAX_TABULAR_BYTES / 2 ** 20} MiB (use the PyTorch trainer for more)`);
  }
  let text: string;
  try {
    text = readFileSync(file, 'utf8').replace(/^\uFEFF/, ''); // a byte-order mark (Windows editors) is not data
  } catch (e) {
    throw new Error(`${field}: ${file}: ${(e as Error).message}`);
  }
  const rows: number[][] = [];
  const labels: number[] = [];
  const lines = text.split(/\r?\n/);
  if (file.endsWith('.jsonl')) {
    lines.forEach((line, i) => {
      if (!line.trim()) return;
      let v: unknown;
      try { v = JSON.parse(line); } catch { throw new Error(`${file}:${i + 1}: not JSON`); }
      const r = v as { features?: unknown; label?: unknown };
      if (!Array.isArray(r.features) || !r.features.every((x) => typeof x === 'number' && Number.isFinite(x))) throw new Error(`${file}:${i + 1}: "features" must be an array of finite numbers`);
      if (!Number.isInteger(r.label) || (r.label as number) < 0) throw new Error(`${file}:${i + 1}: "label" must be an integer ≥ 0`);
      rows.push(r.features as number[]);
      labels.push(r.label as number);
    });
  } else {
    const header = lines[0].split(',').map((h) => h.trim());
    const li = header.indexOf(labelColumn);
    if (li < 0) throw new Error(`${file}: no ${quote(labelColumn)} column in the header (${header.slice(0, 20).map((h) => quote(h)).join(', ')}${header.length > 20 ? ', …' : ''})`);
    lines.slice(1).forEach((line, i) => {
      if (!line.trim()) return;
      const cells = line.split(',');
      if (cells.length !== header.length) throw new Error(`${file}:${i + 2}: ${cells.length} cells, header has ${header.length}`);
      const nums = cells.map((c) => (c.trim() === '' ? NaN : Number(c))); // Number('') is 0: an empty cell is no number
      const bad = nums.findIndex((x) => !Number.isFinite(x));
      if (bad >= 0) throw new Error(`${file}:${i + 2}: column ${quote(header[bad])} is not a number: ${quote(cells[bad])}`);
      if (!Number.isInteger(nums[li]) || nums[li] < 0) throw new Error(`${file}:${i + 2}: label must be an integer ≥ 0`);
      labels.push(nums[li]);
      rows.push(nums.filter((_, j) => j !== li));
    });
  }
  if (rows.length === 0) throw new Error(`${file}: no rows`);
  const dim = rows[0].length;
  rows.forEach((r, i) => { if (r.length !== dim) throw new Error(`${file}: row ${i + 1} has ${r.length} features, the first has ${dim}`); });
  return {
    features: Float32Array.from(rows.flat()), labels: Int32Array.from(labels), n: rows.length, dim,
    classes: labels.reduce((a, b) => Math.max(a, b), 0) + 1, // no spread: millions of arguments overflow the stack
  };
}
