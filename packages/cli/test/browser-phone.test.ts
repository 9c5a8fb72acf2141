// Real browser phones: Debian's Chromium, headless (driven by playwright-core), runs sip.js's
// SimpleUser in a page served from this machine (test/browser/phone.html), with a real
// RTCPeerConnection and Chromium's fake microphone, registered over WebSocket (RFC 7118) at
// `peerbx start` nodes on 127.0.0.1. Two browsers at two nodes call each other: bob's page
// answers, ICE and DTLS-SRTP connect the pages directly over the SDP the nodes passed through,
// audio RTP flows both ways, and alice's BYE ends the call at bob's. A tab closed in a call
// gets the other side its BYE from the node. A browser calls a baresip phone (the demo phone's
// entrypoint with PHONE_WEBRTC=1), and that phone calls the browser, with audio both ways:
// README's word that browsers and softphones call each other once the softphone speaks ICE
// and DTLS-SRTP, checked with both. A page of another web site cannot register at a node
// (403), and a node with a certificate (wsTls) takes a page of a site its config lists over
// wss://, whose call goes through. A browser phone whose node restarts (README: raise sip.js's
// reconnectionAttempts) connects again, registers again and takes the next call. Skipped, with the reason, where Chromium or baresip is not
// installed on a developer's machine; `.ci/run` installs both, and under CI a missing one fails.

import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join, normalize } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { baresipMissing, freeTcpPort, Phone } from './baresip.js';
import { StartedNode, testCertificate, udpRequest } from './helpers.js';

const PAGES = fileURLToPath(new URL('../../test/browser/', import.meta.url));
const SIP_JS = fileURLToPath(new URL('../../../../node_modules/sip.js/lib/', import.meta.url));
const CHROMIUM = process.env.PEERBX_CHROMIUM ?? '/usr/bin/chromium';
const DOMAIN = 'peerbx.local';

const missing = !existsSync(CHROMIUM)
  ? `${CHROMIUM} is not installed (apt-get install chromium); CI installs it`
  : baresipMissing();
const skip = missing && !process.env.CI ? missing : false;

const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

/** What phone.mjs puts on the page's window. */
interface PageApi {
  events: string[];
  register(server: string, aor: string, reconnect?: readonly [number, number]): Promise<void>;
  call(target: string): Promise<void>;
  hangup(): Promise<void>;
  media(): Promise<Media>;
}

interface Media {
  state: string;
  received: number;
  sent: number;
}

/** The page's globals (in page.evaluate callbacks, which run in the page: no closures). */
type PageGlobal = { phone: PageApi };

/**
 * Serves the phone page, its script and sip.js's ES modules, nothing else; over https with
 * `tls` (a page of another machine needs it for the microphone).
 */
function servePhonePage(tls?: { cert: Buffer; key: Buffer }): Promise<Server> {
  const types: Record<string, string> = {
    '.html': 'text/html',
    '.mjs': 'text/javascript',
    '.js': 'text/javascript',
  };
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    let file: string | undefined;
    if (path === '/') file = join(PAGES, 'phone.html');
    else if (path === '/phone.mjs') file = join(PAGES, 'phone.mjs');
    else if (path.startsWith('/sip.js/')) {
      file = normalize(join(SIP_JS, path.slice('/sip.js/'.length)));
      if (!file.startsWith(SIP_JS)) file = undefined;
    }
    const type = file && types[file.slice(file.lastIndexOf('.'))];
    if (!file || !type || !existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': type }).end(readFileSync(file));
  };
  const server = tls ? createHttpsServer(tls, handler) : createServer(handler);
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

/** Polls `check` until it returns a truthy value; fails with `what` after `ms`. */
async function until<T>(check: () => Promise<T | false>, ms: number, what: string): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

class BrowserPhone {
  private constructor(
    readonly context: BrowserContext,
    readonly page: Page,
    readonly errors: string[],
  ) {}

  /**
   * A page of a browser context of its own, registered as `user` at `node` (over wss:// with
   * `secure`; `reconnect`: sip.js's reconnectionAttempts and reconnectionDelay).
   */
  static async open(
    browser: Browser,
    pageUrl: string,
    user: string,
    node: StartedNode,
    options: { secure?: boolean; reconnect?: [attempts: number, delayS: number] } = {},
  ): Promise<BrowserPhone> {
    const context = await browser.newContext();
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (err) => errors.push(err.message));
    await page.goto(pageUrl);
    await page.waitForFunction(() => 'phone' in globalThis, null, { timeout: 10_000 });
    await page.evaluate(
      ([ws, aor, reconnect]) =>
        (globalThis as unknown as PageGlobal).phone.register(ws, aor, reconnect),
      [
        `${options.secure ? 'wss' : 'ws'}://${node.ready.ws}`,
        `sip:${user}@${DOMAIN}`,
        options.reconnect,
      ] as const,
    );
    return new BrowserPhone(context, page, errors);
  }

  events(): Promise<string[]> {
    return this.page.evaluate(() => [...(globalThis as unknown as PageGlobal).phone.events]);
  }

  async waitFor(event: string, ms = 10_000): Promise<void> {
    await until(async () => (await this.events()).includes(event), ms, `page event ${event}`);
  }

  call(target: string): Promise<void> {
    return this.page.evaluate(
      (to) => (globalThis as unknown as PageGlobal).phone.call(to),
      `sip:${target}@${DOMAIN}`,
    );
  }

  hangup(): Promise<void> {
    return this.page.evaluate(() => (globalThis as unknown as PageGlobal).phone.hangup());
  }

  media(): Promise<Media> {
    return this.page.evaluate(() => (globalThis as unknown as PageGlobal).phone.media());
  }
}

/** Waits until the page's call has received and sent `packets` audio RTP packets. */
function audioBothWays(phone: BrowserPhone, packets = 25): Promise<Media> {
  return until(
    async () => {
      const m = await phone.media();
      return m.received >= packets && m.sent >= packets && m;
    },
    15_000,
    `${packets} RTP packets each way`,
  );
}

/** `caller` calls `callee` (a user name); the caller's media once audio flows both ways. */
async function answeredWithAudio(caller: BrowserPhone, callee: string): Promise<Media> {
  await caller.call(callee);
  await caller.waitFor('answered');
  const media = await audioBothWays(caller);
  assert.equal(media.state, 'connected');
  return media;
}

describe('browser phones (Chromium, sip.js, WebRTC)', { skip }, () => {
  let dir: string;
  let server: Server;
  let pageUrl: string;
  /** Media between the pages over loopback only. */
  let loopbackBrowser: Browser;
  /**
   * For calls with baresip: Chromium's host candidates without loopback. baresip 1.0's ICE
   * (Debian 12) settles on a loopback pair while Chromium nominates another, and their DTLS
   * never meets; both are this machine's addresses either way.
   */
  let browser: Browser;
  const nodes: StartedNode[] = [];
  const phones: Phone[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'peerbx-browser-'));
    nodes.push(await StartedNode.start(join(dir, 'node1')));
    nodes.push(
      await StartedNode.start(join(dir, 'node2'), ['--bootstrap', nodes[0]!.ready.overlay]),
    );
    server = await servePhonePage();
    const address = server.address();
    pageUrl = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/`;
    loopbackBrowser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [...CHROMIUM_ARGS, '--allow-loopback-in-peer-connection'],
    });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  });

  after(async () => {
    for (const p of phones) p.stop();
    await loopbackBrowser?.close().catch(() => undefined);
    await browser?.close().catch(() => undefined);
    await Promise.all(nodes.map((n) => n.stop()));
    await new Promise((r) => (server ? server.close(r) : r(undefined)));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('two browsers at two nodes call each other; audio flows both ways, BYE ends it', async (t) => {
    const alice = await BrowserPhone.open(loopbackBrowser, pageUrl, 'alice', nodes[0]!);
    const bob = await BrowserPhone.open(loopbackBrowser, pageUrl, 'bob', nodes[1]!);
    await alice.call('bob');
    await bob.waitFor('incoming');
    await alice.waitFor('answered');
    const [a, b] = await Promise.all([audioBothWays(alice), audioBothWays(bob)]);
    assert.equal(a.state, 'connected');
    assert.equal(b.state, 'connected');
    t.diagnostic(`RTP packets received: alice ${a.received}, bob ${b.received}`);
    await alice.hangup();
    await bob.waitFor('hangup');
    assert.deepEqual([...alice.errors, ...bob.errors], []);
  });

  it("ends the call for the other side when a browser's tab closes in it", async () => {
    const carol = await BrowserPhone.open(loopbackBrowser, pageUrl, 'carol', nodes[0]!);
    const dave = await BrowserPhone.open(loopbackBrowser, pageUrl, 'dave', nodes[1]!);
    await carol.call('dave');
    await carol.waitFor('answered');
    // The tab goes, its WebSocket with it, and nobody sends a BYE: dave's node sends carol
    // one for dave (README: 4 s after the connection closed).
    const closedAt = Date.now();
    await dave.context.close();
    await carol.waitFor('hangup', 15_000);
    const ms = Date.now() - closedAt;
    assert.ok(ms >= 3_000, `the BYE came ${ms} ms after the tab closed, before the 4 s wait`);
  });

  it('a browser and a baresip phone with WebRTC media call each other, both ways', async (t) => {
    const erin = await BrowserPhone.open(browser, pageUrl, 'erin', nodes[0]!);
    const frank = await Phone.start({
      user: 'frank',
      node: nodes[1]!.ready.sip,
      dir: join(dir, 'frank'),
      webrtc: true,
    });
    phones.push(frank);
    assert.equal(await frank.registerStatus(), 200);

    // The browser calls; baresip answers (auto-answer) with ICE and DTLS-SRTP.
    const out = await answeredWithAudio(erin, 'frank');
    await erin.hangup();
    await frank.waitFor('CALL_CLOSED');

    // baresip calls; the page answers.
    frank.clearEvents();
    const dialled = await frank.command('dial', `sip:erin@${DOMAIN}`);
    assert.ok(dialled.ok, dialled.data);
    await erin.waitFor('incoming');
    await frank.waitFor('CALL_ESTABLISHED');
    const back = await until(
      async () => {
        const m = await erin.media();
        // A new call: its packets, not the first call's (that connection is closed).
        return m.state === 'connected' && m.received >= 25 && m.sent >= 25 && m;
      },
      15_000,
      'audio both ways on the call from baresip',
    );
    t.diagnostic(
      `RTP packets received by the browser: ${out.received} calling, ${back.received} called`,
    );
    await frank.command('hangup');
    await until(
      async () => (await erin.events()).filter((e) => e === 'hangup').length >= 2,
      10_000,
      'the browser hung up by baresip',
    );
    assert.deepEqual(erin.errors, []);
  });

  it('takes no page of another site; over wss, a page of a site its config lists', async (t) => {
    const cert = testCertificate(dir);
    if (cert.skip) {
      t.skip(cert.skip);
      return;
    }
    const https = await servePhonePage({
      cert: readFileSync(cert.cert),
      key: readFileSync(cert.key),
    });
    t.after(() => new Promise((r) => https.close(r)));
    const address = https.address();
    const site = `https://phones.example:${typeof address === 'object' && address ? address.port : 0}`;
    const config = join(dir, 'wss.yaml');
    writeFileSync(
      config,
      `wsTls: { cert: ${cert.cert}, key: ${cert.key} }\nwsOrigins: [${site}]\n`,
    );
    const node = await StartedNode.start(join(dir, 'node3'), [
      ...['--config', config, '--bootstrap', nodes[0]!.ready.overlay],
    ]);
    nodes.push(node);
    // Two web sites on this machine, as the browser sees them; the node's certificate is the
    // test's own.
    const sites = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        ...CHROMIUM_ARGS,
        '--allow-loopback-in-peer-connection',
        '--host-resolver-rules=MAP *.example 127.0.0.1',
        '--ignore-certificate-errors',
      ],
    });
    t.after(() => sites.close());

    // The browser sets Origin; the node refuses the WebSocket of a site it does not list.
    await assert.rejects(
      BrowserPhone.open(sites, `${site.replace('phones', 'evil')}/`, 'ivan', node, {
        secure: true,
      }),
      /WebSocket|connect|transport/i,
    );
    const grace = await BrowserPhone.open(sites, `${site}/`, 'grace', node, { secure: true });
    const heidi = await BrowserPhone.open(sites, pageUrl, 'heidi', nodes[0]!);
    await answeredWithAudio(grace, 'heidi');
    await grace.hangup();
    await heidi.waitFor('hangup');
  });

  it('a browser phone outlives a restart of its node, with reconnection raised', async (t) => {
    // The node comes back where the page knows it: the same WebSocket port.
    const at = ['--ws', `127.0.0.1:${await freeTcpPort()}`, '--bootstrap', nodes[0]!.ready.overlay];
    const first = await StartedNode.start(join(dir, 'node4'), at);
    nodes.push(first);
    const judy = await BrowserPhone.open(loopbackBrowser, pageUrl, 'judy', first, {
      reconnect: [30, 1],
    });
    const kate = await BrowserPhone.open(loopbackBrowser, pageUrl, 'kate', nodes[0]!);
    assert.equal(await first.stop(), 0);
    await judy.waitFor('disconnected');
    nodes.push(await StartedNode.start(join(dir, 'node4'), at));
    await until(
      async () => (await judy.events()).filter((e) => e === 'connected').length >= 2,
      20_000,
      'the page connected again',
    );
    // Its registration went with its connection; the call reaches it only if it registered again.
    await until(
      async () => (await judy.events()).filter((e) => e === 'registered').length >= 2,
      10_000,
      'the page registered again',
    );
    t.diagnostic(`page events: ${(await judy.events()).join(', ')}`);
    await kate.call('judy');
    await judy.waitFor('incoming');
    await kate.waitFor('answered');
    await kate.hangup();
    await judy.waitFor('hangup');
  });

  it("the node's own web phone: pages from two nodes register, call, answer, hang up", async () => {
    /** The node's page in a browser context of its own, registered as `name` by a click. */
    const webPhone = async (node: StartedNode, name: string) => {
      const page = await (await loopbackBrowser.newContext()).newPage();
      const errors: string[] = [];
      page.on('pageerror', (err) => errors.push(err.message));
      await page.goto(`http://${node.ready.ws}/`);
      await page.fill('#user', name);
      await page.click('#register');
      await page.waitForSelector('body[data-state="registered"]', { timeout: 10_000 });
      return { page, errors, status: () => page.textContent('#status') };
    };
    const lena = await webPhone(nodes[0]!, 'lena');
    const mike = await webPhone(nodes[1]!, 'mike');
    assert.equal(await lena.status(), `Registered as lena@${DOMAIN}`);

    await mike.page.fill('#target', 'lena');
    await mike.page.click('#call');
    await lena.page.waitForSelector('body[data-state="ringing"]', { timeout: 10_000 });
    assert.equal(await lena.status(), `mike@${DOMAIN} is calling`);
    await lena.page.click('#answer');
    await mike.page.waitForSelector('body[data-state="in-call"]', { timeout: 10_000 });
    await lena.page.waitForSelector('body[data-state="in-call"]', { timeout: 10_000 });
    assert.equal(await mike.status(), `In a call with lena@${DOMAIN}`);
    await mike.page.click('#hangup');
    await lena.page.waitForSelector('body[data-state="registered"]', { timeout: 10_000 });

    // Mike hangs up while it rings, then calls again, and that call ends: it ends as a call
    // does, not with the first call's late 487 (QA).
    const ring = async () => {
      await mike.page.fill('#target', 'lena');
      await mike.page.click('#call');
      await lena.page.waitForSelector('body[data-state="ringing"]', { timeout: 10_000 });
    };
    await ring();
    await mike.page.click('#hangup');
    await lena.page.waitForSelector('body[data-state="registered"]', { timeout: 10_000 });
    await ring();
    await lena.page.click('#answer');
    await mike.page.waitForSelector('body[data-state="in-call"]', { timeout: 10_000 });
    await lena.page.click('#hangup');
    await mike.page.waitForSelector('body[data-state="registered"]', { timeout: 10_000 });
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(await mike.status(), `Call ended. Registered as mike@${DOMAIN}`);

    // A MESSAGE to lena (RFC 3428) from a phone at mike's node: her page shows it and who sent
    // it (QA: it answered 200 and showed nothing).
    const sent = await udpRequest(
      nodes[1]!.ready.sip,
      (viaPort) =>
        [
          `MESSAGE sip:lena@${DOMAIN} SIP/2.0`,
          `Via: SIP/2.0/UDP 127.0.0.1:${viaPort};branch=z9hG4bKmsg1;rport`,
          `From: <sip:otto@${DOMAIN}>;tag=m1`,
          `To: <sip:lena@${DOMAIN}>`,
          'Call-ID: msg-1',
          'CSeq: 1 MESSAGE',
          'Max-Forwards: 70',
          'Content-Type: text/plain',
          'Content-Length: 5',
          '',
          'hello',
        ].join('\r\n'),
      'the MESSAGE',
    );
    assert.equal(sent, 'SIP/2.0 200 OK');
    await lena.page.waitForSelector('#messages li', { timeout: 10_000 });
    assert.equal(await lena.page.textContent('#messages li'), `otto@${DOMAIN}: hello`);

    // A callee registered nowhere: the final answer shows.
    await mike.page.fill('#target', 'nobody');
    await mike.page.click('#call');
    await until(async () => / 404 Not Found/.test((await mike.status()) ?? ''), 10_000, 'a 404');
    assert.deepEqual([...lena.errors, ...mike.errors], []);
  });

  it("the node's web phone logs in with the user's password where the node asks for one", async () => {
    const config = join(dir, 'auth.yaml');
    writeFileSync(config, 'auth: always\nusers:\n  nora: { password: "secret-1" }\n');
    const node = await StartedNode.start(join(dir, 'node5'), [
      ...['--config', config, '--bootstrap', nodes[0]!.ready.overlay],
    ]);
    nodes.push(node);
    const page = await (await loopbackBrowser.newContext()).newPage();
    await page.goto(`http://${node.ready.ws}/`);
    const status = async () => (await page.textContent('#status')) ?? '';
    await page.fill('#user', 'nora');
    await page.fill('#password', 'wrong');
    await page.click('#register');
    await until(
      async () => /refused the registration: 40[13] /.test(await status()),
      10_000,
      'refusal',
    );
    assert.equal(await page.getAttribute('body', 'data-state'), 'signed-out');
    await page.fill('#password', 'secret-1');
    await page.click('#register');
    await page.waitForSelector('body[data-state="registered"]', { timeout: 10_000 });
    assert.equal(await status(), `Registered as nora@${DOMAIN}`);
  });
});
