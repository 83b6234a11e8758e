/**
 * A trainer process and how to end it. The trainer is spawned detached, as the leader of its own process group,
 * so that signals reach everything it started (a Python trainer's workers, a shell wrapper) and so that it can
 * outlive a window reload when the user chose "detach". A trainer found again after a reload is a PidHandle:
 * no pipes, liveness polled.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';

export interface LaunchSpec {
  command: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  cwd: string;
  /** Run through the shell (a user's command line from settings). */
  shell?: boolean;
}

export interface ExitInfo { code: number | null; signal: NodeJS.Signals | null }

export interface TrainerHandleEvents {
  output: [stream: 'stdout' | 'stderr', text: string];
  exit: [info: ExitInfo];
}

/** Lines of stderr kept to explain a failure. */
const STDERR_TAIL = 20;

export abstract class TrainerHandle extends EventEmitter<TrainerHandleEvents> {
  exitInfo: ExitInfo | null = null;
  protected readonly tail: string[] = [];
  abstract readonly pid: number;

  get alive(): boolean {
    return this.exitInfo === null;
  }

  stderrTail(): string[] {
    return this.tail.slice();
  }

  /** Signals the whole process group (falls back to the process alone). */
  signal(sig: NodeJS.Signals): void {
    if (!this.alive) return;
    try {
      process.kill(-this.pid, sig);
    } catch {
      try { process.kill(this.pid, sig); } catch { /* already gone */ }
    }
  }

  waitForExit(timeoutMs: number): Promise<boolean> {
    if (!this.alive) return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = setTimeout(() => { this.off('exit', done); resolve(false); }, timeoutMs);
      const done = () => { clearTimeout(t); resolve(true); };
      this.once('exit', done);
    });
  }

  /**
   * Stop politely, then firmly: the `stop` command (the trainer checkpoints and finishes), SIGTERM to the group
   * after `graceMs`, SIGKILL after another `graceMs`.
   */
  async stop(sendStop: () => boolean, graceMs: number): Promise<ExitInfo | null> {
    if (!this.alive) return this.exitInfo;
    sendStop();
    if (await this.waitForExit(graceMs)) return this.exitInfo;
    this.signal('SIGTERM');
    if (await this.waitForExit(graceMs)) return this.exitInfo;
    this.signal('SIGKILL');
    await this.waitForExit(graceMs);
    return this.exitInfo;
  }

  protected finish(info: ExitInfo): void {
    if (this.exitInfo) return;
    this.exitInfo = info;
    this.emit('exit', info);
  }
}

export class ChildTrainer extends TrainerHandle {
  readonly pid: number;

  constructor(private readonly child: ChildProcess) {
    super();
    if (child.pid === undefined) throw new Error('the trainer did not start');
    this.pid = child.pid;
    for (const stream of ['stdout', 'stderr'] as const) {
      child[stream]?.setEncoding('utf8');
      child[stream]?.on('data', (text: string) => {
        if (stream === 'stderr') {
          for (const line of text.split(/\r?\n|\r/)) if (line.trim()) this.tail.push(line);
          if (this.tail.length > STDERR_TAIL) this.tail.splice(0, this.tail.length - STDERR_TAIL);
        }
        this.emit('output', stream, text);
      });
    }
    child.on('exit', (code, signal) => this.finish({ code, signal }));
  }

  static spawn(spec: LaunchSpec): Promise<ChildTrainer> {
    return new Promise((resolve, reject) => {
      const child = spawn(spec.command, spec.args, {
        cwd: spec.cwd, env: spec.env, detached: true, shell: spec.shell ?? false, stdio: ['ignore', 'pipe', 'pipe'], windowsHide: true,
      });
      child.once('error', (e) => reject(new Error(`cannot start the trainer (${spec.command}): ${e.message}`)));
      child.once('spawn', () => resolve(new ChildTrainer(child)));
    });
  }

  /** Let the trainer outlive this process (window closed with onWindowClose = detach). */
  detach(): void {
    this.child.stdout?.destroy();
    this.child.stderr?.destroy();
    this.child.unref();
  }
}

/** A trainer started by an earlier window: only its pid is known. */
export class PidHandle extends TrainerHandle {
  private readonly timer: NodeJS.Timeout;

  constructor(readonly pid: number, pollMs = 500) {
    super();
    this.timer = setInterval(() => { if (!isAlive(pid)) this.gone(); }, pollMs);
    this.timer.unref();
  }

  private gone(): void {
    clearInterval(this.timer);
    this.finish({ code: null, signal: null });
  }

  dispose(): void {
    clearInterval(this.timer);
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
