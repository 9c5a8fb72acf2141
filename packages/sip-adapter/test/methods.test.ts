// The methods beyond INVITE/BYE/MESSAGE through the proxy across a two-node overlay, with
// scripted UDP phones: caller at node A, mona registered at node B. Out of dialog: SUBSCRIBE
// answered 202, then NOTIFY back from the notifier along the Record-Route set. In an INVITE
// dialog: a reliable 183 (RFC 3262: Supported/Require 100rel, RSeq) and its PRACK (RAck), then
// INFO, UPDATE and REFER (and the REFER's NOTIFY back). Each request must reach the far phone
// unchanged (every header but Via, Route, Record-Route and Max-Forwards, and the body), and each
// response must come back to the sender unchanged likewise.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createResponse } from '../src/message/response.js';
import {
  parseSipMessage,
  type SipMessage,
  type SipRequest,
  type SipResponse,
  serialize,
} from '../src/message/sip-message.js';
import { type PeerNode, rawRegister, startPeer, tempRoot } from './fixtures/sipp.js';
import { UdpPhone } from './fixtures/udp-phone.js';

/** Headers a proxy may add, remove or change; everything else must arrive as sent. */
const HOP_HEADERS = new Set(['via', 'route', 'record-route', 'max-forwards', 'content-length']);

let n = 0;
const branch = () => `z9hG4bK-m${++n}-${Math.random().toString(36).slice(2)}`;

function build(startLine: string, headers: string[], body = ''): string {
  return [startLine, ...headers, `Content-Length: ${Buffer.byteLength(body)}`, '', body].join(
    '\r\n',
  );
}

/** Every end-to-end header of `sent` is on `got` with the same values, and the body is equal. */
function assertUnchanged(sent: SipMessage, got: SipMessage, what: string): void {
  const keys = new Set([...sent.headers].map((f) => f.key));
  for (const key of keys) {
    if (HOP_HEADERS.has(key)) continue;
    assert.deepEqual(got.headers.getAll(key), sent.headers.getAll(key), `${what}: ${key}`);
  }
  for (const f of got.headers) {
    if (!HOP_HEADERS.has(f.key)) assert.ok(keys.has(f.key), `${what}: ${f.key} was added`);
  }
  assert.equal(got.body.toString('utf8'), sent.body.toString('utf8'), `${what}: body`);
}

/** A request through both nodes: Request-URI kept, Max-Forwards down by two, Routes consumed. */
function assertInDialogRequest(sent: SipRequest, got: SipRequest, what: string): void {
  assert.equal(got.method, sent.method);
  assert.equal(got.uri, sent.uri, `${what}: Request-URI`);
  assert.equal(got.maxForwards, (sent.maxForwards ?? 70) - 2, `${what}: Max-Forwards`);
  assert.equal(got.headers.count('route'), 0, `${what}: every Route consumed`);
  // RFC 6665 §4.3: a NOTIFY, which can create the subscriber's dialog, is Record-Routed by
  // both nodes as its SUBSCRIBE was (QA: it was not); no other request in a dialog is.
  const recordRoutes = got.method === 'NOTIFY' ? 2 : 0;
  assert.equal(got.headers.count('record-route'), recordRoutes, `${what}: Record-Routes`);
  assert.equal(got.via.length, sent.via.length + 2, `${what}: a Via per node`);
  assertUnchanged(sent, got, what);
}

interface Leg {
  phone: UdpPhone;
  /** Node port the phone sends to (its outbound proxy / first route). */
  node: number;
  uri: string;
  tag: string;
  cseq: number;
}

describe('other methods through two nodes', () => {
  const tmp = tempRoot('peerbx-methods-');
  let a: PeerNode;
  let b: PeerNode;
  const phones: UdpPhone[] = [];
  let caller: Leg;
  let mona: Leg;

  before(async () => {
    a = await startPeer(join(tmp.root, 'a'));
    b = await startPeer(join(tmp.root, 'b'), [a.overlay.udpAddress]);
    for (let i = 0; i < 2; i++) phones.push(await UdpPhone.open());
    caller = { phone: phones[0]!, node: a.port, uri: 'sip:cleo@peerbx.local', tag: 'c1', cseq: 0 };
    mona = { phone: phones[1]!, node: b.port, uri: 'sip:mona@peerbx.local', tag: 'm1', cseq: 0 };
    const reg = await rawRegister(b, 'mona', `sip:mona@${mona.phone.contact}`);
    assert.equal(reg, 'SIP/2.0 200 OK');
  });

  after(async () => {
    for (const p of phones) p.close();
    await b.close();
    await a.close();
    tmp.remove();
  });

  /** One dialog as one side sees it. */
  interface Dialog {
    callId: string;
    me: Leg;
    peer: Leg;
    remoteTarget: string;
    routes: string[];
  }

  const contactOf = (leg: Leg) => `<${leg.uri.replace('@peerbx.local', `@${leg.phone.contact}`)}>`;

  /** A request in `d` from its `me` side: sent, received by the peer, checked unchanged. */
  async function inDialog(
    d: Dialog,
    method: string,
    extra: string[],
    body = '',
    cseq = ++d.me.cseq,
  ): Promise<{ sent: SipRequest; got: SipRequest }> {
    const text = build(
      `${method} ${d.remoteTarget} SIP/2.0`,
      [
        `Via: SIP/2.0/UDP ${d.me.phone.contact};branch=${branch()};rport`,
        ...d.routes.map((r) => `Route: ${r}`),
        'Max-Forwards: 70',
        `From: <${d.me.uri}>;tag=${d.me.tag}`,
        `To: <${d.peer.uri}>;tag=${d.peer.tag}`,
        `Call-ID: ${d.callId}`,
        `CSeq: ${cseq} ${method}`,
        ...extra,
      ],
      body,
    );
    const sent = parseSipMessage(Buffer.from(text)) as SipRequest;
    d.me.phone.send(text, d.me.node);
    const got = await d.peer.phone.next(
      (m) => m.kind === 'request' && m.method === method && m.callId === d.callId,
      `${method} at the far phone`,
    );
    assertInDialogRequest(sent, got as SipRequest, method);
    return { sent, got: got as SipRequest };
  }

  /** The far phone answers `req`; the answer must reach `back` unchanged. */
  async function respond(
    from: Leg,
    back: Leg,
    req: SipRequest,
    status: number,
    extra: { name: string; value: string }[] = [],
    body?: string,
  ): Promise<SipResponse> {
    const res = createResponse(req, status, {
      toTag: from.tag,
      headers: extra,
      ...(body === undefined ? {} : { body }),
    });
    const bytes = serialize(res);
    from.phone.send(bytes, from.node);
    const got = (await back.phone.next(
      (m) =>
        m.kind === 'response' &&
        m.status === status &&
        m.cseq.method === req.cseq.method &&
        m.callId === req.callId,
      `${status} ${req.cseq.method} back at the sender`,
    )) as SipResponse;
    // Both nodes' Vias gone, the sender's left; everything else as the far phone sent it.
    const sent = parseSipMessage(bytes) as SipResponse;
    assert.equal(got.reason, sent.reason);
    assert.deepEqual(got.headers.getAll('via'), req.headers.getAll('via').slice(2), 'Via');
    assertUnchanged(sent, got, `${status} ${req.cseq.method}`);
    return got;
  }

  it('SUBSCRIBE out of dialog gets 202 from the notifier, whose NOTIFY comes back along the route set', async () => {
    const callId = `sub-${Date.now()}@test`;
    const text = build(`SUBSCRIBE ${mona.uri} SIP/2.0`, [
      `Via: SIP/2.0/UDP ${caller.phone.contact};branch=${branch()};rport`,
      'Max-Forwards: 70',
      `From: <${caller.uri}>;tag=${caller.tag}`,
      `To: <${mona.uri}>`,
      `Call-ID: ${callId}`,
      `CSeq: ${++caller.cseq} SUBSCRIBE`,
      `Contact: ${contactOf(caller)}`,
      'Event: presence',
      'Accept: application/pidf+xml',
      'Expires: 600',
      'X-PeerBX-Test: subscribe',
    ]);
    const sent = parseSipMessage(Buffer.from(text)) as SipRequest;
    caller.phone.send(text, a.port);
    const sub = await mona.phone.request('SUBSCRIBE');
    // Retargeted to mona's Contact, Record-Routed by both nodes, otherwise as sent.
    assert.equal(sub.uri, `sip:mona@${mona.phone.contact}`);
    assert.equal(sub.recordRoutes.length, 2);
    assert.equal(sub.maxForwards, 68);
    assertUnchanged(sent, sub, 'SUBSCRIBE');

    const rr = sub.headers.getList('record-route');
    const ok = await respond(mona, caller, sub, 202, [
      ...rr.map((value) => ({ name: 'Record-Route', value })),
      { name: 'Contact', value: contactOf(mona) },
      { name: 'Expires', value: '600' },
    ]);
    assert.match(ok.header('To') ?? '', /tag=m1/);

    // The notifier's NOTIFY: Request-URI the subscriber's Contact, Route the Record-Route set.
    const notifier: Dialog = {
      callId,
      me: mona,
      peer: caller,
      remoteTarget: `sip:cleo@${caller.phone.contact}`,
      routes: rr,
    };
    const pidf =
      '<?xml version="1.0"?>\r\n<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:mona@peerbx.local">' +
      '<tuple id="t1"><status><basic>open</basic></status></tuple></presence>\r\n';
    const { got } = await inDialog(
      notifier,
      'NOTIFY',
      [
        `Contact: ${contactOf(mona)}`,
        'Event: presence',
        'Subscription-State: active;expires=600',
        'Content-Type: application/pidf+xml',
      ],
      pidf,
    );
    await respond(caller, mona, got, 200);

    // The subscriber's dialog may as well come from this NOTIFY (one from a forked device whose
    // 202 a node absorbed): its Record-Route set takes a refresh back to the notifier.
    const subscriber: Dialog = {
      callId,
      me: caller,
      peer: mona,
      remoteTarget: `sip:mona@${mona.phone.contact}`,
      routes: got.headers.getList('record-route'),
    };
    const { got: refresh } = await inDialog(subscriber, 'SUBSCRIBE', [
      `Contact: ${contactOf(caller)}`,
      'Event: presence',
      'Expires: 600',
    ]);
    await respond(mona, caller, refresh, 200);
  });

  let dialog: Dialog;
  let invite: SipRequest;

  it('INVITE with 100rel: a reliable 183 (Require, RSeq) and the PRACK (RAck) pass end to end', async () => {
    const callId = `prack-${Date.now()}@test`;
    const offer =
      'v=0\r\no=cleo 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0\r\n';
    const text = build(
      `INVITE ${mona.uri} SIP/2.0`,
      [
        `Via: SIP/2.0/UDP ${caller.phone.contact};branch=${branch()};rport`,
        'Max-Forwards: 70',
        `From: <${caller.uri}>;tag=${caller.tag}`,
        `To: <${mona.uri}>`,
        `Call-ID: ${callId}`,
        `CSeq: ${++caller.cseq} INVITE`,
        `Contact: ${contactOf(caller)}`,
        'Supported: 100rel, timer',
        'Allow: INVITE, ACK, CANCEL, BYE, PRACK, UPDATE, INFO, REFER, NOTIFY',
        'Content-Type: application/sdp',
      ],
      offer,
    );
    const sent = parseSipMessage(Buffer.from(text)) as SipRequest;
    caller.phone.send(text, a.port);
    invite = await mona.phone.request('INVITE');
    assertUnchanged(sent, invite, 'INVITE');
    const rr = invite.headers.getList('record-route');
    assert.equal(rr.length, 2);

    const answer =
      'v=0\r\no=mona 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 7002 RTP/AVP 0\r\n';
    const early = await respond(
      mona,
      caller,
      invite,
      183,
      [
        ...rr.map((value) => ({ name: 'Record-Route', value })),
        { name: 'Contact', value: contactOf(mona) },
        { name: 'Require', value: '100rel' },
        { name: 'RSeq', value: '1' },
        { name: 'Content-Type', value: 'application/sdp' },
      ],
      answer,
    );
    assert.equal(early.header('RSeq'), '1');
    assert.equal(early.header('Require'), '100rel');

    // The UAC's route set is the Record-Route set reversed; the early dialog carries the PRACK.
    dialog = {
      callId,
      me: caller,
      peer: mona,
      remoteTarget: `sip:mona@${mona.phone.contact}`,
      routes: early.headers.getList('record-route').reverse(),
    };
    const { got: prack } = await inDialog(dialog, 'PRACK', [`RAck: 1 ${invite.cseq.seq} INVITE`]);
    assert.equal(prack.header('RAck'), `1 ${invite.cseq.seq} INVITE`);
    await respond(mona, caller, prack, 200);

    // The call is answered; the 2xx ACK goes end to end along the route set.
    await respond(mona, caller, invite, 200, [
      ...rr.map((value) => ({ name: 'Record-Route', value })),
      { name: 'Contact', value: contactOf(mona) },
    ]);
    await inDialog(dialog, 'ACK', [], '', invite.cseq.seq);
  });

  it('INFO, UPDATE and REFER in the dialog, and the NOTIFY for the REFER back', async () => {
    assert.ok(dialog, 'the INVITE dialog exists');
    const { got: info } = await inDialog(
      dialog,
      'INFO',
      ['Info-Package: dtmf', 'Content-Disposition: Info-Package', 'Content-Type: application/dtmf'],
      'Signal=5\r\nDuration=160\r\n',
    );
    await respond(mona, caller, info, 200, [{ name: 'X-PeerBX-Test', value: 'info' }]);

    const offer =
      'v=0\r\no=cleo 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 7004 RTP/AVP 8\r\n';
    const { got: update } = await inDialog(
      dialog,
      'UPDATE',
      [`Contact: ${contactOf(caller)}`, 'Content-Type: application/sdp'],
      offer,
    );
    const answer =
      'v=0\r\no=mona 2 3 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 7006 RTP/AVP 8\r\n';
    await respond(
      mona,
      caller,
      update,
      200,
      [
        { name: 'Contact', value: contactOf(mona) },
        { name: 'Content-Type', value: 'application/sdp' },
      ],
      answer,
    );

    const { got: refer } = await inDialog(dialog, 'REFER', [
      `Contact: ${contactOf(caller)}`,
      'Refer-To: <sip:zed@peerbx.local?Replaces=abc%40test%3Bto-tag%3D1%3Bfrom-tag%3D2>',
      `Referred-By: <${caller.uri}>`,
    ]);
    await respond(mona, caller, refer, 202, [{ name: 'Contact', value: contactOf(mona) }]);

    // mona reports the transfer's progress: NOTIFY (sipfrag) back along her route set.
    const back: Dialog = {
      callId: dialog.callId,
      me: mona,
      peer: caller,
      remoteTarget: `sip:cleo@${caller.phone.contact}`,
      routes: invite.headers.getList('record-route'),
    };
    const { got: notify } = await inDialog(
      back,
      'NOTIFY',
      [
        'Event: refer',
        'Subscription-State: terminated;reason=noresource',
        'Content-Type: message/sipfrag;version=2.0',
      ],
      'SIP/2.0 200 OK\r\n',
    );
    await respond(caller, mona, notify, 200);

    const { got: bye } = await inDialog(dialog, 'BYE', []);
    await respond(mona, caller, bye, 200);
  });
});
