/**
 * The safetensors format (8-byte little-endian header length, a JSON header of dtype/shape/data_offsets, raw
 * little-endian data), F32 only. Written by hand because no maintained npm implementation exists (the `safetensors`
 * package is a 2-year-old 0.0.1); the format is small and fixed, and the tests round-trip it.
 */
import { readFileSync } from 'node:fs';
import { writeFileAtomic } from './atomic';

export type TensorMap = Record<string, { shape: number[]; data: Float32Array }>;

export function encodeSafetensors(tensors: TensorMap, metadata: Record<string, string> = {}): Buffer {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  const names = Object.keys(tensors).sort();
  for (const name of names) {
    const t = tensors[name];
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (count !== t.data.length) throw new Error(`safetensors: ${name} has ${t.data.length} values for shape [${t.shape}]`);
    header[name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8); // align the data to 8 bytes, as the reference writer does
  const head = Buffer.from(json, 'utf8');
  const out = Buffer.alloc(8 + head.length + offset);
  out.writeBigUInt64LE(BigInt(head.length), 0);
  head.copy(out, 8);
  let pos = 8 + head.length;
  for (const name of names) {
    const d = tensors[name].data;
    Buffer.from(d.buffer, d.byteOffset, d.byteLength).copy(out, pos);
    pos += d.byteLength;
  }
  return out;
}

export function decodeSafetensors(buf: Buffer, source = 'safetensors'): { tensors: TensorMap; metadata: Record<string, string> } {
  if (buf.length < 8) throw new Error(`${source}: too short`);
  const n = Number(buf.readBigUInt64LE(0));
  if (n > 100 * 2 ** 20 || 8 + n > buf.length) throw new Error(`${source}: bad header length ${n}`);
  let header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  try {
    header = JSON.parse(buf.toString('utf8', 8, 8 + n)) as typeof header;
  } catch {
    throw new Error(`${source}: not a safetensors file (its header is not JSON)`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw new Error(`${source}: not a safetensors file (its header is not an object)`);
  const base = 8 + n;
  const tensors: TensorMap = {};
  let metadata: Record<string, string> = {};
  for (const [name, h] of Object.entries(header)) {
    if (name === '__metadata__') { metadata = h as unknown as Record<string, string>; continue; }
    if (typeof h !== 'object' || h === null || !Array.isArray(h.shape) || !Array.isArray(h.data_offsets)) throw new Error(`${source}: ${name} has no shape or data_offsets`);
    if (h.dtype !== 'F32') throw new Error(`${source}: ${name} is ${h.dtype}; only F32 is supported`);
    const [a, b] = h.data_offsets;
    if (b > buf.length - base || a > b) throw new Error(`${source}: ${name} lies outside the file`);
    const data = new Float32Array(new Uint8Array(buf.subarray(base + a, base + b)).buffer); // copy: aligned
    if (data.length !== h.shape.reduce((x, y) => x * y, 1)) throw new Error(`${source}: ${name} size does not match its shape`);
    tensors[name] = { shape: h.shape, data };
  }
  return { tensors, metadata };
}

export const readSafetensors = (file: string) => decodeSafetensors(readFileSync(file), file);
export const writeSafetensors = (file: string, tensors: TensorMap, metadata: Record<string, string> = {}) =>
  writeFileAtomic(file, encodeSafetensors(tensors, metadata));
