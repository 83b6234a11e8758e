/** Runs `node dist/cli.js train …` to completion and returns the run folder (bench helpers). */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { readJsonl } from '../src/runfolder/eventLog';
import type { TrainerMessage } from '../src/protocol/messages';

export const cli = join(import.meta.dirname, '../dist/cli.js');

export function trainCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, 'train', '--no-progress', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.on('exit', (code) => {
      const m = /run (\S+) → (\S+)/.exec(stderr);
      if (code === 0 && m) resolve(m[2]);
      else reject(new Error(`train exited ${code}: ${stderr.slice(-2000)}`));
    });
  });
}

export const runEvents = (runDir: string) => readJsonl<TrainerMessage>(join(runDir, 'events.jsonl')).events;
