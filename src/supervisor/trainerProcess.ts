/**
 * A trainer process and how to end it. The trainer is spawned detached, as the leader of its own process group,
 * so that signals reach everything it started (a Python trainer's workers, a shell wrapper) and so that it can
 * outlive a window reload when the user chose "detach". A trainer found again after a reload is a PidHandle:
 * no pipes, liveness polled by identity (pid + start time + boot id, src/runfolder/pidfile.ts).
 *
 * Nothing is ever signalled that is not provably the process we recorded: a pid ≤ 1 never, a process group only when
 * we created it (the trainer we spawned leads it) and its leader is still that process, else the pid alone.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { processIdentity, sameProcess, signalTarget, type ProcessIdentity } from '../runfolder/pidfile';
import { descendantsOf } from './processTree';

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
export const STDERR_TAIL = 20;
/** After the trainer exits, how long its pipes may take to deliver their last bytes (its last stderr lines). */
const DRAIN_MS = 500;
/** How often a live trainer's descendants are listed (processTree), and how often lingering ones are checked. */
const KIN_EVERY_MS = 1000;
const LINGER_POLL_MS = 100;

export abstract class TrainerHandle extends EventEmitter<TrainerHandleEvents> {
  exitInfo: ExitInfo | null = null;
  protected readonly tail: string[] = [];
  abstract readonly pid: number;
  /** Who the trainer is (null where /proc is missing). */
  abstract readonly identity: ProcessIdentity | null;

  get alive(): boolean {
    return this.exitInfo === null;
  }

  stderrTail(): string[] {
    return this.tail.slice();
  }

  /** Signals the trainer if it is provably still the process we recorded; returns whether a signal was sent. */
  abstract signal(sig: NodeJS.Signals): boolean;

  waitForExit(timeoutMs: number): Promise<boolean> {
    if (!this.alive) return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = setTimeout(() => { this.off('exit', done); resolve(false); }, timeoutMs);
      const done = () => { clearTimeout(t); resolve(true); };
      this.once('exit', done);
    });
  }

  /**
   * Ends the trainer: `first()` (the stop command, or a SIGTERM: the trainer checkpoints and writes its final state),
   * then SIGTERM after `graceMs` (when `first` was not already one), SIGKILL after another `graceMs`.
   */
  async end(first: () => void, graceMs: number, firstWasSigterm = false): Promise<ExitInfo | null> {
    if (!this.alive) return this.exitInfo;
    first();
    if (await this.waitForExit(graceMs)) return this.exitInfo;
    if (!firstWasSigterm) {
      this.signal('SIGTERM');
      if (await this.waitForExit(graceMs)) return this.exitInfo;
    }
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

/**
 * A trainer this process spawned. It has ended (`exit`) only when the process AND every descendant it was seen to
 * start are gone: a launcher (torchrun) may exit — killed, or done forwarding a signal — while its ranks, in sessions
 * of their own, still write their checkpoint and final state (fresh6 fixsup.1: the supervisor's record then raced
 * the trainer's own, both with one seq). Its exit status is the launcher's.
 */
export class ChildTrainer extends TrainerHandle {
  readonly pid: number;
  readonly identity: ProcessIdentity | null;
  /** Descendants seen while the leader lived (pid → identity), listed every KIN_EVERY_MS and before each signal. */
  private readonly kin = new Map<number, ProcessIdentity>();
  private readonly kinTimer: NodeJS.Timeout;
  private leaderGone = false;

  constructor(private readonly child: ChildProcess) {
    super();
    if (child.pid === undefined) throw new Error('the trainer did not start');
    this.pid = child.pid;
    // Read now, while it is our unreaped child: the pid cannot name another process yet.
    this.identity = processIdentity(child.pid);
    this.kinTimer = setInterval(() => this.listKin(), KIN_EVERY_MS);
    this.kinTimer.unref();
    let partial = '';
    for (const stream of ['stdout', 'stderr'] as const) {
      child[stream]?.setEncoding('utf8');
      child[stream]?.on('data', (text: string) => {
        if (stream === 'stderr') {
          const lines = (partial + text).split(/\r?\n|\r/);
          partial = lines.pop() ?? '';
          for (const line of lines) if (line.trim()) this.tail.push(line);
          if (this.tail.length > STDERR_TAIL) this.tail.splice(0, this.tail.length - STDERR_TAIL);
        }
        this.emit('output', stream, text);
      });
    }
    child.on('exit', (code, signal) => {
      this.leaderGone = true;
      clearInterval(this.kinTimer);
      // Its last stderr lines may still be in the pipe: wait for them ('close'), but not for ever (a grandchild may
      // hold the pipe open); then for every descendant it started (a launcher's ranks) to be gone too.
      let drained = false;
      const done = () => {
        clearTimeout(t);
        if (drained) return;
        drained = true;
        if (partial.trim()) { this.tail.push(partial); partial = ''; if (this.tail.length > STDERR_TAIL) this.tail.shift(); }
        this.whenKinGone(() => this.finish({ code, signal }));
      };
      const t = setTimeout(done, DRAIN_MS);
      child.once('close', done);
    });
  }

  /**
   * How long the end waits, after the trainer itself exited, for the descendants it started. A launcher's ranks end
   * within seconds; a process that outlives that (a daemon it left, a stuck rank) no longer holds the run open: the
   * end is recorded without it (tests shorten it).
   */
  static kinWaitMaxMs = 30_000;

  private listKin(): void {
    if (this.leaderGone) return;
    for (const [pid, id] of this.kin) if (!sameProcess(id)) this.kin.delete(pid); // the map holds the living only
    for (const id of descendantsOf(this.pid)) if (!this.kin.has(id.pid)) this.kin.set(id.pid, id);
  }

  /** The descendants seen that are still provably those processes. */
  private liveKin(): ProcessIdentity[] {
    return [...this.kin.values()].filter((id) => sameProcess(id));
  }

  private whenKinGone(then: () => void): void {
    if (this.liveKin().length === 0) { then(); return; }
    const until = Date.now() + ChildTrainer.kinWaitMaxMs;
    const t = setInterval(() => {
      if (this.liveKin().length === 0 || Date.now() > until) { clearInterval(t); then(); }
    }, LINGER_POLL_MS);
    t.unref(); // whoever waits for the end (end(), dispose) holds the process open; this poll alone does not
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

  signal(sig: NodeJS.Signals): boolean {
    if (!this.alive) return false;
    this.listKin();
    if (this.child.exitCode !== null || this.child.signalCode !== null) {
      // The launcher is gone but processes it started linger (they never had a launcher to forward this): signal each,
      // proven by identity (pid, start time, boot, group), never a pid alone.
      let sent = false;
      for (const id of this.liveKin()) {
        const target = signalTarget(id, false);
        if (target !== null) { try { process.kill(target, sig); sent = true; } catch { /* gone meanwhile */ } }
      }
      return sent;
    }
    // We spawned it detached: it leads a group we created. Its identity is checked in case the pid was reaped already.
    const target = this.identity ? signalTarget(this.identity, true) : -this.pid;
    if (target === null) return false;
    try { process.kill(target, sig); return true; } catch { /* gone meanwhile */ }
    try { process.kill(this.pid, sig); return true; } catch { return false; }
  }

  /** Let the trainer outlive this process (window closed with onWindowClose = detach). */
  detach(): void {
    clearInterval(this.kinTimer);
    this.child.stdout?.destroy();
    this.child.stderr?.destroy();
    this.child.unref();
  }
}

/**
 * A trainer started by an earlier supervisor, known by its recorded identity (trainer.pid). It is gone when that
 * identity no longer matches a live process; `groupOurs` says whether the record shows a group we created.
 */
export class PidHandle extends TrainerHandle {
  private readonly timer: NodeJS.Timeout;
  readonly pid: number;

  constructor(readonly identity: ProcessIdentity, pollMs = 250) {
    super();
    this.pid = identity.pid;
    this.timer = setInterval(() => { if (!sameProcess(identity)) this.gone(); }, pollMs);
    this.timer.unref();
  }

  private gone(): void {
    clearInterval(this.timer);
    this.finish({ code: null, signal: null });
  }

  signal(sig: NodeJS.Signals): boolean {
    if (!this.alive) return false;
    // trainer.pid is written by the supervisor that spawned the trainer detached: pgid === pid means it leads the group
    // that supervisor created. Anything else gets the pid alone.
    const target = signalTarget(this.identity, this.identity.pgid === this.identity.pid);
    if (target === null) { this.gone(); return false; }
    try { process.kill(target, sig); return true; } catch { return false; }
  }

  dispose(): void {
    clearInterval(this.timer);
  }
}
