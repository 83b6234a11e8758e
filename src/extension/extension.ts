/**
 * SRLoRA Studio's extension host: a loopback hub, the run manager, the Runs view, the status bar, the dashboard
 * panels and the commands. Everything that does not need `vscode` lives in src/supervisor, src/hub and below.
 */
import * as vscode from 'vscode';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { locationPlan } from './location';
import { Hub } from '../hub/hub';
import { RunManager, UNTRUSTED_MESSAGE } from '../supervisor/runManager';
import { CommandHandlers } from '../supervisor/commandHandlers';
import { isActive } from '../viewmodel/runModel';
import { starterConfigText } from '../trainer/config/runConfig';
import { readSettings } from './settings';
import { interpreterPath, probePython, pythonEnv, pythonPackageDir, pytorchResumeCommand, resumeRanks } from '../supervisor/pythonTrainer';
import { vscodeUi } from './vscodeUi';
import { builtInRefusal, configProblem, trainerRows } from './trainerChoice';
import { RunsTree, type RunsNode } from './runsTree';
import { RunStatusBar } from './statusBar';
import { Dashboards } from './dashboardPanel';

let shutdown: (() => Promise<void>) | null = null;
/** The installed extension's folder (its python/ holds the shipped srlora_torch). */
let extensionRoot = '';

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  extensionRoot = context.extensionPath;
  const settings = readSettings();
  const hub = await Hub.start();
  const runs = new RunManager({
    runsDir: settings.runsDirectory, hub, cliPath: join(context.extensionPath, 'dist', 'cli.js'), assetsDir: context.extensionPath,
    pythonPackageDir: pythonPackageDir(context.extensionPath),
    trainerCommand: settings.trainerCommand, backend: settings.backend, by: 'VS Code',
    // Restricted mode: runs are listed and viewable, no trainer (nor Python probe) is run.
    trusted: () => vscode.workspace.isTrusted,
  });
  // One log for what the supervisor decided, what trainers said on stderr and what the hub refused.
  const log = vscode.window.createOutputChannel('SRLoRA', { log: true });
  context.subscriptions.push(log);
  runs.on('log', (level, text) => log[level](text));
  hub.on('rejected', (where, error) => log.warn(`hub rejected ${where}: ${error}`));
  const outputs = new Map<string, vscode.OutputChannel>();
  const output = (runId: string) => {
    let ch = outputs.get(runId);
    if (!ch) { ch = vscode.window.createOutputChannel(`SRLoRA: ${runId}`); outputs.set(runId, ch); context.subscriptions.push(ch); }
    return ch;
  };
  runs.on('output', (runId, text) => output(runId).append(text));
  runs.on('commandRefused', (_runId, _id, message) => { void vscode.window.showErrorMessage(`SRLoRA: ${message}`); });
  runs.on('failed', (runId, message) => {
    void vscode.window.showErrorMessage(`SRLoRA run ${runId} failed: ${message}`, 'Show Output').then((a) => { if (a) output(runId).show(); });
  });

  // The active run: the one selected in the tree, else the newest active one.
  let selected: string | undefined;
  const activeRunId = () => {
    if (selected && runs.runs.has(selected)) return selected;
    return runs.list().find((r) => isActive(r.model.state))?.runId ?? runs.list()[0]?.runId;
  };
  const tree = new RunsTree(runs);
  const view = vscode.window.createTreeView('srlora.runs', { treeDataProvider: tree, showCollapseAll: true });
  view.onDidChangeSelection((e) => { const n = e.selection[0]; if (n) { selected = n.runId; status.render(); } });
  const status = new RunStatusBar(runs, activeRunId);
  const dashboards = new Dashboards({ hub, runs, extensionUri: context.extensionUri });
  const handlers = new CommandHandlers(runs, vscodeUi, activeRunId);
  try { runs.scan(); } catch (e) { log.error((e as Error).message); }
  runs.watch(); // runs started anywhere appear; a trainer gone without a final state is recorded
  status.render();
  // Settings take effect without a reload.
  context.subscriptions.push(vscode.workspace.onDidChangeConfiguration((e) => {
    if (!e.affectsConfiguration('srlora')) return;
    const s = readSettings();
    if (e.affectsConfiguration('srlora.runsDirectory')) {
      try { runs.setRunsDir(s.runsDirectory); } catch (err) { log.error((err as Error).message); }
      status.render();
    }
    if (e.affectsConfiguration('srlora.trainer')) runs.setTrainerOptions({ trainerCommand: s.trainerCommand, backend: s.backend });
    if (e.affectsConfiguration('srlora.dashboard')) dashboards.applySettings();
    log.info('settings changed: applied');
  }));
  /** False (with the reason shown, and a way to trust) in an untrusted workspace: nothing may be run there. */
  const trustedOrSay = () => {
    if (vscode.workspace.isTrusted) return true;
    log.warn(`not started: ${UNTRUSTED_MESSAGE}`);
    void vscode.window.showWarningMessage(`SRLoRA: ${UNTRUSTED_MESSAGE}.`, 'Manage Workspace Trust')
      .then((a) => { if (a) void vscode.commands.executeCommand('workbench.trust.manage'); });
    return false;
  };

  const idOf = (node?: RunsNode | string) => (typeof node === 'string' ? node : node?.runId);
  const start = async (opts: Parameters<RunManager['start']>[0]) => vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: 'SRLoRA: starting the trainer…', cancellable: true },
    async (_p, token) => {
      const run = await runs.start({ ...opts, cwd: vscode.workspace.workspaceFolders?.[0]?.uri.fsPath });
      selected = run.runId;
      output(run.runId).appendLine(`run ${run.runId} in ${run.dir}`);
      dashboards.open([run.runId]);
      token.onCancellationRequested(() => void runs.stop(run.runId));
      // Wait until the trainer says hello (or dies), so the notification tells the truth.
      await new Promise<void>((resolve) => {
        const check = () => { if (run.model.state !== 'starting' || !run.handle?.alive) { runs.off('changed', check); resolve(); } };
        runs.on('changed', check);
        check();
      });
    },
  );

  const register = (id: string, fn: (...args: never[]) => unknown) => context.subscriptions.push(vscode.commands.registerCommand(id, fn));
  register('srlora.startDemo', () => { if (trustedOrSay()) return start({ overrides: { method: 'srlora' } }); });
  register('srlora.startRun', async (uri?: vscode.Uri) => {
    if (!trustedOrSay()) return;
    const file = uri?.fsPath ?? (await pickConfig());
    if (!file) return;
    const trainer = await pickTrainer(file);
    if (trainer === undefined) return;
    // The chosen trainer's own check, before a run folder exists: a bad config leaves no failed run behind.
    const problem = readSettings().trainerCommand ? null : configProblem(file, trainer !== '');
    if (problem) { log.warn(`not started: ${problem}`); void vscode.window.showErrorMessage(`SRLoRA: ${problem}`); return; }
    await start({ configFile: file, ...(trainer ? { trainerCommand: trainer } : {}) });
  });
  register('srlora.pause', (n?: RunsNode) => handlers.pause(idOf(n)));
  register('srlora.resume', (n?: RunsNode) => handlers.resume(idOf(n)));
  register('srlora.recompose', (n?: RunsNode) => handlers.recompose(idOf(n)));
  register('srlora.setThreshold', (n?: RunsNode) => handlers.setThreshold(idOf(n)));
  register('srlora.setRatio', (n?: RunsNode) => handlers.setRatio(idOf(n)));
  register('srlora.checkpoint', (n?: RunsNode) => handlers.checkpoint(idOf(n)));
  register('srlora.stop', (n?: RunsNode) => vscode.window.withProgress({ location: vscode.ProgressLocation.Window, title: 'SRLoRA: stopping…' }, () => handlers.stop(idOf(n))));
  register('srlora.openDashboard', (n?: RunsNode) => { const r = handlers.target(idOf(n), false); if (r) dashboards.open([r.runId]); });
  register('srlora.revealRunFolder', (n?: RunsNode) => { const r = handlers.target(idOf(n), false); if (r) void showLocation(`the run folder of ${r.runId}`, r.dir); });
  register('srlora.exportModel', async (n?: RunsNode) => {
    const done = await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: 'SRLoRA: exporting the model…' }, () => handlers.exportModel(idOf(n)));
    if (!done) return;
    await showLocation(done.step !== null ? `exported step ${done.step} to` : 'the export (written when the run ended) is in', done.dir, join(done.dir, 'merged.safetensors'));
  });
  register('srlora.continueRun', async (n?: RunsNode) => {
    if (!trustedOrSay()) return;
    const run = await handlers.continueRun(idOf(n), async (worldSize) => {
      const python = pythonPath();
      const probe = await probePython(python, pythonEnv(pythonPackageDir(extensionRoot)));
      if (probe.ok) return pytorchResumeCommand(python, resumeRanks(worldSize, probe.gpus));
      void vscode.window.showErrorMessage(`PyTorch trainer: ${probe.error}`);
      return undefined;
    });
    if (run) { selected = run.runId; dashboards.open([run.runId]); }
  });
  register('srlora.compareRuns', async () => { const ids = await handlers.pickRunsToCompare(); if (ids) dashboards.open(ids); });
  register('srlora.deleteRun', (n?: RunsNode) => handlers.deleteRun(idOf(n)));
  register('srlora.refreshRuns', () => { try { runs.scan(); } catch (e) { void vscode.window.showErrorMessage(`SRLoRA: ${(e as Error).message}`); } });

  context.subscriptions.push(tree, view, status, dashboards);
  shutdown = async () => {
    await runs.dispose(readSettings().onWindowClose);
    await hub.close();
  };
}

/**
 * The built-in TypeScript trainer, or the PyTorch one when the configured Python can import torch (its device shown);
 * a Python that cannot is shown with its exact import error. A config only PyTorch runs (`configFile`'s task or model)
 * offers PyTorch first and the built-in trainer as unable, with why (src/extension/trainerChoice.ts).
 * Resolves '' for built-in, a command line for PyTorch, undefined when cancelled or an unable row was chosen.
 */
async function pickTrainer(configFile: string): Promise<string | undefined> {
  const s = readSettings();
  if (s.trainerCommand) return s.trainerCommand;
  const python = pythonPath();
  const probe = await vscode.window.withProgress({ location: vscode.ProgressLocation.Window, title: `SRLoRA: asking ${python} for PyTorch…` }, () => probePython(python, pythonEnv(pythonPackageDir(extensionRoot))));
  const rows = trainerRows(builtInRefusal(configFile), s.backend, probe, python);
  const chosen = await vscode.window.showQuickPick(rows, { title: 'SRLoRA: which trainer?' });
  if (!chosen) return undefined;
  if (chosen.unable !== undefined) { void vscode.window.showErrorMessage(`SRLoRA: ${chosen.unable}`); return undefined; }
  return chosen.id;
}

/** srlora.python.path, else the Python extension's interpreter, else python3; a relative path against the workspace
 * folder (as the user typed it there), since the trainer runs in the run's folder. */
function pythonPath(): string {
  const typed = readSettings().pythonPath ?? vscode.workspace.getConfiguration('python').get<string>('defaultInterpreterPath') ?? 'python3';
  return interpreterPath(typed, vscode.workspace.workspaceFolders?.[0]?.uri.fsPath ?? process.cwd());
}

/** A *.srlora.json from the workspace, or a new one from a short guided pick. */
async function pickConfig(): Promise<string | undefined> {
  const files = await vscode.workspace.findFiles('**/*.srlora.json', '**/node_modules/**', 50);
  const create = { label: '$(add) Create a run config…', id: '' };
  const items = [...files.map((f) => ({ label: vscode.workspace.asRelativePath(f), id: f.fsPath })), create];
  const chosen = await vscode.window.showQuickPick(items, { title: 'SRLoRA: Start Run', placeHolder: 'A run config (*.srlora.json)' });
  if (!chosen) return undefined;
  if (chosen.id) return chosen.id;
  const method = await vscode.window.showQuickPick(['srlora', 'lora', 'pissa'], { title: 'Method', placeHolder: 'srlora: SVD init + recomposition; pissa: SVD init only; lora: plain LoRA' });
  if (!method) return undefined;
  const model = await vscode.window.showQuickPick(['vit', 'mlp'], { title: 'Base model', placeHolder: 'vit: tiny vision transformer; mlp: 784-256-256-10' });
  if (!model) return undefined;
  const folder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  if (!folder) { void vscode.window.showErrorMessage('Open a folder first: the config is saved in the workspace.'); return undefined; }
  let file = join(folder, `${method}-${model}.srlora.json`);
  for (let i = 2; existsSync(file); i++) file = join(folder, `${method}-${model}-${i}.srlora.json`);
  writeFileSync(file, starterConfigText().replace('"method": "srlora"', `"method": "${method}"`).replace(/"model": \{ "kind": "\w+" \}/, `"model": { "kind": "${model}" }`));
  await vscode.window.showTextDocument(vscode.Uri.file(file), { preview: false });
  return file;
}

export async function deactivate(): Promise<void> {
  await shutdown?.();
}

/**
 * Says where `path` is so that every VS Code shows it (src/extension/location.ts): the desktop reveals `revealPath`
 * in the OS file manager; every window also gets a message with the path, Copy Path and, inside the workspace,
 * Reveal in Explorer — code-server and web VS Code showed nothing for Reveal Run Folder and Export Model.
 */
async function showLocation(what: string, path: string, revealPath = path): Promise<void> {
  const uri = vscode.Uri.file(path);
  const plan = locationPlan(what, path, { desktop: vscode.env.uiKind === vscode.UIKind.Desktop, remoteName: vscode.env.remoteName, inWorkspace: vscode.workspace.getWorkspaceFolder(uri) !== undefined });
  if (plan.revealInOS) void vscode.commands.executeCommand('revealFileInOS', vscode.Uri.file(revealPath));
  const pick = await vscode.window.showInformationMessage(plan.message, ...plan.actions);
  if (pick === 'Copy Path') await vscode.env.clipboard.writeText(path);
  else if (pick === 'Reveal in Explorer') await vscode.commands.executeCommand('revealInExplorer', uri);
}
