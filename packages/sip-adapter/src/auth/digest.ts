// The digest computations of RFC 7616 §3.4.1 (with RFC 8760's SHA-256 for SIP): H(A1), H(A2)
// and the `response` for qop=auth, for MD5 and SHA-256 and their -sess variants.

import { createHash } from 'node:crypto';

export type DigestAlgorithm = 'MD5' | 'MD5-sess' | 'SHA-256' | 'SHA-256-sess';

/** The algorithms this node offers in challenges, strongest first (RFC 8760 §2.4). */
export const OFFERED_ALGORITHMS: readonly DigestAlgorithm[] = ['SHA-256', 'MD5'];

/** The algorithm an `algorithm=` value names (case-insensitive; absent means MD5), or undefined. */
export function parseAlgorithm(value: string | undefined): DigestAlgorithm | undefined {
  switch ((value ?? 'MD5').toUpperCase()) {
    case 'MD5':
      return 'MD5';
    case 'MD5-SESS':
      return 'MD5-sess';
    case 'SHA-256':
      return 'SHA-256';
    case 'SHA-256-SESS':
      return 'SHA-256-sess';
    default:
      return undefined;
  }
}

/** The base hash of an algorithm: 'MD5' or 'SHA-256'. */
export function baseAlgorithm(algorithm: DigestAlgorithm): 'MD5' | 'SHA-256' {
  return algorithm.startsWith('SHA-256') ? 'SHA-256' : 'MD5';
}

/** H(data) as lower-case hex. */
export function digestHash(algorithm: DigestAlgorithm, data: string): string {
  return createHash(baseAlgorithm(algorithm) === 'MD5' ? 'md5' : 'sha256')
    .update(data, 'utf8')
    .digest('hex');
}

/** H(username:realm:password), what a configuration may store instead of the password. */
export function computeHa1(
  algorithm: DigestAlgorithm,
  username: string,
  realm: string,
  password: string,
): string {
  return digestHash(algorithm, `${username}:${realm}:${password}`);
}

export interface DigestResponseInput {
  algorithm: DigestAlgorithm;
  /** H(username:realm:password) of the algorithm's base hash. */
  ha1: string;
  method: string;
  /** The `uri` parameter of the credentials (digest-uri), as the client sent it. */
  uri: string;
  nonce: string;
  cnonce: string;
  /** The nonce-count, 8 hex digits as sent. */
  nc: string;
  qop: 'auth';
}

/** The `response` value for qop=auth (RFC 7616 §3.4.1); -sess folds nonce and cnonce into A1. */
export function computeDigestResponse(input: DigestResponseInput): string {
  const { algorithm, method, uri, nonce, cnonce, nc, qop } = input;
  const ha1 = algorithm.endsWith('-sess')
    ? digestHash(algorithm, `${input.ha1}:${nonce}:${cnonce}`)
    : input.ha1;
  const ha2 = digestHash(algorithm, `${method}:${uri}`);
  return digestHash(algorithm, `${ha1}:${nonce}:${nc}:${cnonce}:${qop}:${ha2}`);
}
