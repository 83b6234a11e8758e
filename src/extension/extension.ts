import type * as vscode from 'vscode';

export function activate(_context: vscode.ExtensionContext): void {
  // Commands, views and the dashboard are registered by the extension issue's modules.
}

export function deactivate(): void {}
