// Digest authentication end to end: a SipNode with `auth: 'always'` and scripted UDP phones.
// REGISTER is challenged with 401 (SHA-256 and MD5), answers in either algorithm register,
// a wrong password gets a fresh 401 (not 403: RFC 3261 §22.2 re-challenges, the phone gives
// up on the same credentials), another user's AOR gets 403, an expired nonce 401 stale=TRUE,
// a replayed nonce-count a fresh 401. An INVITE gets 407, then goes through with credentials;
// requests from another node over the overlay are never challenged.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Clock } from '@peerbx/dht-kademlia';
import { DigestAuthenticator } from '../src/auth/authenticator.js';
import { parseCredentials } from '../src/auth/credentials-header.js';
import { computeDigestResponse, computeHa1 } from '../src/auth/digest.js';
import {
  parseSipMessage,
  type SipMessage,
  type SipRequest,
  type SipResponse,
} from '../src/message/sip-message.js';
import { type PeerNode, rawRegister } from './fixtures/sipp.js';
import { TestBed } from './fixtures/test-bed.js';
import { request, type UdpPhone } from './fixtures/udp-phone.js';

const REALM = 'peerbx.local';
const USERS = {
  alice: { password: 'wonderland' },
  bob: { ha1: { md5: computeHa1('MD5', 'bob', REALM, 'builder') } },
  carol: { password: 'c4rol' },
  erin: { password: 'correct horse' },
};

/** A clock the test can move forward, for nonces going stale. */
let offset = 0;
const clock: Clock = {
  now: () => Date.now() + offset,
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

interface Challenge {
  nonce: string;
  opaque: string;
  algorithm: 'SHA-256' | 'MD5';
  stale: boolean;
}

function challenges(res: SipMessage, header: string): Challenge[] {
  return (res.headers.getAll(header) ?? []).map((v) => {
    const p = parseCredentials(v)?.params ?? {};
    assert.equal(p.realm, REALM);
    assert.equal(p.qop, 'auth');
    return {
      nonce: p.nonce ?? '',
      opaque: p.opaque ?? '',
      algorithm: p.algorithm as 'SHA-256' | 'MD5',
      stale: p.stale?.toLowerCase() === 'true',
    };
  });
}

function credentials(
  c: Challenge,
  o: { user: string; password: string; method: string; uri: string; nc?: number },
): string {
  const nc = (o.nc ?? 1).toString(16).padStart(8, '0');
  const cnonce = Math.random().toString(36).slice(2);
  const response = computeDigestResponse({
    algorithm: c.algorithm,
    ha1: computeHa1(c.algorithm, o.user, REALM, o.password),
    method: o.method,
    uri: o.uri,
    nonce: c.nonce,
    cnonce,
    nc,
    qop: 'auth',
  });
  return `Digest username="${o.user}", realm="${REALM}", nonce="${c.nonce}", uri="${o.uri}", response="${response}", algorithm=${c.algorithm}, cnonce="${cnonce}", qop=auth, nc=${nc}, opaque="${c.opaque}"`;
}

const parseRequest = (text: string) => parseSipMessage(text) as SipRequest;

/** The ACK for a non-2xx final response to `invite` (its branch, the response's To tag). */
function ackFor(invite: string, response: SipMessage): string {
  return invite
    .replace(/^INVITE /, 'ACK ')
    .replace(/CSeq: 1 INVITE/, 'CSeq: 1 ACK')
    .replace(/^To: .*$/m, `To: ${response.header('To')}`)
    .replace(/^Contact: .*\r\n/m, '');
}

let cseq = 0;
/** A request of the test phone as carol's (its From names her). */
function asCarol<T extends { text: string }>(r: T): T {
  return { ...r, text: r.text.replace('From: <sip:caller@', 'From: <sip:carol@') };
}

/** A REGISTER from `phone` for `user`, with optional Authorization; resolves to the final response. */
async function register(
  node: PeerNode,
  phone: UdpPhone,
  user: string,
  authorization?: string,
): Promise<SipResponse> {
  cseq++;
  const branch = `z9hG4bK-auth-${cseq}-${Math.random().toString(36).slice(2)}`;
  phone.send(
    [
      `REGISTER sip:${REALM} SIP/2.0`,
      `Via: SIP/2.0/UDP ${phone.contact};branch=${branch};rport`,
      `From: <sip:${user}@${REALM}>;tag=r${cseq}`,
      `To: <sip:${user}@${REALM}>`,
      `Call-ID: reg-${user}-${phone.port}@test`,
      `CSeq: ${cseq} REGISTER`,
      `Contact: <sip:${user}@${phone.contact}>`,
      'Expires: 3600',
      'Max-Forwards: 70',
      ...(authorization ? [`Authorization: ${authorization}`] : []),
      'Content-Length: 0',
      '',
      '',
    ].join('\r\n'),
    node.port,
  );
  return (await phone.next(
    (m) => m.kind === 'response' && m.cseq.seq === cseq && m.status >= 200,
    `final response to REGISTER ${cseq}`,
  )) as SipResponse;
}

describe('digest authentication', () => {
  const bed = new TestBed('peerbx-auth-');
  let a: PeerNode;
  let b: PeerNode;
  const phone = () => bed.phone();
  const uri = `sip:${REALM}`;

  before(async () => {
    a = await bed.startPeer('a', { auth: 'always', users: USERS, clock });
    b = await bed.startPeer('b');
  });

  after(() => bed.close());

  /** Alice's phone registers at node a: challenged, then answering with her password. */
  async function aliceRegisters(p: UdpPhone): Promise<SipResponse> {
    const [c] = challenges(await register(a, p, 'alice'), 'www-authenticate');
    assert.ok(c);
    const creds = credentials(c, {
      user: 'alice',
      password: 'wonderland',
      method: 'REGISTER',
      uri,
    });
    return register(a, p, 'alice', creds);
  }
  const registerAlice = async (p: UdpPhone) => (await aliceRegisters(p)).status;

  it('challenges a REGISTER with 401 offering SHA-256, then MD5', async () => {
    const p = await phone();
    const res = await register(a, p, 'alice');
    assert.equal(res.status, 401);
    const cs = challenges(res, 'www-authenticate');
    assert.deepEqual(
      cs.map((c) => c.algorithm),
      ['SHA-256', 'MD5'],
    );
    assert.equal(a.sip.bindings.lookup('sip:alice@peerbx.local', clock.now()).length, 0);
  });

  it('registers with a SHA-256 answer, and with an MD5 answer (password or HA1 configured)', async () => {
    const p = await phone();
    const [sha] = challenges(await register(a, p, 'alice'), 'www-authenticate');
    assert.ok(sha);
    const ok = await register(
      a,
      p,
      'alice',
      credentials(sha, { user: 'alice', password: 'wonderland', method: 'REGISTER', uri }),
    );
    assert.equal(ok.status, 200);
    assert.equal(a.sip.bindings.lookup('sip:alice@peerbx.local', clock.now()).length, 1);

    const q = await phone();
    const md5 = challenges(await register(a, q, 'bob'), 'www-authenticate')[1];
    assert.equal(md5?.algorithm, 'MD5');
    assert.ok(md5);
    const res = await register(
      a,
      q,
      'bob',
      credentials(md5, { user: 'bob', password: 'builder', method: 'REGISTER', uri }),
    );
    assert.equal(res.status, 200);
  });

  it('answers a wrong password with a fresh 401, and another user’s AOR with 403', async () => {
    const p = await phone();
    const [c] = challenges(await register(a, p, 'carol'), 'www-authenticate');
    assert.ok(c);
    const wrong = await register(
      a,
      p,
      'carol',
      credentials(c, { user: 'carol', password: 'guess', method: 'REGISTER', uri }),
    );
    assert.equal(wrong.status, 401);
    const again = challenges(wrong, 'www-authenticate');
    assert.equal(again.length, 2);
    assert.equal(again[0]?.stale, false);

    const forbidden = await register(
      a,
      p,
      'carol',
      credentials(c, { user: 'alice', password: 'wonderland', method: 'REGISTER', uri, nc: 2 }),
    );
    assert.equal(forbidden.status, 403);
    assert.match(forbidden.reason, /alice may not register carol/);
    assert.equal(a.sip.bindings.lookup('sip:carol@peerbx.local', clock.now()).length, 0);
  });

  it('refuses a host that guessed a password 5 times with 403 for a minute', async () => {
    const p = await phone();
    const erin = (c: Challenge, password: string) =>
      credentials(c, { user: 'erin', password, method: 'REGISTER', uri });
    let res = await register(a, p, 'erin');
    for (let guess = 1; guess <= 5; guess++) {
      const [c] = challenges(res, 'www-authenticate');
      assert.ok(c);
      res = await register(a, p, 'erin', erin(c, `guess ${guess}`));
      assert.equal(res.status, 401, `guess ${guess}`);
    }
    // Locked out: even the right password is refused, unchecked, until the minute is over.
    const [c] = challenges(res, 'www-authenticate');
    assert.ok(c);
    const locked = await register(a, p, 'erin', erin(c, 'correct horse'));
    assert.equal(locked.status, 403);
    assert.match(
      locked.reason,
      /too many failed logins for this user from this address; try again in 60 s/,
    );
    assert.equal(a.sip.bindings.lookup('sip:erin@peerbx.local', clock.now()).length, 0);
    // Another user from the same host is not locked out.
    assert.equal(await registerAlice(await phone()), 200);
    offset += 61_000;
    try {
      const [fresh] = challenges(await register(a, p, 'erin'), 'www-authenticate');
      assert.ok(fresh);
      assert.equal((await register(a, p, 'erin', erin(fresh, 'correct horse'))).status, 200);
    } finally {
      offset -= 61_000;
    }
  });

  it('answers an expired nonce with 401 stale=TRUE, and a replayed nonce-count with a new 401', async () => {
    const p = await phone();
    const [c] = challenges(await register(a, p, 'carol'), 'www-authenticate');
    assert.ok(c);
    offset += 6 * 60_000;
    try {
      const stale = await register(
        a,
        p,
        'carol',
        credentials(c, { user: 'carol', password: 'c4rol', method: 'REGISTER', uri }),
      );
      assert.equal(stale.status, 401);
      const fresh = challenges(stale, 'www-authenticate');
      assert.equal(fresh[0]?.stale, true);
      const next = fresh[0];
      assert.ok(next);
      const creds = credentials(next, {
        user: 'carol',
        password: 'c4rol',
        method: 'REGISTER',
        uri,
      });
      assert.equal((await register(a, p, 'carol', creds)).status, 200);
      // The same credentials (nonce and nc) again: a replay, challenged afresh.
      const replay = await register(a, p, 'carol', creds);
      assert.equal(replay.status, 401);
      assert.equal(challenges(replay, 'www-authenticate')[0]?.stale, false);
      const nc2 = credentials(next, {
        user: 'carol',
        password: 'c4rol',
        method: 'REGISTER',
        uri,
        nc: 2,
      });
      assert.equal((await register(a, p, 'carol', nc2)).status, 200);
    } finally {
      offset -= 6 * 60_000;
    }
  });

  it('answers credentials made for another Request-URI with 400, and takes the same URI written otherwise, or the node itself', async () => {
    const p = await phone();
    const [c] = challenges(await register(a, p, 'carol'), 'www-authenticate');
    assert.ok(c);
    // Right for the password, made for another resource: a call to elsewhere, say.
    const elsewhere = (target: string, nc: number) =>
      credentials(c, { user: 'carol', password: 'c4rol', method: 'REGISTER', uri: target, nc });
    const refused = await register(a, p, 'carol', elsewhere('sip:elsewhere.example', 1));
    assert.equal(refused.status, 400);
    assert.equal(refused.reason, 'Bad Request (the credentials are for another Request-URI)');
    assert.equal(
      (await register(a, p, 'carol', elsewhere('sip:carol@peerbx.local', 2))).status,
      400,
    );
    // The Request-URI's host in other letters, or with a parameter: the same resource.
    assert.equal(
      (await register(a, p, 'carol', elsewhere(`sip:${REALM.toUpperCase()}`, 3))).status,
      200,
    );
    assert.equal((await register(a, p, 'carol', elsewhere(`${uri};transport=udp`, 4))).status, 200);
    // maddr sends a request elsewhere: not the same resource.
    const maddr = elsewhere(`${uri};maddr=10.0.0.1`, 5);
    assert.equal((await register(a, p, 'carol', maddr)).status, 400);
    // The node itself by its address, as SIPp puts it: bound to no other target, taken.
    const itself = elsewhere(`sip:127.0.0.1:${a.port}`, 6);
    assert.equal((await register(a, p, 'carol', itself)).status, 200);
  });

  it('answers right credentials for a nonce it never made (from before a restart) with 401 stale=TRUE', async () => {
    // Another authenticator's nonce and opaque: what a phone still holds after the node restarted.
    const before = new DigestAuthenticator({ realm: REALM, users: USERS, clock });
    const old = challenges(
      before.challenge(parseRequest(request('REGISTER', uri, await phone()).text), 'registrar'),
      'www-authenticate',
    );
    const [c] = old;
    assert.ok(c);
    const p = await phone();
    const right = await register(
      a,
      p,
      'carol',
      credentials(c, { user: 'carol', password: 'c4rol', method: 'REGISTER', uri }),
    );
    assert.equal(right.status, 401);
    assert.equal(challenges(right, 'www-authenticate')[0]?.stale, true);
    const wrong = await register(
      a,
      p,
      'carol',
      credentials(c, { user: 'carol', password: 'guess', method: 'REGISTER', uri }),
    );
    assert.equal(wrong.status, 401);
    assert.equal(challenges(wrong, 'www-authenticate')[0]?.stale, false);
  });

  /** Alice's phone registered at node a, and a caller whose first INVITE to her got a 407. */
  async function challengedCall() {
    const callee = await phone();
    assert.equal(await registerAlice(callee), 200);
    const caller = await phone();
    const target = `sip:alice@${REALM}`;
    const first = request('INVITE', target, caller);
    caller.send(first.text, a.port);
    const challenge = await caller.response(407, 'INVITE');
    return { callee, caller, target, first, challenge };
  }

  it('challenges an INVITE from a phone with 407, then routes it with credentials', async () => {
    const { callee, caller, target, first, challenge } = await challengedCall();
    // ACK the 407 (same branch, the 407's To tag) so the server transaction completes.
    caller.send(ackFor(first.text, challenge), a.port);
    const [pc] = challenges(challenge, 'proxy-authenticate');
    assert.ok(pc);
    assert.equal(pc.algorithm, 'SHA-256');
    const proxyAuth = (nc: number) =>
      `Proxy-Authorization: ${credentials(pc, { user: 'carol', password: 'c4rol', method: 'INVITE', uri: target, nc })}`;
    // Carol's credentials for a call from someone else (RFC 3261 §22): refused.
    const spoofed = request('INVITE', target, caller, [proxyAuth(1)]);
    caller.send(spoofed.text, a.port);
    const forbidden = await caller.response(403, 'INVITE');
    assert.ok(forbidden.kind === 'response');
    assert.equal(forbidden.reason, 'Forbidden (carol may not send as caller)');
    caller.send(ackFor(spoofed.text, forbidden), a.port);
    // From carol herself: routed.
    const second = asCarol(request('INVITE', target, caller, [proxyAuth(2)]));
    caller.send(second.text, a.port);
    const inv = await callee.request('INVITE');
    assert.equal(inv.callId, second.callId);
    // The credentials were for this node, not passed on to the phone.
    assert.equal(inv.header('Proxy-Authorization'), undefined);
    callee.answer(inv, 200, a.port, 'al');
    const ok = await caller.response(200, 'INVITE');
    assert.equal(ok.callId, second.callId);
  });

  it('sends the 407 to an INVITE once, and again only for the INVITE sent again', async () => {
    // The INVITE's source may be forged: each one brings one 407, not one per Timer G.
    const caller = await phone();
    const first = request('INVITE', `sip:alice@${REALM}`, caller);
    caller.send(first.text, a.port);
    await caller.response(407, 'INVITE');
    await new Promise((r) => setTimeout(r, 2200)); // Timer G would have resent it at 0.5, 1.5 s
    assert.equal(
      caller.received.filter((m) => m.kind === 'response' && m.status === 407).length,
      0,
      'no retransmission of the 407',
    );
    // A phone whose 407 was lost sends its INVITE again, and gets it again; then ACKs it.
    caller.send(first.text, a.port);
    const again = await caller.response(407, 'INVITE');
    caller.send(ackFor(first.text, again), a.port);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(
      caller.received.filter((m) => m.kind === 'response').length,
      0,
      'the ACK brings nothing back',
    );
  });

  it('challenges an in-dialog request unless it comes along the Record-Route of its dialog', async () => {
    const { callee, caller, target, challenge } = await challengedCall();
    const [pc] = challenges(challenge, 'proxy-authenticate');
    assert.ok(pc);
    const proxyAuth = `Proxy-Authorization: ${credentials(pc, { user: 'carol', password: 'c4rol', method: 'INVITE', uri: target })}`;
    const call = asCarol(request('INVITE', target, caller, [proxyAuth]));
    caller.send(call.text, a.port);
    const inv = await callee.request('INVITE');
    const recordRoute = inv.header('Record-Route');
    assert.match(recordRoute ?? '', /;pbx-d=/);
    callee.answer(inv, 200, a.port, 'al');
    await caller.response(200, 'INVITE');
    const from = /^From: (.*)$/m.exec(call.text)?.[1] ?? '';
    const inDialog = (callId: string, route?: string, method = 'BYE', subject = '') =>
      [
        `${method} sip:alice@${callee.contact} SIP/2.0`,
        `Via: SIP/2.0/UDP ${caller.contact};branch=z9hG4bK-${method}-${Math.random().toString(36).slice(2)};rport`,
        `From: ${from}`,
        `To: <${target}>;tag=al`,
        `Call-ID: ${callId}`,
        `CSeq: ${method === 'ACK' ? 1 : 2} ${method}`,
        'Max-Forwards: 70',
        ...(route ? [`Route: ${route}`] : []),
        ...(subject ? [`Subject: ${subject}`] : []),
        'Content-Length: 0',
        '',
        '',
      ].join('\r\n');
    // The 2xx ACK (never challenged): a made-up one is dropped, the call's own goes through.
    caller.send(inDialog(call.callId, undefined, 'ACK', 'made up'), a.port);
    caller.send(inDialog(call.callId, recordRoute, 'ACK', 'real'), a.port);
    const ack = await callee.request('ACK');
    assert.equal(ack.header('Subject'), 'real');
    // A To tag with no Route, and the Route of this call under another Call-ID: made up.
    caller.send(inDialog(call.callId), a.port);
    await caller.response(407, 'BYE');
    caller.send(inDialog('made-up@test', recordRoute), a.port);
    await caller.response(407, 'BYE');
    // The call's own Route, but on to another node (whose phones it would reach unasked): the
    // token is bound to the dialog's far side, a phone here.
    const toNodeB = `${recordRoute}, <sip:${b.sip.nodeHex}@127.0.0.1:${b.port};transport=udp;lr>`;
    caller.send(inDialog(call.callId, toNodeB), a.port);
    await caller.response(407, 'BYE');
    // Along the call's own Record-Route: passes without a challenge.
    caller.send(inDialog(call.callId, recordRoute), a.port);
    const bye = await callee.request('BYE');
    assert.equal(bye.callId, call.callId);
    callee.answer(bye, 200, a.port, 'al');
    await caller.response(200, 'BYE');
  });

  it('does not challenge requests arriving from another node over the overlay', async () => {
    const dev = await phone();
    const [c] = challenges(await register(a, dev, 'bob'), 'www-authenticate');
    assert.ok(c);
    const md5 = { ...c, algorithm: 'MD5' as const };
    const reg = await register(
      a,
      dev,
      'bob',
      credentials(md5, { user: 'bob', password: 'builder', method: 'REGISTER', uri }),
    );
    assert.equal(reg.status, 200);
    // Node b (loopback, no auth) takes a MESSAGE from its phone and sends it over the overlay.
    assert.equal(a.sip.auth !== undefined && b.sip.auth === undefined, true);
    const sender = await phone();
    sender.send(request('MESSAGE', `sip:bob@${REALM}`, sender).text, b.port);
    const msg = await dev.request('MESSAGE');
    dev.answer(msg, 200, a.port, 'bob');
    await sender.response(200, 'MESSAGE');
    assert.equal(
      await rawRegister(b, 'dave', 'sip:dave@127.0.0.1:9'),
      'SIP/2.0 200 OK',
      'a loopback node asks no credentials',
    );
  });

  // Last: the host stays locked out for the tests after it.
  it('refuses every user from a host that failed 20 logins in a minute, and says whose', async () => {
    offset += 120_000; // the earlier tests' failures are out of the minute
    try {
      const p = await phone();
      for (let i = 1; i <= 20; i++) {
        const user = `nobody${i}`;
        const [c] = challenges(await register(a, p, user), 'www-authenticate');
        assert.ok(c);
        const guess = credentials(c, { user, password: 'x', method: 'REGISTER', uri });
        assert.equal((await register(a, p, user, guess)).status, 401, user);
      }
      // The right password of a user who guessed nothing, from another port of the host.
      const locked = await aliceRegisters(await phone());
      assert.equal(locked.status, 403);
      assert.match(locked.reason, /too many failed logins from this address; try again in 60 s/);
    } finally {
      offset -= 120_000;
    }
  });
});
