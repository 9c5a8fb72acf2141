// User certificates of an enrolled overlay: the offline overlay authority binds a user name to
// a user key for a period (RELOAD §6.3 uses X.509; a small signed msgpack map does the job here).
// The signature covers the exact to-be-signed bytes, which travel with it, so verification
// never depends on re-encoding.

import { OverlayError } from '../errors.js';
import {
  bytesOf,
  decode,
  encode,
  encodeIntKeyMap,
  field,
  isBytes,
  isString,
  isUint,
} from '../wire/codec.js';
import { type KeyPair, PUBLIC_KEY_BYTES, SIGNATURE_BYTES, sign, verifyRemembered } from './keys.js';

/** Names what the signed bytes are, so a certificate signature never passes for anything else. */
const CERTIFICATE_TAG = 'peerbx-cert/1';
/** Longest user name a certificate may carry, in UTF-16 units. */
export const MAX_CERTIFICATE_USER_LENGTH = 128;
/** Clock skew tolerated on notBefore, so a certificate issued "now" works at once on a slow peer. */
export const CERTIFICATE_CLOCK_SKEW_MS = 5 * 60_000;

// Integer keys of the to-be-signed map.
const F_TAG = 0;
const F_USER = 1;
const F_PUBLIC_KEY = 2;
const F_NOT_BEFORE = 3;
const F_NOT_AFTER = 4;
const F_AUTHORITY = 5;

export interface UserCertificate {
  /** The AOR user part ("alice") or the full name ("alice@peerbx.local"). */
  readonly user: string;
  /** The user's raw Ed25519 public key. */
  readonly publicKey: Uint8Array;
  /** Validity period, ms since the epoch. */
  readonly notBefore: number;
  readonly notAfter: number;
  /** The issuing authority's raw public key. */
  readonly authorityKey: Uint8Array;
  readonly signature: Uint8Array;
  /** The exact bytes the signature covers. */
  readonly tbs: Uint8Array;
}

export type CertificateProblem = 'wrong-authority' | 'bad-signature' | 'not-yet-valid' | 'expired';

export type CertificateVerdict =
  | { readonly ok: true }
  | { readonly ok: false; readonly problem: CertificateProblem; readonly reason: string };

export function issueCertificate(
  authority: KeyPair,
  user: string,
  userPublicKey: Uint8Array,
  lifetimeMs: number,
  now: number,
): UserCertificate {
  checkUser(user);
  if (userPublicKey.length !== PUBLIC_KEY_BYTES) {
    throw new OverlayError('ERR_CERTIFICATE', `user key must be ${PUBLIC_KEY_BYTES} bytes`);
  }
  if (!Number.isSafeInteger(lifetimeMs) || lifetimeMs <= 0) {
    throw new OverlayError(
      'ERR_CERTIFICATE',
      'certificate lifetime must be a positive number of ms',
    );
  }
  const notBefore = Math.floor(now);
  const notAfter = notBefore + lifetimeMs;
  const tbs = encodeIntKeyMap([
    [F_TAG, CERTIFICATE_TAG],
    [F_USER, user],
    [F_PUBLIC_KEY, new Uint8Array(userPublicKey)],
    [F_NOT_BEFORE, notBefore],
    [F_NOT_AFTER, notAfter],
    [F_AUTHORITY, new Uint8Array(authority.publicKey)],
  ]);
  return {
    user,
    publicKey: new Uint8Array(userPublicKey),
    notBefore,
    notAfter,
    authorityKey: new Uint8Array(authority.publicKey),
    signature: sign(authority, tbs),
    tbs,
  };
}

/** Wire form: a msgpack array [tbs, signature]. */
export function encodeCertificate(cert: UserCertificate): Uint8Array {
  return encode([cert.tbs, cert.signature]);
}

/** Parses a certificate; throws ERR_MALFORMED on anything off. Does not verify it. */
export function decodeCertificate(bytes: Uint8Array): UserCertificate {
  const outer = decode(bytes, 'certificate');
  if (!Array.isArray(outer) || outer.length !== 2) {
    throw new OverlayError('ERR_MALFORMED', 'certificate is not a [tbs, signature] pair');
  }
  const [tbs, signature] = outer as unknown[];
  if (!isBytes(tbs) || !isBytes(signature) || signature.length !== SIGNATURE_BYTES) {
    throw new OverlayError('ERR_MALFORMED', 'certificate is not a [tbs, signature] pair');
  }
  const map = decode(tbs, 'certificate body');
  const what = 'certificate';
  if (field(map, F_TAG, isString, what) !== CERTIFICATE_TAG) {
    throw new OverlayError('ERR_MALFORMED', 'certificate body is not a PeerBX user certificate');
  }
  const user = field(map, F_USER, isString, what);
  const publicKey = field(map, F_PUBLIC_KEY, bytesOf(PUBLIC_KEY_BYTES), what);
  const notBefore = field(map, F_NOT_BEFORE, isUint, what);
  const notAfter = field(map, F_NOT_AFTER, isUint, what);
  const authorityKey = field(map, F_AUTHORITY, bytesOf(PUBLIC_KEY_BYTES), what);
  try {
    checkUser(user);
  } catch (err) {
    throw new OverlayError('ERR_MALFORMED', (err as Error).message);
  }
  if (notAfter <= notBefore) {
    throw new OverlayError('ERR_MALFORMED', 'certificate ends before it begins');
  }
  return { user, publicKey, notBefore, notAfter, authorityKey, signature, tbs };
}

/**
 * Checks that the overlay's authority signed the certificate and that it is current. The
 * authority is the configuration's, never the key the certificate names.
 */
export function verifyCertificate(
  cert: UserCertificate,
  authorityKeyHex: string,
  now: number,
): CertificateVerdict {
  const authority = /^[0-9a-fA-F]{64}$/.test(authorityKeyHex)
    ? new Uint8Array(Buffer.from(authorityKeyHex, 'hex'))
    : undefined;
  if (!authority || Buffer.compare(authority, cert.authorityKey) !== 0) {
    return {
      ok: false,
      problem: 'wrong-authority',
      reason: `certificate for ${cert.user} is not signed by this overlay's authority`,
    };
  }
  // Remembered: the same certificate comes with every record its user's phones register.
  if (!verifyRemembered(authority, cert.tbs, cert.signature)) {
    return {
      ok: false,
      problem: 'bad-signature',
      reason: `certificate for ${cert.user} has a bad signature (altered or not from this overlay's authority)`,
    };
  }
  if (now + CERTIFICATE_CLOCK_SKEW_MS < cert.notBefore) {
    return {
      ok: false,
      problem: 'not-yet-valid',
      reason: `certificate for ${cert.user} is not valid before ${isoTime(cert.notBefore)}`,
    };
  }
  if (now >= cert.notAfter) {
    return {
      ok: false,
      problem: 'expired',
      reason: `certificate for ${cert.user} expired ${isoTime(cert.notAfter)}; ask the overlay admin for a new one (peerbx ca)`,
    };
  }
  return { ok: true };
}

function checkUser(user: string): void {
  if (user.length === 0 || user.length > MAX_CERTIFICATE_USER_LENGTH || /[\s\p{Cc}]/u.test(user)) {
    throw new OverlayError(
      'ERR_CERTIFICATE',
      `certificate user must be 1-${MAX_CERTIFICATE_USER_LENGTH} characters without spaces or control characters`,
    );
  }
}

function isoTime(ms: number): string {
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? String(ms) : d.toISOString();
}
