// The node's web phone: plain HTTP GETs at the WebSocket address (the requests that are not a
// WebSocket handshake) get a phone page (web/index.html, web/phone.js: sip.js's SimpleUser with
// WebRTC) that registers at this node over the WebSocket it came from, so a browser on this
// machine is a phone at http://127.0.0.1:5066/ with nothing else installed. Only the page's
// own files and sip.js's ES modules are served, read once into memory; any other path is 404,
// any other method 405. The page's origin is the node's own, so the origin check lets its
// WebSocket in.

import { readdirSync, readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const WEB = fileURLToPath(new URL('../../../web/', import.meta.url));

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
};

const HEADERS = {
  // The page's scripts, styles and WebSocket are this node's ('self' covers ws:/wss: of the same
  // host and port); no site frames it.
  'Content-Security-Policy': "default-src 'self'; media-src 'self' blob:; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Cache-Control': 'no-cache',
};

interface File {
  type: string;
  body: Buffer;
}

/** Every file of `dir` (recursively) with a served type, by URL path under `prefix`. */
function filesOf(dir: string, prefix: string): Map<string, File> {
  const files = new Map<string, File>();
  for (const name of readdirSync(dir, { recursive: true, encoding: 'utf8' })) {
    const type = TYPES[name.slice(name.lastIndexOf('.'))];
    if (!type || name.endsWith('.d.ts')) continue;
    const path = `${prefix}${name.split(sep).join('/')}`;
    files.set(path, { type, body: readFileSync(join(dir, name)) });
  }
  return files;
}

/**
 * The handler of the web phone's requests for a node of SIP domain `domain`: true when it
 * answered the request. Throws when the page's files or sip.js cannot be read (an install
 * without them).
 */
export function webPhone(domain: string): (req: IncomingMessage, res: ServerResponse) => boolean {
  const sipJs = dirname(createRequire(import.meta.url).resolve('sip.js'));
  const files = new Map([...filesOf(WEB, '/'), ...filesOf(sipJs, '/sip.js/')]);
  const index = files.get('/index.html');
  if (index) files.set('/', index);
  files.set('/peerbx.json', {
    type: TYPES['.json']!,
    body: Buffer.from(JSON.stringify({ domain })),
  });
  return (req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    const file = files.get(path);
    if (!file) {
      res.writeHead(404, { ...HEADERS, 'Content-Type': 'text/plain' }).end('Not found\n');
      return true;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { ...HEADERS, Allow: 'GET, HEAD' }).end();
      return true;
    }
    res.writeHead(200, {
      ...HEADERS,
      'Content-Type': file.type,
      'Content-Length': file.body.length,
    });
    res.end(req.method === 'HEAD' ? undefined : file.body);
    return true;
  };
}
