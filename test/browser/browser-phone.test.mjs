// A real browser phone: Debian's Chromium, headless, runs sip.js's SimpleUser in a page served
// from this machine (phone.html), with a real RTCPeerConnection and Chromium's fake microphone.
// Two such phones, alice at node 1 and bob at node 2 (two `peerbx start` processes on
// 127.0.0.1, over WebSocket, RFC 7118), call each other across the overlay: bob's page
// answers, ICE and DTLS-SRTP connect the two pages directly, audio RTP flows both ways, and
// alice's BYE ends the call at bob's. README says browsers call each other with no setting;
// this checks it with the browser itself. Skipped, with the reason, where Chromium is not
// installed (`.ci/run` installs Debian's `chromium`) or the packages are not built.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join, normalize } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
const root = fileURLToPath(new URL('../../', import.meta.url));
const CHROMIUM = process.env.PEERBX_CHROMIUM ?? '/usr/bin/chromium';
const nodeProcessJs = join(root, 'packages/cli/dist/src/demo/node-process.js');
const sipJsLib = join(root, 'node_modules/sip.js/lib');

const skip = !existsSync(CHROMIUM)
  ? `${CHROMIUM} not installed (apt-get install chromium)`
  : !existsSync(nodeProcessJs)
    ? 'packages not built (npm run build)'
    : false;

const DOMAIN = 'peerbx.local';
const NODE_START_MS = 20_000;

/** Serves the phone page, its script and sip.js's ES modules; nothing else. */
function servePhonePage() {
  const types = { '.html': 'text/html', '.mjs': 'text/javascript', '.js': 'text/javascript' };
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    let file;
    if (path === '/') file = join(here, 'phone.html');
    else if (path === '/phone.mjs') file = join(here, 'phone.mjs');
    else if (path.startsWith('/sip.js/')) {
      file = normalize(join(sipJsLib, path.slice('/sip.js/'.length)));
      if (!file.startsWith(`${sipJsLib}/`)) file = undefined;
    }
    const type = file && types[file.slice(file.lastIndexOf('.'))];
    if (!file || !type || !existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': type }).end(readFileSync(file));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

/** Polls `check` until it returns a truthy value; fails with `what` after `ms`. */
async function until(check, ms, what) {
  const t0 = Date.now();
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('a browser phone (Chromium, sip.js, WebRTC)', { skip }, () => {
  let dir;
  let server;
  let browser;
  const nodes = [];

  before(async () => {
    const { NodeProcess } = await import(nodeProcessJs);
    const { chromium } = await import('playwright-core');
    dir = mkdtempSync(join(tmpdir(), 'peerbx-browser-'));
    const common = ['--sip', '127.0.0.1:0', '--ws', '127.0.0.1:0', '--overlay', '127.0.0.1:0'];
    nodes.push(await NodeProcess.start('node-1', join(dir, 'node-1'), common, NODE_START_MS));
    nodes.push(
      await NodeProcess.start(
        'node-2',
        join(dir, 'node-2'),
        [...common, '--bootstrap', nodes[0].info.overlay],
        NODE_START_MS,
      ),
    );
    server = await servePhonePage();
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--use-fake-device-for-media-stream',
        '--use-fake-ui-for-media-stream',
        // Both pages are on this machine, and the test's traffic stays on loopback.
        '--allow-loopback-in-peer-connection',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
        '--disable-quic',
      ],
    });
  });

  after(async () => {
    await browser?.close().catch(() => undefined);
    await Promise.all(nodes.map((n) => n.stop()));
    await new Promise((r) => (server ? server.close(r) : r()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** A page of its own browser context (no shared state) registered as `user` at `node`. */
  async function phone(user, node) {
    const context = await browser.newContext();
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (err) => errors.push(err.message));
    await page.goto(`http://127.0.0.1:${server.address().port}/`);
    await page.waitForFunction(() => window.phone !== undefined, null, { timeout: 10_000 });
    await page.evaluate(
      ([ws, aor]) => window.phone.register(ws, aor),
      [`ws://${node.info.ws}`, `sip:${user}@${DOMAIN}`],
    );
    return {
      context,
      page,
      errors,
      events: () => page.evaluate(() => [...window.phone.events]),
    };
  }

  it('registers two browsers at two nodes; they call, media flows both ways, BYE ends it', async (t) => {
    const alice = await phone('alice', nodes[0]);
    const bob = await phone('bob', nodes[1]);

    await alice.page.evaluate((to) => window.phone.call(to), `sip:bob@${DOMAIN}`);
    await until(async () => (await bob.events()).includes('incoming'), 10_000, 'bob rings');
    await until(async () => (await alice.events()).includes('answered'), 10_000, 'alice answered');

    // RTP between the two pages, each way: ICE and DTLS-SRTP agreed over SDP that the nodes
    // passed through untouched.
    const media = (p) => p.page.evaluate(() => window.phone.media());
    const flowing = async () => {
      const [a, b] = await Promise.all([media(alice), media(bob)]);
      return a.received >= 25 && b.received >= 25 && { a, b };
    };
    const { a, b } = await until(flowing, 15_000, 'audio flowing both ways');
    assert.equal(a.state, 'connected');
    assert.equal(b.state, 'connected');
    t.diagnostic(`RTP packets received: alice ${a.received}, bob ${b.received}`);

    await alice.page.evaluate(() => window.phone.hangup());
    await until(async () => (await bob.events()).includes('hangup'), 10_000, 'bob hung up');
    assert.deepEqual(alice.errors, []);
    assert.deepEqual(bob.errors, []);
  });

  it("ends the call for the other side when a browser's tab closes in it", async () => {
    const carol = await phone('carol', nodes[0]);
    const dave = await phone('dave', nodes[1]);
    await carol.page.evaluate((to) => window.phone.call(to), `sip:dave@${DOMAIN}`);
    await until(async () => (await carol.events()).includes('answered'), 10_000, 'answered');
    // The tab goes, its WebSocket with it, and nobody sends a BYE: dave's node sends carol
    // one for dave (README: 4 s after the connection closed).
    const closedAt = Date.now();
    await dave.context.close();
    await until(async () => (await carol.events()).includes('hangup'), 15_000, 'carol hung up');
    const ms = Date.now() - closedAt;
    assert.ok(ms >= 3_000, `the BYE came ${ms} ms after the tab closed, before the 4 s wait`);
  });
});
