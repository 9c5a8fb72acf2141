// Digest authentication of phones (RFC 3261 §22): checks the Authorization (registrar, 401)
// or Proxy-Authorization (proxy, 407) of a request against the configured users, and builds
// the challenge when they are missing or not accepted. Credentials that are wrong get a
// fresh challenge (§22.2, §22.3: the server re-challenges; the UA stops re-trying the same
// password); 403 is left to the caller for an authenticated user acting for someone else.
// Guessing is throttled: a host that gave wrong credentials (or unknown users) too often in a
// minute is refused with 403 for a minute, for that user or, past a higher count, for all.

import { timingSafeEqual } from 'node:crypto';
import type { Clock } from '@peerbx/dht-kademlia';
import { type Logger, setBounded, silentLogger } from '@peerbx/overlay-core';
import { createResponse } from '../message/response.js';
import type { SipRequest, SipResponse } from '../message/sip-message.js';
import { isSipUri, parseUri, type SipUri, type Uri } from '../message/uri.js';
import {
  FAILED_LOGIN_WINDOW_MS,
  MAX_FAILED_LOGINS,
  MAX_FAILED_LOGINS_PER_HOST,
  MAX_TRACKED_LOGINS,
} from './constants.js';
import { formatChallenge, parseCredentials } from './credentials-header.js';
import {
  baseAlgorithm,
  computeDigestResponse,
  computeHa1,
  type DigestAlgorithm,
  OFFERED_ALGORITHMS,
  parseAlgorithm,
} from './digest.js';
import { NonceIssuer } from './nonce.js';

/** One user's secret: the password, or H(user:realm:password) per hash (realm = SIP domain). */
export type SipUserCredentials = { password: string } | { ha1: { md5?: string; sha256?: string } };

export type SipUsers = Readonly<Record<string, SipUserCredentials>>;

/** Who authenticates: the registrar (401/Authorization) or the proxy (407/Proxy-Authorization). */
export type AuthRole = 'registrar' | 'proxy';

export type AuthOutcome = { ok: true; user: string } | { ok: false; response: SipResponse };

export interface DigestAuthenticatorOptions {
  /** The realm: the overlay's SIP domain. */
  realm: string;
  users: SipUsers;
  clock: Clock;
  /** Nonce HMAC key (default random per process). */
  secret?: Uint8Array;
  nonceLifetimeMs?: number;
  /**
   * The algorithms offered, in order, and the only ones accepted; default SHA-256 then MD5.
   * MD5 alone serves phones that give up on the first challenge when it is SHA-256 (SIPp 3.6)
   * instead of skipping it as RFC 8760 §2.4 asks.
   */
  algorithms?: readonly ('SHA-256' | 'MD5')[];
  /**
   * Whether a URI names this node itself (no user part, one of its hosts). A digest `uri` that
   * does is taken with any Request-URI: SIPp, for one, puts the address it sends to there.
   * Such credentials were never bound to one target; those that name the Request-URI are.
   */
  isOwnUri?: (uri: SipUri) => boolean;
  logger?: Logger;
}

/** Why a request was challenged again (or refused, `locked`), for statistics and tests. */
export type AuthFailure =
  | 'missing'
  | 'malformed'
  | 'unknown-nonce'
  | 'algorithm'
  | 'unknown-user'
  | 'wrong'
  | 'stale'
  | 'replay'
  | 'locked'
  /** The digest's `uri` names another resource than the Request-URI. */
  | 'uri';

/** Failed logins per key (a host, or a host and a user name) within a window, and lockouts. */
class LoginThrottle {
  private readonly entries = new Map<string, { since: number; failures: number; until: number }>();

  /** Ms left of the key's lockout, 0 when it is not locked out. */
  lockedFor(key: string, now: number): number {
    const e = this.entries.get(key);
    return e && e.until > now ? e.until - now : 0;
  }

  /** Counts a failure; true when it locks the key out (for FAILED_LOGIN_WINDOW_MS). */
  failed(key: string, now: number, max: number): boolean {
    let e = this.entries.get(key);
    if (!e || now - e.since >= FAILED_LOGIN_WINDOW_MS) {
      e = { since: now, failures: 0, until: 0 };
      setBounded(this.entries, key, e, MAX_TRACKED_LOGINS);
    }
    e.failures++;
    if (e.failures < max || e.until > now) return false;
    e.until = now + FAILED_LOGIN_WINDOW_MS;
    return true;
  }

  forget(key: string): void {
    this.entries.delete(key);
  }
}

export class DigestAuthenticator {
  readonly realm: string;
  readonly nonces: NonceIssuer;
  readonly failures: Record<AuthFailure, number> = {
    missing: 0,
    malformed: 0,
    'unknown-nonce': 0,
    algorithm: 0,
    'unknown-user': 0,
    wrong: 0,
    stale: 0,
    replay: 0,
    locked: 0,
    uri: 0,
  };
  private readonly throttle = new LoginThrottle();
  private readonly clock: Clock;
  private readonly ha1 = new Map<string, { MD5?: string; 'SHA-256'?: string }>();
  private readonly log: Logger;
  private readonly algorithms: readonly DigestAlgorithm[];
  private readonly isOwnUri: (uri: SipUri) => boolean;

  constructor(options: DigestAuthenticatorOptions) {
    this.realm = options.realm;
    this.clock = options.clock;
    this.algorithms = options.algorithms?.length ? options.algorithms : OFFERED_ALGORITHMS;
    this.isOwnUri = options.isOwnUri ?? (() => false);
    this.log = (options.logger ?? silentLogger).child({ component: 'sip-auth' });
    this.nonces = new NonceIssuer({
      clock: options.clock,
      realm: options.realm,
      ...(options.secret ? { secret: options.secret } : {}),
      ...(options.nonceLifetimeMs === undefined ? {} : { lifetimeMs: options.nonceLifetimeMs }),
    });
    for (const [user, c] of Object.entries(options.users)) {
      if ('password' in c) {
        this.ha1.set(user, {
          MD5: computeHa1('MD5', user, this.realm, c.password),
          'SHA-256': computeHa1('SHA-256', user, this.realm, c.password),
        });
      } else {
        this.ha1.set(user, {
          ...(c.ha1.md5 ? { MD5: c.ha1.md5.toLowerCase() } : {}),
          ...(c.ha1.sha256 ? { 'SHA-256': c.ha1.sha256.toLowerCase() } : {}),
        });
      }
    }
  }

  /**
   * Checks the request's credentials for our realm; on failure, the 400/401/407 to send, or the
   * 403 of a lockout when `host` (the address the request came from) guessed too often.
   */
  check(request: SipRequest, role: AuthRole, host?: string): AuthOutcome {
    const header = role === 'registrar' ? 'authorization' : 'proxy-authorization';
    let creds: Record<string, string> | undefined;
    for (const value of request.headers.getAll(header)) {
      const parsed = parseCredentials(value);
      if (!parsed) return this.fail(request, role, 'malformed');
      if (parsed.scheme.toLowerCase() !== 'digest') continue;
      if (parsed.params.realm === this.realm) {
        creds = parsed.params;
        break;
      }
    }
    if (!creds) return this.fail(request, role, 'missing');
    const { username, nonce, uri, response, cnonce, nc, qop } = creds;
    const algorithm = parseAlgorithm(creds.algorithm);
    if (
      username === undefined ||
      nonce === undefined ||
      uri === undefined ||
      response === undefined ||
      cnonce === undefined ||
      nc === undefined ||
      !/^[0-9a-fA-F]{8}$/.test(nc) ||
      qop?.toLowerCase() !== 'auth' ||
      algorithm === undefined
    ) {
      return this.fail(request, role, 'malformed');
    }
    // RFC 3261 §22.4, RFC 7616 §3.4.6: credentials are for the request they came with. Else
    // one intercepted on its way could send another request, a call to elsewhere, say.
    if (!sameResource(uri, request, this.isOwnUri)) {
      return this.fail(request, role, 'uri', { username });
    }
    // A nonce or opaque we did not make: from before a restart (the phone's cached credentials),
    // or forged. Challenged afresh; stale=TRUE when the digest is right for it (below).
    const nonceState = this.nonces.check(nonce);
    const foreign =
      nonceState === 'invalid' ||
      (creds.opaque !== undefined && creds.opaque !== this.nonces.opaque);
    const ids = { username };
    const now = this.clock.now();
    const keys = host === undefined ? undefined : { host, user: `${host} ${username}` };
    if (keys) {
      const hostWait = this.throttle.lockedFor(keys.host, now);
      const wait = Math.max(hostWait, this.throttle.lockedFor(keys.user, now));
      if (wait > 0) {
        // Not checked, not logged: a guesser learns nothing and floods nothing.
        this.failures.locked++;
        const whose = hostWait > 0 ? '' : ' for this user';
        const reason = `Forbidden (too many failed logins${whose} from this address; try again in ${Math.ceil(wait / 1000)} s)`;
        return { ok: false, response: createResponse(request, 403, { reason }) };
      }
    }
    if (!this.algorithms.includes(baseAlgorithm(algorithm))) {
      return this.fail(request, role, foreign ? 'unknown-nonce' : 'algorithm', ids);
    }
    const ha1 = this.ha1.get(username)?.[baseAlgorithm(algorithm)];
    if (ha1 === undefined) {
      if (keys) this.guessed(keys, now, username);
      return this.fail(request, role, foreign ? 'unknown-nonce' : 'unknown-user', ids);
    }
    const expected = computeDigestResponse({
      algorithm,
      ha1,
      method: request.method,
      uri,
      nonce,
      cnonce,
      nc,
      qop: 'auth',
    });
    // Wrong for any nonce, ours or not: counted and logged as a wrong password either way.
    if (!sameHex(expected, response)) {
      if (keys) this.guessed(keys, now, username);
      return this.fail(request, role, 'wrong', ids);
    }
    // RFC 7616 §3.3: stale only when the response was right for a nonce no longer good: expired,
    // or one we no longer know (a phone whose node restarted retries at once with the new one;
    // without stale, some phones take the challenge for a wrong password and give up).
    if (foreign) return this.fail(request, role, 'unknown-nonce', ids, true);
    if (nonceState === 'stale') return this.fail(request, role, 'stale', ids, true);
    if (!this.nonces.acceptCount(nonce, Number.parseInt(nc, 16))) {
      return this.fail(request, role, 'replay', ids);
    }
    if (keys) this.throttle.forget(keys.user);
    return { ok: true, user: username };
  }

  /** A wrong password or unknown user from a host: counted, and a lockout logged once. */
  private guessed(keys: { host: string; user: string }, now: number, username: string): void {
    const user = this.throttle.failed(keys.user, now, MAX_FAILED_LOGINS);
    const host = this.throttle.failed(keys.host, now, MAX_FAILED_LOGINS_PER_HOST);
    if (user || host) {
      this.log.warn(
        { host: keys.host, user: host ? undefined : username, forS: FAILED_LOGIN_WINDOW_MS / 1000 },
        'too many failed logins: refused for a while',
      );
    }
  }

  /**
   * The 401 or 407 offering SHA-256 then MD5 (the configured algorithms, in order), each with a
   * fresh nonce. sip.js (0.21) keeps only the last challenge of a response, so MD5 last suits it.
   */
  challenge(request: SipRequest, role: AuthRole, stale = false): SipResponse {
    const name = role === 'registrar' ? 'WWW-Authenticate' : 'Proxy-Authenticate';
    const nonce = this.nonces.issue();
    return createResponse(request, role === 'registrar' ? 401 : 407, {
      headers: this.algorithms.map((algorithm: DigestAlgorithm) => ({
        name,
        value: formatChallenge({
          realm: this.realm,
          nonce,
          opaque: this.nonces.opaque,
          algorithm,
          stale,
        }),
      })),
    });
  }

  /**
   * Removes the credentials meant for our realm before a request is forwarded: they are for
   * this node, not the next hop (RFC 3261 §22.3).
   */
  stripCredentials(request: SipRequest): void {
    const values = request.headers.getAll('proxy-authorization');
    if (values.length === 0) return;
    const keep = values.filter((v) => parseCredentials(v)?.params.realm !== this.realm);
    if (keep.length === values.length) return;
    request.headers.delete('proxy-authorization');
    for (const v of keep) request.headers.append('Proxy-Authorization', v);
  }

  private fail(
    request: SipRequest,
    role: AuthRole,
    why: AuthFailure,
    ids: { username?: string } = {},
    stale = false,
  ): AuthOutcome {
    this.failures[why]++;
    if (why !== 'missing') {
      this.log.info(
        { why, user: ids.username, method: request.method, callId: request.callId },
        'digest credentials not accepted',
      );
    }
    if (why === 'malformed' || why === 'uri') {
      const reason =
        why === 'uri'
          ? 'Bad Request (the credentials are for another Request-URI)'
          : 'Bad Request (malformed credentials)';
      return { ok: false, response: createResponse(request, 400, { reason }) };
    }
    return { ok: false, response: this.challenge(request, role, stale) };
  }
}

function sameHex(expected: string, given: string): boolean {
  const a = Buffer.from(expected, 'utf8');
  const b = Buffer.from(given.toLowerCase(), 'utf8');
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * Whether a digest's `uri` is the request's Request-URI: the same text, or a SIP URI with the
 * same scheme, user, host (case aside), port and maddr (other parameters aside, as phones
 * differ there);
 * or one that names this node itself (isOwnUri).
 */
function sameResource(
  digestUri: string,
  request: SipRequest,
  isOwnUri: (uri: SipUri) => boolean,
): boolean {
  if (digestUri === request.uri) return true;
  let a: Uri;
  let b: Uri;
  try {
    a = parseUri(digestUri);
    b = request.requestUri;
  } catch {
    return false;
  }
  if (!isSipUri(a)) return false;
  if (isOwnUri(a) && a.params.maddr === undefined) return true;
  if (!isSipUri(b)) return false;
  return (
    a.scheme === b.scheme &&
    a.user === b.user &&
    a.host.toLowerCase() === b.host.toLowerCase() &&
    a.port === b.port &&
    // maddr sends the request elsewhere (RFC 3261 §19.1.4: it must match when either has it).
    (a.params.maddr ?? '').toLowerCase() === (b.params.maddr ?? '').toLowerCase()
  );
}
