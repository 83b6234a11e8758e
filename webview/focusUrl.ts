/** The standalone page's URL names the runs it shows (`?run=ID`, `?runs=A,B`; webview/main.ts reads it on load). */

/** `search` (location.search) with `run`/`runs` naming `ids` (one: run, several: runs) and every other parameter kept;
 * '' when nothing is left. Run ids hold no comma (test/vectors/runid.json). */
export function focusSearch(search: string, ids: string[]): string {
  const p = new URLSearchParams(search);
  p.delete('run');
  p.delete('runs');
  if (ids.length === 1) p.set('run', ids[0]);
  else if (ids.length > 1) p.set('runs', ids.join(','));
  const s = p.toString().replaceAll('%2C', ','); // A,B reads as the user would type it
  return s ? `?${s}` : '';
}
