// A call to a phone whose node dies: four node processes on 127.0.0.1, scripted UDP phones.
// The callee's phone rings (180) and never answers; its node is then killed (its sockets close),
// or frozen with SIGSTOP (a power cut: its connections stay open and nothing answers). The
// caller must hear a final response in seconds, not ring until Timer C (3 minutes). A call
// sent to a frozen node over the channel already open to it fails as fast. And with the other
// nodes dead or frozen, a call between two phones of one node rings at once. A node frozen
// long enough to be dropped by its peers is rung again as soon as it runs again.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { SipRequest } from '../src/message/sip-message.js';
import { SipNodeChild } from './fixtures/sip-node-child.js';
import { rawRegister, tempRoot } from './fixtures/sipp.js';
import { TestBed } from './fixtures/test-bed.js';
import { request, UdpPhone } from './fixtures/udp-phone.js';

describe('a call whose callee node dies', () => {
  const tmp = tempRoot('peerbx-node-death-');
  const nodes: SipNodeChild[] = [];
  const phones: UdpPhone[] = [];

  /** gus's phone, registered at node 1 while the overlay is whole. */
  let gus: UdpPhone;

  before(async () => {
    nodes.push(await SipNodeChild.start(join(tmp.root, 'n1')));
    nodes.push(
      ...(await Promise.all(
        ['n2', 'n3', 'n4'].map((n) => SipNodeChild.start(join(tmp.root, n), nodes[0]!.udp)),
      )),
    );
    gus = await UdpPhone.open();
    phones.push(gus);
    assert.equal(await rawRegister(nodes[0]!, 'gus', `sip:gus@${gus.contact}`), 'SIP/2.0 200 OK');
  });

  after(async () => {
    for (const p of phones) p.close();
    for (const n of nodes) await n.kill().catch(() => undefined);
    tmp.remove();
  });

  /** A phone registered as `user` at `node`, and a caller's phone. */
  async function phonesFor(user: string, node: SipNodeChild) {
    const callee = await UdpPhone.open();
    const caller = await UdpPhone.open();
    phones.push(callee, caller);
    assert.equal(await rawRegister(node, user, `sip:${user}@${callee.contact}`), 'SIP/2.0 200 OK');
    return { callee, caller };
  }

  /** alice at node 1 calls `user`; the callee's phone rings. Returns the INVITE it got. */
  async function ringing(user: string, callee: UdpPhone, caller: UdpPhone, at: SipNodeChild) {
    const caller1 = nodes[0]!;
    caller.send(
      request('INVITE', `sip:${user}@127.0.0.1:${caller1.port}`, caller).text,
      caller1.port,
    );
    const invite = (await callee.request('INVITE')) as SipRequest;
    callee.answer(invite, 180, at.port);
    await caller.response(180, 'INVITE');
    return invite;
  }

  it('answers 480 at once when the node dies while the phone rings', async () => {
    const at = nodes[1]!;
    const { callee, caller } = await phonesFor('dora', at);
    await ringing('dora', callee, caller, at);
    await at.kill('SIGKILL');
    const final = await caller.response(480, 'INVITE', 8000);
    assert.match(final.kind === 'response' ? final.reason : '', /connection to the callee closed/);
  });

  it('answers 480 within seconds when the node loses power while the phone rings', async () => {
    const at = nodes[2]!;
    const { callee, caller } = await phonesFor('erin', at);
    await ringing('erin', callee, caller, at);
    at.child.kill('SIGSTOP');
    // The next sweep (5 s) probes the frozen node, silent for 4 s more: closed, 480.
    await caller.response(480, 'INVITE', 15_000);
  });

  it('answers 480 within seconds to a call sent over an open channel to a node without power', async () => {
    const at = nodes[3]!;
    const { callee, caller } = await phonesFor('fay', at);
    // A first call opens the channel from node 1 to fay's node, and caches her location.
    const first = await ringing('fay', callee, caller, at);
    callee.answer(first, 486, at.port);
    await caller.response(486, 'INVITE');
    at.child.kill('SIGSTOP');
    caller.send(
      request('INVITE', `sip:fay@127.0.0.1:${nodes[0]!.port}`, caller).text,
      nodes[0]!.port,
    );
    // Sent into the open channel; silence for 2 s brings a PING, 4 s more of it the close.
    await caller.response(480, 'INVITE', 12_000);
    // Node 1 still serves.
    assert.ok((await nodes[0]!.stats()).proxy);
  });

  it('rings a phone of the same node at once while the other nodes are dead or silent', async () => {
    // By now node 2 is dead and nodes 3 and 4 are frozen: a lookup of gus's other devices
    // waits for their timeouts, his phone here must not.
    const caller = await UdpPhone.open();
    phones.push(caller);
    const node1 = nodes[0]!;
    const t0 = performance.now();
    caller.send(request('INVITE', `sip:gus@127.0.0.1:${node1.port}`, caller).text, node1.port);
    const invite = (await gus.request('INVITE')) as SipRequest;
    const rang = performance.now() - t0;
    gus.answer(invite, 200, node1.port);
    await caller.response(200, 'INVITE', 15_000);
    // Waiting for the lookup took about a second here: the INVITE must not.
    assert.ok(rang < 700, `gus's phone got the INVITE after ${Math.round(rang)} ms`);
  });
});

describe('a call to a TCP phone whose connection closes while it rings', () => {
  const bed = new TestBed('peerbx-tcp-gone-');
  after(() => bed.close());

  it('answers 480 once the phone had its time to answer over a new connection', async () => {
    const node = await bed.startPeer('a', { tcpAnswerGraceMs: 300 });
    // The callee: a phone registered over TCP, its flow kept for incoming calls.
    const socket = connect({ host: '127.0.0.1', port: node.sip.addresses.tcp.port });
    await once(socket, 'connect');
    let received = '';
    socket.on('data', (d: Buffer) => {
      received += d.toString();
    });
    const local = `127.0.0.1:${socket.localPort}`;
    socket.write(
      [
        `REGISTER sip:127.0.0.1:${node.port};transport=tcp SIP/2.0`,
        `Via: SIP/2.0/TCP ${local};branch=z9hG4bK-tcp-reg`,
        'From: <sip:hal@peerbx.local>;tag=h1',
        'To: <sip:hal@peerbx.local>',
        'Call-ID: tcp-reg@test',
        'CSeq: 1 REGISTER',
        `Contact: <sip:hal@${local};transport=tcp>`,
        'Expires: 3600',
        'Content-Length: 0',
        '',
        '',
      ].join('\r\n'),
    );
    await eventually(() => received.includes('SIP/2.0 200'), 'the 200 to the REGISTER');
    const caller = await bed.phone();
    caller.send(request('INVITE', 'sip:hal@peerbx.local', caller).text, node.port);
    await eventually(() => /INVITE sip:hal@/.test(received), 'the INVITE over TCP');
    // The phone crashes before it answers (nor will it answer over another connection).
    socket.destroy();
    const final = await caller.response(480, 'INVITE', 5000);
    assert.match(final.kind === 'response' ? final.reason : '', /connection to the callee closed/);
  });
});

async function eventually(check: () => boolean, what: string, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('a callee node that stood still (SIGSTOP) and runs again', () => {
  const tmp = tempRoot('peerbx-node-stall-');
  const nodes: SipNodeChild[] = [];
  const phones: UdpPhone[] = [];

  before(async () => {
    nodes.push(await SipNodeChild.start(join(tmp.root, 'n1')));
    nodes.push(
      ...(await Promise.all(
        ['n2', 'n3'].map((n) => SipNodeChild.start(join(tmp.root, n), nodes[0]!.udp)),
      )),
    );
  });

  after(async () => {
    for (const n of nodes) n.child.kill('SIGCONT');
    for (const p of phones) p.close();
    for (const n of nodes) await n.kill().catch(() => undefined);
    tmp.remove();
  });

  /**
   * A call from `caller` at node 1 to `user`, registered at `at`: 'rang' when its phone got the
   * INVITE (declined then: 486), else the final status.
   */
  async function call(
    user: string,
    callee: UdpPhone,
    caller: UdpPhone,
    at: SipNodeChild,
    ms: number,
  ) {
    const node1 = nodes[0]!;
    const invite = request('INVITE', `sip:${user}@127.0.0.1:${node1.port}`, caller);
    caller.send(invite.text, node1.port);
    const rang = callee
      .next(
        (m) => m.kind === 'request' && m.method === 'INVITE' && m.callId === invite.callId,
        'INVITE',
        ms,
      )
      .then((m) => {
        callee.answer(m as SipRequest, 486, at.port);
        return 'rang' as const;
      });
    const refused = caller
      .next(
        (m) => m.kind === 'response' && m.callId === invite.callId && m.status >= 300,
        'final response',
        ms,
      )
      .then((m) => (m.kind === 'response' ? m.status : 0));
    rang.catch(() => undefined);
    refused.catch(() => undefined);
    return Promise.any([rang, refused]).catch(() => 'nothing' as const);
  }

  it('rings its phone as soon as it runs again, though a dial to it had failed', async () => {
    const at = nodes[2]!;
    const callee = await UdpPhone.open();
    const caller = await UdpPhone.open();
    phones.push(callee, caller);
    assert.equal(await rawRegister(at, 'hal', `sip:hal@${callee.contact}`), 'SIP/2.0 200 OK');
    // A first call opens the channel to hal's node and caches his location.
    assert.equal(await call('hal', callee, caller, at, 8000), 'rang');
    at.child.kill('SIGSTOP');
    // Its channel found dead (silence, then a PING unanswered: 480), then a dial that met
    // silence too (480): node 1 remembers it unreachable (20 s), and its peers drop it.
    assert.equal(await call('hal', callee, caller, at, 15_000), 480);
    assert.equal(await call('hal', callee, caller, at, 15_000), 480);
    at.child.kill('SIGCONT');
    const continued = performance.now();
    // Back, it tells its contacts so (it found it had not run): node 1 dials it again at once,
    // and finds it. Before, calls got 480 for 25 s more ("not in the overlay").
    let outcome: Awaited<ReturnType<typeof call>> = 'nothing';
    while (performance.now() - continued < 10_000) {
      outcome = await call('hal', callee, caller, at, 5000);
      if (outcome === 'rang') break;
      await new Promise((r) => setTimeout(r, 300));
    }
    const waited = performance.now() - continued;
    assert.equal(outcome, 'rang', `still ${outcome} ${Math.round(waited)} ms after it ran again`);
    assert.ok(waited < 5000, `rang ${Math.round(waited)} ms after it ran again`);
  });
});
