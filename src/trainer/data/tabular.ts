/**
 * A user's own data: CSV (header row, numeric feature columns, one label column) or JSONL
 * ({"features": [...], "label": k} per line). Every problem is reported with its line number.
 */
import { readFileSync } from 'node:fs';
import type { Dataset } from './dataset';

export function loadTabular(file: string, labelColumn = 'label'): Dataset {
  const text = readFileSync(file, 'utf8');
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
    if (li < 0) throw new Error(`${file}: no "${labelColumn}" column in the header (${header.join(', ')})`);
    lines.slice(1).forEach((line, i) => {
      if (!line.trim()) return;
      const cells = line.split(',');
      if (cells.length !== header.length) throw new Error(`${file}:${i + 2}: ${cells.length} cells, header has ${header.length}`);
      const nums = cells.map((c) => (c.trim() === '' ? NaN : Number(c))); // Number('') is 0: an empty cell is no number
      const bad = nums.findIndex((x) => !Number.isFinite(x));
      if (bad >= 0) throw new Error(`${file}:${i + 2}: column "${header[bad]}" is not a number: ${JSON.stringify(cells[bad])}`);
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
    classes: Math.max(...labels) + 1,
  };
}
