/**
 * The processes a trainer started, wherever they run: torchrun's ranks run in sessions (process groups) of their own
 * (torch.distributed.elastic starts them with start_new_session), so neither the launcher's exit nor its empty group
 * proves them gone. Linux /proc only; elsewhere nothing is known (the launcher's exit is all there is).
 */
import { readFileSync, readdirSync } from 'node:fs';
import { processIdentity, type ProcessIdentity } from '../runfolder/pidfile';

/** Every live descendant of `root` (children, their children, …) with its identity, from /proc; [] where /proc is
 * missing. A snapshot: processes started or reparented meanwhile are not in it. */
export function descendantsOf(root: number): ProcessIdentity[] {
  let names: string[];
  try { names = readdirSync('/proc'); } catch { return []; }
  const children = new Map<number, number[]>();
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try { stat = readFileSync(`/proc/${name}/stat`, 'utf8'); } catch { continue; } // gone meanwhile
    // "pid (comm) state ppid …": comm may hold spaces and parentheses, so split after the last ')'.
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    const list = children.get(ppid);
    if (list) list.push(Number(name)); else children.set(ppid, [Number(name)]);
  }
  const out: ProcessIdentity[] = [];
  const todo = [...(children.get(root) ?? [])];
  while (todo.length > 0) {
    const pid = todo.pop()!;
    const id = processIdentity(pid);
    if (id) out.push(id);
    todo.push(...(children.get(pid) ?? []));
  }
  return out;
}
