// The SipNode's proxy over real UDP sockets with scripted phones and a two-node overlay:
// OPTIONS to the node, 400 for unparsable requests while the node keeps serving, Max-Forwards,
// loop detection, parallel forking with the other branch cancelled, Timer C, overlay down.

import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { connect, type Socket } from 'node:net';
import { networkInterfaces } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { OverlayError } from '@peerbx/overlay-core';
import { createResponse } from '../src/message/response.js';
import {
  parseSipMessage,
  type SipMessage,
  type SipRequest,
  type SipResponse,
  serialize,
} from '../src/message/sip-message.js';
import { SipNode, type SipNodeOverlay } from '../src/node/sip-node.js';
import { type PeerNode, rawRegister } from './fixtures/sipp.js';
import { TcpPhone } from './fixtures/tcp-phone.js';
import { shareUserKey as shareKey, TestBed } from './fixtures/test-bed.js';
import { registerText, request, type UdpPhone } from './fixtures/udp-phone.js';

/**
 * A phone answers an INVITE that came over `socket` with 200, its Record-Routes and `contact`;
 * the caller's 200 gives the dialog its in-dialog requests take (inDialogRequest).
 */
async function answerOverTcp(
  socket: Socket,
  invite: SipRequest,
  contact: string,
  caller: UdpPhone,
): Promise<{ from: string; to: string; callId: string; routes: string }> {
  const headers = [
    ...invite.headers.getAll('record-route').map((value) => ({ name: 'Record-Route', value })),
    { name: 'Contact', value: `<${contact}>` },
  ];
  socket.write(serialize(createResponse(invite, 200, { toTag: 't1', headers })));
  const ok = await caller.response(200, 'INVITE');
  return {
    from: invite.headers.get('from') ?? '',
    to: ok.headers.get('to') ?? '',
    callId: ok.callId,
    routes: ok.headers.getAll('record-route').reverse().join(', '),
  };
}

/** A phone's own TCP connection to a node: what it sends, and the messages that came back. */
async function keptConnection(
  t: { after(fn: () => void): void },
  port: number,
  host = '127.0.0.1',
) {
  const socket = connect(port, host);
  socket.on('error', () => undefined);
  t.after(() => socket.destroy());
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  const incoming: SipMessage[] = [];
  socket.on('data', (data: Buffer) => incoming.push(parseSipMessage(data)));
  const next = async (what: (m: SipMessage) => boolean) => {
    for (let i = 0; i < 250; i++) {
      const at = incoming.findIndex(what);
      if (at >= 0) return incoming.splice(at, 1)[0] as SipMessage;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error('nothing over the connection');
  };
  return { socket, next };
}

/** `phone` answers a dialog-creating request with `status`, its Record-Routes and `contact`. */
function answerWithContact(
  phone: UdpPhone,
  req: SipRequest,
  status: number,
  toTag: string,
  contact: string,
  port: number,
): void {
  const headers = [
    ...req.headers.getAll('record-route').map((value) => ({ name: 'Record-Route', value })),
    { name: 'Contact', value: `<${contact}>` },
  ];
  phone.send(serialize(createResponse(req, status, { toTag, headers })), port);
}

/**
 * `user`, registered at `home` from `callee`, called by `caller` through `via`, answers 200
 * naming `answerAt` (its own Contact unless given): the INVITE as sent, as the callee got it,
 * and the caller's 200.
 */
async function answeredCall(o: {
  caller: UdpPhone;
  callee: UdpPhone;
  user: string;
  via: PeerNode;
  home: PeerNode;
  tag: string;
  answerAt?: string;
}) {
  const { caller, callee, user, via, home } = o;
  assert.equal(await rawRegister(home, user, `sip:${user}@${callee.contact}`), 'SIP/2.0 200 OK');
  const call = request('INVITE', `sip:${user}@127.0.0.1:${via.port}`, caller);
  caller.send(call.text, via.port);
  const invite = await callee.request('INVITE');
  const contact = o.answerAt ?? `sip:${user}@${callee.contact}`;
  answerWithContact(callee, invite, 200, o.tag, contact, home.port);
  const ok = await caller.response(200, 'INVITE');
  return { call, invite, ok };
}

/** The caller's side of a dialog its INVITE `call` began, answered `ok`: for inDialogRequest. */
function callerSide(call: { text: string; callId: string }, ok: SipMessage) {
  return {
    from: /^From: (.*)$/m.exec(call.text)![1]!,
    to: ok.headers.get('to') ?? '',
    callId: call.callId,
    routes: ok.headers.getAll('record-route').reverse().join(', '),
  };
}

/** An in-dialog request from `phone` along `routes` (its route set, comma-separated). */
function inDialogRequest(
  method: string,
  uri: string,
  phone: UdpPhone,
  d: { from: string; to: string; callId: string; cseq: number; routes: string },
): string {
  return [
    `${method} ${uri} SIP/2.0`,
    `Via: SIP/2.0/UDP ${phone.contact};branch=z9hG4bK-${method}-${d.cseq}-${d.callId.length}-${Math.random().toString(36).slice(2)};rport`,
    `From: ${d.from}`,
    `To: ${d.to}`,
    `Call-ID: ${d.callId}`,
    `CSeq: ${d.cseq} ${method}`,
    `Route: ${d.routes}`,
    'Max-Forwards: 70',
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n');
}

describe('stateful proxy', () => {
  const bed = new TestBed('peerbx-proxy-');
  let a: PeerNode;
  let b: PeerNode;
  const phone = () => bed.phone();

  before(async () => {
    a = await bed.startPeer('a');
    b = await bed.startPeer('b', { timerCMs: 1500 });
  });

  after(() => bed.close());

  it('answers OPTIONS to the node itself, and 400 to an unparsable request, then goes on', async () => {
    const p = await phone();
    p.send(request('OPTIONS', `sip:127.0.0.1:${a.port}`, p).text, a.port);
    const ok = await p.response(200, 'OPTIONS');
    assert.match(ok.header('Allow') ?? '', /INVITE/);
    const bad = request('OPTIONS', `sip:127.0.0.1:${a.port}`, p).text.replace(
      'Max-Forwards: 70',
      'Max-Forwards: many',
    );
    p.send(bad, a.port);
    await p.response(400);
    p.send('garbage that is not SIP\r\n\r\n', a.port);
    p.send(request('OPTIONS', `sip:127.0.0.1:${a.port}`, p).text, a.port);
    await p.response(200, 'OPTIONS');
    assert.equal(a.sip.stats.badRequestsAnswered, 1);
    // Cut before the blank line that ends the headers: all a 400 needs is there.
    p.send(request('OPTIONS', `sip:127.0.0.1:${a.port}`, p).text.replace(/\r\n$/, ''), a.port);
    await p.response(400, 'OPTIONS');
    assert.equal(a.sip.stats.badRequestsAnswered, 2);
    // Missing CSeq, or From, To and Call-ID (RFC 4475 §3.3.1: ideally a 400; it was dropped):
    // a 400 that says what is missing, without the headers it has nothing to copy from.
    const options = request('OPTIONS', `sip:127.0.0.1:${a.port}`, p).text;
    p.send(options.replace(/CSeq: [^\r]*\r\n/, ''), a.port);
    const noCSeq = await p.nextUnparsable();
    assert.match(noCSeq, /^SIP\/2\.0 400 Bad Request \(missing CSeq header\)\r\nVia: [^\r]*\r\n/);
    assert.doesNotMatch(noCSeq, /\r\nCSeq:/i);
    p.send(options.replace(/(From|To|Call-ID): [^\r]*\r\n/g, ''), a.port);
    assert.match(
      await p.nextUnparsable(),
      /^SIP\/2\.0 400 Bad Request \(missing From, To, Call-ID headers\)/,
    );
    assert.equal(a.sip.stats.badRequestsAnswered, 4);
    // From a phone whose outbound proxy is the node: a Route naming it (QA: was 404).
    const route = [`Route: <sip:127.0.0.1:${a.port};lr>`];
    p.send(request('OPTIONS', 'sip:peerbx.local', p, route).text, a.port);
    assert.match((await p.response(200, 'OPTIONS')).header('Allow') ?? '', /INVITE/);
  });

  it('answers 482 when two nodes send a call to each other, not after Max-Forwards hops', async () => {
    // A user registered at a with b's own address as Contact: a sends the call to b, which
    // finds the user at a and sends it back. The request arrives again as it arrived before.
    const p = await phone();
    const contact = `sip:lupe@127.0.0.1:${b.port}`;
    p.send(
      registerText({ node: `127.0.0.1:${a.port}`, user: 'lupe', contact, via: `UDP ${p.contact}` }),
      a.port,
    );
    await p.response(200, 'REGISTER');
    const forwarded = a.sip.proxy.stats.forwarded + b.sip.proxy.stats.forwarded;
    p.send(request('INVITE', 'sip:lupe@peerbx.local', p).text, a.port);
    await p.response(482, 'INVITE');
    const hops = a.sip.proxy.stats.forwarded + b.sip.proxy.stats.forwarded - forwarded;
    assert.ok(hops <= 4, `${hops} requests forwarded`);
  });

  it('takes an in-dialog request to a user of the overlay to that user, not to a device by host', async () => {
    // A remote target that is an AOR (RFC 4475 §3.1.1.1 wsinv has a To tag too): the location
    // service finds the user's devices, here at the other node.
    const tess = await phone();
    await tess.register(b, 'tess');
    const p = await phone();
    const uri = 'sip:tess@peerbx.local';
    const text = request('INFO', uri, p).text.replace(`To: <${uri}>`, `To: <${uri}>;tag=t1`);
    p.send(text, a.port);
    const info = await tess.request('INFO');
    assert.equal(info.toTag, 't1');
    tess.answer(info, 200, b.port, 't1');
    await p.response(200, 'INFO');
  });

  it('answers a sips: request 416, not forwarded without TLS', async () => {
    const sam = await phone();
    await sam.register(b, 'sam');
    const p = await phone();
    p.send(request('MESSAGE', 'sips:sam@peerbx.local', p).text, a.port);
    const refused = (await p.response(416)) as SipResponse;
    assert.match(refused.reason, /sips: needs TLS/);
  });

  it('answers 400 to request lines that only look like one (RFC 4475 §3.1.2.8-10), an ACK nothing', async () => {
    const p = await phone();
    const target = `sip:bob@127.0.0.1:${a.port}`;
    for (const line of [
      `OPTIONS ${target}; lr SIP/2.0`,
      `OPTIONS  ${target}  SIP/2.0`,
      `OPTIONS ${target} SIP/2.0  `,
      `OPTIONS ${target} SIP/2.0 extra`,
    ]) {
      const text = request('OPTIONS', target, p).text;
      p.send(line + text.slice(text.indexOf('\r\n')), a.port);
      const bad = (await p.response(400)) as SipResponse;
      assert.equal(bad.reason, 'Bad Request (bad request line)', line);
    }
    const dropped = a.sip.stats.malformedDropped;
    const ack = request('ACK', target, p).text;
    p.send(`ACK ${target} SIP/2.0 extra${ack.slice(ack.indexOf('\r\n'))}`, a.port);
    p.send(request('OPTIONS', `sip:127.0.0.1:${a.port}`, p).text, a.port);
    await p.response(200, 'OPTIONS');
    assert.equal(a.sip.stats.malformedDropped, dropped + 1, 'the ACK dropped, as unparsable SIP');
  });

  it('tells a phone the address it is seen at: received and rport in its Via (RFC 3581)', async () => {
    const p = await phone();
    // A phone behind NAT writes its private address; the node sees the packet's source.
    const behindNat = request('OPTIONS', `sip:127.0.0.1:${a.port}`, p);
    p.send(behindNat.text.replace(`UDP ${p.contact};`, 'UDP 10.9.9.9:5062;'), a.port);
    const seen = await p.response(200, 'OPTIONS');
    assert.equal(
      seen.headers.get('Via'),
      `SIP/2.0/UDP 10.9.9.9:5062;branch=${behindNat.branch};rport=${p.port};received=127.0.0.1`,
    );
    // Sent-by already the source address and no rport asked: the Via comes back as it went.
    const plain = request('OPTIONS', `sip:127.0.0.1:${a.port}`, p);
    p.send(plain.text.replace(';rport\r\n', '\r\n'), a.port);
    const same = await p.response(200, 'OPTIONS');
    assert.equal(same.headers.get('Via'), `SIP/2.0/UDP ${p.contact};branch=${plain.branch}`);
  });

  it('answers a bad Content-Length 400 over UDP, and closes a TCP stream it cannot frame after a 400 or 513', async () => {
    const p = await phone();
    const short = request('OPTIONS', `sip:127.0.0.1:${a.port}`, p);
    p.send(short.text.replace('Content-Length: 0', 'Content-Length: 10'), a.port);
    const bad = await p.response(400, 'OPTIONS');
    assert.equal(bad.callId, short.callId);
    // Over TCP: the request is answered on the connection, which then closes.
    const overTcp = async (contentLength: string): Promise<string> => {
      const sock = connect(a.port, '127.0.0.1');
      let got = '';
      sock.on('data', (d: Buffer) => {
        got += d.toString('latin1');
      });
      const closed = new Promise<void>((resolve) => sock.on('close', () => resolve()));
      const text = request('MESSAGE', 'sip:nobody@peerbx.local', p)
        .text.replace(`UDP ${p.contact}`, 'TCP 127.0.0.1:9')
        .replace(
          'Content-Length: 0\r\n',
          contentLength === 'none' ? '' : `Content-Length: ${contentLength}\r\n`,
        );
      sock.write(text);
      await closed;
      return got.split('\r\n')[0] ?? '';
    };
    assert.equal(await overTcp('70000'), 'SIP/2.0 513 Message Too Large');
    assert.equal(await overTcp('ten'), 'SIP/2.0 400 Bad Content-Length');
    assert.equal(await overTcp('none'), 'SIP/2.0 400 Missing Content-Length');
    p.send(request('OPTIONS', `sip:127.0.0.1:${a.port}`, p).text, a.port);
    await p.response(200, 'OPTIONS');
  });

  it('answers 405 (Allow: OPTIONS, REGISTER) or 501 to other requests for the node itself', async () => {
    const p = await phone();
    p.send(request('MESSAGE', `sip:127.0.0.1:${a.port}`, p).text, a.port);
    const notAllowed = await p.response(405, 'MESSAGE');
    assert.equal(notAllowed.header('Allow'), 'OPTIONS, REGISTER');
    p.send(request('FOO', `sip:127.0.0.1:${a.port}`, p).text, a.port);
    await p.response(501, 'FOO');
  });

  it('answers a request of another SIP version 505', async () => {
    const p = await phone();
    const text = request('OPTIONS', `sip:127.0.0.1:${a.port}`, p).text.replace(
      ' SIP/2.0\r\n',
      ' SIP/3.0\r\n',
    );
    p.send(text, a.port);
    await p.response(505, 'OPTIONS');
    assert.ok(a.sip.stats.versionRejected >= 1);
  });

  it('answers 483 when Max-Forwards is 0', async () => {
    const p = await phone();
    p.send(request('MESSAGE', 'sip:x@peerbx.local', p, ['Max-Forwards: 0']).text, a.port);
    await p.response(483);
  });

  it('answers 420 with Unsupported to a Proxy-Require it does not know', async () => {
    const p = await phone();
    const extra = ['Proxy-Require: foo, bar'];
    p.send(request('MESSAGE', 'sip:x@peerbx.local', p, extra).text, a.port);
    const res = await p.response(420);
    assert.equal(res.header('Unsupported'), 'foo, bar');
  });

  it('detects a loop (a contact pointing back at the node) with 482', async () => {
    const p = await phone();
    assert.equal(await rawRegister(a, 'loopy', `sip:loopy@127.0.0.1:${a.port}`), 'SIP/2.0 200 OK');
    p.send(request('MESSAGE', 'sip:loopy@peerbx.local', p).text, a.port);
    await p.response(482);
  });

  it('forks in parallel to two devices at the callee node and cancels the one that lost', async () => {
    const caller = await phone();
    const d1 = await phone();
    const d2 = await phone();
    for (const d of [d1, d2]) {
      assert.equal(await rawRegister(b, 'frank', `sip:frank@${d.contact}`), 'SIP/2.0 200 OK');
    }
    caller.send(request('INVITE', `sip:frank@127.0.0.1:${a.port}`, caller).text, a.port);
    const [i1, i2] = await Promise.all([d1.request('INVITE'), d2.request('INVITE')]);
    assert.equal(i1.uri, `sip:frank@${d1.contact}`);
    // Both nodes Record-Routed, each with its node-ID.
    assert.equal(i1.recordRoutes.length, 2);
    d1.answer(i1, 180, b.port, 'd1');
    await caller.response(180, 'INVITE');
    d2.answer(i2, 200, b.port, 'd2');
    const ok = await caller.response(200, 'INVITE');
    assert.match(ok.header('To') ?? '', /tag=d2/);
    const cancel = await d1.request('CANCEL');
    // RFC 3326: the phone that lost shows no missed call.
    assert.equal(cancel.headers.get('Reason'), 'SIP;cause=200;text="Call completed elsewhere"');
    d1.answer(cancel, 200, b.port, 'd1');
    d1.answer(i1, 487, b.port, 'd1');
    await d1.request('ACK', 'ACK for 487');
  });

  for (const where of ['another node', 'the same node'] as const) {
    it(`reaches a callee with the caller's BYE after its registration ended in the call (caller at ${where})`, async () => {
      // A dialog does not depend on the registration (QA: the BYE got 403, the callee's phone
      // stayed in the call).
      const caller = await phone();
      const callee = await phone();
      const user = where === 'another node' ? 'cleo' : 'cleon';
      const at = where === 'another node' ? a : b;
      const { call, ok } = await answeredCall({
        caller,
        callee,
        user,
        via: at,
        home: b,
        tag: 'c1',
      });
      assert.equal(
        await rawRegister(b, user, `sip:${user}@${callee.contact}`, 0),
        'SIP/2.0 200 OK',
      );
      caller.send(
        inDialogRequest('BYE', `sip:${user}@${callee.contact}`, caller, {
          ...callerSide(call, ok),
          cseq: 2,
        }),
        at.port,
      );
      callee.answer(await callee.request('BYE'), 200, b.port, 'c1');
      await caller.response(200, 'BYE');
    });
  }

  it('lets no phone name targets for a dialog it is not in, nor relay with a refresh it sends', async () => {
    // Review: a phone's in-dialog UPDATE named its own Request-URI as a target and was sent
    // there (a relay past relayExternal: false), and another phone took over a call's target.
    const plain = (lines: string[]) =>
      [...lines, 'Max-Forwards: 70', 'Content-Length: 0', '', ''].join('\r\n');
    const phoneHere = await phone();
    const victim = await phone();
    phoneHere.send(
      plain([
        `UPDATE sip:x@${victim.contact} SIP/2.0`,
        `Via: SIP/2.0/UDP ${phoneHere.contact};branch=z9hG4bK-r1-${Date.now()};rport`,
        'From: <sip:caller@peerbx.local>;tag=f1',
        'To: <sip:x@peerbx.local>;tag=t1',
        `Call-ID: r1-${Date.now()}@test`,
        'CSeq: 1 UPDATE',
        `Contact: <sip:x@${victim.contact}>`,
      ]),
      b.port,
    );
    await phoneHere.response(403, 'UPDATE');
    // vera answers a call from another Contact than she registered; mallory, at her node and
    // knowing the Call-ID, names that Contact in an UPDATE of its own.
    const w = await phone();
    const v = await phone();
    const vNew = await phone();
    const m = await phone();
    const { call, ok } = await answeredCall({
      caller: w,
      callee: v,
      user: 'vera',
      via: a,
      home: b,
      tag: 'v1',
      answerAt: `sip:vera@${vNew.contact}`,
    });
    m.send(
      plain([
        'UPDATE sip:anything@127.0.0.1:9 SIP/2.0',
        `Via: SIP/2.0/UDP nat.invalid:5060;branch=z9hG4bK-r4-${Date.now()};rport`,
        'From: <sip:mallory@peerbx.local>;tag=m1',
        'To: <sip:x@peerbx.local>;tag=v1',
        `Call-ID: ${call.callId}`,
        'CSeq: 1 UPDATE',
        `Contact: <sip:vera@${vNew.contact}>`,
      ]),
      b.port,
    );
    await m.response(403, 'UPDATE');
    w.send(
      inDialogRequest('BYE', `sip:vera@${vNew.contact}`, w, { ...callerSide(call, ok), cseq: 2 }),
      a.port,
    );
    vNew.answer(await vNew.request('BYE'), 200, b.port, 'v1');
    await w.response(200, 'BYE');
    assert.equal(m.received.filter((x) => x.kind === 'request').length, 0, 'nothing for mallory');
    assert.equal(victim.received.length, 0, 'nothing for the address the UPDATE named');
  });

  it('points no dialog at another host: not through a refresh a phone answers itself, nor its answer', async () => {
    // Re-review: a phone routed its own UPDATE back to itself, answered it 200, and so made
    // the node relay the dialog's requests to any address; an answer's Contact did the same.
    const victim = createSocket('udp4');
    const got: string[] = [];
    victim.on('message', (m) => got.push(m.toString()));
    await new Promise<void>((resolve) => victim.bind(0, '127.0.0.2', () => resolve()));
    const at = `127.0.0.2:${victim.address().port}`;
    try {
      const plain = (lines: string[]) =>
        [...lines, 'Max-Forwards: 70', 'Content-Length: 0', '', ''].join('\r\n');
      const m = await phone();
      assert.equal(await rawRegister(b, 'mal', `sip:mal@${m.contact}`), 'SIP/2.0 200 OK');
      const mine = (method: string, uri: string, contact: string, cseq: number) =>
        plain([
          `${method} ${uri} SIP/2.0`,
          `Via: SIP/2.0/UDP ${m.contact};branch=z9hG4bK-${method}-${cseq}-${Date.now()};rport`,
          'From: <sip:mal@peerbx.local>;tag=m1',
          'To: <sip:x@peerbx.local>;tag=x1',
          'Call-ID: self-answered@test',
          `CSeq: ${cseq} ${method}`,
          `Contact: <${contact}>`,
        ]);
      m.send(mine('UPDATE', `sip:mal@${m.contact}`, `sip:x@${at}`, 1), b.port);
      m.answer(await m.request('UPDATE'), 200, b.port, 'x1');
      await m.response(200, 'UPDATE');
      m.send(mine('INFO', `sip:x@${at}`, `sip:mal@${m.contact}`, 2), b.port);
      // The dialog's target is where mal's UPDATE came from: mal itself.
      m.answer(await m.request('INFO'), 200, b.port, 'x1');
      // mal calls itself and answers naming the address.
      const call = request('INVITE', `sip:mal@127.0.0.1:${b.port}`, m);
      m.send(call.text, b.port);
      const invite = await m.request('INVITE');
      answerWithContact(m, invite, 200, 'a1', `sip:y@${at}`, b.port);
      const ok = await m.response(200, 'INVITE');
      m.send(
        inDialogRequest('INFO', `sip:y@${at}`, m, { ...callerSide(call, ok), cseq: 3 }),
        b.port,
      );
      await m.response(403, 'INFO');
      await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual(got, [], 'nothing reached the other host');
    } finally {
      victim.close();
    }
  });

  it("follows a dialog's target refresh from either side (§12.2.1.2): a re-INVITE's Contact, its answer's", async () => {
    // Both phones move to another port in the call (a new network, a NAT rebinding): each
    // side's requests must reach the other where it said it now is, at neither node refused.
    const alice = await phone();
    const bob = await phone();
    const { call, ok } = await answeredCall({
      caller: alice,
      callee: bob,
      user: 'bert',
      via: a,
      home: b,
      tag: 'bt',
    });
    const rr = ok.headers.getAll('record-route');
    const fromAlice = callerSide(call, ok);
    const fromBob = {
      from: fromAlice.to,
      to: fromAlice.from,
      callId: call.callId,
      routes: rr.join(', '),
    };
    // alice re-INVITEs from her new place; bob answers from his.
    const alice2 = await phone();
    const bob2 = await phone();
    alice2.send(
      inDialogRequest('INVITE', `sip:bert@${bob.contact}`, alice2, {
        ...fromAlice,
        cseq: 2,
      }).replace('Max-Forwards', `Contact: <sip:caller@${alice2.contact}>\r\nMax-Forwards`),
      a.port,
    );
    const reinvite = await bob.request('INVITE');
    answerWithContact(bob, reinvite, 200, 'bt', `sip:bert@${bob2.contact}`, b.port);
    await alice2.response(200, 'INVITE');
    // Each side's next request, to the other's new target.
    alice2.send(
      inDialogRequest('INFO', `sip:bert@${bob2.contact}`, alice2, { ...fromAlice, cseq: 3 }),
      a.port,
    );
    bob2.answer(await bob2.request('INFO'), 200, b.port, 'bt');
    await alice2.response(200, 'INFO');
    bob2.send(
      inDialogRequest('BYE', `sip:caller@${alice2.contact}`, bob2, { ...fromBob, cseq: 1 }),
      b.port,
    );
    alice2.answer(await alice2.request('BYE'), 200, a.port, 'x');
    await bob2.response(200, 'BYE');
    // A target nobody named in the dialog is still refused.
    bob2.send(
      inDialogRequest('BYE', `sip:caller@127.0.0.1:9`, bob2, { ...fromBob, cseq: 2 }),
      b.port,
    );
    await bob2.response(403, 'BYE');
  });

  it('answers a CANCEL that comes after the final answer 200 (§9.2), and one that matches nothing 481', async () => {
    const caller = await phone();
    const callee = await phone();
    assert.equal(await rawRegister(b, 'ivo', `sip:ivo@${callee.contact}`), 'SIP/2.0 200 OK');
    const call = request('INVITE', `sip:ivo@127.0.0.1:${b.port}`, caller);
    caller.send(call.text, b.port);
    callee.answer(await callee.request('INVITE'), 200, b.port, 'i1');
    await caller.response(200, 'INVITE');
    const cancel = (text: string) =>
      text.replace(/^INVITE /, 'CANCEL ').replace('CSeq: 1 INVITE', 'CSeq: 1 CANCEL');
    // Sent before the 200 came, as far as the caller knew: the call goes on.
    caller.send(cancel(call.text), b.port);
    await caller.response(200, 'CANCEL');
    const stray = request('INVITE', `sip:ivo@127.0.0.1:${b.port}`, caller);
    caller.send(cancel(stray.text), b.port);
    await caller.response(481, 'CANCEL');
    assert.equal(
      callee.received.filter((m) => m.kind === 'request' && m.method === 'CANCEL').length,
      0,
      'nothing reached the callee',
    );
  });

  it("passes a caller's CANCEL Reason on, and gives a 6xx as the Reason to the other branch", async () => {
    const caller = await phone();
    const d1 = await phone();
    const d2 = await phone();
    for (const d of [d1, d2]) {
      assert.equal(await rawRegister(b, 'hugo', `sip:hugo@${d.contact}`), 'SIP/2.0 200 OK');
    }
    // The caller gives up, saying why (RFC 3326): both phones are told.
    const call = request('INVITE', `sip:hugo@127.0.0.1:${a.port}`, caller);
    caller.send(call.text, a.port);
    const invites = await Promise.all([d1.request('INVITE'), d2.request('INVITE')]);
    d1.answer(invites[0], 180, b.port, 'h1');
    d2.answer(invites[1], 180, b.port, 'h2');
    await caller.response(180, 'INVITE');
    const why = 'Q.850;cause=16;text="Normal call clearing"';
    caller.send(
      call.text
        .replace(/^INVITE /, 'CANCEL ')
        .replace('CSeq: 1 INVITE', 'CSeq: 1 CANCEL')
        .replace('Content-Length: 0', `Reason: ${why}\r\nContent-Length: 0`),
      a.port,
    );
    await caller.response(200, 'CANCEL');
    for (const [i, d] of [d1, d2].entries()) {
      const cancel = await d.request('CANCEL');
      assert.equal(cancel.headers.get('Reason'), why);
      d.answer(cancel, 200, b.port);
      d.answer(invites[i]!, 487, b.port, `h${i + 1}`);
    }
    await caller.response(487, 'INVITE');
    // One phone declines everywhere (603): the other stops ringing, told so.
    caller.send(request('INVITE', `sip:hugo@127.0.0.1:${a.port}`, caller).text, a.port);
    const [j1, j2] = await Promise.all([d1.request('INVITE'), d2.request('INVITE')]);
    d2.answer(j2, 180, b.port, 'h2');
    d1.answer(j1, 603, b.port, 'h1');
    const cancel = await d2.request('CANCEL');
    assert.equal(cancel.headers.get('Reason'), 'SIP;cause=603;text="Decline"');
    d2.answer(cancel, 200, b.port);
    d2.answer(j2, 487, b.port, 'h2');
    await caller.response(603, 'INVITE');
  });

  it('gives up a phone that went away without unregistering: the other phone declining ends the call', async () => {
    // T1 100 ms at this node: the silent phone is given up once the other declined (2 x T1
    // after the call, 16 x T1 at most); its Timer B (64 x T1, 6.4 s) would be the wait
    // otherwise, past the caller's 5 s below.
    const c = await bed.startPeer('c', { timers: { T1: 100 } });
    const caller = await phone();
    const asleep = await phone();
    const awake = await phone();
    for (const d of [asleep, awake]) {
      assert.equal(await rawRegister(c, 'ivan', `sip:ivan@${d.contact}`), 'SIP/2.0 200 OK');
    }
    caller.send(request('INVITE', `sip:ivan@127.0.0.1:${a.port}`, caller).text, a.port);
    const [silent, inv] = await Promise.all([asleep.request('INVITE'), awake.request('INVITE')]);
    awake.answer(inv, 486, c.port, 'i2');
    await awake.request('ACK', 'ACK for 486');
    await caller.response(486, 'INVITE', 5000);
    // It rings after all: it is cancelled (RFC 3261 §9.1), and the caller hears nothing of it.
    asleep.answer(silent, 180, c.port, 'i1');
    const cancel = await asleep.request('CANCEL');
    asleep.answer(cancel, 200, c.port, 'i1');
    asleep.answer(silent, 487, c.port, 'i1');
    await asleep.request('ACK', 'ACK for 487');
  });

  it("passes the other phone's refusal on within 2 x T1 of the call, not 16 x T1", async () => {
    // T1 250 ms: a silent phone is given up after 4 s (16 x T1), or 0.5 s once every phone that
    // answered has refused.
    const c = await bed.startPeer('c3', { timers: { T1: 250 } });
    const caller = await phone();
    const gone = await phone();
    const busy = await phone();
    for (const d of [gone, busy]) {
      assert.equal(await rawRegister(c, 'otto', `sip:otto@${d.contact}`), 'SIP/2.0 200 OK');
    }
    caller.send(request('INVITE', `sip:otto@127.0.0.1:${c.port}`, caller).text, c.port);
    const inv = await busy.request('INVITE');
    busy.answer(inv, 486, c.port, 'o2');
    await caller.response(486, 'INVITE', 2500);
  });

  it('ACKs and ends with BYE a 2xx from a phone given up after the caller was answered', async () => {
    const c = await bed.startPeer('c2', { timers: { T1: 100 } });
    const caller = await phone();
    const asleep = await phone();
    const awake = await phone();
    for (const d of [asleep, awake]) {
      assert.equal(await rawRegister(c, 'iris', `sip:iris@${d.contact}`), 'SIP/2.0 200 OK');
    }
    caller.send(request('INVITE', `sip:iris@127.0.0.1:${a.port}`, caller).text, a.port);
    const [silent, inv] = await Promise.all([asleep.request('INVITE'), awake.request('INVITE')]);
    awake.answer(inv, 486, c.port, 'r2');
    await awake.request('ACK', 'ACK for 486');
    await caller.response(486, 'INVITE', 5000);
    // It answers after all: the caller has its 486, so the callee's node ACKs the 2xx and ends
    // that call, instead of the phone sitting in it until it gives up on its ACK.
    answerWithContact(asleep, silent, 200, 'r1', `sip:iris@${asleep.contact}`, c.port);
    const ack = await asleep.request('ACK', 'ACK for the 2xx');
    const bye = await asleep.request('BYE');
    for (const m of [ack, bye]) {
      assert.equal(m.callId, silent.callId);
      assert.equal(m.uri, `sip:iris@${asleep.contact}`);
      assert.equal(m.toTag, 'r1');
      assert.equal(m.headers.has('route'), false, 'no Route: the phone is the next hop');
    }
    assert.equal(ack.cseq.seq, silent.cseq.seq);
    assert.equal(bye.cseq.seq, silent.cseq.seq + 1);
    asleep.answer(bye, 200, c.port, 'r1');
    // A retransmission of the 2xx gets its ACK again, and no second BYE.
    answerWithContact(asleep, silent, 200, 'r1', `sip:iris@${asleep.contact}`, c.port);
    await asleep.request('ACK', 'ACK for the retransmitted 2xx');
    const secondBye = (m: SipMessage) => m.kind === 'request' && m.method === 'BYE';
    await assert.rejects(asleep.next(secondBye, 'a second BYE', 300));
    const answered = caller.received.filter((m) => m.kind === 'response' && m.status === 200);
    assert.equal(answered.length, 0, 'the caller never saw the 2xx');
  });

  it('reaches a UDP phone behind NAT where its REGISTER came from, in the call and after it', async () => {
    // The phone thinks it is 10.0.0.5:5060 (Via and Contact); its NAT sends from here.
    const natted = await phone();
    const caller = await phone();
    const contact = 'sip:nina@10.0.0.5:5060';
    await natted.register(b, 'nina', '10.0.0.5:5060'); // behind NAT: it thinks it is there
    const call = request('INVITE', `sip:nina@127.0.0.1:${a.port}`, caller);
    caller.send(call.text, a.port);
    const inv = await natted.request('INVITE');
    assert.equal(inv.uri, contact, 'the Request-URI is its Contact; the datagram came here');
    answerWithContact(natted, inv, 200, 'n2', contact, b.port);
    const ok = await caller.response(200, 'INVITE');
    // The caller's in-dialog requests: to the dialog's Contact, along the Record-Routes.
    const routes = ok.headers.getAll('record-route').reverse().join(', ');
    const from = /^From: (.*)$/m.exec(call.text)?.[1] ?? '';
    const inDialog = (method: string, cseq: number) =>
      inDialogRequest(method, contact, caller, {
        from,
        to: `<sip:nina@127.0.0.1:${a.port}>;tag=n2`,
        callId: call.callId,
        cseq,
        routes,
      });
    caller.send(inDialog('ACK', 1), a.port);
    await natted.request('ACK');
    caller.send(inDialog('BYE', 2), a.port);
    const bye = await natted.request('BYE');
    natted.answer(bye, 200, b.port, 'n2');
    await caller.response(200, 'BYE');
  });

  it('opens a new connection to a TCP phone whose registration connection closed (§18.1.1)', async () => {
    const tcp = await TcpPhone.open();
    assert.equal(await tcp.register(b, 'tara'), 'SIP/2.0 200 OK');
    const caller = await phone();
    caller.send(request('INVITE', `sip:tara@127.0.0.1:${a.port}`, caller).text, a.port);
    const { request: inv, socket } = await tcp.request();
    assert.equal(inv.method, 'INVITE');
    assert.equal(inv.uri, tcp.contact('tara'));
    socket.write(serialize(createResponse(inv, 486, { toTag: 't2' })));
    await caller.response(486, 'INVITE');

    // Gone for good: nothing listens there any more.
    tcp.close();
    // Once the node has seen that connection close (else it writes on the dying one).
    await new Promise((r) => setTimeout(r, 300));
    caller.send(request('INVITE', `sip:tara@127.0.0.1:${a.port}`, caller).text, a.port);
    const gone = (await caller.response(480, 'INVITE')) as SipResponse;
    assert.match(gone.reason, /takes no connection/);
  });

  for (const again of [false, true]) {
    it(`reaches a TCP phone whose dialog Contact names its end of a connection now closed (baresip, its node restarted), ${again ? 'over the connection it registered on since' : 'at its registered Contact'}`, async (t) => {
      // erin registers over a connection of its own, which it keeps (as baresip does), with a
      // Contact at the port it listens on; the INVITE comes over that connection, and its
      // answer names that connection's own port in the dialog Contact.
      const listening = await TcpPhone.open();
      t.after(() => listening.close());
      const user = again ? 'erin2' : 'erin';
      const register = async () => {
        const c = await keptConnection(t, b.port);
        c.socket.write(
          registerText({
            node: `127.0.0.1:${b.port}`,
            user,
            contact: listening.contact(user),
            via: `TCP 127.0.0.1:${listening.port}`,
          }),
        );
        await c.next((m) => m.kind === 'response' && m.status === 200);
        return c;
      };
      const reg = await register();
      const caller = await phone();
      caller.send(request('INVITE', `sip:${user}@127.0.0.1:${a.port}`, caller).text, a.port);
      const inv = (await reg.next(
        (m) => m.kind === 'request' && m.method === 'INVITE',
      )) as SipRequest;
      const dialogContact = `sip:${user}@127.0.0.1:${reg.socket.localPort};transport=tcp`;
      const d = await answerOverTcp(reg.socket, inv, dialogContact, caller);
      caller.send(inDialogRequest('ACK', dialogContact, caller, { ...d, cseq: 1 }), a.port);
      await reg.next((m) => m.kind === 'request' && m.method === 'ACK');
      // The connection goes (erin's node restarted, say); erin still listens at its Contact,
      // and may have registered again over a new connection of its own. Once the node has
      // seen it close (else it writes on the dying one).
      const open = () => b.sip.transports.stats.connectionsOpen.tcp;
      const before = open();
      reg.socket.destroy();
      for (let i = 0; open() >= before && i < 100; i++) await new Promise((r) => setTimeout(r, 50));
      const now = again ? await register() : undefined;
      caller.send(inDialogRequest('BYE', dialogContact, caller, { ...d, cseq: 2 }), a.port);
      const bye = now
        ? ((await now.next((m) => m.kind === 'request' && m.method === 'BYE')) as SipRequest)
        : (await listening.request()).request;
      assert.equal(bye.uri, dialogContact, 'the Request-URI is left as the caller sent it');
      const answer = serialize(createResponse(bye, 200));
      if (now) now.socket.write(answer);
      else listening.inbound.at(-1)?.write(answer);
      await caller.response(200, 'BYE');
      assert.equal(listening.inbound.length, again ? 0 : 1, 'connections the node opened');
    });
  }

  it('gives each of two phones of one node a route over its own transport (double Record-Route, RFC 5658)', async (t) => {
    // A UDP phone calls a TCP phone at the same node; neither could use the other's transport.
    const callee = await keptConnection(t, b.port);
    const listening = await TcpPhone.open();
    t.after(() => listening.close());
    callee.socket.write(
      registerText({
        node: `127.0.0.1:${b.port}`,
        user: 'tess',
        contact: listening.contact('tess'),
        via: `TCP 127.0.0.1:${listening.port}`,
      }),
    );
    await callee.next((m) => m.kind === 'response' && m.status === 200);
    const caller = await phone();
    caller.send(request('INVITE', `sip:tess@127.0.0.1:${b.port}`, caller).text, b.port);
    const inv = (await callee.next(
      (m) => m.kind === 'request' && m.method === 'INVITE',
    )) as SipRequest;
    const rr = inv.headers.getList('record-route');
    assert.equal(rr.length, 2, `two entries: ${rr.join(' | ')}`);
    assert.match(
      rr[0]!,
      new RegExp(`@127\\.0\\.0\\.1:${b.port};transport=tcp;lr`),
      'the top one faces the callee',
    );
    assert.match(
      rr[1]!,
      new RegExp(`@127\\.0\\.0\\.1:${b.port};transport=udp;lr`),
      'the other faces the caller',
    );

    const contact = `${listening.contact('tess')}`;
    const d = await answerOverTcp(callee.socket, inv, contact, caller);
    assert.match(d.routes.split(', ')[0]!, /transport=udp/, "the caller's first route is over UDP");
    // The callee hangs up along its route set, over TCP; then the caller's INFO, over UDP,
    // reaches the callee.
    const bye = [
      `BYE sip:caller@${caller.contact} SIP/2.0`,
      `Via: SIP/2.0/TCP 127.0.0.1:${listening.port};branch=z9hG4bK-tess-bye-${Date.now()}`,
      `From: ${d.to}`,
      `To: ${d.from}`,
      `Call-ID: ${d.callId}`,
      'CSeq: 2 BYE',
      `Route: ${rr.join(', ')}`,
      'Max-Forwards: 70',
      'Content-Length: 0',
      '',
      '',
    ].join('\r\n');
    caller.send(inDialogRequest('INFO', contact, caller, { ...d, cseq: 2 }), b.port);
    const info = (await callee.next(
      (m) => m.kind === 'request' && m.method === 'INFO',
    )) as SipRequest;
    assert.equal(info.headers.get('route'), undefined, 'both routes of the node taken off');
    callee.socket.write(serialize(createResponse(info, 200)));
    await caller.response(200, 'INFO');
    callee.socket.write(bye);
    const got = await caller.request('BYE');
    assert.equal(got.headers.get('route'), undefined);
    caller.answer(got, 200, b.port);
    const ok = (await callee.next((m) => m.kind === 'response' && m.status === 200)) as SipResponse;
    assert.equal(ok.cseq.method, 'BYE');
  });

  it('sends a request over 1300 bytes to a UDP phone over TCP, or over UDP when it takes no connection (§18.1.1)', async () => {
    // A browser's offer: about 2 kB of SDP.
    const sdp = `v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n${'a=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host\r\n'.repeat(36)}`;
    const bigInvite = (uri: string, from: UdpPhone) =>
      request('INVITE', uri, from).text.replace(
        'Content-Length: 0\r\n\r\n',
        `Content-Type: application/sdp\r\nContent-Length: ${Buffer.byteLength(sdp)}\r\n\r\n${sdp}`,
      );
    // lena's phone registered over UDP and listens for TCP at the same port, as baresip does.
    let lena: UdpPhone | undefined;
    let lenaTcp: TcpPhone | undefined;
    for (let i = 0; !lenaTcp && i < 10; i++) {
      lena = await phone();
      lenaTcp = await TcpPhone.open(lena.port).catch(() => undefined);
    }
    assert.ok(lena && lenaTcp, 'a UDP and a TCP port alike');
    const mona = await phone(); // UDP only
    for (const [user, p] of [
      ['lena', lena],
      ['mona', mona],
    ] as const) {
      await p.register(b, user);
    }
    const caller = await phone();
    try {
      caller.send(bigInvite(`sip:lena@127.0.0.1:${a.port}`, caller), a.port);
      const { request: overTcp, socket } = await lenaTcp.request();
      assert.equal(overTcp.method, 'INVITE');
      assert.match(overTcp.headers.get('via') ?? '', /^SIP\/2\.0\/TCP /, 'its top Via says TCP');
      assert.equal(overTcp.body.toString(), sdp, 'the offer intact');
      // Answered with a dialog Contact for TCP (as baresip does): the caller's ACK and BYE
      // reach it over TCP too.
      const dialogContact = `sip:lena@${lena.contact};transport=tcp`;
      const d = await answerOverTcp(socket, overTcp, dialogContact, caller);
      caller.send(inDialogRequest('ACK', dialogContact, caller, { ...d, cseq: 1 }), a.port);
      assert.equal((await lenaTcp.request()).request.method, 'ACK');
      caller.send(inDialogRequest('BYE', dialogContact, caller, { ...d, cseq: 2 }), a.port);
      const bye = await lenaTcp.request();
      assert.equal(bye.request.method, 'BYE');
      bye.socket.write(serialize(createResponse(bye.request, 200)));
      await caller.response(200, 'BYE');
      assert.equal(lena.received.filter((m) => m.kind === 'request').length, 0, 'nothing over UDP');

      // A small request to the same phone goes over UDP.
      caller.send(request('INVITE', `sip:lena@127.0.0.1:${a.port}`, caller).text, a.port);
      const small = await lena.request('INVITE');
      lena.answer(small, 486, b.port);
      await caller.response(486, 'INVITE');

      // mona's phone refuses the connection: the request goes over UDP, its Via saying so.
      caller.send(bigInvite(`sip:mona@127.0.0.1:${a.port}`, caller), a.port);
      const overUdp = await mona.request('INVITE');
      assert.match(overUdp.headers.get('via') ?? '', /^SIP\/2\.0\/UDP /);
      assert.equal(overUdp.body.toString(), sdp);
      mona.answer(overUdp, 486, b.port);
      await caller.response(486, 'INVITE');
    } finally {
      lenaTcp.close();
    }
  });

  it('answers "no device registered", not "no device reachable", to a call to a cached location of a user who has since unregistered', async () => {
    const cat = await phone();
    const caller = await phone();
    const reg = (expires: number) =>
      registerText({
        node: `127.0.0.1:${b.port}`,
        user: 'cat',
        contact: `sip:cat@${cat.contact}`,
        via: `UDP ${cat.contact}`,
        expires,
      });
    cat.send(reg(3600), b.port);
    await cat.response(200, 'REGISTER');
    // A first call fills node a's location cache (node b).
    caller.send(request('INVITE', `sip:cat@127.0.0.1:${a.port}`, caller).text, a.port);
    cat.answer(await cat.request('INVITE'), 486, b.port);
    await caller.response(486, 'INVITE');
    // cat signs off; node a still has node b cached, and node b has no device for cat.
    cat.send(reg(0), b.port);
    await cat.response(200, 'REGISTER');
    caller.send(request('INVITE', `sip:cat@127.0.0.1:${a.port}`, caller).text, a.port);
    const answer = (await caller.next(
      (m) => m.kind === 'response' && m.status >= 400,
      'a final answer',
    )) as SipResponse;
    // The location was looked up again: cat exists (its name is claimed), and is not logged in.
    assert.equal(answer.status, 480, `${answer.status} ${answer.reason}`);
    assert.match(answer.reason, /cat@peerbx\.local has no device registered/);
  });

  it('reaches a NATed caller that did not register, and a callee whose answer names a private Contact', async () => {
    // The caller thinks it is 10.0.0.7:5060; it never registered.
    const caller = await phone();
    const callee = await phone();
    assert.equal(await rawRegister(b, 'dora', `sip:dora@${callee.contact}`), 'SIP/2.0 200 OK');
    const call = request('INVITE', `sip:dora@127.0.0.1:${a.port}`, caller);
    caller.send(
      call.text
        .replace(/^Via: SIP\/2\.0\/UDP [^;]+/m, 'Via: SIP/2.0/UDP 10.0.0.7:5060')
        .replace(/^Contact: <[^>]+>/m, 'Contact: <sip:carl@10.0.0.7:5060>'),
      a.port,
    );
    const inv = await callee.request('INVITE');
    // The callee registered its real address, but answers with a private Contact.
    const calleeContact = 'sip:dora@10.0.0.8:5060';
    answerWithContact(callee, inv, 200, 'd2', calleeContact, b.port);
    const ok = await caller.response(200, 'INVITE');
    const from = /^From: (.*)$/m.exec(call.text)?.[1] ?? '';
    const to = `<sip:dora@127.0.0.1:${a.port}>;tag=d2`;
    // The caller's ACK and BYE reach the callee at the address it answered from.
    const toCallee = (method: string, cseq: number) =>
      inDialogRequest(method, calleeContact, caller, {
        from,
        to,
        callId: call.callId,
        cseq,
        routes: ok.headers.getAll('record-route').reverse().join(', '),
      });
    caller.send(toCallee('ACK', 1), a.port);
    await callee.request('ACK');
    // The callee's BYE reaches the caller where its INVITE came from.
    callee.send(
      inDialogRequest('BYE', 'sip:carl@10.0.0.7:5060', callee, {
        from: to,
        to: from,
        callId: call.callId,
        cseq: 1,
        routes: inv.headers.getAll('record-route').join(', '),
      }),
      b.port,
    );
    const bye = await caller.request('BYE');
    caller.answer(bye, 200, a.port, 'caller');
    await callee.response(200, 'BYE');
  });

  it('does not guess between phones behind different NATs with the same private Contact', async () => {
    const home = await phone();
    const office = await phone();
    const caller = await phone();
    await home.register(b, 'pia', '192.168.1.100:5060'); // both behind NAT, at one private address
    await office.register(b, 'pio', '192.168.1.100:5060');
    // In a dialog, a request to that address with either's name reaches that phone alone;
    // with no name, either could be meant: it reaches neither.
    const inDialog = (uri: string) =>
      request('MESSAGE', uri, caller).text.replace(/^(To: <[^>]*>)/m, '$1;tag=far');
    caller.send(inDialog('sip:pio@192.168.1.100:5060'), b.port);
    const got = await office.request('MESSAGE');
    office.answer(got, 200, b.port, 'far');
    await caller.response(200, 'MESSAGE');
    caller.send(inDialog('sip:192.168.1.100:5060'), b.port);
    await caller.response(403, 'MESSAGE');
    assert.deepEqual(
      [...home.received, ...office.received].filter((m) => m.kind === 'request'),
      [],
      'neither phone got it',
    );
  });

  it('passes a 2xx retransmission through both nodes after the call was set up', async () => {
    const caller = await phone();
    const callee = await phone();
    assert.equal(await rawRegister(b, 'gina', `sip:gina@${callee.contact}`), 'SIP/2.0 200 OK');
    const call = request('INVITE', `sip:gina@127.0.0.1:${a.port}`, caller);
    caller.send(call.text, a.port);
    const inv = await callee.request('INVITE');
    callee.answer(inv, 200, b.port, 'g1');
    const first = await caller.response(200, 'INVITE');
    // The callee did not see an ACK yet: it sends the 200 again (RFC 3261 §13.3.1.4).
    callee.answer(inv, 200, b.port, 'g1');
    const again = await caller.response(200, 'INVITE');
    assert.equal(again.callId, call.callId);
    assert.deepEqual(again.via, first.via, "the caller's own Via, restored at each node");
    assert.equal(again.via.length, 1);
  });

  it("delivers a MESSAGE to the callee's devices at other nodes too, not only to the one here", async () => {
    const here = await phone();
    const there = await phone();
    const caller = await phone();
    assert.equal(await rawRegister(b, 'nina', `sip:nina@${there.contact}`), 'SIP/2.0 200 OK');
    // Her key at node b, copied to node a as README says (peerbx user-key), lets her
    // register there too.
    shareKey(bed.root, 'nina', 'b', 'a');
    assert.equal(await rawRegister(a, 'nina', `sip:nina@${here.contact}`), 'SIP/2.0 200 OK');
    // Node a has not looked her up (as after a restart, or once its cache ran out).
    a.sip.locator.invalidate('nina@peerbx.local');
    assert.equal(a.sip.locator.isCached('nina@peerbx.local'), false);
    caller.send(request('MESSAGE', 'sip:nina@peerbx.local', caller).text, a.port);
    const atA = await here.request('MESSAGE');
    here.answer(atA, 200, a.port, 'here');
    const atB = await there.request('MESSAGE');
    assert.equal(atB.callId, atA.callId);
    there.answer(atB, 200, b.port, 'there');
    await caller.response(200, 'MESSAGE');
  });

  it('forks a MESSAGE no further once a device declined it with a 6xx (§16.7 step 10)', async () => {
    const c = await bed.startPeer('c4');
    const here = await phone();
    const there = await phone();
    const caller = await phone();
    assert.equal(await rawRegister(c, 'nora', `sip:nora@${there.contact}`), 'SIP/2.0 200 OK');
    shareKey(bed.root, 'nora', 'c4', 'a');
    assert.equal(await rawRegister(a, 'nora', `sip:nora@${here.contact}`), 'SIP/2.0 200 OK');
    // Node a has no link to c yet: its branch waits for the link while the phone here answers.
    assert.equal(a.overlay.links.linkTo(c.overlay.nodeId), undefined);
    caller.send(request('MESSAGE', 'sip:nora@peerbx.local', caller).text, a.port);
    const atA = await here.request('MESSAGE');
    here.answer(atA, 603, a.port, 'here');
    await caller.response(603, 'MESSAGE');
    const atC = (m: SipMessage) => m.kind === 'request' && m.method === 'MESSAGE';
    await assert.rejects(there.next(atC, 'the declined MESSAGE', 1000));
  });

  it('sends no 408 for a MESSAGE nobody answered (RFC 4320 §4.2), nor forwards it twice', async () => {
    // T1 = 25 ms: Timer F (64 x T1) ends the branch to the silent phone after 1.6 s, and the
    // MESSAGE's retransmissions are absorbed for Timer J (1.6 s) more.
    const n = await bed.startPeer('quick-timers', { timers: { T1: 25 } });
    const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    const caller = await phone();
    const mute = await phone();
    assert.equal(await rawRegister(n, 'mute', `sip:mute@${mute.contact}`), 'SIP/2.0 200 OK');
    const states = () => ({ ...n.sip.transactions.stats.states['non-invite-server'] });
    await sleep(1700); // the REGISTER's Timer J
    const before = states();
    const message = request('MESSAGE', 'sip:mute@peerbx.local', caller).text;
    caller.send(message, n.port);
    const first = await mute.request('MESSAGE');
    await sleep(2100);
    // A caller with a longer T1 still retransmits: the node does not forward it again (the
    // node's own retransmissions of the first forward carry its branch).
    caller.send(message, n.port);
    const again = (m: SipMessage) =>
      m.kind === 'request' && m.method === 'MESSAGE' && m.topVia?.branch !== first.topVia?.branch;
    await assert.rejects(mute.next(again, 'the MESSAGE again', 400));
    await sleep(1000);
    assert.deepEqual(
      caller.received.filter((m) => m.kind === 'response').map((m) => (m as SipResponse).status),
      [],
      'no final answer, no 408',
    );
    const after = states();
    assert.equal((after.Terminated ?? 0) - (before.Terminated ?? 0), 1, 'the MESSAGE ended');
    assert.equal((after.Completed ?? 0) - (before.Completed ?? 0), 0, 'without a response');
  });

  it('answers 408 when Timer C fires before any final answer, cancelling the branch', async () => {
    const caller = await phone();
    const d = await phone();
    assert.equal(await rawRegister(b, 'gina', `sip:gina@${d.contact}`), 'SIP/2.0 200 OK');
    caller.send(request('INVITE', 'sip:gina@peerbx.local', caller).text, b.port);
    const inv = await d.request('INVITE');
    d.answer(inv, 180, b.port, 'g');
    await caller.response(180, 'INVITE');
    const cancel = await d.request('CANCEL');
    assert.equal(cancel.headers.get('Reason'), undefined, 'no answer in time is no reason to give');
    d.answer(cancel, 200, b.port, 'g');
    d.answer(inv, 487, b.port, 'g');
    await caller.response(408, 'INVITE', 5000);
  });

  it('gives up a ringing phone that never ends its cancelled INVITE: a 487 after 64 x T1 (§9.1)', async () => {
    // T1 50 ms at the callee's node: 64 x T1 = 3.2 s.
    const q = await bed.startPeer('q1', { timers: { T1: 50 } });
    const caller = await phone();
    const d = await phone();
    assert.equal(await rawRegister(q, 'nell', `sip:nell@${d.contact}`), 'SIP/2.0 200 OK');
    const call = request('INVITE', `sip:nell@127.0.0.1:${a.port}`, caller);
    caller.send(call.text, a.port);
    const inv = await d.request('INVITE');
    d.answer(inv, 180, q.port, 'n');
    await caller.response(180, 'INVITE');
    caller.send(
      call.text.replace(/^INVITE /, 'CANCEL ').replace('CSeq: 1 INVITE', 'CSeq: 1 CANCEL'),
      a.port,
    );
    await caller.response(200, 'CANCEL');
    d.answer(await d.request('CANCEL'), 200, q.port, 'n');
    // The phone dies here, its 487 never sent.
    await caller.response(487, 'INVITE', 6000);
    assert.equal(q.sip.transactions.invitesAwaitingFinal(), 0, 'no INVITE left waiting at q');
    assert.equal(a.sip.transactions.invitesAwaitingFinal(), 0, "nor at the caller's node");
  });

  it('ends the INVITE of a phone silent after the CANCEL of Timer C, with a 408', async () => {
    const q = await bed.startPeer('q2', { timerCMs: 1000, timers: { T1: 50 } });
    const caller = await phone();
    const d = await phone();
    assert.equal(await rawRegister(q, 'olga', `sip:olga@${d.contact}`), 'SIP/2.0 200 OK');
    caller.send(request('INVITE', 'sip:olga@peerbx.local', caller).text, q.port);
    d.answer(await d.request('INVITE'), 180, q.port, 'o');
    await caller.response(180, 'INVITE');
    await d.request('CANCEL'); // Timer C's; the phone is gone and answers nothing
    await caller.response(408, 'INVITE', 6000);
    assert.equal(q.sip.transactions.invitesAwaitingFinal(), 0, 'no INVITE left waiting');
  });

  it('cancels a call nobody answered within the ring timeout, and answers it 480', async () => {
    const q = await bed.startPeer('q3', { ringTimeoutMs: 1000 });
    const caller = await phone();
    const d = await phone();
    const e = await phone();
    // Two devices: one rings, one only took the INVITE (100, no 180). Both are cancelled.
    assert.equal(await rawRegister(q, 'ruth', `sip:ruth@${d.contact}`), 'SIP/2.0 200 OK');
    assert.equal(await rawRegister(q, 'ruth', `sip:ruth@${e.contact}`), 'SIP/2.0 200 OK');
    const t0 = performance.now();
    caller.send(request('INVITE', 'sip:ruth@peerbx.local', caller).text, q.port);
    const ringing = await d.request('INVITE');
    d.answer(ringing, 180, q.port, 'r');
    const trying = await e.request('INVITE');
    e.answer(trying, 100, q.port);
    await caller.response(180, 'INVITE');
    for (const [p, inv, tag] of [
      [d, ringing, 'r'],
      [e, trying, 'e'],
    ] as const) {
      p.answer(await p.request('CANCEL'), 200, q.port, tag);
      p.answer(inv, 487, q.port, tag);
    }
    const final = await caller.response(480, 'INVITE', 6000);
    const waited = performance.now() - t0;
    assert.equal(
      final.kind === 'response' ? final.reason : '',
      'Temporarily Unavailable (no answer within 1 s)',
    );
    assert.ok(waited >= 900 && waited < 4000, `answered after ${Math.round(waited)} ms`);
    assert.equal(q.sip.transactions.invitesAwaitingFinal(), 0, 'no INVITE left waiting');
  });

  it('passes a 200 that crossed the CANCEL of Timer C to the caller (RFC 6026)', async () => {
    const caller = await phone();
    const d = await phone();
    assert.equal(await rawRegister(b, 'hugo', `sip:hugo@${d.contact}`), 'SIP/2.0 200 OK');
    caller.send(request('INVITE', 'sip:hugo@peerbx.local', caller).text, b.port);
    const inv = await d.request('INVITE');
    d.answer(inv, 180, b.port, 'h');
    await caller.response(180, 'INVITE');
    const cancel = await d.request('CANCEL');
    // Answered just before the CANCEL came: too late to cancel, the call is on.
    d.answer(inv, 200, b.port, 'h');
    d.answer(cancel, 481, b.port, 'h');
    const ok = await caller.response(200, 'INVITE', 5000);
    assert.match(ok.header('To') ?? '', /tag=h/);
  });

  it('answers 503 with Retry-After when the overlay cannot be asked', async () => {
    // An overlay whose fetch fails as a partitioned node's does.
    const unreachable = () =>
      Promise.reject(new OverlayError('ERR_UNREACHABLE', 'no peer answered'));
    const overlay: SipNodeOverlay = {
      nodeId: a.overlay.nodeId,
      config: { domain: 'peerbx.local' },
      links: { handle: () => undefined, unhandle: () => undefined },
      publish: unreachable,
      fetch: unreachable,
      connect: unreachable,
    };
    const node = await SipNode.start({ overlay, sip: { host: '127.0.0.1', port: 0 }, ws: false });
    try {
      const port = node.addresses.udp.port;
      const caller = await phone();
      caller.send(request('INVITE', 'sip:somebody@peerbx.local', caller).text, port);
      const res = await caller.response(503, 'INVITE');
      assert.equal(res.header('Retry-After'), '30');
      // A REGISTER that cannot be published is 503 too, and leaves no binding behind.
      assert.equal(
        await rawRegister({ host: '127.0.0.1', port }, 'hal', 'sip:hal@127.0.0.1:9'),
        'SIP/2.0 503 Service Unavailable (overlay unreachable)',
      );
      assert.equal(node.bindings.lookup('sip:hal@peerbx.local', Date.now()).length, 0);
    } finally {
      await node.close();
    }
  });
});

describe('a node that stops or dies while a call rings', () => {
  const bed = new TestBed('peerbx-proxy-stop-');
  const phone = () => bed.phone();

  before(async () => {
    await bed.startPeer('founder');
  });

  after(() => bed.close());

  /** A caller at one new node calling `user`, registered at another, whose phone rings. */
  async function ringing(user: string) {
    const callerNode = await bed.startPeer(`${user}-caller-node`);
    const calleeNode = await bed.startPeer(`${user}-callee-node`);
    const caller = await phone();
    const callee = await phone();
    const at = `sip:${user}@${callee.contact}`;
    assert.equal(await rawRegister(calleeNode, user, at), 'SIP/2.0 200 OK');
    caller.send(request('INVITE', `sip:${user}@peerbx.local`, caller).text, callerNode.port);
    const invite = await callee.request('INVITE');
    callee.answer(invite, 180, calleeNode.port, user);
    await caller.response(180, 'INVITE');
    return { callerNode, calleeNode, caller, callee, invite };
  }

  it("answers the caller 503 and cancels the callee when the caller's node stops", async () => {
    const r = await ringing('jay');
    // As `peerbx start` stops on SIGTERM: the SIP side first, then it leaves the overlay.
    await r.callerNode.sip.close();
    await r.callerNode.overlay.leave();
    const refused = await r.caller.response(503, 'INVITE');
    assert.match((refused as SipResponse).reason, /shutting down/);
    const cancel = await r.callee.request('CANCEL');
    assert.equal(cancel.callId, r.invite.callId);
  });

  it("cancels its ringing phone and answers the caller 480 when the callee's node stops", async () => {
    const r = await ringing('kay');
    const closing = r.calleeNode.sip.close();
    const cancel = await r.callee.request('CANCEL');
    assert.equal(cancel.callId, r.invite.callId);
    // The phone's 487 still gets its ACK: the node waits for it before its sockets close.
    r.callee.answer(cancel, 200, r.calleeNode.port, 'kay');
    r.callee.answer(r.invite, 487, r.calleeNode.port, 'kay');
    await r.callee.request('ACK', 'ACK for 487');
    await closing;
    await r.calleeNode.overlay.leave();
    const refused = await r.caller.response(480, 'INVITE');
    assert.match((refused as SipResponse).reason, /shutting down/);
  });

  it("while stopping, answers a CANCEL 200, another node's INVITE 480 and its own phone's 503", async () => {
    const r = await ringing('max');
    // The ringing phone does not answer the CANCEL: the node waits for it, 0.5 s at most.
    const closing = r.calleeNode.sip.close();
    await r.callee.request('CANCEL');
    const own = await phone();
    const ownInvite = request('INVITE', 'sip:max@peerbx.local', own);
    own.send(ownInvite.text, r.calleeNode.port);
    const second = request('INVITE', 'sip:max@peerbx.local', r.caller);
    r.caller.send(second.text, r.callerNode.port);
    const refused = (await own.response(503, 'INVITE')) as SipResponse;
    assert.match(refused.reason, /node shutting down/);
    // The phone hangs up as the 503 crosses its CANCEL: the CANCEL finds its INVITE answered.
    const cancel = ownInvite.text
      .replace(/^INVITE /, 'CANCEL ')
      .replace(/CSeq: (\d+) INVITE/, 'CSeq: $1 CANCEL');
    own.send(cancel, r.calleeNode.port);
    await own.response(200, 'CANCEL');
    // (The first call's caller has its 480 already, from the shutdown.)
    const secondAnswer = (m: SipMessage) =>
      m.kind === 'response' && m.callId === second.callId && m.status >= 200;
    const away = (await r.caller.next(
      secondAnswer,
      'an answer to the second INVITE',
    )) as SipResponse;
    assert.equal(away.status, 480);
    assert.match(away.reason, /callee's node shutting down/);
    await closing;
    await r.calleeNode.overlay.leave();
  });

  it('ACKs and ends with BYE the 2xx that crossed the CANCEL of a stopping node', async () => {
    for (const stopping of ['callee', 'caller'] as const) {
      const user = `lia-${stopping}`;
      const r = await ringing(user);
      const node = stopping === 'callee' ? r.calleeNode : r.callerNode;
      const closing = node.sip.close();
      const cancel = await r.callee.request('CANCEL');
      // The phone was answered just as the CANCEL came: the caller has its 480 or 503 already.
      r.callee.answer(cancel, 200, r.calleeNode.port, user);
      answerWithContact(
        r.callee,
        r.invite,
        200,
        user,
        `sip:${user}@${r.callee.contact}`,
        r.calleeNode.port,
      );
      const ack = await r.callee.request('ACK', `ACK for the 2xx (${stopping}'s node stopping)`);
      const bye = await r.callee.request('BYE');
      for (const m of [ack, bye]) {
        assert.equal(m.callId, r.invite.callId);
        assert.equal(m.uri, `sip:${user}@${r.callee.contact}`);
        assert.equal(m.toTag, user);
      }
      assert.equal(bye.cseq.seq, r.invite.cseq.seq + 1);
      r.callee.answer(bye, 200, r.calleeNode.port, user);
      await closing;
      await node.overlay.leave();
      const refused = await r.caller.response(stopping === 'callee' ? 480 : 503, 'INVITE');
      assert.match((refused as SipResponse).reason, /shutting down/);
    }
  });

  it("cancels a ringing phone once the caller's node is gone (its channel closed)", async () => {
    const r = await ringing('ivy');
    // The caller's node dies as far as the overlay can tell: its links close, nothing is sent.
    await r.callerNode.overlay.close();
    const cancel = await r.callee.request('CANCEL');
    assert.equal(cancel.callId, r.invite.callId);
    r.callee.answer(cancel, 200, r.calleeNode.port, 'ivy');
    r.callee.answer(r.invite, 487, r.calleeNode.port, 'ivy');
    await r.callee.request('ACK', 'ACK for 487');
    await r.callerNode.close();
  });
});

describe('a node listening on every interface (0.0.0.0)', () => {
  const bed = new TestBed('peerbx-anyif-');
  let n: PeerNode;
  let port: number;
  // A non-loopback IPv4 address of this machine, to name the node by as a LAN phone would.
  const lan = Object.values(networkInterfaces())
    .flatMap((xs) => xs ?? [])
    .find((i) => i.family === 'IPv4' && !i.internal)?.address;

  before(async () => {
    n = await bed.startPeer('w', { sip: { host: '0.0.0.0', port: 0 }, auth: 'never' });
    port = n.sip.addresses.udp.port;
  });

  after(() => bed.close());

  it('Record-Routes and Vias with the address facing the phones, never 0.0.0.0', async () => {
    const caller = await bed.phone();
    const callee = await bed.phone();
    const at = { host: '127.0.0.1', port };
    assert.equal(await rawRegister(at, 'wanda', `sip:wanda@${callee.contact}`), 'SIP/2.0 200 OK');
    const route = [`Route: <sip:127.0.0.1:${port};lr>`];
    caller.send(request('INVITE', 'sip:wanda@peerbx.local', caller, route).text, port);
    const inv = await callee.request('INVITE');
    assert.equal(inv.routes.length, 0, 'the Route naming the node was taken off');
    assert.equal(inv.recordRoutes.length, 1);
    const rr = inv.recordRoutes[0]?.uri;
    assert.ok(rr && 'host' in rr);
    assert.equal(`${rr.host}:${rr.port}`, `127.0.0.1:${port}`);
    assert.equal(`${inv.via[0]?.host}:${inv.via[0]?.port}`, `127.0.0.1:${port}`);
    callee.answer(inv, 486, port);
    await caller.response(486, 'INVITE');
  });

  it('takes off every Route naming it, on one line or several, at once', async () => {
    const caller = await bed.phone();
    const callee = await bed.phone();
    const at = { host: '127.0.0.1', port };
    assert.equal(await rawRegister(at, 'zola', `sip:zola@${callee.contact}`), 'SIP/2.0 200 OK');
    const me = `<sip:127.0.0.1:${port};lr>`;
    const route = [`Route: ${me}, ${me},${me}`, `Route: <sip:[::1]:${port};lr>`, `Route: ${me}`];
    caller.send(request('MESSAGE', 'sip:zola@peerbx.local', caller, route).text, port);
    const msg = await callee.request('MESSAGE');
    assert.equal(msg.routes.length, 0, 'the 5 Routes naming the node were taken off');
    callee.answer(msg, 200, port);
    await caller.response(200, 'MESSAGE');
  });

  it('gives a TCP phone the address its connection reached the node at', async (t) => {
    // yara reached the node at 127.0.0.2, not at the loopback address that faces it.
    const { socket, next } = await keptConnection(t, port, '127.0.0.2');
    const contact = `sip:yara@127.0.0.1:${socket.localPort};transport=tcp`;
    socket.write(
      registerText({
        node: `127.0.0.2:${port}`,
        user: 'yara',
        contact,
        via: `TCP 127.0.0.1:${socket.localPort}`,
      }),
    );
    await next((m) => m.kind === 'response' && m.status === 200);
    const caller = await bed.phone();
    const route = [`Route: <sip:127.0.0.1:${port};lr>`];
    caller.send(request('MESSAGE', 'sip:yara@peerbx.local', caller, route).text, port);
    const msg = (await next((m) => m.kind === 'request' && m.method === 'MESSAGE')) as SipRequest;
    assert.equal(
      `${msg.via[0]?.transport} ${msg.via[0]?.host}:${msg.via[0]?.port}`,
      `TCP 127.0.0.2:${port}`,
    );
    socket.write(serialize(createResponse(msg, 200, { toTag: 'y1' })));
    await caller.response(200, 'MESSAGE');
  });

  it('takes a Route and a To naming it by a LAN address of the machine', {
    skip: lan ? false : 'this machine has no non-loopback IPv4 interface',
  }, async () => {
    const caller = await bed.phone();
    const callee = await bed.phone();
    const at = { host: lan as string, port };
    assert.equal(await rawRegister(at, 'xena', `sip:xena@${callee.contact}`), 'SIP/2.0 200 OK');
    const route = [`Route: <sip:${lan}:${port};lr>`];
    caller.send(request('MESSAGE', 'sip:xena@peerbx.local', caller, route).text, port);
    const msg = await callee.request('MESSAGE');
    assert.equal(msg.routes.length, 0);
    callee.answer(msg, 200, port);
    await caller.response(200, 'MESSAGE');
  });
});
