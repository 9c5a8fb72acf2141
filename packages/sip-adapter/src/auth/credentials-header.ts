// Authorization / Proxy-Authorization values (RFC 3261 §25.1 `credentials`, RFC 7616 §3.4):
// a scheme, then comma-separated auth-params whose quoted values may hold commas and escapes.
// Also formats the WWW-Authenticate / Proxy-Authenticate challenges this node sends.

import { quote, Scanner } from '../message/lexer.js';
import type { DigestAlgorithm } from './digest.js';

export interface Credentials {
  /** The scheme as sent ('Digest'); compare case-insensitively. */
  scheme: string;
  /** Parameter names lower-cased; quoted values unquoted. */
  params: Record<string, string>;
}

/** Parses one credentials value, or returns undefined when it is malformed. */
export function parseCredentials(value: string): Credentials | undefined {
  const sc = new Scanner(value);
  sc.skipWs();
  const scheme = sc.token();
  if (scheme === '') return undefined;
  const params: Record<string, string> = {};
  sc.skipWs();
  if (sc.done) return { scheme, params };
  for (;;) {
    sc.skipWs();
    const name = sc.token().toLowerCase();
    if (name === '' || !sc.eat(0x3d /* = */)) return undefined;
    let v: string | undefined;
    if (sc.peek() === 0x22) v = sc.quoted();
    else {
      v = sc.token();
      if (v === '') v = undefined;
    }
    if (v === undefined || name in params) return undefined;
    params[name] = v;
    sc.skipWs();
    if (sc.done) return { scheme, params };
    if (!sc.eat(0x2c /* , */)) return undefined;
  }
}

export interface ChallengeInput {
  realm: string;
  nonce: string;
  opaque: string;
  algorithm: DigestAlgorithm;
  stale?: boolean;
}

/** One Digest challenge with qop=auth (RFC 7616 §3.3). */
export function formatChallenge(c: ChallengeInput): string {
  return `Digest realm=${quote(c.realm)}, nonce=${quote(c.nonce)}, opaque=${quote(c.opaque)}, algorithm=${c.algorithm}, qop="auth"${c.stale ? ', stale=TRUE' : ''}`;
}
