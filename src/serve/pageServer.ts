/**
 * The standalone dashboard page, served by the hub's own HTTP server (so the page's origin is the one origin the
 * hub admits). The page's token arrives once in the URL printed by `srlora serve`; the server turns it into an
 * HttpOnly, SameSite=Strict cookie named for this hub's port (two dashboards on one machine keep their own) and
 * redirects to a clean URL. Without the token nothing is served but a 401. A request it cannot parse gets 400, an
 * exception while answering 500: the handler never rejects. The page gets the same CSP as the VS Code panel, as a
 * header, with a fresh nonce per response.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BadRequest, presentedToken, tokenCookie, tokensEqual } from '../hub/auth';

const STATIC: Record<string, { file: string; type: string }> = {
  '/dist/webview.js': { file: 'dist/webview.js', type: 'text/javascript; charset=utf-8' },
  '/media/dashboard.css': { file: 'media/dashboard.css', type: 'text/css; charset=utf-8' },
  '/media/icon.svg': { file: 'media/icon.svg', type: 'image/svg+xml' },
};

export function pageCsp(nonce: string): string {
  return [
    "default-src 'none'", `script-src 'nonce-${nonce}'`, "style-src 'self'", "font-src 'self'", "img-src 'self' data: blob:",
    "connect-src 'self'", "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'",
  ].join('; ');
}

function pageHtml(nonce: string): string {
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="UTF-8"><meta name="viewport" content="width=device-width, initial-scale=1.0">
<link rel="stylesheet" href="/media/dashboard.css"><link rel="icon" href="/media/icon.svg"><title>SRLoRA Dashboard</title></head>
<body data-host="browser"><div id="app" role="main"></div><script nonce="${nonce}" src="/dist/webview.js"></script></body></html>`;
}

const common = { 'X-Content-Type-Options': 'nosniff', 'Referrer-Policy': 'no-referrer', 'Cache-Control': 'no-store' };

/** The request target as a URL, or null when it is not one (`//`, an absolute form with a bad port, …). */
export function requestUrl(target: string | undefined): URL | null {
  const t = target ?? '/';
  if (!t.startsWith('/') || t.startsWith('//')) {
    // Absolute form (a proxy-style request line) is allowed only when it parses; `//x` would name another host.
    if (t.startsWith('//')) return null;
    try { const u = new URL(t); return u.protocol === 'http:' ? new URL(`${u.pathname}${u.search}`, 'http://localhost') : null; } catch { return null; }
  }
  try { return new URL(t, 'http://localhost'); } catch { return null; }
}

/** Answers one failed request without throwing: a status if nothing was sent yet, else the connection is cut. */
export function failRequest(res: ServerResponse, status: 400 | 500): void {
  try {
    if (!res.headersSent) res.writeHead(status, { ...common, 'Content-Type': 'text/plain; charset=utf-8', Connection: 'close' }).end(status === 400 ? 'bad request\n' : 'internal error\n');
    else res.destroy();
  } catch { res.destroy(); }
}

export function pageHandler(root: string, token: string, onError: (e: unknown) => void = () => {}) {
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    try {
      await answer(root, token, req, res);
    } catch (e) {
      if (!(e instanceof BadRequest)) onError(e);
      failRequest(res, e instanceof BadRequest ? 400 : 500);
    }
  };
}

async function answer(root: string, token: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = requestUrl(req.url);
  if (url === null) throw new BadRequest('not a request target');
  if (req.method !== 'GET') { res.writeHead(405, common).end(); return; }
  const offered = url.searchParams.get('token');
  if (url.pathname === '/' && offered !== null) {
    if (!tokensEqual(offered, token)) { res.writeHead(401, { ...common, 'Content-Type': 'text/plain' }).end('wrong token\n'); return; }
    const keep = new URLSearchParams(); // the token moves to a cookie; which runs to show stays in the URL
    for (const k of ['run', 'runs']) { const v = url.searchParams.get(k); if (v) keep.set(k, v); }
    res.writeHead(303, {
      ...common, Location: keep.size ? `/?${keep}` : '/',
      'Set-Cookie': `${tokenCookie(req.socket.localPort)}=${encodeURIComponent(token)}; HttpOnly; SameSite=Strict; Path=/`,
    }).end();
    return;
  }
  const presented = presentedToken(req);
  if (presented === null || !tokensEqual(presented, token)) {
    res.writeHead(401, { ...common, 'Content-Type': 'text/plain; charset=utf-8' }).end('SRLoRA dashboard: open the URL with the token that `srlora serve` printed.\n');
    return;
  }
  if (url.pathname === '/') {
    const nonce = randomBytes(16).toString('base64');
    res.writeHead(200, { ...common, 'Content-Type': 'text/html; charset=utf-8', 'Content-Security-Policy': pageCsp(nonce) }).end(pageHtml(nonce));
    return;
  }
  const asset = STATIC[url.pathname];
  if (!asset) { res.writeHead(404, common).end(); return; }
  try {
    res.writeHead(200, { ...common, 'Content-Type': asset.type }).end(await readFile(join(root, asset.file)));
  } catch {
    res.writeHead(404, common).end();
  }
}
