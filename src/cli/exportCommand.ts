/**
 * `srlora export RUN [--runs-dir DIR] [--checkpoint CHECKPOINT_DIR]` — RUN: a run folder, or a run id in the runs folder
 * (--runs-dir, default .srlora/runs), as `serve --resume` takes it.
 * Writes a run's export (SRLORA.md §6: merged weights, per-layer ΔW, direction history) from a checkpoint — the latest
 * unless one is named — for runs that did not finish, or before they do. A finished run already has its export.
 */
import { existsSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { readJsonl } from '../runfolder/eventLog';
import { EVENTS_FILE, latestCheckpoint } from '../runfolder/runFiles';
import { runIdOf } from '../runfolder/runId';
import { resolveRunArg } from './runTarget';
import { foldRun } from '../viewmodel/runModel';
import { pythonModule, shellWord } from '../viewmodel/continueCommand';
import { readRunFolderConfig } from '../trainer/config/runConfig';
import { selectBackend } from '../trainer/engine/backend';
import { architectureFor } from '../trainer/models/model';
import { loadCheckpoint } from '../trainer/process/checkpoint';
import { exportRun } from '../trainer/process/exportRun';
import { buildModel, loadBaseWeights } from '../trainer/process/task';
import type { TrainerMessage } from '../protocol/messages';

export async function exportCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { checkpoint: { type: 'string' }, 'runs-dir': { type: 'string' } } });
  if (positionals.length !== 1) throw new Error('export: needs one RUN; usage: srlora export RUN_DIR_OR_ID [--runs-dir DIR] [--checkpoint CHECKPOINT_DIR]');
  const target = resolveRunArg(positionals[0], values['runs-dir'], 'export');
  if (!target.dir) throw new Error(`export: no run ${JSON.stringify(target.id.slice(0, 200))} in ${target.runsDir}`);
  const runDir = target.dir;
  const events = join(runDir, EVENTS_FILE);
  const written = existsSync(events) ? foldRun(runIdOf(runDir), readJsonl<TrainerMessage>(events).events) : null;
  if (written?.pytorch) {
    // by the interpreter (and PYTHONPATH) that trained it: the line runs as printed
    throw new Error(`${runDir} is a PyTorch run: export it with ${pythonModule(written.launch, 'srlora_torch.export')} ${shellWord(runDir)}`);
  }
  const config = readRunFolderConfig(runDir);
  const checkpoint = values.checkpoint ? resolve(values.checkpoint) : latestCheckpoint(runDir);
  if (!checkpoint) throw new Error(`${runDir} has no checkpoint to export from (a run writes one when it stops, and on Checkpoint)`);
  if (!existsSync(join(checkpoint, 'state.json'))) throw new Error(`${checkpoint} is not a checkpoint (no state.json)`);
  await selectBackend(config.backend);
  const { weights, file } = loadBaseWeights(config, process.cwd()); // config.json holds absolute paths
  const arch = architectureFor(config.model.kind, weights);
  const model = buildModel(config, weights, arch.inputDim, arch.classes);
  const meta = loadCheckpoint(checkpoint, model.engine);
  const dir = exportRun(runDir, model, file, events, { checkpoint: relative(runDir, checkpoint), step: meta.step });
  model.dispose();
  // RunManager.exportModel (Export Model in VS Code) reads the step from this line.
  process.stdout.write(`exported step ${meta.step} of ${runDir} → ${dir}\n`);
  return 0;
}
