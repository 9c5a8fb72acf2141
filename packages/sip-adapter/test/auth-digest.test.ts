// Digest authentication pieces without sockets: the digest math against RFC 7616 §3.9.1's
// worked example (SHA-256 and MD5), credentials parsing (quoted strings, commas, escapes),
// stateless nonces (stale after their lifetime, forged ones refused), nonce-count replays,
// and when a node asks for credentials at all.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Clock } from '@peerbx/dht-kademlia';
import { DigestAuthenticator } from '../src/auth/authenticator.js';
import { formatChallenge, parseCredentials } from '../src/auth/credentials-header.js';
import { computeDigestResponse, computeHa1, parseAlgorithm } from '../src/auth/digest.js';
import { NonceIssuer } from '../src/auth/nonce.js';
import { authRequired } from '../src/auth/policy.js';
import { parseSipMessage, type SipRequest } from '../src/message/sip-message.js';

// RFC 7616 §3.9.1: user Mufasa, password "Circle of Life", GET /dir/index.html.
const RFC = {
  username: 'Mufasa',
  password: 'Circle of Life',
  realm: 'http-auth@example.org',
  nonce: '7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v',
  uri: '/dir/index.html',
  nc: '00000001',
};

function fakeClock(start = 1_700_000_000_000) {
  let t = start;
  const clock: Clock = {
    now: () => t,
    setTimeout: (fn, ms) => setTimeout(fn, ms),
    clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
  };
  return { clock, advance: (ms: number) => (t += ms) };
}

describe('digest math (RFC 7616 §3.9.1)', () => {
  it('computes the SHA-256 example response', () => {
    const ha1 = computeHa1('SHA-256', RFC.username, RFC.realm, RFC.password);
    const response = computeDigestResponse({
      algorithm: 'SHA-256',
      ha1,
      method: 'GET',
      uri: RFC.uri,
      nonce: RFC.nonce,
      cnonce: 'f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ',
      nc: RFC.nc,
      qop: 'auth',
    });
    assert.equal(response, '753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1');
  });

  it('computes the MD5 example response', () => {
    const ha1 = computeHa1('MD5', RFC.username, RFC.realm, RFC.password);
    const response = computeDigestResponse({
      algorithm: 'MD5',
      ha1,
      method: 'GET',
      uri: RFC.uri,
      nonce: RFC.nonce,
      cnonce: 'f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ',
      nc: RFC.nc,
      qop: 'auth',
    });
    assert.equal(response, '8ca523f5e9506fed4657c9700eebdbec');
  });

  it('reads algorithm names case-insensitively, MD5 when absent, and refuses others', () => {
    assert.equal(parseAlgorithm(undefined), 'MD5');
    assert.equal(parseAlgorithm('sha-256'), 'SHA-256');
    assert.equal(parseAlgorithm('MD5-sess'), 'MD5-sess');
    assert.equal(parseAlgorithm('SHA-512-256'), undefined);
  });
});

describe('credentials header', () => {
  it('parses quoted values holding commas, = and escaped quotes, and bare tokens', () => {
    const c = parseCredentials(
      'Digest username="al\\"ice", realm="peerbx.local",nonce="a,b=c" , uri="sip:peerbx.local;transport=udp", ' +
        'response="abc", algorithm=SHA-256, cnonce="x y", qop=auth, nc=0000000a, opaque=""',
    );
    assert.ok(c);
    assert.equal(c.scheme, 'Digest');
    assert.equal(c.params.username, 'al"ice');
    assert.equal(c.params.nonce, 'a,b=c');
    assert.equal(c.params.uri, 'sip:peerbx.local;transport=udp');
    assert.equal(c.params.algorithm, 'SHA-256');
    assert.equal(c.params.cnonce, 'x y');
    assert.equal(c.params.qop, 'auth');
    assert.equal(c.params.nc, '0000000a');
    assert.equal(c.params.opaque, '');
  });

  it('refuses malformed credentials', () => {
    for (const bad of [
      '',
      'Digest username',
      'Digest username="unterminated',
      'Digest a=1,, b=2',
      'Digest a=1 b=2',
      'Digest a=1, a=2',
      'Digest a=',
    ]) {
      assert.equal(parseCredentials(bad), undefined, bad);
    }
  });

  it('formats a challenge that parses back', () => {
    const text = formatChallenge({
      realm: 'peerbx.local',
      nonce: 'n1',
      opaque: 'o1',
      algorithm: 'SHA-256',
      stale: true,
    });
    assert.deepEqual(parseCredentials(text)?.params, {
      realm: 'peerbx.local',
      nonce: 'n1',
      opaque: 'o1',
      algorithm: 'SHA-256',
      qop: 'auth',
      stale: 'TRUE',
    });
  });
});

describe('nonces', () => {
  it('are valid until their lifetime, then stale; forged or foreign ones are invalid', () => {
    const { clock, advance } = fakeClock();
    const issuer = new NonceIssuer({ clock, realm: 'peerbx.local', lifetimeMs: 60_000 });
    const nonce = issuer.issue();
    assert.equal(issuer.check(nonce), 'valid');
    advance(59_000);
    assert.equal(issuer.check(nonce), 'valid');
    advance(2_000);
    assert.equal(issuer.check(nonce), 'stale');
    const other = new NonceIssuer({ clock, realm: 'peerbx.local' });
    assert.equal(other.check(nonce), 'invalid');
    const raw = Buffer.from(nonce, 'base64url');
    raw[3] = (raw[3] ?? 0) ^ 1;
    assert.equal(issuer.check(raw.toString('base64url')), 'invalid');
    assert.equal(issuer.check('not a nonce'), 'invalid');
  });

  it('accept each nonce-count once and only increasing', () => {
    const { clock } = fakeClock();
    const issuer = new NonceIssuer({ clock, realm: 'r' });
    const nonce = issuer.issue();
    assert.equal(issuer.acceptCount(nonce, 1), true);
    assert.equal(issuer.acceptCount(nonce, 1), false);
    assert.equal(issuer.acceptCount(nonce, 3), true);
    assert.equal(issuer.acceptCount(nonce, 2), false);
  });
});

describe('DigestAuthenticator', () => {
  const { clock, advance } = fakeClock();
  const auth = new DigestAuthenticator({
    realm: 'peerbx.local',
    clock,
    users: {
      alice: { password: 'wonderland' },
      bob: { ha1: { md5: computeHa1('MD5', 'bob', 'peerbx.local', 'builder') } },
    },
  });

  function register(authorization?: string): SipRequest {
    return parseSipMessage(
      [
        'REGISTER sip:peerbx.local SIP/2.0',
        'Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-a1',
        'From: <sip:alice@peerbx.local>;tag=1',
        'To: <sip:alice@peerbx.local>',
        'Call-ID: auth-unit@test',
        'CSeq: 1 REGISTER',
        ...(authorization ? [`Authorization: ${authorization}`] : []),
        'Content-Length: 0',
        '',
        '',
      ].join('\r\n'),
    ) as SipRequest;
  }

  function answer(
    user: string,
    password: string,
    algorithm: 'SHA-256' | 'MD5',
    nonce: string,
    nc = '00000001',
  ): string {
    const response = computeDigestResponse({
      algorithm,
      ha1: computeHa1(algorithm, user, 'peerbx.local', password),
      method: 'REGISTER',
      uri: 'sip:peerbx.local',
      nonce,
      cnonce: 'c0ffee',
      nc,
      qop: 'auth',
    });
    return `Digest username="${user}", realm="peerbx.local", nonce="${nonce}", uri="sip:peerbx.local", response="${response}", algorithm=${algorithm}, cnonce="c0ffee", qop=auth, nc=${nc}, opaque="${auth.nonces.opaque}"`;
  }

  it('challenges SHA-256 first, then MD5, with qop=auth and an opaque', () => {
    const out = auth.check(register(), 'registrar');
    assert.equal(out.ok, false);
    if (out.ok) return;
    assert.equal(out.response.status, 401);
    const challenges = out.response.headers.getAll('www-authenticate').map(parseCredentials);
    assert.deepEqual(
      challenges.map((c) => c?.params.algorithm),
      ['SHA-256', 'MD5'],
    );
    for (const c of challenges) {
      assert.equal(c?.params.qop, 'auth');
      assert.equal(c?.params.realm, 'peerbx.local');
      assert.equal(c?.params.opaque, auth.nonces.opaque);
    }
  });

  it('accepts password and HA1 users, rejects replays, stale and wrong answers', () => {
    const nonce = auth.nonces.issue();
    assert.deepEqual(
      auth.check(register(answer('alice', 'wonderland', 'SHA-256', nonce)), 'registrar'),
      {
        ok: true,
        user: 'alice',
      },
    );
    const replay = auth.check(
      register(answer('alice', 'wonderland', 'SHA-256', nonce)),
      'registrar',
    );
    assert.equal(replay.ok, false);
    assert.equal(auth.failures.replay, 1);
    const bob = auth.check(
      register(answer('bob', 'builder', 'MD5', nonce, '00000002')),
      'registrar',
    );
    assert.deepEqual(bob, { ok: true, user: 'bob' });
    // bob has only an MD5 HA1: a SHA-256 answer cannot be checked and is challenged again.
    assert.equal(
      auth.check(register(answer('bob', 'builder', 'SHA-256', nonce, '00000003')), 'registrar').ok,
      false,
    );
    const wrong = auth.check(
      register(answer('alice', 'rabbit', 'MD5', nonce, '00000005')),
      'registrar',
    );
    assert.equal(wrong.ok, false);
    if (!wrong.ok)
      assert.equal(wrong.response.header('WWW-Authenticate')?.includes('stale'), false);
    advance(6 * 60_000);
    const stale = auth.check(
      register(answer('alice', 'wonderland', 'MD5', nonce, '00000009')),
      'registrar',
    );
    assert.equal(stale.ok, false);
    if (!stale.ok) {
      assert.equal(stale.response.status, 401);
      assert.match(stale.response.header('WWW-Authenticate') ?? '', /stale=TRUE/);
    }
    const bad = auth.check(register('Digest username="alice", realm="peerbx.local"'), 'registrar');
    assert.equal(bad.ok, false);
    if (!bad.ok) assert.equal(bad.response.status, 400);
  });
});

describe('DigestAuthenticator with algorithms configured', () => {
  it('offers only those and refuses answers in any other', () => {
    const { clock } = fakeClock();
    const auth = new DigestAuthenticator({
      realm: 'peerbx.local',
      clock,
      users: { alice: { password: 'wonderland' } },
      algorithms: ['SHA-256'],
    });
    const nonce = auth.nonces.issue();
    const md5 = computeDigestResponse({
      algorithm: 'MD5',
      ha1: computeHa1('MD5', 'alice', 'peerbx.local', 'wonderland'),
      method: 'MESSAGE',
      uri: 'sip:bob@peerbx.local',
      nonce,
      cnonce: 'c',
      nc: '00000001',
      qop: 'auth',
    });
    const req = parseSipMessage(
      [
        'MESSAGE sip:bob@peerbx.local SIP/2.0',
        'Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-m1',
        'From: <sip:alice@peerbx.local>;tag=1',
        'To: <sip:bob@peerbx.local>',
        'Call-ID: alg@test',
        'CSeq: 1 MESSAGE',
        `Proxy-Authorization: Digest username="alice", realm="peerbx.local", nonce="${nonce}", uri="sip:bob@peerbx.local", response="${md5}", algorithm=MD5, cnonce="c", qop=auth, nc=00000001`,
        'Content-Length: 0',
        '',
        '',
      ].join('\r\n'),
    ) as SipRequest;
    const out = auth.check(req, 'proxy');
    assert.equal(out.ok, false);
    if (out.ok) return;
    assert.equal(out.response.status, 407);
    assert.deepEqual(
      out.response.headers
        .getAll('proxy-authenticate')
        .map((v) => parseCredentials(v)?.params.algorithm),
      ['SHA-256'],
    );
    assert.equal(auth.failures.algorithm, 1);
  });
});

describe('auth policy', () => {
  it('asks for credentials on non-loopback addresses, or always/never as configured', () => {
    assert.equal(authRequired('auto', ['127.0.0.1']), false);
    assert.equal(authRequired('auto', ['127.0.0.1', '::1', 'localhost']), false);
    assert.equal(authRequired('auto', ['0.0.0.0']), true);
    assert.equal(authRequired('auto', ['127.0.0.1', '192.168.1.20']), true);
    assert.equal(authRequired('always', ['127.0.0.1']), true);
    assert.equal(authRequired('never', ['10.0.0.1']), false);
  });
});
