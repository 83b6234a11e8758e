/**
 * npm run bench:hub — a synthetic trainer streams metrics and importance snapshots (64 layers × 64 slots)
 * into the hub, writing each to the run's events.jsonl first as a real trainer does: messages/s delivered (the hub
 * validates each and merges the socket with the record it follows); then command round trips
 * (hub → trainer → ack back at the hub), p50/p99.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fork } from 'node:child_process';
import { Hub } from '../src/hub/hub';
import { percentile, writeResult } from './common';

const RUN = 'bench-run';
const N = Number(process.env.BENCH_MESSAGES ?? 100_000);
// One 64×64 snapshot per 1,000 messages: at 20,000 msg/s that is 20 snapshots/s, twice what a trainer may send
// (SRLORA.md §5: at most ~10/s). BENCH_IMPORTANCE_EVERY=100 gives a harsher stress mix.
const IMPORTANCE_EVERY = Number(process.env.BENCH_IMPORTANCE_EVERY ?? 1000);
const ROUND_TRIPS = 2_000;

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'srlora-bench-'));
  const hub = await Hub.start({ heartbeatMs: 60_000, maxInFlight: 10_000 });
  const { token } = hub.openRun(RUN, dir);
  // The synthetic trainer runs in a child process, like a real one.
  const child = fork(join(import.meta.dirname, 'hubTrainer.ts'), [], {
    execArgv: ['--import', 'tsx'],
    env: { ...process.env, HUB_URL: hub.url, HUB_TOKEN: token, RUN_ID: RUN, RUN_DIR: dir, MESSAGES: String(N), IMPORTANCE_EVERY: String(IMPORTANCE_EVERY) },
  });
  const ready = await new Promise<{ total: number; bytes: number }>((r) => child.once('message', (m) => r(m as { total: number; bytes: number })));
  const { total, bytes } = ready;
  const start = performance.now();
  child.send('go');
  while (hub.run(RUN)!.lastSeq < total) await new Promise((r) => setTimeout(r, 1));
  const ingestSec = (performance.now() - start) / 1000;
  const rate = N / ingestSec;
  console.log(`ingested ${N} messages (${(bytes / 2 ** 20).toFixed(1)} MiB, ${N / IMPORTANCE_EVERY} importance snapshots of 64×64) in ${ingestSec.toFixed(2)} s: ${Math.round(rate)} msg/s`);

  // Command round trips: the synthetic trainer acks each command as soon as it arrives.
  const rtts: number[] = [];
  for (let i = 0; i < ROUND_TRIPS; i++) {
    const t = performance.now();
    const done = new Promise<void>((resolve) => {
      const on = (_run: string, msg: { type: string; commandId?: string }) => {
        if (msg.type === 'ack' && msg.commandId === sent.commandId) { hub.off('message', on); resolve(); }
      };
      hub.on('message', on);
    });
    const sent = hub.sendCommand(RUN, { kind: 'set', fusionThreshold: 0.5 }) as { commandId: string };
    await done;
    rtts.push(performance.now() - t);
  }
  rtts.sort((a, b) => a - b);
  const p50 = percentile(rtts, 50), p99 = percentile(rtts, 99);
  console.log(`command round trip over ${ROUND_TRIPS}: p50 ${p50.toFixed(3)} ms, p99 ${p99.toFixed(3)} ms`);

  child.kill();
  await hub.close();
  rmSync(dir, { recursive: true, force: true });
  writeResult(IMPORTANCE_EVERY === 1000 ? 'hub' : `hub-importance-every-${IMPORTANCE_EVERY}`, {
    command: IMPORTANCE_EVERY === 1000 ? 'npm run bench:hub' : `BENCH_IMPORTANCE_EVERY=${IMPORTANCE_EVERY} npm run bench:hub`,
    messages: N, importanceEvery: IMPORTANCE_EVERY, importanceShape: '64 layers x 64 slots', megabytes: +(bytes / 2 ** 20).toFixed(2),
    ingestSeconds: +ingestSec.toFixed(3), messagesPerSecond: Math.round(rate), goalMessagesPerSecond: 20_000,
    commandRoundTripMs: { count: ROUND_TRIPS, p50: +p50.toFixed(3), p99: +p99.toFixed(3) }, goalP99Ms: 20,
  });
}

void main();
