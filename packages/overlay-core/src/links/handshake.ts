// Mutual authentication of a new link. Both sides send HELLO at once (node key, a fresh nonce,
// the overlay configuration hash, role, an ephemeral X25519 key), then AUTH: a signature over a
// transcript holding the other side's fresh nonce, so a recorded handshake cannot be replayed
// into a new session. Every later frame is sealed (AES-256-GCM) with keys from the ephemeral
// X25519 exchange, which the signatures cover: a signature alone proves only that the key
// holder took part in *a* handshake, and a relay could forward both sides' signatures and then
// inject frames into a plain stream; without the ephemeral private keys it cannot.

import {
  createCipheriv,
  createDecipheriv,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  type KeyObject,
  randomBytes,
} from 'node:crypto';
import type { Duplex } from 'node:stream';
import { type Clock, idEquals, idToHex, type NodeId, systemClock } from '@peerbx/dht-kademlia';
import { OverlayError, type OverlayErrorCode } from '../errors.js';
import { base64url, type KeyPair, meetsPuzzle, nodeIdOf, sign, verify } from '../identity/keys.js';
import {
  EPHEMERAL_KEY_BYTES,
  encodeFrame,
  type Frame,
  type FrameDecoder,
  type Hello,
  type LinkRole,
  NONCE_BYTES,
} from './framing.js';

/** Link protocol version this code speaks. */
export const LINK_PROTOCOL_VERSION = 1;
/** Domain separation for the signed transcript: these signatures mean nothing elsewhere. */
export const TRANSCRIPT_LABEL = 'peerbx-link-v1';
/** A handshake (TCP connect included, for dials) not finished by then closes the socket. */
export const HANDSHAKE_TIMEOUT_MS = 5000;
/** After a GOAWAY or a graceful close, how long we wait for the peer's FIN before destroying. */
export const LINGER_MS = 1000;

/** Why a handshake failed: the key of `LinkManager.stats.handshakesFailed`. */
export type HandshakeFailureReason =
  /** Not finished within the timeout. */
  | 'timeout'
  /** Bytes that do not decode as a frame, or an oversized frame. */
  | 'malformed'
  /** A decodable frame out of place (AUTH before HELLO, OPEN before the handshake ended). */
  | 'protocol'
  | 'version'
  | 'config-mismatch'
  /** The remote node-ID does not meet the crypto puzzle. */
  | 'puzzle'
  | 'signature'
  /** The node reached is not the node dialled. */
  | 'wrong-node'
  /** The remote presented our own node key. */
  | 'self'
  /** The remote sent GOAWAY. */
  | 'refused'
  /** The connection closed or failed during the handshake. */
  | 'closed'
  /** The TCP connection could not be made. */
  | 'unreachable'
  /** Too many handshakes in progress; the connection was dropped unread. */
  | 'overload';

export const HANDSHAKE_FAILURE_REASONS: readonly HandshakeFailureReason[] = [
  'timeout',
  'malformed',
  'protocol',
  'version',
  'config-mismatch',
  'puzzle',
  'signature',
  'wrong-node',
  'self',
  'refused',
  'closed',
  'unreachable',
  'overload',
];

/** An OverlayError that also says which failure it was, for statistics. */
export class HandshakeError extends OverlayError {
  readonly reason: HandshakeFailureReason;
  constructor(
    reason: HandshakeFailureReason,
    code: OverlayErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
    this.name = 'HandshakeError';
    this.reason = reason;
  }
}

export interface HandshakeParams {
  keys: KeyPair;
  configHash: Uint8Array;
  puzzleBits: number;
  role: LinkRole;
  /** Our overlay's name, sent only to word a configuration mismatch. */
  overlayName?: string;
  /** True on the dialling side. */
  initiator: boolean;
  /** The node the initiator means to reach; any other node is refused. */
  expectedNodeId?: NodeId;
  /** The remote's address, for error messages. */
  remoteAddress: string;
  timeoutMs?: number;
  clock?: Clock;
}

export interface HandshakeResult {
  /** Seals our frames and opens the peer's from now on. */
  cipher: FrameCipher;
  remotePublicKey: Uint8Array;
  remoteNodeId: NodeId;
  remoteRole: LinkRole;
  remoteOverlayName?: string;
  /** The version both sides speak: the lower of the two. */
  version: number;
}

/**
 * The bytes a side signs: label, its nonce, the peer's nonce, its node key, the peer's node key,
 * the configuration hash, its ephemeral key, the peer's ephemeral key.
 */
export function handshakeTranscript(
  own: { nonce: Uint8Array; publicKey: Uint8Array; ephemeralKey: Uint8Array },
  peer: { nonce: Uint8Array; publicKey: Uint8Array; ephemeralKey: Uint8Array },
  configHash: Uint8Array,
): Uint8Array {
  return Buffer.concat([
    Buffer.from(TRANSCRIPT_LABEL, 'utf8'),
    own.nonce,
    peer.nonce,
    own.publicKey,
    peer.publicKey,
    configHash,
    own.ephemeralKey,
    peer.ephemeralKey,
  ]);
}

export function newNonce(): Uint8Array {
  return new Uint8Array(randomBytes(NONCE_BYTES));
}

/** Bytes a sealed frame adds: the AES-GCM tag. */
export const SEAL_OVERHEAD_BYTES = 16;
const SESSION_INFO = `${TRANSCRIPT_LABEL} session keys`;

export interface EphemeralKey {
  readonly publicKey: Uint8Array;
  readonly privateKey: KeyObject;
}

/** A fresh X25519 key pair for one handshake. */
export function newEphemeralKey(): EphemeralKey {
  const { publicKey, privateKey } = generateKeyPairSync('x25519');
  // Out as DER, as every key generateKeyPairSync made (identity/keys.ts generateKeyPair).
  const der = publicKey.export({ type: 'spki', format: 'der' });
  return { publicKey: new Uint8Array(der.subarray(der.length - EPHEMERAL_KEY_BYTES)), privateKey };
}

/**
 * Session keys from the X25519 exchange: one key per direction, bound to both nonces and the
 * configuration. Throws ERR_MALFORMED for a peer key that yields no secret (a low-order point).
 */
export function deriveFrameCipher(p: {
  own: EphemeralKey;
  peerEphemeralKey: Uint8Array;
  initiator: boolean;
  initiatorNonce: Uint8Array;
  responderNonce: Uint8Array;
  configHash: Uint8Array;
}): FrameCipher {
  let shared: Buffer;
  try {
    shared = diffieHellman({
      privateKey: p.own.privateKey,
      publicKey: createPublicKey({
        key: {
          kty: 'OKP',
          crv: 'X25519',
          x: base64url(p.peerEphemeralKey),
        },
        format: 'jwk',
      }),
    });
  } catch (err) {
    throw new OverlayError('ERR_MALFORMED', 'the ephemeral key in HELLO is not usable', {
      cause: err,
    });
  }
  if (shared.every((b) => b === 0)) {
    throw new OverlayError('ERR_MALFORMED', 'the ephemeral key in HELLO is not usable');
  }
  const info = Buffer.concat([Buffer.from(SESSION_INFO), p.initiatorNonce, p.responderNonce]);
  const keys = Buffer.from(hkdfSync('sha256', shared, p.configHash, info, 64));
  const toResponder = keys.subarray(0, 32);
  const toInitiator = keys.subarray(32, 64);
  return p.initiator
    ? new FrameCipher(toResponder, toInitiator)
    : new FrameCipher(toInitiator, toResponder);
}

/**
 * AES-256-GCM for one link, a key and a frame counter (the nonce) per direction. Frames are
 * sealed and opened strictly in order, so a dropped, repeated, reordered or altered frame fails
 * to open and ends the link.
 */
export class FrameCipher {
  private readonly sendKey: Buffer;
  private readonly receiveKey: Buffer;
  private sent = 0;
  private received = 0;

  constructor(sendKey: Uint8Array, receiveKey: Uint8Array) {
    this.sendKey = Buffer.from(sendKey);
    this.receiveKey = Buffer.from(receiveKey);
  }

  /** The sealed frame with its length prefix, ready to write. */
  seal(body: Uint8Array): Buffer {
    const cipher = createCipheriv('aes-256-gcm', this.sendKey, counterNonce(this.sent++));
    const out = Buffer.allocUnsafe(4 + body.length + SEAL_OVERHEAD_BYTES);
    out.writeUInt32BE(body.length + SEAL_OVERHEAD_BYTES, 0);
    let at = 4 + cipher.update(body).copy(out, 4);
    at += cipher.final().copy(out, at);
    cipher.getAuthTag().copy(out, at);
    return out;
  }

  /** The body of a sealed frame (without its length prefix); throws ERR_MALFORMED if altered. */
  open(sealed: Uint8Array): Buffer {
    if (sealed.length < SEAL_OVERHEAD_BYTES + 1) {
      throw new OverlayError('ERR_MALFORMED', 'link frame is too short to be sealed');
    }
    const split = sealed.length - SEAL_OVERHEAD_BYTES;
    const decipher = createDecipheriv(
      'aes-256-gcm',
      this.receiveKey,
      counterNonce(this.received++),
    );
    decipher.setAuthTag(sealed.subarray(split));
    try {
      return Buffer.concat([decipher.update(sealed.subarray(0, split)), decipher.final()]);
    } catch {
      throw new OverlayError(
        'ERR_MALFORMED',
        'link frame fails authentication (altered, injected or out of order)',
      );
    }
  }
}

function counterNonce(n: number): Buffer {
  if (n >= Number.MAX_SAFE_INTEGER) {
    throw new OverlayError('ERR_LIMIT', 'link frame counter exhausted; reconnect');
  }
  const iv = Buffer.alloc(12);
  iv.writeUInt32BE(Math.floor(n / 0x1_0000_0000), 4);
  iv.writeUInt32BE(n >>> 0, 8);
  return iv;
}

function shortHex(bytes: Uint8Array): string {
  return `${Buffer.from(bytes).toString('hex').slice(0, 16)}…`;
}

function describeOverlay(name: string | undefined, hash: Uint8Array): string {
  return `${name !== undefined ? `"${name}"` : 'an unnamed overlay'} (config ${shortHex(hash)})`;
}

/**
 * Ends a stream politely: FIN after whatever is queued, keep reading (so the kernel does not
 * answer the peer's last bytes with a reset that would destroy our GOAWAY), destroy after a
 * grace period.
 */
export function endStream(stream: Duplex, clock: Clock = systemClock, lingerMs = LINGER_MS): void {
  if (stream.destroyed) return;
  stream.on('error', () => {});
  stream.on('data', () => {});
  stream.resume();
  const timer = clock.setTimeout(() => stream.destroy(), lingerMs);
  stream.once('close', () => clock.clearTimeout(timer));
  stream.end();
}

/**
 * Runs the handshake on a fresh stream. Resolves once the peer's AUTH has verified; the stream
 * is then paused and `decoder` holds whatever the peer sent after its AUTH, for the link to
 * read. On failure a GOAWAY naming the problem is sent where useful, the stream is ended, and
 * the promise rejects with a HandshakeError.
 */
export function runHandshake(
  stream: Duplex,
  decoder: FrameDecoder,
  params: HandshakeParams,
): Promise<HandshakeResult> {
  const clock = params.clock ?? systemClock;
  const timeoutMs = params.timeoutMs ?? HANDSHAKE_TIMEOUT_MS;
  const ownPublicKey = params.keys.publicKey;
  const ownNonce = newNonce();
  const ephemeral = newEphemeralKey();
  const own = { nonce: ownNonce, publicKey: ownPublicKey, ephemeralKey: ephemeral.publicKey };
  const where = `node at ${params.remoteAddress}`;

  return new Promise<HandshakeResult>((resolve, reject) => {
    let remote: Hello | undefined;
    let cipher: FrameCipher | undefined;
    let finished = false;

    const timer = clock.setTimeout(() => {
      fail(
        new HandshakeError(
          'timeout',
          'ERR_UNREACHABLE',
          `link handshake with ${where} did not finish within ${timeoutMs} ms`,
        ),
        'handshake timed out',
      );
    }, timeoutMs);

    const detach = () => {
      clock.clearTimeout(timer);
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('close', onEnd);
      stream.off('error', onError);
    };

    /** `goaway`: the reason told to the peer, if it should be told. */
    const fail = (err: HandshakeError, goaway?: string) => {
      if (finished) return;
      finished = true;
      detach();
      if (goaway !== undefined && stream.writable) {
        stream.write(encodeFrame({ type: 'GOAWAY', code: err.code, reason: goaway }));
      }
      endStream(stream, clock);
      reject(err);
    };

    const onEnd = () =>
      fail(
        new HandshakeError(
          'closed',
          'ERR_UNREACHABLE',
          `${where} closed the connection during the link handshake`,
        ),
      );
    const onError = (err: Error) =>
      fail(
        new HandshakeError(
          'closed',
          'ERR_UNREACHABLE',
          `connection to ${where} failed during the link handshake: ${err.message}`,
          { cause: err },
        ),
      );

    const onData = (chunk: Buffer) => {
      decoder.push(chunk);
      for (;;) {
        if (finished) return;
        try {
          const frame = decoder.next();
          if (!frame) return;
          onFrame(frame);
        } catch (err) {
          const code = err instanceof OverlayError ? err.code : 'ERR_MALFORMED';
          const message = (err as Error).message;
          fail(
            new HandshakeError('malformed', code, `${where}: ${message}`, { cause: err }),
            message,
          );
          return;
        }
      }
    };

    const onFrame = (frame: Frame) => {
      switch (frame.type) {
        case 'HELLO':
          if (remote) {
            fail(protocolError('a second HELLO'), 'a second HELLO');
            return;
          }
          onHello(frame.hello);
          return;
        case 'AUTH':
          if (!remote || !cipher) {
            fail(protocolError('AUTH before HELLO'), 'AUTH before HELLO');
            return;
          }
          onAuth(remote, cipher, frame.signature);
          return;
        case 'GOAWAY': {
          const code = frame.code ?? 'ERR_UNREACHABLE';
          const reason = code === 'ERR_CONFIG_MISMATCH' ? 'config-mismatch' : 'refused';
          fail(
            new HandshakeError(
              reason,
              code,
              `${where} refused the link: ${frame.reason || 'no reason given'}`,
            ),
          );
          return;
        }
        default:
          fail(
            protocolError(`a ${frame.type} frame before the handshake finished`),
            `${frame.type} before the handshake finished`,
          );
      }
    };

    const protocolError = (what: string) =>
      new HandshakeError('protocol', 'ERR_MALFORMED', `${where} sent ${what}`);

    const onHello = (hello: Hello) => {
      const remoteNodeId = nodeIdOf(hello.publicKey);
      if (hello.version < 1) {
        fail(
          new HandshakeError(
            'version',
            'ERR_VERSION',
            `${where} speaks link protocol version ${hello.version}; this node needs ${LINK_PROTOCOL_VERSION}`,
          ),
          `link protocol version ${hello.version} is not supported; this node speaks ${LINK_PROTOCOL_VERSION}`,
        );
        return;
      }
      // Also stops a reflected handshake: our own HELLO and AUTH mirrored back would verify.
      if (idEquals(hello.publicKey, ownPublicKey)) {
        fail(
          new HandshakeError(
            'self',
            'ERR_UNREACHABLE',
            `${where} is this node itself (or mirrors its key); not linking to ourselves`,
          ),
          'that is my own node key',
        );
        return;
      }
      if (!idEquals(hello.configHash, params.configHash)) {
        const ours = describeOverlay(params.overlayName, params.configHash);
        const theirs = describeOverlay(hello.overlayName, hello.configHash);
        fail(
          new HandshakeError(
            'config-mismatch',
            'ERR_CONFIG_MISMATCH',
            `configuration mismatch: ${where} runs ${theirs}, this node runs ${ours}; ` +
              'every node of one overlay needs the same overlay configuration (ask the overlay admin for it)',
          ),
          `configuration mismatch: this overlay is ${ours}, you run ${theirs}; ` +
            'get this overlay configuration from its admin',
        );
        return;
      }
      if (!meetsPuzzle(remoteNodeId, params.puzzleBits)) {
        fail(
          new HandshakeError(
            'puzzle',
            'ERR_PUZZLE',
            `${where} has node-ID ${idToHex(remoteNodeId)}, which does not meet the overlay's ${params.puzzleBits}-bit crypto puzzle`,
          ),
          `node-ID ${idToHex(remoteNodeId)} does not meet this overlay's ${params.puzzleBits}-bit crypto puzzle; ` +
            'generate new node keys (peerbx init)',
        );
        return;
      }
      const expected = params.expectedNodeId;
      if (params.initiator && expected && !idEquals(remoteNodeId, expected)) {
        fail(
          new HandshakeError(
            'wrong-node',
            'ERR_UNREACHABLE',
            `dialled node ${idToHex(expected)} at ${params.remoteAddress} but reached node ${idToHex(remoteNodeId)}; ` +
              'the address is stale or wrong',
          ),
          `I dialled node ${idToHex(expected)}, not you`,
        );
        return;
      }
      try {
        cipher = deriveFrameCipher({
          own: ephemeral,
          peerEphemeralKey: hello.ephemeralKey,
          initiator: params.initiator,
          initiatorNonce: params.initiator ? ownNonce : hello.nonce,
          responderNonce: params.initiator ? hello.nonce : ownNonce,
          configHash: params.configHash,
        });
      } catch (err) {
        const message = (err as Error).message;
        fail(
          new HandshakeError('protocol', 'ERR_MALFORMED', `${where}: ${message}`, { cause: err }),
          message,
        );
        return;
      }
      remote = hello;
      const transcript = handshakeTranscript(own, hello, params.configHash);
      stream.write(encodeFrame({ type: 'AUTH', signature: sign(params.keys, transcript) }));
    };

    const onAuth = (hello: Hello, sessionCipher: FrameCipher, signature: Uint8Array) => {
      const transcript = handshakeTranscript(hello, own, params.configHash);
      if (!verify(hello.publicKey, transcript, signature)) {
        fail(
          new HandshakeError(
            'signature',
            'ERR_SIGNATURE',
            `${where} failed to prove it holds the key of node ${idToHex(nodeIdOf(hello.publicKey))}: bad handshake signature`,
          ),
          'handshake signature does not verify',
        );
        return;
      }
      finished = true;
      detach();
      // The link takes the stream over; until then it must neither flow nor throw.
      stream.pause();
      stream.on('error', () => {});
      resolve({
        cipher: sessionCipher,
        remotePublicKey: hello.publicKey,
        remoteNodeId: nodeIdOf(hello.publicKey),
        remoteRole: hello.role,
        ...(hello.overlayName !== undefined ? { remoteOverlayName: hello.overlayName } : {}),
        version: Math.min(hello.version, LINK_PROTOCOL_VERSION),
      });
    };

    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('close', onEnd);
    stream.on('error', onError);
    if (stream.destroyed) {
      onEnd();
      return;
    }
    stream.write(
      encodeFrame({
        type: 'HELLO',
        hello: {
          version: LINK_PROTOCOL_VERSION,
          publicKey: ownPublicKey,
          nonce: ownNonce,
          configHash: params.configHash,
          role: params.role,
          ephemeralKey: ephemeral.publicKey,
          ...(params.overlayName !== undefined ? { overlayName: params.overlayName } : {}),
        },
      }),
    );
  });
}
