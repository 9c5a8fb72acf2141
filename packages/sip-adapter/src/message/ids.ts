// Fresh identifiers: Via branches (RFC 3261 §8.1.1.7), From/To tags (§19.3) and Call-IDs
// (§8.1.1.4). Randomness is injected so tests and the simulator can be deterministic.

import { pooledRandomBytes } from '@peerbx/dht-kademlia';
import {
  BRANCH_MAGIC_COOKIE,
  BRANCH_RANDOM_BYTES,
  CALL_ID_RANDOM_BYTES,
  TAG_RANDOM_BYTES,
} from '../constants.js';

/** n random bytes; node:crypto by default. */
export type RandomBytes = (n: number) => Uint8Array;

/** Bytes from node:crypto, drawn a block at a time (one call per few hundred ids). */
const cryptoBytes: RandomBytes = pooledRandomBytes;

// base64url is all token characters, so the results are valid in branch/tag/Call-ID.
const encode = (b: Uint8Array) =>
  Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64url');

export function generateBranch(random: RandomBytes = cryptoBytes): string {
  return BRANCH_MAGIC_COOKIE + encode(random(BRANCH_RANDOM_BYTES));
}

export function generateTag(random: RandomBytes = cryptoBytes): string {
  return encode(random(TAG_RANDOM_BYTES));
}

/** A Call-ID, `random@host` when a host is given. */
export function generateCallId(host?: string, random: RandomBytes = cryptoBytes): string {
  const id = encode(random(CALL_ID_RANDOM_BYTES));
  return host ? `${id}@${host}` : id;
}

/**
 * True for a branch made by an RFC 3261 element: the magic cookie and something after it
 * (RFC 4475 §3.2.1 badbranch: the bare cookie identifies nothing). Otherwise the transaction
 * layer falls back to RFC 2543 matching (RFC 3261 §17.2.3).
 */
export function isRfc3261Branch(branch: string | undefined): boolean {
  return (
    branch !== undefined &&
    branch.length > BRANCH_MAGIC_COOKIE.length &&
    branch.startsWith(BRANCH_MAGIC_COOKIE)
  );
}
