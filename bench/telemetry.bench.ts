/**
 * npm run bench:telemetry — the same run (MLP, srlora, importance every step: the most telemetry a run can make)
 * streaming to a live hub, against no hub at all: steps/s with ÷ steps/s without. The trainer runs in its own
 * process, as it does under the extension; the hub runs here. Runs alternate to cancel drift.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Hub } from '../src/hub/hub';
import { trainCli, runEvents } from './runCli';
import { writeResult } from './common';

const STEPS = Number(process.env.BENCH_STEPS ?? 600);
const ROUNDS = 3;
const args = ['--model.kind', 'mlp', '--steps', String(STEPS), '--importance-every', '1', '--eval-every', '100000', '--checkpoint-every', '0'];

/** Steps per second between the first and the last metrics row (the trainer's own clock). */
function stepsPerSecond(runDir: string): number {
  const rows = runEvents(runDir).filter((m) => m.type === 'metrics');
  const first = rows[0], last = rows[rows.length - 1];
  if (!first || first.type !== 'metrics' || last.type !== 'metrics') throw new Error('no metrics');
  const steps = last.rows[last.rows.length - 1].step - first.rows[0].step;
  return (steps * 1000) / (last.time - first.time);
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'srlora-telemetry-'));
  const alone: number[] = [], streamed: number[] = [];
  let received = 0;
  for (let round = 0; round < ROUNDS; round++) {
    alone.push(stepsPerSecond(await trainCli([...args, '--runs-dir', join(dir, 'alone')])));
    const hub = await Hub.start();
    const runDir = join(dir, `hub-${round}`);
    const { token } = hub.openRun(`hub-${round}`, runDir);
    hub.on('message', () => received++);
    await trainCli(args, { SRLORA_HUB_URL: hub.url, SRLORA_TOKEN: token, SRLORA_RUN_DIR: runDir });
    streamed.push(stepsPerSecond(runDir));
    await hub.close();
    console.log(`round ${round + 1}: no hub ${alone[round].toFixed(2)} steps/s, live hub ${streamed[round].toFixed(2)} steps/s`);
  }
  const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
  const ratio = mean(streamed) / mean(alone);
  console.log(`ratio ${ratio.toFixed(3)} (goal ≥ 0.99); the hub received ${received} messages`);
  rmSync(dir, { recursive: true, force: true });
  writeResult('telemetry', {
    command: 'npm run bench:telemetry', run: `mlp srlora, ${STEPS} steps, batch 64, importanceEvery 1`, rounds: ROUNDS,
    stepsPerSecondNoHub: alone.map((x) => +x.toFixed(3)), stepsPerSecondLiveHub: streamed.map((x) => +x.toFixed(3)),
    ratio: +ratio.toFixed(4), goal: 0.99, messagesReceivedByHub: received,
  });
}

void main();
