// A stored record: one kind's value under one resource, signed by the writing node and, for
// user kinds, by the user (RELOAD §6-7 StoredData with its signature). The signed bytes travel
// with the record, so every peer verifies exactly what the writer signed.
//
// Wire form: msgpack [tbs, userSignature | null, nodeSignature], where tbs is a msgpack map with
// small integer keys holding every other field; both signatures cover tbs. Unknown keys in tbs
// are ignored, so later versions can add fields. An empty value is a deletion tombstone.

import { hashToId, idToHex, type NodeId } from '@peerbx/dht-kademlia';
import { OverlayError } from '../errors.js';
import {
  type KeyPair,
  PUBLIC_KEY_BYTES,
  SIGNATURE_BYTES,
  signRemembered,
  verifyRemembered,
} from '../identity/keys.js';
import {
  bytesOf,
  decode,
  encode,
  encodeIntKeyMap,
  field,
  isBytes,
  isString,
  isUint,
  optionalField,
} from '../wire/codec.js';

/** Names what the signed bytes are, so a record signature never passes for anything else. */
const RECORD_TAG = 'peerbx-record/1';
/** Longest resource name, in UTF-16 units ("alice@peerbx.local", a node-ID in hex). */
export const MAX_RESOURCE_LENGTH = 256;
/** Longest user name a record may carry. */
export const MAX_USER_NAME_LENGTH = 128;
/** Longest dictionary key (a node-ID is 32). */
export const MAX_DICTIONARY_KEY_BYTES = 64;
/** Largest embedded certificate. */
export const MAX_CERTIFICATE_BYTES = 1024;
/**
 * Bytes a record adds around its value at most: tbs fields, user key and certificate, node
 * key, two signatures and framing. Storing peers accept a kind's largest value plus this.
 */
export const RECORD_OVERHEAD_BYTES =
  160 +
  MAX_RESOURCE_LENGTH * 3 +
  MAX_USER_NAME_LENGTH * 3 +
  MAX_DICTIONARY_KEY_BYTES +
  MAX_CERTIFICATE_BYTES;

// Integer keys of the to-be-signed map.
const F_TAG = 0;
const F_KIND = 1;
const F_RESOURCE = 2;
const F_DICTIONARY_KEY = 3;
const F_INDEX = 4;
const F_VALUE = 5;
const F_STORED_AT = 6;
const F_LIFETIME = 7;
const F_USER_NAME = 8;
const F_USER_KEY = 9;
const F_USER_CERT = 10;
const F_NODE_KEY = 11;

export interface RecordUser {
  readonly name: string;
  /** The user's raw Ed25519 public key. */
  readonly publicKey: Uint8Array;
  /** Encoded user certificate (enrolled overlays). */
  readonly certificate?: Uint8Array;
}

export interface StoredRecord {
  readonly kind: number;
  /** Resource name: "alice@peerbx.local" for user kinds, the node-ID in hex for NODE-INFO. */
  readonly resource: string;
  /** Dictionary-model kinds only. */
  readonly dictionaryKey?: Uint8Array;
  /** Array-model kinds only. */
  readonly index?: number;
  /** The kind's payload; empty = a deletion tombstone. */
  readonly value: Uint8Array;
  /** Writer's clock, ms since the epoch: the newer record of a slot wins. */
  readonly storedAt: number;
  readonly lifetimeMs: number;
  readonly user?: RecordUser;
  /** The writing node's raw public key. */
  readonly nodeKey: Uint8Array;
  readonly userSignature?: Uint8Array;
  readonly nodeSignature: Uint8Array;
  /** The exact bytes both signatures cover. */
  readonly tbs: Uint8Array;
}

export interface RecordParams {
  kind: number;
  resource: string;
  dictionaryKey?: Uint8Array;
  index?: number;
  /** Empty for a deletion tombstone. */
  value: Uint8Array;
  storedAt: number;
  lifetimeMs: number;
  /** Defaults to the resource's user part when user keys are given. */
  userName?: string;
  /** Encoded user certificate, for enrolled overlays. */
  certificate?: Uint8Array;
}

/** The DHT key of a resource: SHA-256 of its name. */
export function resourceId(resource: string): NodeId {
  return hashToId(resource);
}

/** "alice" of "alice@peerbx.local"; the whole name when it has no "@". */
export function userPartOf(resource: string): string {
  const at = resource.indexOf('@');
  return at < 0 ? resource : resource.slice(0, at);
}

/** The value-store slot a record occupies under its key: one per kind and entry. */
export function recordSlot(record: Pick<StoredRecord, 'kind' | 'dictionaryKey' | 'index'>): string {
  const entry =
    record.dictionaryKey !== undefined
      ? idToHex(record.dictionaryKey)
      : record.index !== undefined
        ? String(record.index)
        : '';
  return `${record.kind}:${entry}`;
}

export function isTombstone(record: StoredRecord): boolean {
  return record.value.length === 0;
}

/** When the record lapses, on the writer's clock. */
export function recordExpiresAt(record: StoredRecord): number {
  return record.storedAt + record.lifetimeMs;
}

/** Builds and signs a record: by the node always, by the user when user keys are given. */
export function createRecord(
  params: RecordParams,
  nodeKeys: KeyPair,
  userKeys?: KeyPair,
): StoredRecord {
  const bad = (what: string): never => {
    throw new OverlayError('ERR_MALFORMED', `record: ${what}`);
  };
  if (!isUint(params.kind) || params.kind > 0xffff) bad('kind must be an integer from 0 to 65535');
  if (params.resource.length === 0 || params.resource.length > MAX_RESOURCE_LENGTH) {
    bad(`resource must be 1-${MAX_RESOURCE_LENGTH} characters`);
  }
  if (params.dictionaryKey !== undefined && params.index !== undefined) {
    bad('a record has a dictionary key or an index, not both');
  }
  if (
    params.dictionaryKey !== undefined &&
    (params.dictionaryKey.length === 0 || params.dictionaryKey.length > MAX_DICTIONARY_KEY_BYTES)
  ) {
    bad(`dictionary key must be 1-${MAX_DICTIONARY_KEY_BYTES} bytes`);
  }
  if (params.index !== undefined && !isUint(params.index)) bad('index must be a whole number');
  if (!isUint(params.storedAt)) bad('storedAt must be a whole number of ms');
  if (!isUint(params.lifetimeMs)) bad('lifetimeMs must be a whole number of ms');
  if (!userKeys && (params.userName !== undefined || params.certificate !== undefined)) {
    bad('a user name or certificate needs the user keys to sign with');
  }
  const user: RecordUser | undefined = userKeys
    ? {
        name: params.userName ?? userPartOf(params.resource),
        publicKey: new Uint8Array(userKeys.publicKey),
        ...(params.certificate ? { certificate: new Uint8Array(params.certificate) } : {}),
      }
    : undefined;
  if (user && (user.name.length === 0 || user.name.length > MAX_USER_NAME_LENGTH)) {
    bad(`user name must be 1-${MAX_USER_NAME_LENGTH} characters`);
  }
  if (user?.certificate && user.certificate.length > MAX_CERTIFICATE_BYTES) {
    bad(`certificate must be at most ${MAX_CERTIFICATE_BYTES} bytes`);
  }
  const fields = {
    kind: params.kind,
    resource: params.resource,
    ...(params.dictionaryKey !== undefined
      ? { dictionaryKey: new Uint8Array(params.dictionaryKey) }
      : {}),
    ...(params.index !== undefined ? { index: params.index } : {}),
    value: new Uint8Array(params.value),
    storedAt: params.storedAt,
    lifetimeMs: params.lifetimeMs,
    ...(user ? { user } : {}),
    nodeKey: new Uint8Array(nodeKeys.publicKey),
  };
  const tbs = encodeIntKeyMap([
    [F_TAG, RECORD_TAG],
    [F_KIND, fields.kind],
    [F_RESOURCE, fields.resource],
    [F_DICTIONARY_KEY, fields.dictionaryKey],
    [F_INDEX, fields.index],
    [F_VALUE, fields.value],
    [F_STORED_AT, fields.storedAt],
    [F_LIFETIME, fields.lifetimeMs],
    [F_USER_NAME, user?.name],
    [F_USER_KEY, user?.publicKey],
    [F_USER_CERT, user?.certificate],
    [F_NODE_KEY, fields.nodeKey],
  ]);
  return {
    ...fields,
    ...(userKeys ? { userSignature: signRemembered(userKeys, tbs) } : {}),
    nodeSignature: signRemembered(nodeKeys, tbs),
    tbs,
  };
}

export function encodeRecord(record: StoredRecord): Uint8Array {
  return encode([record.tbs, record.userSignature ?? null, record.nodeSignature]);
}

/** Parses a record; throws ERR_MALFORMED on anything off. Signatures are checked by access.ts. */
export function decodeRecord(bytes: Uint8Array): StoredRecord {
  const bad = (what: string): never => {
    throw new OverlayError('ERR_MALFORMED', `record: ${what}`);
  };
  const outer = decode(bytes, 'record');
  if (!Array.isArray(outer) || outer.length !== 3) {
    return bad('not a [tbs, userSignature, nodeSignature] triple');
  }
  const [tbs, userSignature, nodeSignature] = outer as unknown[];
  if (!isBytes(tbs)) return bad('signed part is not bytes');
  if (
    userSignature !== null &&
    !(isBytes(userSignature) && userSignature.length === SIGNATURE_BYTES)
  ) {
    return bad('user signature is not 64 bytes');
  }
  if (!isBytes(nodeSignature) || nodeSignature.length !== SIGNATURE_BYTES) {
    return bad('node signature is not 64 bytes');
  }
  const map = decode(tbs, 'record body');
  const what = 'record';
  if (optionalField(map, F_TAG, isString, what) !== RECORD_TAG) {
    return bad('not a PeerBX record');
  }
  const kind = field(map, F_KIND, isUint, what);
  const resource = field(map, F_RESOURCE, isString, what);
  const dictionaryKey = optionalField(map, F_DICTIONARY_KEY, isBytes, what);
  const index = optionalField(map, F_INDEX, isUint, what);
  const value = field(map, F_VALUE, isBytes, what);
  const storedAt = field(map, F_STORED_AT, isUint, what);
  const lifetimeMs = field(map, F_LIFETIME, isUint, what);
  const userName = optionalField(map, F_USER_NAME, isString, what);
  const userKey = optionalField(map, F_USER_KEY, bytesOf(PUBLIC_KEY_BYTES), what);
  const certificate = optionalField(map, F_USER_CERT, isBytes, what);
  const nodeKey = field(map, F_NODE_KEY, bytesOf(PUBLIC_KEY_BYTES), what);

  if (kind > 0xffff) bad('kind is out of range');
  if (resource.length === 0 || resource.length > MAX_RESOURCE_LENGTH) {
    bad(`resource must be 1-${MAX_RESOURCE_LENGTH} characters`);
  }
  if (dictionaryKey !== undefined && index !== undefined)
    bad('has both a dictionary key and an index');
  if (
    dictionaryKey !== undefined &&
    (dictionaryKey.length === 0 || dictionaryKey.length > MAX_DICTIONARY_KEY_BYTES)
  ) {
    bad(`dictionary key must be 1-${MAX_DICTIONARY_KEY_BYTES} bytes`);
  }
  if ((userName === undefined) !== (userKey === undefined))
    bad('user name and user key go together');
  if (certificate !== undefined && userKey === undefined) bad('a certificate without a user');
  if (userName !== undefined && (userName.length === 0 || userName.length > MAX_USER_NAME_LENGTH)) {
    bad(`user name must be 1-${MAX_USER_NAME_LENGTH} characters`);
  }
  if (certificate !== undefined && certificate.length > MAX_CERTIFICATE_BYTES) {
    bad(`certificate must be at most ${MAX_CERTIFICATE_BYTES} bytes`);
  }
  if ((userSignature === null) !== (userKey === undefined)) {
    bad('a user signature goes with a user key, and only with one');
  }

  const user: RecordUser | undefined =
    userName !== undefined && userKey !== undefined
      ? { name: userName, publicKey: userKey, ...(certificate ? { certificate } : {}) }
      : undefined;
  return {
    kind,
    resource,
    ...(dictionaryKey !== undefined ? { dictionaryKey } : {}),
    ...(index !== undefined ? { index } : {}),
    value,
    storedAt,
    lifetimeMs,
    ...(user ? { user } : {}),
    nodeKey,
    ...(isBytes(userSignature) ? { userSignature } : {}),
    nodeSignature,
    tbs,
  };
}

/** The node signature over the signed bytes is valid. */
export function nodeSignatureValid(record: StoredRecord): boolean {
  return verifyRemembered(record.nodeKey, record.tbs, record.nodeSignature);
}

/** The record carries a user and the user signature over the signed bytes is valid. */
export function userSignatureValid(record: StoredRecord): boolean {
  return (
    record.user !== undefined &&
    record.userSignature !== undefined &&
    verifyRemembered(record.user.publicKey, record.tbs, record.userSignature)
  );
}
