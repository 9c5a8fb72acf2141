// The web phone's HTTP side (web-phone.ts) behind a real HTTP listener on 127.0.0.1: the page,
// its script and sip.js's modules with their types and the page's security headers, the SIP
// domain for the page, 404 for anything else (a path out of sip.js's folder included), 405
// for other methods. The page itself runs in Chromium in packages/cli/test/browser-phone.

import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { webPhone } from '../src/transport/web-phone.js';

describe('the web phone page', () => {
  let server: Server;
  let base: string;

  before(async () => {
    const handle = webPhone('peerbx.test');
    server = createServer((req, res) => {
      if (!handle(req, res)) res.writeHead(426).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  });

  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('serves the page, its script and sip.js, with the headers that confine the page', async () => {
    const page = await fetch(`${base}/`);
    assert.equal(page.status, 200);
    assert.equal(page.headers.get('content-type'), 'text/html; charset=utf-8');
    assert.match(await page.text(), /<script type="module" src="\/phone.js"><\/script>/);
    assert.match(page.headers.get('content-security-policy') ?? '', /default-src 'self'/);
    assert.match(page.headers.get('content-security-policy') ?? '', /frame-ancestors 'none'/);
    assert.equal(page.headers.get('x-content-type-options'), 'nosniff');

    const script = await fetch(`${base}/phone.js`);
    assert.equal(script.headers.get('content-type'), 'text/javascript; charset=utf-8');
    assert.match(await script.text(), /from '\/sip\.js\/index\.js'/);
    const sipJs = await fetch(`${base}/sip.js/index.js`);
    assert.equal(sipJs.status, 200);
    assert.match(await sipJs.text(), /export \* from "\.\/api\/index\.js"/);
    assert.equal((await fetch(`${base}/phone.css`)).status, 200);
  });

  it("tells the page the node's SIP domain", async () => {
    assert.deepEqual(await (await fetch(`${base}/peerbx.json`)).json(), { domain: 'peerbx.test' });
  });

  it('answers 404 to any other path, 405 to other methods, and HEAD without a body', async () => {
    for (const path of ['/nope', '/sip.js/../package.json', '/sip.js/index.d.ts', '/..%2fweb']) {
      const res = await fetch(`${base}${path}`);
      assert.equal(res.status, 404, path);
      await res.text();
    }
    assert.equal((await fetch(`${base}/`, { method: 'POST', body: 'x' })).status, 405);
    const head = await fetch(`${base}/`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(await head.text(), '');
  });
});
