/**
 * How "Reveal Run Folder" and "Export Model" say where something is, in every VS Code: `revealFileInOS` opens the
 * desktop's file manager, but in remote and web VS Code (code-server, a browser tab) it shows nothing at all — the
 * user clicked and saw no effect. So the path is always said in a message, with Copy Path, and Reveal in Explorer
 * when the path is inside the workspace. Pure (no `vscode` import): the extension passes what it knows.
 */
export interface LocationContext {
  /** vscode.env.uiKind is Desktop. */
  desktop: boolean;
  /** vscode.env.remoteName (SSH, WSL, containers, code-server's remote host), undefined when local. */
  remoteName: string | undefined;
  /** The path lies in a workspace folder (the Explorer can show it). */
  inWorkspace: boolean;
}

export interface LocationPlan {
  /** Call revealFileInOS (only where an OS file manager of this machine is what the user sees). */
  revealInOS: boolean;
  /** The message that names the path. */
  message: string;
  /** Buttons of the message. */
  actions: ('Copy Path' | 'Reveal in Explorer')[];
}

export function locationPlan(what: string, path: string, c: LocationContext): LocationPlan {
  return {
    revealInOS: c.desktop && !c.remoteName,
    message: `SRLoRA: ${what}: ${path}`,
    actions: ['Copy Path', ...(c.inWorkspace ? ['Reveal in Explorer' as const] : [])],
  };
}
