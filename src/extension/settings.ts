/** The extension's settings (package.json contributes.configuration is their documentation). */
import * as vscode from 'vscode';
import { isAbsolute, join } from 'node:path';
import { homedir } from 'node:os';
import type { OnWindowClose } from '../supervisor/runManager';

export interface Settings {
  runsDirectory: string;
  trainerCommand: string | null;
  backend: string;
  pythonPath: string | null;
  importanceRate: number;
  onWindowClose: OnWindowClose;
}

export function readSettings(): Settings {
  const c = vscode.workspace.getConfiguration('srlora');
  const folder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  const dir = c.get<string>('runsDirectory', '.srlora/runs');
  const base = folder ?? join(homedir(), '.srlora');
  return {
    runsDirectory: isAbsolute(dir) ? dir : join(base, dir),
    trainerCommand: c.get<string>('trainer.command', '').trim() || null,
    backend: c.get<string>('trainer.backend', 'auto'),
    pythonPath: c.get<string>('python.path', '').trim() || null,
    importanceRate: c.get<number>('dashboard.importanceRate', 10),
    onWindowClose: c.get<OnWindowClose>('onWindowClose', 'stop'),
  };
}
