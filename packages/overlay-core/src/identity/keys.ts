// Ed25519 identities for nodes and users. Signing and verification use node:crypto, about
// 15x faster than pure-JS Ed25519 on this machine class (DESIGN.md), since every overlay
// message and every stored record is verified.

import {
  createPrivateKey,
  createPublicKey,
  sign as cryptoSign,
  verify as cryptoVerify,
  generateKeyPairSync,
  hkdfSync,
  type KeyObject,
} from 'node:crypto';
import { hashToId, leadingZeroBits, type NodeId } from '@peerbx/dht-kademlia';
import { setBounded } from '../bounded-map.js';
import { OverlayError } from '../errors.js';

/** Raw Ed25519 public keys are 32 bytes, signatures 64. */
export const PUBLIC_KEY_BYTES = 32;
export const SIGNATURE_BYTES = 64;

export interface KeyPair {
  /** Raw 32-byte public key. */
  readonly publicKey: Uint8Array;
  readonly privateKey: KeyObject;
}

export function generateKeyPair(): KeyPair {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  // DER, not JWK (below): a key pair generateKeyPairSync made must never be exported as a
  // private JWK. Node 20 can deadlock there, when garbage collection during the export frees
  // the generating job, which takes the lock the export holds (seen: a first start hung).
  const der = publicKey.export({ type: 'spki', format: 'der' });
  return { publicKey: new Uint8Array(der.subarray(der.length - PUBLIC_KEY_BYTES)), privateKey };
}

// Keys are read in as JWK (RFC 8037: the raw key, base64url), not DER: OpenSSL 3 parses a
// DER key through its generic decoders, 10x slower here (createPublicKey 95 µs against 10,
// createPrivateKey 400 against 34, in a loop), and every user key new to a node is parsed
// once: by each storing peer and each fetcher of the user's records, and by its own node.

/** The raw 32-byte public key of a private key read in (createPrivateKey), 5 µs. */
function rawPublicKey(privateKey: KeyObject): Uint8Array {
  const jwk = createPublicKey(privateKey).export({ format: 'jwk' });
  return new Uint8Array(Buffer.from(jwk.x ?? '', 'base64url'));
}

// Parsed public keys are cached: the same few hundred peers sign most messages we see.
const publicKeyCache = new Map<string, KeyObject>();
const PUBLIC_KEY_CACHE_MAX = 10_000;

function publicKeyObject(raw: Uint8Array): KeyObject {
  const id = Buffer.from(raw).toString('base64');
  let key = publicKeyCache.get(id);
  if (!key) {
    key = createPublicKey({
      key: { kty: 'OKP', crv: 'Ed25519', x: base64url(raw) },
      format: 'jwk',
    });
    if (publicKeyCache.size >= PUBLIC_KEY_CACHE_MAX) publicKeyCache.clear();
    publicKeyCache.set(id, key);
  }
  return key;
}

export function sign(keys: KeyPair, data: Uint8Array): Uint8Array {
  return new Uint8Array(cryptoSign(null, data, keys.privateKey));
}

/** False (never a throw) for a bad key, a bad signature or a signature of the wrong length. */
export function verify(publicKey: Uint8Array, data: Uint8Array, signature: Uint8Array): boolean {
  if (publicKey.length !== PUBLIC_KEY_BYTES || signature.length !== SIGNATURE_BYTES) return false;
  try {
    return cryptoVerify(null, data, publicKeyObject(publicKey), signature);
  } catch {
    return false;
  }
}

// Record and certificate signatures found good before. A record is checked by every node
// that stores it and by every fetcher, and often again by the same node: fetched once more
// when a cached location runs out, offered again by a republish, or pre-checked while a fetch
// waits for its quorum; a user's certificate comes with each of the user's records. A hit
// costs a map lookup and two byte comparisons instead of an Ed25519 check (80-92 µs in
// bench:sip here). Keyed by the signature; the key and the signed bytes are compared in full,
// so a hit is exactly a (key, bytes, signature) triple that verified. Only successes are
// kept, the oldest dropped first when full.
const verifiedCache = new Map<string, { key: Uint8Array; data: Uint8Array }>();
const VERIFIED_CACHE_MAX = 8192;

/**
 * sign(), the signature remembered as good: a record this node signs is checked again by this
 * node when it is one of the record's storing peers, and when it fetches the record back. An
 * Ed25519 signature made with the key pair's own private key always verifies.
 */
export function signRemembered(keys: KeyPair, data: Uint8Array): Uint8Array {
  const signature = sign(keys, data);
  remember(signature, keys.publicKey, data);
  return signature;
}

/** verify(), remembering successes: for signatures that are checked again (stored records). */
export function verifyRemembered(
  publicKey: Uint8Array,
  data: Uint8Array,
  signature: Uint8Array,
): boolean {
  if (signature.length !== SIGNATURE_BYTES) return false;
  const id = Buffer.from(signature.buffer, signature.byteOffset, signature.byteLength).toString(
    'base64',
  );
  const hit = verifiedCache.get(id);
  if (hit && sameBytes(hit.key, publicKey) && sameBytes(hit.data, data)) return true;
  if (!verify(publicKey, data, signature)) return false;
  remember(signature, publicKey, data, id);
  return true;
}

function remember(
  signature: Uint8Array,
  publicKey: Uint8Array,
  data: Uint8Array,
  id = Buffer.from(signature.buffer, signature.byteOffset, signature.byteLength).toString('base64'),
): void {
  // Copies: the bytes given may be views into a datagram or a caller's buffer.
  setBounded(
    verifiedCache,
    id,
    { key: new Uint8Array(publicKey), data: new Uint8Array(data) },
    VERIFIED_CACHE_MAX,
  );
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

/** Node-ID = SHA-256 of the node's raw public key. */
export function nodeIdOf(publicKey: Uint8Array): NodeId {
  return hashToId(publicKey);
}

/**
 * The static crypto puzzle (S/Kademlia): a node-ID is admitted only when SHA-256 of the ID
 * starts with `difficulty` zero bits, so choosing an ID near a victim costs 2^difficulty
 * key generations per attempt.
 */
export function meetsPuzzle(nodeId: NodeId, difficulty: number): boolean {
  return difficulty <= 0 || leadingZeroBits(hashToId(nodeId)) >= difficulty;
}

/** Generates node keys until the node-ID meets the puzzle (about 2^difficulty tries). */
export function generateNodeKeyPair(difficulty: number): KeyPair {
  for (;;) {
    const keys = generateKeyPair();
    if (meetsPuzzle(nodeIdOf(keys.publicKey), difficulty)) return keys;
  }
}

/**
 * The key pair of a 32-byte seed (RFC 8032): users' keys derived from the node key, test
 * vectors. Node reads a private key's `d` alone (the public key is computed from it; `x` must
 * only be a string); the RFC 8032 test vectors check the pair.
 */
export function keyPairFromSeed(seed: Uint8Array): KeyPair {
  if (seed.length !== 32) throw new OverlayError('ERR_KEY_FILE', 'an Ed25519 seed is 32 bytes');
  const privateKey = createPrivateKey({
    key: { kty: 'OKP', crv: 'Ed25519', d: base64url(seed), x: '' },
    format: 'jwk',
  });
  return { publicKey: rawPublicKey(privateKey), privateKey };
}

/** The bytes in base64url (RFC 4648 §5), as JWK (RFC 7517) carries keys. */
export function base64url(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url');
}

/** HKDF salt of the user keys a node derives from its own (derivedUserKeys). */
const USER_KEY_SALT = 'peerbx user key v1';

/**
 * A local user's key, derived from the node key: HKDF-SHA256 of the node key's seed, with the
 * user name as info. The same at every start, so nothing has to be written for it before a
 * name is claimed with it, and no crash can lose it. Whoever has the node key can derive it,
 * as they could read a user's key file beside the node key; from a user key nothing leads
 * back to the node key or to other users' keys.
 */
export function derivedUserKeys(nodeKeys: KeyPair, user: string): KeyPair {
  let nodeSeed = seeds.get(nodeKeys.privateKey);
  if (!nodeSeed) {
    // PKCS#8 DER (its last 32 bytes), not JWK: the node key may be one generateKeyPairSync
    // made at this start (generateKeyPair).
    const der = nodeKeys.privateKey.export({ type: 'pkcs8', format: 'der' });
    nodeSeed = new Uint8Array(der.subarray(der.length - 32));
    seeds.set(nodeKeys.privateKey, nodeSeed);
  }
  return keyPairFromSeed(new Uint8Array(hkdfSync('sha256', nodeSeed, USER_KEY_SALT, user, 32)));
}

/** Node keys' seeds (RFC 8032's 32-byte private keys), read out once. */
const seeds = new WeakMap<KeyObject, Uint8Array>();

/** PKCS#8 PEM of the private key, for the data directory. */
export function exportPrivateKey(keys: KeyPair): string {
  return keys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
}

export function importPrivateKey(pem: string, what = 'key'): KeyPair {
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: pem, format: 'pem' });
  } catch (err) {
    throw new OverlayError('ERR_KEY_FILE', `${what} is not a PEM private key`, { cause: err });
  }
  if (privateKey.asymmetricKeyType !== 'ed25519') {
    throw new OverlayError(
      'ERR_KEY_FILE',
      `${what} is a ${privateKey.asymmetricKeyType} key, not ed25519`,
    );
  }
  return { publicKey: rawPublicKey(privateKey), privateKey };
}
