/** Per-run secrets, how a connection proves one, and which requests may be answered at all. */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/** 256 random bits, URL-safe. */
export function newToken(): string {
  return randomBytes(32).toString('base64url');
}

/** Constant-time comparison; hashing first makes the lengths equal so the length is not leaked either. */
export function tokensEqual(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
}

/** Browsers cannot set Authorization on a WebSocket, so a page offers its token as a subprotocol. */
export const TOKEN_SUBPROTOCOL_PREFIX = 'srlora.token.';
export const PROTOCOL_SUBPROTOCOL = 'srlora.v1';
/** The page cookie's name stem; the name carries the hub's port (tokenCookie), since cookies ignore ports. */
export const TOKEN_COOKIE = 'srlora_token';

/**
 * The dashboard cookie of the hub listening on `port`: a browser sends a 127.0.0.1 cookie to every port of
 * 127.0.0.1, so one name for all would let two dashboards clobber each other's token.
 */
export function tokenCookie(port: number | undefined): string {
  return `${TOKEN_COOKIE}_${port ?? 0}`;
}

/** A request the hub cannot make sense of (answered 400, never thrown out of a handler). */
export class BadRequest extends Error {}

/**
 * The token a client presented: Authorization: Bearer, a `srlora.token.<t>` subprotocol, or this hub's page cookie
 * (named for the port the request came in on). Throws BadRequest for a cookie value that is not valid percent-encoding.
 */
export function presentedToken(req: IncomingMessage): string | null {
  const auth = req.headers.authorization;
  if (auth && /^Bearer\s+/i.test(auth)) return auth.replace(/^Bearer\s+/i, '').trim();
  const protocols = req.headers['sec-websocket-protocol'];
  if (typeof protocols === 'string') {
    for (const p of protocols.split(',')) {
      const t = p.trim();
      if (t.startsWith(TOKEN_SUBPROTOCOL_PREFIX)) return t.slice(TOKEN_SUBPROTOCOL_PREFIX.length);
    }
  }
  const cookie = req.headers.cookie;
  if (cookie) {
    const name = tokenCookie(req.socket?.localPort);
    for (const part of cookie.split(';')) {
      const [k, ...v] = part.trim().split('=');
      if (k !== name) continue;
      try {
        return decodeURIComponent(v.join('='));
      } catch {
        throw new BadRequest(`cookie ${name} is not valid percent-encoding`);
      }
    }
  }
  return null;
}

/**
 * Non-browser clients (trainers, the extension) send no Origin. A browser always does, and only the
 * standalone dashboard's own origin may drive a run: this stops any web page from reaching a local run.
 */
export function originAllowed(req: IncomingMessage, allowed: readonly string[]): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  return allowed.includes(origin);
}

/** 127.0.0.0/8, ::1, localhost. */
export function isLoopbackName(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127(\.\d{1,3}){3}$/.test(h);
}

/**
 * The Host header names a loopback address (with any port). A hub bound to loopback answers nothing else
 * (as Jupyter's allow_remote_access=False): a DNS-rebinding page names its own host and is refused.
 */
export function hostAllowed(req: IncomingMessage, boundHost: string): boolean {
  if (!isLoopbackName(boundHost)) return true; // the user asked to serve on another interface
  const host = req.headers.host;
  if (typeof host !== 'string' || host === '') return false;
  const m = /^(\[[^\]]*\]|[^:]*)(?::\d{1,5})?$/.exec(host);
  return m !== null && isLoopbackName(m[1]);
}
