/**
 * The panel's files, served as they are (no build step): index.html, panel.js, panel.css from
 * src/admin/panel/static/. They hold no data and need no credentials; everything they show comes
 * from /api with the session cookie. A strict Content-Security-Policy allows only this origin.
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { send, type Route } from '../admin-server.js';

/** From src/admin/panel (tests) and dist/admin/panel (built) alike: the repository's copy. */
const STATIC_DIR = fileURLToPath(new URL('../../../src/admin/panel/static/', import.meta.url));

const FILES: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/panel.js': { file: 'panel.js', type: 'text/javascript; charset=utf-8' },
  '/panel.css': { file: 'panel.css', type: 'text/css; charset=utf-8' },
};

export const CONTENT_SECURITY_POLICY =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

export function staticRoutes(): (path: string) => Route[] | undefined {
  const cache = new Map<string, Buffer>();
  return (path) => {
    const entry = Object.hasOwn(FILES, path) ? FILES[path] : undefined;
    if (!entry) return undefined;
    return [
      {
        method: 'GET',
        permission: null,
        handle: async (res) => {
          let body = cache.get(entry.file);
          if (body === undefined) {
            body = await readFile(`${STATIC_DIR}${entry.file}`);
            if (process.env.XGW_PANEL_DEV === undefined) cache.set(entry.file, body);
          }
          res.setHeader('Content-Security-Policy', CONTENT_SECURITY_POLICY);
          res.setHeader('X-Frame-Options', 'DENY');
          res.setHeader('Referrer-Policy', 'no-referrer');
          send(res, 200, entry.type, body);
        },
      },
    ];
  };
}
