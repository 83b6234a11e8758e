/** Tiny DOM helpers: elements from tag, attributes and children, never from HTML strings (no injection). */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs?: Record<string, string | boolean | undefined>, ...children: (Node | string | null | undefined)[]): HTMLElementTagNameMap[K];
export function h(tag: string, attrs?: Record<string, string | boolean | undefined>, ...children: (Node | string | null | undefined)[]): HTMLElement;
export function h(tag: string, attrs: Record<string, string | boolean | undefined> = {}, ...children: (Node | string | null | undefined)[]): HTMLElement {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) if (c !== null && c !== undefined) el.append(c);
  return el;
}

export function text(el: Element, value: string): void {
  if (el.textContent !== value) el.textContent = value;
}

/**
 * A CSS custom property of the current theme (VS Code's --vscode-* variables, or the page's defaults). Cached:
 * getComputedStyle is not free, and canvases ask for colours every frame. VS Code changes the theme by rewriting
 * the body's class and style, which clears the cache.
 */
const themeCache = new Map<string, string>();
const themeListeners: (() => void)[] = [];
let observing = false;
function observeTheme(): void {
  if (observing || typeof MutationObserver === 'undefined') return;
  observing = true;
  const changed = () => { themeCache.clear(); for (const f of themeListeners) f(); };
  new MutationObserver(changed).observe(document.body, { attributes: true, attributeFilter: ['class', 'style'] });
  // The browser page follows the system's light/dark preference (media/dashboard.css); redraw when it flips.
  window.matchMedia?.('(prefers-color-scheme: dark)').addEventListener?.('change', changed);
}

/** Calls fn after the theme changed (VS Code's theme switch, or the system's colour scheme in the browser). */
export function onThemeChange(fn: () => void): void {
  observeTheme();
  themeListeners.push(fn);
}

export function cssVar(name: string, fallback: string): string {
  observeTheme();
  let v = themeCache.get(name);
  if (v === undefined) {
    v = getComputedStyle(document.body).getPropertyValue(name).trim();
    themeCache.set(name, v);
  }
  return v || fallback;
}

export { formatNumber } from '../src/common/formatNumber';
