// Abuse of the proxy and registrar, over real sockets: another node (an overlay channel for
// "sip") or a phone trying to make a node forward to an arbitrary address; the TCP/WS flow a
// registration kept open released when the binding expires; hostile but parsable headers
// (bad Route, bad Contact, huge Via lists, CSeq edge cases) answered 4xx without the node
// going down.

import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Clock } from '@peerbx/dht-kademlia';
import { type Channel, OverlayError, OverlayNode } from '@peerbx/overlay-core';
import { parseSipMessage, type SipMessage, type SipRequest } from '../src/message/sip-message.js';
import { SIP_APPLICATION } from '../src/node/overlay-flows.js';
import { SipNode, type SipNodeOverlay } from '../src/node/sip-node.js';
import { BindingStore } from '../src/registrar/binding-store.js';
import { RegisterHandler } from '../src/registrar/register-handler.js';
import { overlayConfig, type PeerNode, rawRegister } from './fixtures/sipp.js';
import { TestBed } from './fixtures/test-bed.js';
import { request } from './fixtures/udp-phone.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Another node's side of an overlay channel: raw SIP out, parsed SIP in. */
class PeerChannel {
  readonly received: SipMessage[] = [];
  constructor(readonly channel: Channel) {
    channel.on('message', (data) => {
      try {
        this.received.push(parseSipMessage(Buffer.from(data)));
      } catch {
        // not for us
      }
    });
  }
  send(text: string): void {
    this.channel.send(Buffer.from(text));
  }
  async response(callId: string, ms = 3000): Promise<SipMessage> {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      const m = this.received.find(
        (x) => x.kind === 'response' && x.callId === callId && x.status >= 200,
      );
      if (m) return m;
      await sleep(20);
    }
    throw new Error(`no final response for ${callId}`);
  }
}

let n = 0;
/** A request as another node would send it over the overlay (its Via, our node's domain). */
function fromNode(
  method: string,
  uri: string,
  extra: string[] = [],
): { text: string; callId: string } {
  n++;
  const callId = `peer-${n}-${Date.now()}@test`;
  const text = [
    `${method} ${uri} SIP/2.0`,
    `Via: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bK-peer-${n}-${Math.random().toString(36).slice(2)}`,
    'Max-Forwards: 70',
    `From: <sip:mallory@peerbx.local>;tag=m${n}`,
    `To: <${uri}>`,
    `Call-ID: ${callId}`,
    `CSeq: 1 ${method}`,
    ...extra,
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n');
  return { text, callId };
}

describe('proxy abuse', () => {
  const bed = new TestBed('peerbx-abuse-');
  let a: PeerNode;
  let b: PeerNode;
  let c: OverlayNode;
  let aHex: string;
  let peer: PeerChannel;
  const phone = () => bed.phone();

  before(async () => {
    a = await bed.startPeer('a');
    b = await bed.startPeer('b');
    aHex = a.sip.nodeHex;
    // A bare overlay node (no SIP side) plays the hostile node.
    c = await OverlayNode.start({
      dataDir: join(bed.root, 'c'),
      config: overlayConfig(),
      bootstrap: [a.overlay.udpAddress],
    });
    peer = new PeerChannel(await c.connect(a.overlay.nodeId, SIP_APPLICATION));
  });

  after(async () => {
    peer?.channel.close();
    await c?.close();
    await bed.close();
  });

  it('does not forward a request from another node to an address that is not a device of its own', async () => {
    const victim = await phone();
    const at = `127.0.0.1:${victim.port}`;
    const attempts = [
      // Out of dialog, Request-URI outside the domain.
      fromNode('MESSAGE', `sip:victim@${at}`),
      // In-dialog (To tag).
      fromNode('BYE', `sip:victim@${at}`).text.replace(/(To: <[^>]*>)/, '$1;tag=x'),
      // A Route set naming the victim.
      fromNode('MESSAGE', 'sip:anyone@peerbx.local', [`Route: <sip:${at};lr>`]),
      // A forged Route naming this node (no valid token), then the victim.
      fromNode('INVITE', `sip:victim@${at}`, [
        `Route: <sip:${aHex}@127.0.0.1:${a.port};transport=udp;lr>`,
        'Contact: <sip:mallory@127.0.0.1:9>',
      ]).text.replace(/(To: <[^>]*>)/, '$1;tag=y'),
      // A Route on to a third node.
      fromNode('MESSAGE', `sip:victim@${at}`, [`Route: <sip:${'ab'.repeat(32)}@${at};lr>`]),
    ];
    for (const x of attempts) {
      const text = typeof x === 'string' ? x : x.text;
      const callId = /Call-ID: (\S+)/.exec(text)?.[1] as string;
      peer.send(text);
      const res = await peer.response(callId);
      assert.equal(res.kind === 'response' && res.status, 403, text.split('\r\n')[0]);
      assert.match(res.kind === 'response' ? res.reason : '', /registered here/);
    }
    // A 2xx ACK from another node is not forwarded there either.
    const ack = fromNode('ACK', `sip:victim@${at}`).text.replace(/(To: <[^>]*>)/, '$1;tag=z');
    peer.send(ack);
    await sleep(300);
    assert.deepEqual(victim.received, [], 'the victim got nothing');
  });

  it('still delivers requests from another node to its own registered devices', async () => {
    const dev = await phone();
    assert.equal(await rawRegister(a, 'ivy', `sip:ivy@${dev.contact}`), 'SIP/2.0 200 OK');
    // By AOR.
    const m1 = fromNode('MESSAGE', 'sip:ivy@peerbx.local');
    peer.send(m1.text);
    const got1 = await dev.request('MESSAGE');
    dev.answer(got1, 200, a.port, 'ivy');
    assert.equal((await peer.response(m1.callId)).kind === 'response', true);
    // In a dialog, at the device's contact.
    const m2 = fromNode('INFO', `sip:ivy@${dev.contact}`).text.replace(/(To: <[^>]*>)/, '$1;tag=t');
    peer.send(m2);
    const got2 = await dev.request('INFO');
    dev.answer(got2, 200, a.port);
  });

  it('does not let a phone relay to SIP hosts outside the overlay (403 with the reason)', async () => {
    const p = await phone();
    const victim = await phone();
    const at = `127.0.0.1:${victim.port}`;
    p.send(request('MESSAGE', `sip:victim@${at}`, p).text, a.port);
    const r1 = await p.response(403, 'MESSAGE');
    assert.match((r1 as { reason: string }).reason, /outside the overlay domain peerbx\.local/);
    p.send(request('MESSAGE', 'sip:x@peerbx.local', p, [`Route: <sip:${at};lr>`]).text, a.port);
    await p.response(403, 'MESSAGE');
    const inDialog = request('BYE', `sip:victim@${at}`, p).text.replace(
      /(To: <[^>]*>)/,
      '$1;tag=q',
    );
    p.send(inDialog, a.port);
    await p.response(403, 'BYE');
    await sleep(200);
    assert.deepEqual(victim.received, []);
  });

  it('lets in-dialog requests back to an unregistered caller through (its Record-Route token)', async () => {
    const caller = await phone();
    const callee = await phone();
    assert.equal(await rawRegister(b, 'june', `sip:june@${callee.contact}`), 'SIP/2.0 200 OK');
    const inv = request('INVITE', 'sip:june@peerbx.local', caller);
    caller.send(inv.text, a.port);
    const got = (await callee.request('INVITE')) as SipRequest;
    assert.equal(got.recordRoutes.length, 2);
    assert.match(got.headers.getAll('record-route').join(', '), /pbx-t=/);
    callee.answer(got, 200, b.port, 'j');
    await caller.response(200, 'INVITE');
    // The callee hangs up along the route set: B, then A, then the caller's Contact.
    const routes = got.recordRoutes.map(
      (r) =>
        `<${r.uri.scheme}:${
          'host' in r.uri
            ? `${r.uri.user}@${r.uri.host}:${r.uri.port};${Object.entries(r.uri.params)
                .map(([k, v]) => (v === null ? k : `${k}=${v}`))
                .join(';')}`
            : ''
        }>`,
    );
    const bye = [
      `BYE sip:caller@${caller.contact} SIP/2.0`,
      `Via: SIP/2.0/UDP ${callee.contact};branch=z9hG4bK-bye-${Date.now()};rport`,
      'Max-Forwards: 70',
      `From: ${got.header('To')};tag=j`,
      `To: ${got.header('From')}`,
      `Call-ID: ${inv.callId}`,
      'CSeq: 2 BYE',
      ...routes.map((r) => `Route: ${r}`),
      'Content-Length: 0',
      '',
      '',
    ].join('\r\n');
    callee.send(bye, b.port);
    const byeAtCaller = await caller.request('BYE');
    caller.answer(byeAtCaller, 200, a.port);
    await callee.response(200, 'BYE');
    // The same route set with another Call-ID (the token does not fit it) is refused.
    callee.send(
      bye
        .replace(`Call-ID: ${inv.callId}`, 'Call-ID: other@test')
        .replace(/branch=[^;]+/, 'branch=z9hG4bK-bye2'),
      b.port,
    );
    await callee.response(403, 'BYE');
  });

  it('relays phones to outside hosts when configured to', async () => {
    const unreachable = () => Promise.reject(new OverlayError('ERR_UNREACHABLE', 'no peer'));
    const overlay: SipNodeOverlay = {
      nodeId: a.overlay.nodeId,
      config: { domain: 'peerbx.local' },
      links: { handle: () => undefined, unhandle: () => undefined },
      publish: unreachable,
      fetch: unreachable,
      connect: unreachable,
    };
    const node = await SipNode.start({
      overlay,
      sip: { host: '127.0.0.1', port: 0 },
      ws: false,
      relayExternal: true,
    });
    try {
      const p = await phone();
      const far = await phone();
      p.send(request('MESSAGE', `sip:far@${far.contact}`, p).text, node.addresses.udp.port);
      const got = await far.request('MESSAGE');
      far.answer(got, 200, node.addresses.udp.port);
      await p.response(200, 'MESSAGE');
    } finally {
      await node.close();
    }
  });

  it('does not reflect a forged response along the Vias it carries (stray responses are dropped)', async () => {
    const p = await phone();
    const victim = await phone();
    const dropped = a.sip.proxy.stats.strayResponsesDropped;
    // Our own Via on top (node parameter and all), then the victim's: what a stateless
    // forwarder would send on to the victim.
    const forged = [
      'SIP/2.0 200 OK',
      `Via: SIP/2.0/UDP 127.0.0.1:${a.port};branch=z9hG4bK-forged-1;pbx-node=${aHex}`,
      `Via: SIP/2.0/UDP 127.0.0.1:${victim.port};branch=z9hG4bK-victim-1;rport=${victim.port}`,
      'From: <sip:mallory@peerbx.local>;tag=f1',
      'To: <sip:kim@peerbx.local>;tag=t1',
      'Call-ID: forged-1@test',
      'CSeq: 1 INVITE',
      'Content-Length: 0',
      '',
      '',
    ].join('\r\n');
    p.send(forged, a.port);
    peer.send(forged.replace('forged-1', 'forged-2'));
    // An OPTIONS from the same phone answered after the forged response was read.
    p.send(request('OPTIONS', `sip:127.0.0.1:${a.port}`, p).text, a.port);
    await p.response(200, 'OPTIONS');
    for (let i = 0; i < 50 && a.sip.proxy.stats.strayResponsesDropped < dropped + 2; i++) {
      await sleep(20);
    }
    assert.equal(a.sip.proxy.stats.strayResponsesDropped, dropped + 2);
    assert.deepEqual(victim.received, [], 'nothing reached the victim');
  });

  it('answers hostile headers with 4xx and keeps serving', async () => {
    const p = await phone();
    const dev = await phone();
    assert.equal(await rawRegister(a, 'kim', `sip:kim@${dev.contact}`), 'SIP/2.0 200 OK');
    // A Route that does not parse: 400, not 500.
    p.send(request('MESSAGE', 'sip:kim@peerbx.local', p, ['Route: <sip:bad@']).text, a.port);
    await p.response(400, 'MESSAGE');
    p.send(
      request('MESSAGE', 'sip:kim@peerbx.local', p, ['Route: sip:x@y;lr, <tel:123>']).text,
      a.port,
    );
    await p.response(403, 'MESSAGE');
    // A Contact that does not parse in an INVITE: the proxy does not need it, so the request
    // goes on (no Record-Route token for it); nothing throws.
    const inv = request('INVITE', 'sip:kim@peerbx.local', p).text.replace(
      /Contact: [^\r]*/,
      'Contact: <sip:@@>;;',
    );
    p.send(inv, a.port);
    dev.answer(await dev.request('INVITE'), 486, a.port);
    await p.response(486, 'INVITE');
    // A REGISTER with a bad Contact and a bad expires: 400.
    const reg = request('REGISTER', `sip:127.0.0.1:${a.port}`, p)
      .text.replace(/To: <[^>]*>/, 'To: <sip:kim@peerbx.local>')
      .replace(/Contact: [^\r]*/, 'Contact: <sip:kim@127.0.0.1:1>;expires=soon');
    p.send(reg, a.port);
    await p.response(400, 'REGISTER');
    // Hundreds of Vias, CSeq at its maximum: answered (forwarding or refusing), not thrown.
    const vias = Array.from(
      { length: 400 },
      (_, i) => `Via: SIP/2.0/UDP 10.0.${i % 250}.1:5060;branch=z9hG4bK-v${i}`,
    );
    const big = request('OPTIONS', 'sip:kim@peerbx.local', p)
      .text.replace('CSeq: 1 OPTIONS', 'CSeq: 2147483647 OPTIONS')
      .replace(/(Via: [^\r]*\r\n)/, `$1${vias.join('\r\n')}\r\n`);
    p.send(big, a.port);
    const flooded = await dev.request('OPTIONS');
    assert.equal(flooded.via.length, 402); // the phone's, 400 more, the node's
    dev.answer(flooded, 200, a.port);
    await p.response(200, 'OPTIONS');
    // CSeq beyond 2**31-1: a 400 (which the phone here cannot parse either, so counted).
    const answered = a.sip.stats.badRequestsAnswered;
    p.send(
      request('MESSAGE', 'sip:kim@peerbx.local', p).text.replace(
        'CSeq: 1 MESSAGE',
        'CSeq: 2147483648 MESSAGE',
      ),
      a.port,
    );
    for (let i = 0; i < 50 && a.sip.stats.badRequestsAnswered === answered; i++) await sleep(20);
    assert.equal(a.sip.stats.badRequestsAnswered, answered + 1);
    p.send(request('CANCEL', 'sip:kim@peerbx.local', p).text, a.port);
    await p.response(481, 'CANCEL');
    // A request line that does not parse (baresip 1.0's, transferred with Replaces): the
    // INVITE gets a 400, its ACK is dropped (RFC 3261 §17: never answered) and counted.
    const badLine = (method: string) =>
      request(method, 'sip:kim@peerbx.local', p).text.replace(
        /^[A-Z]+ sip:kim@peerbx\.local SIP\/2\.0/,
        `${method} <sip:kim@peerbx.local?Replaces=abc SIP/2.0`,
      );
    p.send(badLine('INVITE'), a.port);
    await p.response(400, 'INVITE');
    const dropped = a.sip.stats.malformedDropped;
    p.send(badLine('ACK'), a.port);
    for (let i = 0; i < 50 && a.sip.stats.malformedDropped === dropped; i++) await sleep(20);
    assert.equal(a.sip.stats.malformedDropped, dropped + 1);
    await assert.rejects(p.response(400, 'ACK', 300), /no 400 ACK/);
    // Still serving.
    p.send(request('OPTIONS', `sip:127.0.0.1:${a.port}`, p).text, a.port);
    await p.response(200, 'OPTIONS');
  });
});

describe('a node reached at an address of its own it does not listen on (a published port)', () => {
  // QA: docker-compose's node1 with its port published on the host: phones there register
  // through 127.0.0.1:5060 and name it in their Route, an address the node, in its container,
  // does not have; every call got 403 "outside the overlay domain".
  const bed = new TestBed('peerbx-alias-');
  const published = { host: '127.0.0.9', port: 5099 };
  let n: PeerNode;
  before(async () => {
    n = await bed.startPeer('n', { aliases: [published] });
  });
  after(() => bed.close());

  it('takes a Route naming an alias as its own', async () => {
    const ann = await bed.phone();
    await ann.register(n, 'ann');
    const caller = await bed.phone();
    const route = [`Route: <sip:${published.host}:${published.port};lr>`];
    caller.send(request('MESSAGE', 'sip:ann@peerbx.local', caller, route).text, n.port);
    const got = await ann.request('MESSAGE');
    ann.answer(got, 200, n.port, 'ann1');
    await caller.response(200, 'MESSAGE');
    // Not another port at that host: still no relay.
    const other = [`Route: <sip:${published.host}:${published.port + 1};lr>`];
    caller.send(request('MESSAGE', 'sip:ann@peerbx.local', caller, other).text, n.port);
    await caller.response(403, 'MESSAGE');
  });
});

describe('registered flows released on expiry', () => {
  it('releases a kept flow when its last binding expires (handler sweep)', async () => {
    let now = 1_000_000;
    const clock: Clock = {
      now: () => now,
      setTimeout: (fn, ms) => setTimeout(fn, ms),
      clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
    };
    const kept: [string, boolean][] = [];
    const store = new BindingStore();
    const handler = new RegisterHandler({
      store,
      domain: 'peerbx.local',
      clock,
      keepFlow: (id, keep) => kept.push([id, keep]),
      publisher: { sync: async () => undefined },
    });
    const reg = (user: string, expires: number, cseq: number) =>
      parseSipMessage(
        [
          'REGISTER sip:peerbx.local SIP/2.0',
          `Via: SIP/2.0/TCP 127.0.0.1:40000;branch=z9hG4bK-e${cseq}`,
          `From: <sip:${user}@peerbx.local>;tag=f`,
          `To: <sip:${user}@peerbx.local>`,
          `Call-ID: ${user}@test`,
          `CSeq: ${cseq} REGISTER`,
          `Contact: <sip:${user}@127.0.0.1:40000;transport=tcp>`,
          `Expires: ${expires}`,
          '',
          '',
        ].join('\r\n'),
      ) as SipRequest;
    const tcp = {
      transport: 'tcp' as const,
      address: '127.0.0.1',
      port: 40000,
      connectionId: 'c9',
    };
    // Two accounts on one connection: one unregistering does not release it.
    assert.equal((await handler.handle(reg('lee', 60, 1), tcp)).status, 200);
    assert.equal((await handler.handle(reg('max', 120, 1), tcp)).status, 200);
    assert.deepEqual(kept, [['c9', true]]);
    assert.equal((await handler.handle(reg('lee', 0, 2), tcp)).status, 200);
    assert.deepEqual(kept, [['c9', true]]);
    now += 61_000;
    assert.equal(handler.sweep(), 0);
    assert.deepEqual(kept, [['c9', true]]);
    now += 60_000;
    assert.equal(handler.sweep(), 1);
    assert.deepEqual(kept, [
      ['c9', true],
      ['c9', false],
    ]);
    assert.equal(handler.sweep(), 0);
  });

  it("a SipNode lets go of an expired registration's TCP flow", async () => {
    const unreachable = () => Promise.reject(new OverlayError('ERR_UNREACHABLE', 'no peer'));
    const overlay: SipNodeOverlay = {
      nodeId: new Uint8Array(32).fill(7) as SipNodeOverlay['nodeId'],
      config: { domain: 'peerbx.local' },
      links: { handle: () => undefined, unhandle: () => undefined },
      publish: async () => undefined as never,
      fetch: unreachable,
      connect: unreachable,
    };
    const node = await SipNode.start({
      overlay,
      sip: { host: '127.0.0.1', port: 0 },
      ws: false,
      bindings: new BindingStore({ minExpires: 1 }),
      bindingSweepMs: 50,
    });
    const calls: [string, boolean][] = [];
    const original = node.transports.keepFlow.bind(node.transports);
    node.transports.keepFlow = (id, keep) => {
      calls.push([id, keep]);
      return original(id, keep);
    };
    const sock = connect(node.addresses.tcp.port, '127.0.0.1');
    try {
      await new Promise<void>((resolve) => sock.once('connect', () => resolve()));
      const reply = new Promise<string>((resolve) =>
        sock.once('data', (d) => resolve(d.toString())),
      );
      sock.write(
        [
          `REGISTER sip:127.0.0.1:${node.addresses.tcp.port} SIP/2.0`,
          `Via: SIP/2.0/TCP 127.0.0.1:${sock.localPort};branch=z9hG4bK-tcp-exp`,
          'From: <sip:nia@peerbx.local>;tag=n',
          'To: <sip:nia@peerbx.local>',
          'Call-ID: nia@test',
          'CSeq: 1 REGISTER',
          `Contact: <sip:nia@127.0.0.1:${sock.localPort};transport=tcp>`,
          'Expires: 1',
          'Content-Length: 0',
          '',
          '',
        ].join('\r\n'),
      );
      assert.match(await reply, /^SIP\/2\.0 200/);
      assert.equal(calls.length, 1);
      assert.equal(calls[0]?.[1], true);
      const id = calls[0]?.[0] as string;
      await sleep(1300);
      assert.deepEqual(calls.at(-1), [id, false], 'flow released after the binding expired');
    } finally {
      sock.destroy();
      await node.close();
    }
  });
});
