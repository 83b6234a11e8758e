/** The synthetic trainer of bench:hub, in its own process so that its sending does not share the hub's thread. */
import { closeSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import type { HubMessage } from '../src/protocol/messages';

const { HUB_URL, HUB_TOKEN, RUN_ID, RUN_DIR, MESSAGES, IMPORTANCE_EVERY } = process.env as Record<string, string>;
const N = Number(MESSAGES), every = Number(IMPORTANCE_EVERY), slots = 64;
let seq = 0;
const t0 = Date.now();
const env = (type: string) => ({ v: 1, type, runId: RUN_ID, seq: ++seq, time: t0 });
const frames: string[] = [JSON.stringify({
  ...env('hello'), protocol: { major: 1, minor: 0 }, method: 'srlora', backend: { name: 'bench', device: 'cpu' }, totalSteps: N, config: {},
  layers: Array.from({ length: 64 }, (_, i) => ({ name: `layer.${i}`, shape: [256, 256], r: slots, rTarget: 256 })),
})];
for (let step = 1; step <= N; step++) {
  frames.push(JSON.stringify(step % every === 0
    ? {
      ...env('importance'), step, layers: Array.from({ length: 64 }, (_, i) => ({
        name: `layer.${i}`, S: Array.from({ length: slots }, () => Math.random() * 1e-5), sHat: Array.from({ length: slots }, () => Math.random() * 2),
        age: Array(slots).fill(step), direction: Array.from({ length: slots }, (_, k) => k), p: slots, rTarget: 256,
      })),
    }
    : { ...env('metrics'), rows: [{ step, loss: 1 / step, lr: 1e-3, examplesPerSec: 1000 }] }));
}
const bytes = frames.reduce((n, f) => n + f.length, 0);
const fd = openSync(join(RUN_DIR, 'events.jsonl'), 'a');
const ws = new WebSocket(`${HUB_URL}/trainer`, { headers: { Authorization: `Bearer ${HUB_TOKEN}` } });
ws.on('open', () => {
  process.send!({ ready: true, total: seq, bytes });
  // As a real trainer: each message goes to the run's record (events.jsonl) first, then to the socket.
  process.once('message', () => {
    for (const f of frames) { writeSync(fd, f + '\n'); ws.send(f); }
  });
});
ws.on('message', (d) => {
  const m = JSON.parse(d.toString()) as HubMessage;
  if (m.type === 'command') {
    const ack = JSON.stringify({ ...env('ack'), commandId: m.id, status: 'applied', step: N });
    writeSync(fd, ack + '\n');
    ws.send(ack);
  }
});
process.on('disconnect', () => { closeSync(fd); process.exit(0); });
