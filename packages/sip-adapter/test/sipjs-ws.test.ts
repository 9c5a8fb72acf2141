// A sip.js (0.21) user agent in Node over WebSocket (RFC 7118, `ws` as the WebSocket global,
// "sip" subprotocol), as the browser phone would run: it registers as alice at node 1's WS
// listener, calls bob, a SIPp callee (uas-call.xml) registered at node 2, the session reaches
// Established, and sip.js hangs up with a BYE that SIPp answers. There is no WebRTC in Node, so a
// fixed-SDP SessionDescriptionHandler stands in. Skipped, with the reason, without sipp.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { KIND_SIP_REGISTRATION } from '@peerbx/overlay-core';
import {
  Inviter,
  Registerer,
  RegistererState,
  type SessionDescriptionHandler,
  SessionState,
  UserAgent,
} from 'sip.js';
import { WebSocket } from 'ws';
import { createResponse } from '../src/message/response.js';
import {
  parseSipMessage,
  type SipMessage,
  type SipRequest,
  type SipResponse,
  serialize,
} from '../src/message/sip-message.js';
import { decodeRegistrationValue } from '../src/overlay-bridge/registration-value.js';
import { rawRegister } from './fixtures/sipp.js';
import { sippSkipReason, TestBed } from './fixtures/test-bed.js';
import { testCertificate } from './fixtures/test-cert.js';
import { request, type UdpPhone } from './fixtures/udp-phone.js';

const missing = sippSkipReason('sip.js over WebSocket tests');

// uas-call.xml checks for this origin line in the offer.
const OFFER = [
  'v=0',
  'o=user1 53655765 2353687637 IN IP4 127.0.0.1',
  's=-',
  'c=IN IP4 127.0.0.1',
  't=0 0',
  'm=audio 6000 RTP/AVP 0',
  'a=rtpmap:0 PCMU/8000',
  '',
].join('\r\n');

/** No WebRTC in Node: offers a fixed SDP body and keeps the answer it is given. */
class FixedSdpHandler implements SessionDescriptionHandler {
  static answers: string[] = [];
  close(): void {}
  getDescription() {
    return Promise.resolve({ body: OFFER, contentType: 'application/sdp' });
  }
  hasDescription(contentType: string): boolean {
    return contentType === 'application/sdp';
  }
  setDescription(sdp: string): Promise<void> {
    FixedSdpHandler.answers.push(sdp);
    return Promise.resolve();
  }
  sendDtmf(): boolean {
    return false;
  }
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]);
}

function reach<S>(
  emitter: { addListener(l: (s: S) => void): void; removeListener(l: (s: S) => void): void },
  current: () => S,
  wanted: S,
  what: string,
): Promise<void> {
  if (current() === wanted) return Promise.resolve();
  return within(
    new Promise<void>((resolve) => {
      const l = (s: S) => {
        if (s !== wanted) return;
        emitter.removeListener(l);
        resolve();
      };
      emitter.addListener(l);
    }),
    10_000,
    what,
  );
}

describe('a sip.js user agent over WebSocket', { skip: missing }, () => {
  const bed = new TestBed('peerbx-sipjs-');
  const peers = bed.peers;
  let ua: UserAgent | undefined;

  before(async () => {
    const g = globalThis as { WebSocket?: unknown };
    g.WebSocket ??= WebSocket;
    await bed.startPeer('n1', { ws: { host: '127.0.0.1', port: 0 } });
    await bed.startPeer('n2');
    // A node that asks its phones for a password (as one listening beyond loopback does).
    await bed.startPeer('n3', {
      ws: { host: '127.0.0.1', port: 0 },
      auth: 'always',
      users: { carol: { password: 'carol-secret' } },
    });
  });

  after(async () => {
    await ua?.stop().catch(() => undefined);
    await bed.close();
  });

  it("tells a browser the address it is seen at: its Via's .invalid host gets received and rport", async () => {
    const ws = peers[0]!.sip.addresses.ws;
    assert.ok(ws, 'node 1 listens on WebSocket');
    const socket = new WebSocket(`ws://127.0.0.1:${ws.port}`, 'sip');
    await new Promise<void>((resolve, reject) => {
      socket.once('open', () => resolve());
      socket.once('error', reject);
    });
    const answer = new Promise<string>((resolve) =>
      socket.once('message', (data: Buffer) => resolve(data.toString())),
    );
    socket.send(
      [
        `OPTIONS sip:127.0.0.1:${ws.port};transport=ws SIP/2.0`,
        'Via: SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bK-ws-via;rport',
        'From: <sip:alice@peerbx.local>;tag=ws1',
        `To: <sip:127.0.0.1:${ws.port}>`,
        'Call-ID: ws-via@test',
        'CSeq: 1 OPTIONS',
        'Max-Forwards: 70',
        'Content-Length: 0',
        '',
        '',
      ].join('\r\n'),
    );
    const text = await within(answer, 5000, 'the 200 to OPTIONS over WS');
    socket.close();
    assert.match(text, /^SIP\/2\.0 200 /);
    assert.match(
      text,
      /\r\nVia: SIP\/2\.0\/WS df7jal23ls0d\.invalid;branch=z9hG4bK-ws-via;rport=\d+;received=127\.0\.0\.1\r\n/,
    );
  });

  it('registers alice at node 1 over WS, calls bob (SIPp at node 2), answered, then BYE', {
    timeout: 40_000,
  }, async () => {
    const [n1, n2] = [peers[0]!, peers[1]!];
    const ws = n1.sip.addresses.ws;
    assert.ok(ws, 'node 1 listens on WebSocket');

    const { sipp: uas, port } = await bed.sippCallee('uas-call.xml');
    assert.equal(await rawRegister(n2, 'bob', `sip:bob@127.0.0.1:${port}`), 'SIP/2.0 200 OK');

    ua = new UserAgent({
      uri: UserAgent.makeURI('sip:alice@peerbx.local'),
      transportOptions: { server: `ws://127.0.0.1:${ws.port}`, connectionTimeout: 5 },
      sessionDescriptionHandlerFactory: () => new FixedSdpHandler(),
      logLevel: 'error',
      logBuiltinEnabled: false,
    });
    await within(ua.start(), 10_000, 'sip.js transport to connect');

    // REGISTER over the WebSocket: 200, and the binding keeps the WS flow.
    const registerer = new Registerer(ua, { expires: 300 });
    const registered = reach(
      registerer.stateChange,
      () => registerer.state,
      RegistererState.Registered,
      'alice to be registered',
    );
    let registerStatus = 0;
    await registerer.register({
      requestDelegate: {
        onAccept: (r) => {
          registerStatus = r.message.statusCode ?? 0;
        },
        onReject: (r) => {
          registerStatus = r.message.statusCode ?? 0;
        },
      },
    });
    await registered;
    assert.equal(registerStatus, 200);
    const bindings = n1.sip.bindings.lookup('sip:alice@peerbx.local', Date.now());
    assert.equal(bindings.length, 1);
    assert.equal(bindings[0]?.flow?.transport, 'ws');

    // INVITE bob: ringing, then 200 with SIPp's SDP untouched; sip.js ACKs and is Established.
    const inviter = new Inviter(ua, UserAgent.makeURI('sip:bob@peerbx.local')!);
    const established = reach(
      inviter.stateChange,
      () => inviter.state,
      SessionState.Established,
      'the call to be established',
    );
    const progress: number[] = [];
    let recordRoutes = 0;
    await inviter.invite({
      requestDelegate: {
        onProgress: (r) => {
          progress.push(r.message.statusCode ?? 0);
        },
        onAccept: (r) => {
          recordRoutes = r.message.getHeaders('record-route').length;
        },
      },
    });
    await established;
    assert.ok(progress.includes(180), `saw 180 (got ${progress.join(',')})`);
    // Both nodes are on the route set (a Record-Route header may carry a list).
    assert.ok(recordRoutes >= 1);
    assert.match(FixedSdpHandler.answers.at(-1) ?? '', /o=user2 53655765/);

    // sip.js hangs up: the BYE runs through node 1 and node 2 to SIPp, which answers 200.
    const terminated = reach(
      inviter.stateChange,
      () => inviter.state,
      SessionState.Terminated,
      'the call to end',
    );
    // sip.js ends the session when it sends the BYE; the 200 arrives after SIPp has exited.
    let answered: (status: number) => void = () => undefined;
    const byeAnswer = within(
      new Promise<number>((resolve) => {
        answered = resolve;
      }),
      10_000,
      'the answer to the BYE',
    );
    await inviter.bye({
      requestDelegate: {
        onAccept: (r) => answered(r.message.statusCode ?? 0),
        onReject: (r) => answered(r.message.statusCode ?? 0),
      },
    });
    await terminated;
    const u = await uas.done;
    assert.equal(u.code, 0, `SIPp callee: ${u.output}`);
    assert.equal(await byeAnswer, 200);
    // The 2xx ACK and the BYE went through both nodes (Record-Route), not around them.
    for (const n of [n1, n2]) {
      assert.ok(n.sip.proxy.stats.acksForwarded >= 1, 'ACK forwarded');
      assert.ok(n.sip.proxy.stats.forwarded >= 2, 'INVITE and BYE forwarded');
    }

    await registerer.unregister();
  });
  it('registers and calls with digest auth (sip.js answers the MD5 challenge, the last), the BYE unchallenged', {
    timeout: 40_000,
  }, async () => {
    const [n2, n3] = [peers[1]!, peers[2]!];
    const ws = n3.sip.addresses.ws;
    assert.ok(ws);
    const { sipp: uas, port } = await bed.sippCallee('uas-call.xml');
    assert.equal(await rawRegister(n2, 'dave', `sip:dave@127.0.0.1:${port}`), 'SIP/2.0 200 OK');
    const carol = new UserAgent({
      uri: UserAgent.makeURI('sip:carol@peerbx.local'),
      authorizationUsername: 'carol',
      authorizationPassword: 'carol-secret',
      transportOptions: { server: `ws://127.0.0.1:${ws.port}`, connectionTimeout: 5 },
      sessionDescriptionHandlerFactory: () => new FixedSdpHandler(),
      logLevel: 'error',
      logBuiltinEnabled: false,
    });
    try {
      await within(carol.start(), 10_000, 'sip.js transport to connect');
      const registerer = new Registerer(carol, { expires: 300 });
      const registered = reach(
        registerer.stateChange,
        () => registerer.state,
        RegistererState.Registered,
        'carol to be registered',
      );
      await registerer.register();
      await registered;
      assert.equal(n3.sip.bindings.lookup('sip:carol@peerbx.local', Date.now()).length, 1);
      // The INVITE is challenged (407) and sent again with credentials; the call is set up.
      const inviter = new Inviter(carol, UserAgent.makeURI('sip:dave@peerbx.local')!);
      const established = reach(
        inviter.stateChange,
        () => inviter.state,
        SessionState.Established,
        'the call to be established',
      );
      await inviter.invite();
      await established;
      const challenged = n3.sip.auth?.failures.missing ?? 0;
      assert.ok(challenged >= 2, 'REGISTER and INVITE were challenged');
      // The BYE comes along the call's Record-Route: no new challenge, SIPp answers it.
      const terminated = reach(
        inviter.stateChange,
        () => inviter.state,
        SessionState.Terminated,
        'the call to end',
      );
      await inviter.bye();
      await terminated;
      const u = await uas.done;
      assert.equal(u.code, 0, `SIPp callee: ${u.output}`);
      assert.equal(n3.sip.auth?.failures.missing, challenged, 'the BYE was not challenged');
    } finally {
      await carol.stop().catch(() => undefined);
    }
  });
});

describe('a WebSocket phone whose connection closes (a browser tab closed)', () => {
  const bed = new TestBed('peerbx-ws-close-');
  const peers = bed.peers;

  before(async () => {
    await bed.startPeer('n1', { ws: { host: '127.0.0.1', port: 0 } });
    await bed.startPeer('n2');
  });
  after(() => bed.close());

  /** Opens a WebSocket to node 1 and registers dora's browser over it; returns the socket. */
  async function browser(tag: string): Promise<WebSocket> {
    const phone = await WsPhone.open(peers[0]!.sip.addresses.ws!.port);
    phone.send(wsRegister('dora', `${tag}.invalid`));
    await phone.next((m) => m.kind === 'response' && m.status === 200, 'the 200 to REGISTER');
    return phone.socket;
  }

  /** dora's devices at node 1 as node 2 finds them in the overlay (0: not registered). */
  async function devicesSeenByNode2(): Promise<number> {
    const records = await peers[1]!.overlay.fetch('dora@peerbx.local', KIND_SIP_REGISTRATION);
    return records.reduce((n, r) => n + decodeRegistrationValue(r.value).devices, 0);
  }

  async function until(check: () => Promise<boolean>, what: string): Promise<void> {
    const end = Date.now() + 5000;
    while (!(await check())) {
      if (Date.now() > end) throw new Error(`timed out waiting until ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  it("loses its binding at once, and the overlay is told; the user's other devices stay", async () => {
    const n1 = peers[0]!;
    const desk = await rawRegister(n1, 'dora', 'sip:dora@127.0.0.1:5099');
    assert.match(desk, /^SIP\/2\.0 200 /);
    const first = await browser('tab1');
    const second = await browser('tab2');
    assert.equal(n1.sip.bindings.lookup('sip:dora@peerbx.local', Date.now()).length, 3);
    await until(async () => (await devicesSeenByNode2()) === 3, 'node 2 sees 3 devices');

    first.close();
    await until(
      async () => n1.sip.bindings.lookup('sip:dora@peerbx.local', Date.now()).length === 2,
      "the closed tab's binding is gone",
    );
    await until(async () => (await devicesSeenByNode2()) === 2, 'node 2 sees 2 devices');
    assert.deepEqual(
      n1.sip.bindings
        .lookup('sip:dora@peerbx.local', Date.now())
        .map((b) => b.uri)
        .sort(),
      ['sip:dora@127.0.0.1:5099', 'sip:dora@tab2.invalid;transport=ws'],
    );

    // The desk phone signs off, then the last tab closes: dora is registered nowhere.
    assert.match(await rawRegister(n1, 'dora', 'sip:dora@127.0.0.1:5099', 0), /^SIP\/2\.0 200 /);
    second.close();
    await until(async () => (await devicesSeenByNode2()) === 0, 'node 2 finds dora nowhere');
    assert.deepEqual(n1.sip.bindings.lookup('sip:dora@peerbx.local', Date.now()), []);
  });
});

/** A browser phone's signalling, scripted: raw SIP over a WebSocket to a node. */
class WsPhone {
  private readonly inbox: SipMessage[] = [];
  private wake: (() => void) | undefined;

  private constructor(readonly socket: WebSocket) {
    socket.on('message', (data: Buffer) => {
      this.inbox.push(parseSipMessage(data));
      this.wake?.();
    });
  }

  /** Over wss when `ca` (the node's certificate) is given. */
  static async open(port: number, ca?: Buffer): Promise<WsPhone> {
    const socket = ca
      ? new WebSocket(`wss://127.0.0.1:${port}`, 'sip', { ca })
      : new WebSocket(`ws://127.0.0.1:${port}`, 'sip');
    await new Promise<void>((resolve, reject) => {
      socket.once('open', () => resolve());
      socket.once('error', reject);
    });
    return new WsPhone(socket);
  }

  send(text: string | Buffer): void {
    this.socket.send(text);
  }

  /** The next message `pred` picks (received already or within 5 s). */
  async next(pred: (m: SipMessage) => boolean, what: string): Promise<SipMessage> {
    const end = Date.now() + 5000;
    for (;;) {
      const i = this.inbox.findIndex(pred);
      if (i >= 0) return this.inbox.splice(i, 1)[0]!;
      const left = end - Date.now();
      if (left <= 0) throw new Error(`browser: no ${what}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }
}

/** A UAS's 200 to a dialog-creating request: its Record-Routes copied, and `contact`. */
function answer200(request: SipRequest, toTag: string, contact: string): Buffer {
  const headers = [
    ...request.headers.getAll('record-route').map((value) => ({ name: 'Record-Route', value })),
    { name: 'Contact', value: contact },
  ];
  return serialize(createResponse(request, 200, { toTag, headers }));
}

/**
 * A UDP phone's INFO in a dialog, along its route set, sent to the node at `port`; resolves
 * with the final answer.
 */
async function infoAnswer(
  phone: UdpPhone,
  port: number,
  d: { uri: string; routes: string; from: string; to: string; callId: string; cseq: number },
): Promise<SipResponse> {
  phone.send(
    [
      `INFO ${d.uri} SIP/2.0`,
      `Via: SIP/2.0/UDP ${phone.contact};branch=z9hG4bK-info-${d.cseq}-${Math.random().toString(36).slice(2)};rport`,
      `Route: ${d.routes}`,
      `From: ${d.from}`,
      `To: ${d.to}`,
      `Call-ID: ${d.callId}`,
      `CSeq: ${d.cseq} INFO`,
      'Max-Forwards: 70',
      'Content-Length: 0',
      '',
      '',
    ].join('\r\n'),
    port,
  );
  return (await phone.next(
    (m) => m.kind === 'response' && m.cseq.method === 'INFO' && m.status >= 200,
    'an answer to the INFO',
  )) as SipResponse;
}

/** A browser's REGISTER of `user` with Contact `sip:<user>@<host>;transport=ws`. */
function wsRegister(user: string, host: string): string {
  return [
    'REGISTER sip:peerbx.local SIP/2.0',
    `Via: SIP/2.0/WS ${host};branch=z9hG4bK-${host}-${Date.now()};rport`,
    `From: <sip:${user}@peerbx.local>;tag=${host}r`,
    `To: <sip:${user}@peerbx.local>`,
    `Call-ID: ${host}-reg@test`,
    `CSeq: ${Date.now() % 100000} REGISTER`,
    `Contact: <sip:${user}@${host};transport=ws>`,
    'Max-Forwards: 70',
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n');
}

/** A browser's INVITE from `from` (Contact at `host`, `;ob` as sip.js adds) to `to`. */
function wsInvite(from: string, host: string, to: string, callId: string): string {
  return [
    `INVITE sip:${to}@peerbx.local SIP/2.0`,
    `Via: SIP/2.0/WS ${host};branch=z9hG4bK-${callId.replace(/\W/g, '')};rport`,
    `From: <sip:${from}@peerbx.local>;tag=${from}1`,
    `To: <sip:${to}@peerbx.local>`,
    `Call-ID: ${callId}`,
    'CSeq: 1 INVITE',
    `Contact: <sip:${from}@${host};transport=ws;ob>`,
    'Max-Forwards: 70',
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n');
}

describe('a browser on a secure WebSocket (wss)', () => {
  const bed = new TestBed('peerbx-wss-');
  const peers = bed.peers;
  const files = testCertificate(bed.root);
  const skip = files.skip;

  before(async () => {
    if (skip) return;
    const tls = { cert: readFileSync(files.cert), key: readFileSync(files.key) };
    await bed.startPeer('n1', { ws: { host: '127.0.0.1', port: 0, tls } });
    await bed.startPeer('n2');
  });
  after(() => bed.close());

  it('is called with a Via of WSS (RFC 7118 §5.2), and the answer goes back', {
    skip,
  }, async () => {
    const [n1, n2] = [peers[0]!, peers[1]!];
    const browser = await WsPhone.open(n1.sip.addresses.ws!.port, readFileSync(files.cert));
    browser.send(wsRegister('wes', 'w1.invalid').replace('SIP/2.0/WS ', 'SIP/2.0/WSS '));
    await browser.next((m) => m.kind === 'response' && m.status === 200, 'the 200 to REGISTER');
    const desk = await bed.phone();
    const call = request('INVITE', 'sip:wes@peerbx.local', desk);
    desk.send(call.text, n2.port);
    const invite = (await browser.next(
      (m) => m.kind === 'request' && m.method === 'INVITE',
      'the INVITE',
    )) as SipRequest;
    const via = invite.topVia!;
    assert.equal(via.transport, 'WSS');
    assert.equal(`${via.host}:${via.port}`, `127.0.0.1:${n1.sip.addresses.ws!.port}`);
    // RFC 7118 §5.2 (and its errata): a SIP URI's transport is "ws" for secure ones too.
    assert.match(invite.headers.getAll('record-route')[0]!, /;transport=ws;lr/);
    browser.send(serialize(createResponse(invite, 486, { toTag: 'wes1' })));
    await desk.response(486, 'INVITE');
  });
});

describe('a browser whose connection closes in a call (its tab closed)', () => {
  const bed = new TestBed('peerbx-ws-call-');
  const peers = bed.peers;

  before(async () => {
    await bed.startPeer('n1', { ws: { host: '127.0.0.1', port: 0 }, browserGoneGraceMs: 300 });
    await bed.startPeer('n2');
  });
  after(() => bed.close());

  const wsPort = () => peers[0]!.sip.addresses.ws!.port;
  /** A UDP phone registered as `user` at node 2. */
  async function deskPhone(user: string) {
    const phone = await bed.phone();
    await phone.register(peers[1]!, user);
    return phone;
  }

  it('has its node end the call it made with the BYE it can no longer send', async () => {
    const n2 = peers[1]!;
    const uma = await deskPhone('uma');
    const browser = await WsPhone.open(wsPort());
    browser.send(
      [
        'INVITE sip:uma@peerbx.local SIP/2.0',
        'Via: SIP/2.0/WS b1.invalid;branch=z9hG4bK-bea-1;rport',
        'From: <sip:bea@peerbx.local>;tag=bea1',
        'To: <sip:uma@peerbx.local>',
        'Call-ID: bea-calls-uma@test',
        'CSeq: 5 INVITE',
        'Contact: <sip:bea@b1.invalid;transport=ws>',
        'Max-Forwards: 70',
        'Content-Length: 0',
        '',
        '',
      ].join('\r\n'),
    );
    const invite = await uma.request('INVITE');
    const rr = invite.headers.getAll('record-route');
    const headers = [
      ...rr.map((value) => ({ name: 'Record-Route', value })),
      { name: 'Contact', value: `<sip:uma@${uma.contact}>` },
    ];
    uma.send(serialize(createResponse(invite, 200, { toTag: 'uma1', headers })), n2.port);
    const ok = await browser.next(
      (m) => m.kind === 'response' && m.status === 200,
      '200 to its INVITE',
    );
    // In the call, the browser sends an INFO (CSeq 7) along the route set.
    browser.send(
      [
        `INFO sip:uma@${uma.contact} SIP/2.0`,
        'Via: SIP/2.0/WS b1.invalid;branch=z9hG4bK-bea-2;rport',
        `Route: ${ok.headers.getAll('record-route').reverse().join(', ')}`,
        'From: <sip:bea@peerbx.local>;tag=bea1',
        'To: <sip:uma@peerbx.local>;tag=uma1',
        'Call-ID: bea-calls-uma@test',
        'CSeq: 7 INFO',
        'Max-Forwards: 70',
        'Content-Length: 0',
        '',
        '',
      ].join('\r\n'),
    );
    uma.answer(await uma.request('INFO'), 200, n2.port, 'uma1');
    await browser.next((m) => m.kind === 'response' && m.cseq.method === 'INFO', '200 to INFO');

    browser.socket.close();
    const bye = await uma.request('BYE');
    // A request of uma's that crossed that BYE: the browser is gone (480, not a send error).
    const gone = await infoAnswer(uma, n2.port, {
      uri: 'sip:bea@b1.invalid;transport=ws',
      routes: rr.join(', '),
      from: '<sip:uma@peerbx.local>;tag=uma1',
      to: '<sip:bea@peerbx.local>;tag=bea1',
      callId: 'bea-calls-uma@test',
      cseq: 1,
    });
    assert.equal(gone.status, 480, `${gone.status} ${gone.reason}`);
    assert.equal(bye.uri, `sip:uma@${uma.contact}`, "to uma's Contact");
    assert.equal(bye.callId, 'bea-calls-uma@test');
    assert.equal(bye.cseq.seq, 18, "above the browser's last (7), with room for early ones");
    assert.equal(bye.fromTag, 'bea1');
    assert.equal(bye.toTag, 'uma1');
    assert.equal(bye.headers.getAll('route').length, 0, "node 2's own Route taken off");
    uma.answer(bye, 200, n2.port, 'uma1');
  });

  it('passes the answer on to a browser when its Record-Route does not parse', async () => {
    const n2 = peers[1]!;
    const vic = await deskPhone('vic');
    const browser = await WsPhone.open(wsPort());
    browser.send(
      [
        'INVITE sip:vic@peerbx.local SIP/2.0',
        'Via: SIP/2.0/WS b2.invalid;branch=z9hG4bK-bea-rr;rport',
        'From: <sip:bea@peerbx.local>;tag=bea2',
        'To: <sip:vic@peerbx.local>',
        'Call-ID: bea-calls-vic@test',
        'CSeq: 1 INVITE',
        'Contact: <sip:bea@b2.invalid;transport=ws>',
        'Max-Forwards: 70',
        'Content-Length: 0',
        '',
        '',
      ].join('\r\n'),
    );
    const invite = await vic.request('INVITE');
    const headers = [
      ...invite.headers.getAll('record-route').map((value) => ({ name: 'Record-Route', value })),
      // A trailing comma: the list does not parse where node 1 reads it for the browser's BYE.
      { name: 'Record-Route', value: '<sip:sbc.example.com;lr>,' },
      { name: 'Contact', value: `<sip:vic@${vic.contact}>` },
    ];
    vic.send(serialize(createResponse(invite, 200, { toTag: 'vic1', headers })), n2.port);
    const ok = await browser.next(
      (m) => m.kind === 'response' && m.status === 200,
      '200 to its INVITE',
    );
    assert.equal(ok.callId, 'bea-calls-vic@test');
    browser.socket.close();
  });

  for (const where of ['at its node', 'at another node'] as const) {
    it(`reaches a browser that called without registering with the BYE of a UDP phone ${where}`, async () => {
      // The phone's route set must take it to the node over UDP, and the node must reach the
      // browser over the connection its INVITE came on: its Contact names no place.
      const user = where === 'at its node' ? 'una' : 'ulla';
      const node = where === 'at its node' ? peers[0]! : peers[1]!;
      const phone = await bed.phone();
      await phone.register(node, user);
      const browser = await WsPhone.open(wsPort());
      const callId = `cleo-calls-${user}@test`;
      browser.send(wsInvite('cleo', 'c1.invalid', user, callId));
      const invite = await phone.request('INVITE');
      const rr = invite.headers.getAll('record-route');
      assert.match(rr[0] ?? '', new RegExp(`:${node.port};transport=udp;lr`), rr.join(' | '));
      phone.send(answer200(invite, `${user}1`, `<sip:${user}@${phone.contact}>`), node.port);
      await browser.next((m) => m.kind === 'response' && m.status === 200, '200 to its INVITE');
      phone.send(
        [
          'BYE sip:cleo@c1.invalid;transport=ws;ob SIP/2.0',
          `Via: SIP/2.0/UDP ${phone.contact};branch=z9hG4bK-${user}-bye;rport`,
          `Route: ${rr.join(', ')}`,
          `From: <sip:${user}@peerbx.local>;tag=${user}1`,
          'To: <sip:cleo@peerbx.local>;tag=cleo1',
          `Call-ID: ${callId}`,
          'CSeq: 1 BYE',
          'Max-Forwards: 70',
          'Content-Length: 0',
          '',
          '',
        ].join('\r\n'),
        node.port,
      );
      const bye = (await browser.next(
        (m) => m.kind === 'request' && m.method === 'BYE',
        'the BYE',
      )) as SipRequest;
      browser.send(serialize(createResponse(bye, 200)));
      await phone.response(200, 'BYE');
      browser.socket.close();
    });
  }

  it('reaches a browser that called without registering over its own connection only, not another from its address and port', async () => {
    // Review: the route token named the browser's address and port; a second browser
    // connecting from them (behind one NAT, or behind a reverse proxy) got the first one's
    // in-dialog requests.
    const phone = await bed.phone();
    await phone.register(peers[0]!, 'uwe');
    const localPort = 40_000 + Math.floor(Math.random() * 10_000);
    const open = async () => {
      const socket = new WebSocket(`ws://127.0.0.1:${wsPort()}`, 'sip', {
        localAddress: '127.0.0.1',
        localPort,
      } as ConstructorParameters<typeof WebSocket>[2]);
      await new Promise<void>((resolve, reject) => {
        socket.once('open', () => resolve());
        socket.once('error', reject);
      });
      const inbox: SipMessage[] = [];
      socket.on('message', (d: Buffer) => inbox.push(parseSipMessage(d)));
      return { socket, inbox };
    };
    const first = await open();
    const callId = 'cora-calls-uwe@test';
    first.socket.send(wsInvite('cora', 'k1.invalid', 'uwe', callId));
    const invite = await phone.request('INVITE');
    const rr = invite.headers.getAll('record-route');
    phone.send(answer200(invite, 'uwe1', `<sip:uwe@${phone.contact}>`), peers[0]!.port);
    await phone.request('ACK').catch(() => undefined);
    // Gone at once (a reset: its port is free again), and another browser comes from it.
    (first.socket as unknown as { _socket: { resetAndDestroy(): void } })._socket.resetAndDestroy();
    await new Promise((r) => setTimeout(r, 100));
    const second = await open();
    const answer = await infoAnswer(phone, peers[0]!.port, {
      uri: 'sip:cora@k1.invalid;transport=ws;ob',
      routes: rr.join(', '),
      from: '<sip:uwe@peerbx.local>;tag=uwe1',
      to: '<sip:cora@peerbx.local>;tag=cora1',
      callId,
      cseq: 1,
    });
    assert.equal(answer.status, 480, `${answer.status} ${answer.reason}`);
    assert.equal(
      second.inbox.filter((m) => m.kind === 'request' && m.callId === callId).length,
      0,
      'the other browser got nothing of the call',
    );
    second.socket.close();
  });

  it('ends a call between two browsers of one node from either side', async () => {
    const ada = await WsPhone.open(wsPort());
    ada.send(wsRegister('ada', 'ada.invalid'));
    await ada.next((m) => m.kind === 'response' && m.status === 200, '200 to REGISTER');
    const bo = await WsPhone.open(wsPort());
    bo.send(wsInvite('bo', 'bo.invalid', 'ada', 'bo-calls-ada@test'));
    const invite = (await ada.next(
      (m) => m.kind === 'request' && m.method === 'INVITE',
      'the INVITE',
    )) as SipRequest;
    ada.send(answer200(invite, 'ada1', '<sip:ada@ada.invalid;transport=ws>'));
    await bo.next((m) => m.kind === 'response' && m.status === 200, '200 to its INVITE');
    // The callee's tab closes: the caller, a browser here too, gets the BYE.
    ada.socket.close();
    const bye = (await bo.next(
      (m) => m.kind === 'request' && m.method === 'BYE',
      'the BYE',
    )) as SipRequest;
    assert.equal(bye.fromTag, 'ada1');
    assert.equal(bye.toTag, 'bo1');
    bo.socket.close();
  });

  /**
   * `user` (a browser here) calls `callee` (a desk phone at node 2), which answers; the page's
   * connection then drops and comes back at once, registering the same Contact (as sip.js
   * does). Returns the new connection and the OPTIONS that asks it whether it has the call.
   */
  async function backInCall(user: string, callee: string) {
    const desk = await deskPhone(callee);
    const page = await WsPhone.open(wsPort());
    page.send(wsRegister(user, `${user}.invalid`));
    await page.next((m) => m.kind === 'response' && m.status === 200, '200 to REGISTER');
    page.send(wsInvite(user, `${user}.invalid`, callee, `${user}-calls-${callee}@test`));
    const invite = await desk.request('INVITE');
    desk.send(answer200(invite, `${callee}1`, `<sip:${callee}@${desk.contact}>`), peers[1]!.port);
    await page.next((m) => m.kind === 'response' && m.status === 200, '200 to its INVITE');
    page.socket.close();
    const again = await WsPhone.open(wsPort());
    again.send(wsRegister(user, `${user}.invalid`));
    await again.next((m) => m.kind === 'response' && m.status === 200, '200 to REGISTER');
    const options = (await again.next(
      (m) => m.kind === 'request' && m.method === 'OPTIONS',
      'an OPTIONS in the call',
    )) as SipRequest;
    assert.equal(options.uri, `sip:${user}@${user}.invalid;transport=ws;ob`, 'to its Contact');
    assert.equal(options.callId, `${user}-calls-${callee}@test`);
    assert.equal(options.fromTag, `${callee}1`, "from the other side's tag");
    assert.equal(options.toTag, `${user}1`, "to the browser's");
    assert.equal(options.cseq.seq, 0, 'out of order for a dialog it has: no CSeq it expects moves');
    return { desk, again, options };
  }

  it('keeps the call of a browser that registers again on a new connection and still has it', async () => {
    const { desk, again, options } = await backInCall('cy', 'ulla');
    again.send(serialize(createResponse(options, 200)));
    await assert.rejects(
      desk.next((m) => m.kind === 'request' && m.method === 'BYE', 'a BYE', 1000),
      /no a BYE/,
      'the call goes on',
    );
    // Gone for good this time.
    again.socket.close();
    const bye = await desk.request('BYE');
    assert.equal(bye.callId, 'cy-calls-ulla@test');
    desk.answer(bye, 200, peers[1]!.port, 'ulla1');
  });

  it('ends the call of a browser that registers again on a new connection without it (sip.js)', async () => {
    // sip.js ends its calls when its connection fails, sends no BYE, and registers again
    // with the same Contact within a second or two: it answers the OPTIONS 481.
    const { desk, again, options } = await backInCall('cyd', 'uli');
    again.send(serialize(createResponse(options, 481)));
    const bye = await desk.request('BYE');
    assert.equal(bye.callId, 'cyd-calls-uli@test');
    assert.equal(bye.fromTag, 'cyd1');
    assert.equal(bye.toTag, 'uli1');
    assert.match(bye.headers.get('reason') ?? '', /no longer has the call/);
    desk.answer(bye, 200, peers[1]!.port, 'uli1');
    again.socket.close();
  });

  for (const where of ['at another node', 'at its node'] as const) {
    it(`has its node end the call it answered with the BYE it can no longer send, the caller ${where}`, async () => {
      // At its node, the node Record-Routes twice (WS and UDP): the BYE takes neither along.
      const n2 = where === 'at its node' ? peers[0]! : peers[1]!;
      const b = where === 'at its node' ? 'b3' : 'b2';
      const browser = await WsPhone.open(wsPort());
      browser.send(
        [
          'REGISTER sip:peerbx.local SIP/2.0',
          `Via: SIP/2.0/WS ${b}.invalid;branch=z9hG4bK-bea-r;rport`,
          'From: <sip:bea@peerbx.local>;tag=bear',
          'To: <sip:bea@peerbx.local>',
          `Call-ID: bea-reg-${b}@test`,
          'CSeq: 1 REGISTER',
          `Contact: <sip:bea@${b}.invalid;transport=ws>`,
          'Max-Forwards: 70',
          'Content-Length: 0',
          '',
          '',
        ].join('\r\n'),
      );
      await browser.next((m) => m.kind === 'response' && m.status === 200, '200 to REGISTER');
      const vic = await bed.phone();
      const call = request('INVITE', `sip:bea@127.0.0.1:${n2.port}`, vic);
      vic.send(call.text, n2.port);
      const invite = (await browser.next(
        (m) => m.kind === 'request' && m.method === 'INVITE',
        'the INVITE',
      )) as SipRequest;
      browser.send(answer200(invite, `bea2`, `<sip:bea@${b}.invalid;transport=ws>`));
      const ok = await vic.response(200, 'INVITE');

      browser.socket.close();
      const bye = await vic.request('BYE');
      // A request of vic's that crossed that BYE: the browser is gone (480, not a refusal).
      const from = /^From: (.*)$/m.exec(call.text)![1]!;
      const gone = await infoAnswer(vic, n2.port, {
        uri: `sip:bea@${b}.invalid;transport=ws`,
        routes: ok.headers.getAll('record-route').reverse().join(', '),
        from,
        to: `<sip:bea@127.0.0.1:${n2.port}>;tag=bea2`,
        callId: call.callId,
        cseq: 2,
      });
      assert.equal(gone.status, 480, `${gone.status} ${gone.reason}`);
      assert.equal(bye.uri, `sip:caller@${vic.contact}`, "to the caller's Contact");
      assert.equal(bye.callId, call.callId);
      assert.equal(bye.fromTag, 'bea2', 'from the browser');
      assert.equal(bye.toTag, /tag=(\S+)/.exec(/^From: (.*)$/m.exec(call.text)![1]!)![1]);
      assert.equal(bye.headers.getAll('route').length, 0);
      vic.answer(bye, 200, n2.port);
    });
  }
});
