// 256-bit identifiers and the XOR metric that orders them.

import { createHash } from 'node:crypto';
import { ID_BITS, ID_BYTES } from './constants.js';
import { DhtError } from './errors.js';
import type { Random } from './random.js';

/** A node-ID or key: exactly 32 bytes. */
export type NodeId = Uint8Array;

export function isNodeId(value: unknown): value is NodeId {
  return value instanceof Uint8Array && value.length === ID_BYTES;
}

export function assertNodeId(value: unknown, what = 'id'): asserts value is NodeId {
  if (!isNodeId(value)) throw new DhtError('ERR_INVALID_ID', `${what} must be ${ID_BYTES} bytes`);
}

export function idToHex(id: NodeId): string {
  return Buffer.from(id.buffer, id.byteOffset, id.byteLength).toString('hex');
}

export function idFromHex(hex: string): NodeId {
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) {
    throw new DhtError('ERR_INVALID_ID', `expected ${ID_BYTES * 2} hex digits, got "${hex}"`);
  }
  return new Uint8Array(Buffer.from(hex, 'hex'));
}

/** SHA-256 of arbitrary bytes or text: how names and public keys become IDs. */
export function hashToId(data: Uint8Array | string): NodeId {
  return new Uint8Array(createHash('sha256').update(data).digest());
}

export function idEquals(a: NodeId, b: NodeId): boolean {
  for (let i = 0; i < ID_BYTES; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function xorDistance(a: NodeId, b: NodeId): Uint8Array {
  const out = new Uint8Array(ID_BYTES);
  for (let i = 0; i < ID_BYTES; i++) out[i] = (a[i] as number) ^ (b[i] as number);
  return out;
}

/** Orders a and b by XOR distance to target without allocating: <0 when a is closer. */
export function compareDistance(target: NodeId, a: NodeId, b: NodeId): number {
  for (let i = 0; i < ID_BYTES; i++) {
    const t = target[i] as number;
    const da = (a[i] as number) ^ t;
    const db = (b[i] as number) ^ t;
    if (da !== db) return da - db;
  }
  return 0;
}

/** Number of leading bits a and b share (256 when equal). */
export function commonPrefixLength(a: NodeId, b: NodeId): number {
  for (let i = 0; i < ID_BYTES; i++) {
    const x = (a[i] as number) ^ (b[i] as number);
    if (x !== 0) return i * 8 + Math.clz32(x) - 24;
  }
  return ID_BITS;
}

/** Leading zero bits of an ID: the measure of the S/Kademlia crypto puzzle. */
export function leadingZeroBits(id: NodeId): number {
  for (let i = 0; i < id.length; i++) {
    const b = id[i] as number;
    if (b !== 0) return i * 8 + Math.clz32(b) - 24;
  }
  return id.length * 8;
}

/**
 * A random ID that shares exactly `prefixLength` leading bits with `own`: a target that lands
 * in the bucket at that depth, used for bucket refresh.
 */
export function randomIdAtPrefix(own: NodeId, prefixLength: number, random: Random): NodeId {
  const id = random.bytes(ID_BYTES);
  if (prefixLength >= ID_BITS) return new Uint8Array(own);
  const fullBytes = prefixLength >> 3;
  for (let i = 0; i < fullBytes; i++) id[i] = own[i] as number;
  const bit = prefixLength & 7;
  const ownByte = own[fullBytes] as number;
  const keepMask = (0xff << (8 - bit)) & 0xff; // bits shared with own
  const flip = 0x80 >> bit; // first differing bit
  const rest = ~(keepMask | flip) & 0xff;
  id[fullBytes] = (ownByte & keepMask) | (~ownByte & flip) | ((id[fullBytes] as number) & rest);
  return id;
}
