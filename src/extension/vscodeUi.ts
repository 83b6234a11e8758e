/** The real `Ui` of the command handlers: vscode.window. */
import * as vscode from 'vscode';
import type { PickItem, Ui } from '../supervisor/commandHandlers';

export const vscodeUi: Ui = {
  inputBox: (o) => Promise.resolve(vscode.window.showInputBox({
    title: o.title, prompt: o.prompt, value: o.value, ignoreFocusOut: true, validateInput: (t) => o.validate(t) ?? undefined,
  })),
  pick: (items, o) => Promise.resolve(vscode.window.showQuickPick(items, { title: o.title, placeHolder: o.placeHolder })),
  pickMany: (items, o) => Promise.resolve(vscode.window.showQuickPick(items, { title: o.title, placeHolder: o.placeHolder, canPickMany: true }) as Thenable<PickItem[] | undefined>),
  info: (m) => { void vscode.window.showInformationMessage(m); },
  error: (m, ...actions) => Promise.resolve(vscode.window.showErrorMessage(m, ...actions)),
  confirm: async (m, action) => (await vscode.window.showWarningMessage(m, { modal: true }, action)) === action,
};
