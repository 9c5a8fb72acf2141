// The overlay message: a small fixed forwarding header, a MessagePack body and the sender's
// signature over everything before it. Specified in docs/protocol.md.
//
//   magic "PX" | version | ttl | overlay hash (4) | message kind (2) | txid (4) | flags |
//   via count | dest count | via ids (32 each) | dest ids (32 each) | body length (2) | body |
//   sender public key (32) | timestamp ms (8) | signature (64)
//
// Bytes 0-13 (magic, version, ttl, overlay hash, kind, txid) keep their place in every
// version, so a node can tell a sender of another version which one it speaks.

import type { NodeId } from '@peerbx/dht-kademlia';
import { WIRE_VERSION } from '../constants.js';
import { OverlayError } from '../errors.js';
import {
  type KeyPair,
  nodeIdOf,
  PUBLIC_KEY_BYTES,
  SIGNATURE_BYTES,
  sign,
  verify,
} from '../identity/keys.js';
import { decode, encode } from './codec.js';

export const MAGIC = 0x5058; // "PX"
export const FIXED_HEADER_BYTES = 17;
export const SECURITY_BLOCK_BYTES = PUBLIC_KEY_BYTES + 8 + SIGNATURE_BYTES;
const ID_BYTES = 32;

export const MessageKind = {
  DHT_REQUEST: 1,
  DHT_RESPONSE: 2,
} as const;
export type MessageKind = (typeof MessageKind)[keyof typeof MessageKind];

export const Flags = {
  RESPONSE: 0x01,
  CLIENT: 0x02,
} as const;

export interface OverlayHeader {
  version: number;
  ttl: number;
  /** First 4 bytes of the configuration hash. */
  overlayHash: Uint8Array;
  kind: number;
  txid: number;
  flags: number;
  via: NodeId[];
  destination: NodeId[];
}

export interface DecodedMessage {
  header: OverlayHeader;
  body: unknown;
  senderKey: Uint8Array;
  senderId: NodeId;
  timestamp: number;
  signature: Uint8Array;
  /** Length of the whole message in bytes. */
  size: number;
}

/** A message of a version this node does not speak; the header tells whom to answer. */
export class UnsupportedVersionError extends OverlayError {
  constructor(
    readonly version: number,
    readonly txid: number,
    readonly kind: number,
  ) {
    super(
      'ERR_VERSION',
      `unsupported overlay wire version ${version}; this node speaks ${WIRE_VERSION}`,
    );
  }
}

export function encodeOverlayMessage(
  header: Omit<OverlayHeader, 'version'>,
  bodyBytes: Uint8Array,
  keys: KeyPair,
  timestamp: number,
): Uint8Array {
  if (header.via.length > 255 || header.destination.length > 255) {
    throw new OverlayError('ERR_LIMIT', 'via and destination lists hold at most 255 entries');
  }
  if (bodyBytes.length > 0xffff)
    throw new OverlayError('ERR_LIMIT', 'message body over 65535 bytes');
  const size =
    FIXED_HEADER_BYTES +
    ID_BYTES * (header.via.length + header.destination.length) +
    2 +
    bodyBytes.length +
    SECURITY_BLOCK_BYTES;
  const out = Buffer.alloc(size);
  out.writeUInt16BE(MAGIC, 0);
  out[2] = WIRE_VERSION;
  out[3] = header.ttl & 0xff;
  out.set(header.overlayHash.subarray(0, 4), 4);
  out.writeUInt16BE(header.kind, 8);
  out.writeUInt32BE(header.txid >>> 0, 10);
  out[14] = header.flags & 0xff;
  out[15] = header.via.length;
  out[16] = header.destination.length;
  let at = FIXED_HEADER_BYTES;
  for (const id of [...header.via, ...header.destination]) {
    out.set(id, at);
    at += ID_BYTES;
  }
  out.writeUInt16BE(bodyBytes.length, at);
  at += 2;
  out.set(bodyBytes, at);
  at += bodyBytes.length;
  out.set(keys.publicKey, at);
  at += PUBLIC_KEY_BYTES;
  out.writeBigUInt64BE(BigInt(Math.max(0, Math.floor(timestamp))), at);
  at += 8;
  out.set(sign(keys, out.subarray(0, at)), at);
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
}

/** Bytes of the body for a header + body, used to size-check before signing. */
export function overheadBytes(via: number, destination: number): number {
  return FIXED_HEADER_BYTES + ID_BYTES * (via + destination) + 2 + SECURITY_BLOCK_BYTES;
}

/**
 * Kind and transaction id from the fixed header of a message of this version (bytes 0-13),
 * nothing else checked; undefined for anything else. For dropping a datagram before it costs
 * a signature check.
 */
export function peekOverlayMessage(data: Uint8Array): { kind: number; txid: number } | undefined {
  if (data.length < FIXED_HEADER_BYTES) return undefined;
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (buf.readUInt16BE(0) !== MAGIC || buf[2] !== WIRE_VERSION) return undefined;
  return { kind: buf.readUInt16BE(8), txid: buf.readUInt32BE(10) };
}

/**
 * Parses and verifies one message. Throws ERR_MALFORMED for bad framing, ERR_VERSION
 * (UnsupportedVersionError) for another version, ERR_SIGNATURE for a bad signature.
 */
export function decodeOverlayMessage(data: Uint8Array): DecodedMessage {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const malformed = (what: string): never => {
    throw new OverlayError('ERR_MALFORMED', `overlay message: ${what}`);
  };
  if (buf.length < 14) malformed(`only ${buf.length} bytes`);
  if (buf.readUInt16BE(0) !== MAGIC) malformed('bad magic');
  const version = buf[2] as number;
  if (version !== WIRE_VERSION) {
    throw new UnsupportedVersionError(version, buf.readUInt32BE(10), buf.readUInt16BE(8));
  }
  if (buf.length < FIXED_HEADER_BYTES + 2 + SECURITY_BLOCK_BYTES) malformed('too short');
  const viaCount = buf[15] as number;
  const destCount = buf[16] as number;
  let at = FIXED_HEADER_BYTES;
  const ids = (n: number): NodeId[] => {
    const out: NodeId[] = [];
    for (let i = 0; i < n; i++) {
      if (at + ID_BYTES > buf.length) malformed('via/destination list runs past the end');
      out.push(new Uint8Array(buf.subarray(at, at + ID_BYTES)));
      at += ID_BYTES;
    }
    return out;
  };
  const via = ids(viaCount);
  const destination = ids(destCount);
  if (at + 2 > buf.length) malformed('no body length');
  const bodyLength = buf.readUInt16BE(at);
  at += 2;
  if (at + bodyLength + SECURITY_BLOCK_BYTES !== buf.length) {
    malformed(`body length ${bodyLength} does not match message size ${buf.length}`);
  }
  const bodyBytes = buf.subarray(at, at + bodyLength);
  at += bodyLength;
  const senderKey = new Uint8Array(buf.subarray(at, at + PUBLIC_KEY_BYTES));
  at += PUBLIC_KEY_BYTES;
  const timestamp = Number(buf.readBigUInt64BE(at));
  at += 8;
  const signature = new Uint8Array(buf.subarray(at, at + SIGNATURE_BYTES));
  if (!verify(senderKey, buf.subarray(0, at), signature)) {
    throw new OverlayError('ERR_SIGNATURE', 'overlay message signature does not verify');
  }
  return {
    header: {
      version,
      ttl: buf[3] as number,
      overlayHash: new Uint8Array(buf.subarray(4, 8)),
      kind: buf.readUInt16BE(8),
      txid: buf.readUInt32BE(10),
      flags: buf[14] as number,
      via,
      destination,
    },
    body: decode(bodyBytes, 'overlay message body'),
    senderKey,
    senderId: nodeIdOf(senderKey),
    timestamp,
    signature,
    size: buf.length,
  };
}

export function encodeBody(body: unknown): Uint8Array {
  return encode(body);
}
