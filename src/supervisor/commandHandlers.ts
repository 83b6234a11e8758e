/**
 * What each SRLoRA command does, written against a small `Ui` interface instead of `vscode` so the tests can drive
 * it with a fake. src/extension/ registers these handlers and supplies the real Ui (vscode.window).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { CommandBody } from '../protocol/messages';
import { EXPORT_DIR_NAME, latestCheckpoint } from '../runfolder/runFiles';
import { latestCompleteCheckpoint } from '../runfolder/checkpoints';
import type { RunManager, ManagedRun } from './runManager';
import { isActive, isResumable } from '../viewmodel/runModel';
import { pythonModule, shellWord } from '../viewmodel/continueCommand';

export interface PickItem { label: string; description?: string; detail?: string; id: string; picked?: boolean }

export interface Ui {
  inputBox(o: { title: string; prompt: string; value: string; validate: (text: string) => string | null }): Promise<string | undefined>;
  pick(items: PickItem[], o: { title: string; placeHolder: string; canPickMany?: false }): Promise<PickItem | undefined>;
  pickMany(items: PickItem[], o: { title: string; placeHolder: string }): Promise<PickItem[] | undefined>;
  info(message: string): void;
  error(message: string, ...actions: string[]): Promise<string | undefined>;
  /** A modal yes/no; resolves true only when the user chose `action`. */
  confirm(message: string, action: string): Promise<boolean>;
}

// The parsing lives in src/srlora/commandInput.ts: the dashboard's τ and γ fields validate with the same functions.
export { parseThreshold, parseRatio } from '../srlora/commandInput';
import { parseThreshold, parseRatio } from '../srlora/commandInput';

export class CommandHandlers {
  constructor(
    private readonly runs: RunManager,
    private readonly ui: Ui,
    /** The run the command acts on when none is passed: the selected or active run. */
    private readonly activeRunId: () => string | undefined,
  ) {}

  /** The run a command acts on, or a clear message when there is none. */
  target(runId: string | undefined, needActive: boolean): ManagedRun | null {
    const id = runId ?? this.activeRunId();
    const run = id ? this.runs.runs.get(id) : undefined;
    if (!run) {
      this.ui.info(needActive ? 'No active SRLoRA run. Start one with "SRLoRA: Start Demo Run" or "SRLoRA: Start Run…".' : 'No SRLoRA run is selected.');
      return null;
    }
    if (needActive && !isActive(run.model.state)) {
      this.ui.info(`Run ${run.model.name} is ${run.model.state}; this command needs a running run.`);
      return null;
    }
    return run;
  }

  private send(run: ManagedRun, body: CommandBody): string | null {
    const r = this.runs.command(run.runId, body);
    if (!r.ok) {
      void this.ui.error(`SRLoRA: ${r.error}`);
      return null;
    }
    return r.commandId;
  }

  pause(runId?: string): string | null {
    const run = this.target(runId, true);
    return run ? this.send(run, { kind: 'pause' }) : null;
  }

  resume(runId?: string): string | null {
    const run = this.target(runId, true);
    return run ? this.send(run, { kind: 'resume' }) : null;
  }

  checkpoint(runId?: string): string | null {
    const run = this.target(runId, true);
    return run ? this.send(run, { kind: 'checkpoint' }) : null;
  }

  async recompose(runId?: string): Promise<string | null> {
    const run = this.target(runId, true);
    if (!run) return null;
    if (run.model.method !== 'srlora') { this.ui.info(`Run ${run.model.name} uses ${run.model.method ?? 'an unknown method'}; recomposition needs srlora.`); return null; }
    const all: PickItem = { id: '*', label: '$(layers) All layers', description: `${run.model.layers.length} adapted layers` };
    const items = [all, ...run.model.layers.map((l) => ({ id: l.name, label: l.name, description: `${l.p}/${l.rTarget} directions used` }))];
    const chosen = await this.ui.pickMany(items, { title: 'SRLoRA: Recompose Now', placeHolder: 'Layers to recompose at the next step boundary' });
    if (!chosen || chosen.length === 0) return null;
    const layers = chosen.some((c) => c.id === '*') ? undefined : chosen.map((c) => c.id);
    return this.send(run, { kind: 'recompose', ...(layers ? { layers } : {}) });
  }

  async setThreshold(runId?: string): Promise<string | null> {
    const run = this.target(runId, true);
    if (!run) return null;
    const current = run.model.settings?.fusionThreshold;
    const text = await this.ui.inputBox({
      title: 'SRLoRA: Set Fusion Threshold', value: current === null || current === undefined ? 'off' : String(current),
      prompt: `Fusion threshold τ (now ${current ?? 'off'}): pairs whose normalised importance ŝ is below τ fuse at the next recomposition; "off" = the paper's rule (the ⌈γ·r⌉ least important pairs).`,
      validate: (t) => { const r = parseThreshold(t); return r.ok ? null : r.message; },
    });
    if (text === undefined) return null;
    const r = parseThreshold(text);
    return r.ok ? this.send(run, { kind: 'set', fusionThreshold: r.value }) : null;
  }

  async setRatio(runId?: string): Promise<string | null> {
    const run = this.target(runId, true);
    if (!run) return null;
    const current = run.model.settings?.fusionRatio ?? 0.5;
    const text = await this.ui.inputBox({
      title: 'SRLoRA: Set Fusion Ratio', value: String(current),
      prompt: `Fusion ratio γ (now ${current}): under the fixed-ratio rule ⌈γ·r⌉ pairs per layer fuse at each recomposition.`,
      validate: (t) => { const r = parseRatio(t); return r.ok ? null : r.message; },
    });
    if (text === undefined) return null;
    const r = parseRatio(text);
    return r.ok ? this.send(run, { kind: 'set', fusionRatio: r.value }) : null;
  }

  async stop(runId?: string): Promise<boolean> {
    const run = this.target(runId, true);
    if (!run) return false;
    if (!run.owned) { this.ui.info(`Run ${run.model.name} is run by another window or \`srlora serve\`: stop it there.`); return false; }
    await this.runs.stop(run.runId);
    return true;
  }

  async deleteRun(runId?: string): Promise<boolean> {
    const run = this.target(runId, false);
    if (!run) return false;
    if (run.handle?.alive) { this.ui.info(`Run ${run.model.name} is still running; stop it first.`); return false; }
    if (!(await this.ui.confirm(`Delete run ${run.model.name} and its folder (${run.dir})? This cannot be undone.`, 'Delete'))) return false;
    this.runs.delete(run.runId);
    return true;
  }

  /** The export to reveal: a finished run's own, else one written now from the latest checkpoint (a running run's
   * too: its end-of-run export replaces it later). Null, with the reason shown, when there is nothing to export. */
  async exportModel(runId?: string): Promise<{ dir: string; step: number | null } | null> {
    const run = this.target(runId, false);
    if (!run) return null;
    const name = run.model.name;
    const active = isActive(run.model.state);
    const dir = join(run.dir, EXPORT_DIR_NAME);
    if (!active && existsSync(join(dir, 'merged.safetensors'))) return { dir, step: null };
    if (run.model.pytorch) {
      this.ui.info(`Run ${name} is a PyTorch run: it writes its export when it finishes; from a checkpoint: ${pythonModule(run.model.launch, 'srlora_torch.export')} ${shellWord(run.dir)}`);
      return null;
    }
    if (!latestCheckpoint(run.dir)) {
      this.ui.info(active ? `Run ${name} has no checkpoint yet: "SRLoRA: Checkpoint" writes one, then Export Model exports it.` : `Run ${name} has no checkpoint to export from.`);
      return null;
    }
    try {
      return await this.runs.exportModel(run.runId);
    } catch (e) {
      void this.ui.error(`Export of run ${name} failed: ${(e as Error).message}`);
      return null;
    }
  }

  /** Continues a stopped, interrupted or failed run from its latest checkpoint. A PyTorch run asks `pytorchResume` for
   * the command that continues it (undefined: the reason was shown). Null, with the reason shown, when it cannot. */
  /** pytorchResume(worldSize) gives the command that continues a PyTorch run that trained on worldSize ranks. */
  async continueRun(runId: string | undefined, pytorchResume: (worldSize: number) => Promise<string | undefined>): Promise<ManagedRun | null> {
    const run = this.target(runId, false);
    if (!run) return null;
    const name = run.model.name;
    if (isActive(run.model.state)) {
      const who = this.runs.runningBy(run.runId); // another window, a serve, a terminal: where to stop it
      this.ui.info(`Run ${name} is ${run.model.state}: it has not stopped${who ? ` (${who})` : ''}.`);
      return null;
    }
    if (!isResumable(run.model.state)) { this.ui.info(`Run ${name} is ${run.model.state}: every step is done.`); return null; }
    const cp = latestCompleteCheckpoint(run.dir, { hashes: false });
    if (!cp.dir) {
      const why = cp.skipped.length ? ` (${cp.skipped.map((k) => `step ${k.step}: ${k.reason}`).join('; ')})` : '';
      this.ui.info(`Run ${name} has no ${cp.skipped.length ? 'complete ' : ''}checkpoint to continue from${why}.`);
      return null;
    }
    const command = run.model.pytorch ? await pytorchResume(run.model.worldSize) : undefined;
    if (run.model.pytorch && !command) return null;
    try {
      return await this.runs.continueRun(run.runId, command);
    } catch (e) {
      void this.ui.error(`Could not continue run ${name}: ${(e as Error).message}`);
      return null;
    }
  }

  async pickRunsToCompare(): Promise<string[] | null> {
    const items = this.runs.list().map((r) => ({ id: r.runId, label: r.model.name, description: `${r.model.method ?? '?'} · ${r.model.state} · step ${r.model.step}` }));
    if (items.length < 2) { this.ui.info('Compare needs at least two runs.'); return null; }
    const chosen = await this.ui.pickMany(items, { title: 'SRLoRA: Compare Runs', placeHolder: 'Runs whose loss curves to overlay' });
    return chosen && chosen.length ? chosen.map((c) => c.id) : null;
  }
}
