/**
 * Saving exports: through the host in VS Code (`<a download>` silently fails inside a webview), as a download in
 * the browser. PNGs are composed on an opaque background with a title, the run name(s) and a legend or colour scale,
 * so a saved image reads on its own (a chart's canvas alone is transparent and unlabelled).
 */
import type { Store } from '../store';
import { cssVar, h } from '../dom';

export function save(store: Store, fileName: string, data: string, encoding: 'utf8' | 'base64', mime: string, status: (s: string) => void): void {
  if (store.host.kind === 'vscode') {
    store.save(fileName, data, encoding, (path, error) => status(path ? `saved ${path}` : error === 'cancelled' ? '' : `could not save ${fileName}: ${error ?? '?'}`));
    return;
  }
  const bytes = encoding === 'base64' ? Uint8Array.from(atob(data), (c) => c.charCodeAt(0)) : new TextEncoder().encode(data);
  const url = URL.createObjectURL(new Blob([bytes], { type: mime }));
  const a = h('a', { href: url, download: fileName });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
  status(`downloaded ${fileName}`);
}

/**
 * A PNG of `source` (a chart or heatmap canvas) on the theme's opaque background, with a title line, a subtitle
 * (run names) and an optional footer drawing (e.g. the heatmap's colour scale). Returns base64 PNG data.
 */
export function composePng(source: HTMLCanvasElement, title: string, subtitle: string, footer?: (ctx: CanvasRenderingContext2D, x: number, y: number, w: number) => number): string {
  const scale = source.width / Math.max(1, source.clientWidth || source.width);
  const pad = Math.round(12 * scale), titleH = Math.round(22 * scale), subH = Math.round(18 * scale), footH = footer ? Math.round(34 * scale) : 0;
  const out = document.createElement('canvas');
  out.width = source.width + 2 * pad;
  out.height = source.height + 2 * pad + titleH + subH + footH;
  const ctx = out.getContext('2d')!;
  ctx.fillStyle = cssVar('--vscode-editor-background', '#1f1f1f');
  ctx.fillRect(0, 0, out.width, out.height);
  const fg = cssVar('--vscode-foreground', '#ccc');
  const font = cssVar('--vscode-font-family', 'sans-serif');
  ctx.fillStyle = fg;
  ctx.textBaseline = 'top';
  ctx.font = `600 ${Math.round(15 * scale)}px ${font}`;
  ctx.fillText(title, pad, pad);
  ctx.font = `${Math.round(12 * scale)}px ${font}`;
  ctx.fillStyle = cssVar('--vscode-descriptionForeground', '#999');
  ctx.fillText(subtitle, pad, pad + titleH);
  ctx.drawImage(source, pad, pad + titleH + subH);
  if (footer) {
    ctx.save();
    ctx.scale(scale, scale);
    footer(ctx, pad / scale, (pad + titleH + subH + source.height + 6) / scale, source.width / scale);
    ctx.restore();
  }
  return out.toDataURL('image/png').split(',')[1];
}
