// Link frames: a u32 big-endian length, then one type byte and the frame's payload. Handshake
// and GOAWAY frames carry MessagePack maps (extensible: unknown keys are ignored); channel
// frames, the hot path, use a fixed binary layout so a SIP message is never re-encoded.
// After the handshake every frame body is sealed (see handshake.ts); the length then counts
// the sealed bytes.

import { OverlayError, type OverlayErrorCode } from '../errors.js';
import { PUBLIC_KEY_BYTES, SIGNATURE_BYTES } from '../identity/keys.js';
import { bytesOf, decode, encode, field, isString, isUint, optionalField } from '../wire/codec.js';

/** Largest frame (type byte and payload) a peer may send; a peer exceeding it is disconnected. */
export const MAX_FRAME_BYTES = 1024 * 1024;
/** Largest frame before the handshake has finished: an unauthenticated peer gets little buffer. */
export const HANDSHAKE_MAX_FRAME_BYTES = 4096;
/** Bytes a DATA frame adds around a message: type byte and channel ID. */
export const DATA_OVERHEAD_BYTES = 5;
/** Largest message a channel can carry in one DATA frame. */
export const MAX_MESSAGE_BYTES = MAX_FRAME_BYTES - DATA_OVERHEAD_BYTES;
/** Length of handshake nonces. */
export const NONCE_BYTES = 32;
/** Length of the overlay configuration hash. */
export const CONFIG_HASH_BYTES = 32;
/** Length of a raw X25519 public key. */
export const EPHEMERAL_KEY_BYTES = 32;
/** Application names: short, printable, case-sensitive ("sip", "dht", "diag/ping"). */
export const APPLICATION_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$/;
/** GOAWAY and CLOSE reasons are cut to this many characters. */
export const MAX_REASON_CHARS = 512;

export const FrameType = {
  HELLO: 1,
  AUTH: 2,
  OPEN: 3,
  ACCEPT: 4,
  DATA: 5,
  CLOSE: 6,
  PING: 7,
  PONG: 8,
  GOAWAY: 9,
} as const;

export type LinkRole = 'peer' | 'client';

export interface Hello {
  /** Highest link protocol version the sender speaks. */
  version: number;
  /** Raw 32-byte Ed25519 node public key. */
  publicKey: Uint8Array;
  /** 32 fresh random bytes, signed by the other side. */
  nonce: Uint8Array;
  configHash: Uint8Array;
  role: LinkRole;
  /** Raw X25519 public key for this link only; binds the session keys to the handshake. */
  ephemeralKey: Uint8Array;
  /** The sender's overlay name, only to word a configuration mismatch clearly. */
  overlayName?: string;
}

export type Frame =
  | { type: 'HELLO'; hello: Hello }
  | { type: 'AUTH'; signature: Uint8Array }
  | { type: 'OPEN'; channelId: number; application: string }
  | { type: 'ACCEPT'; channelId: number }
  | { type: 'DATA'; channelId: number; data: Uint8Array }
  | { type: 'CLOSE'; channelId: number; code?: OverlayErrorCode; reason?: string }
  | { type: 'PING'; seq: number }
  | { type: 'PONG'; seq: number }
  | { type: 'GOAWAY'; code?: OverlayErrorCode; reason: string }
  /** A frame type this version does not know; ignored after the handshake (newer peers). */
  | { type: 'UNKNOWN'; code: number };

const OVERLAY_ERROR_CODES: ReadonlySet<string> = new Set<OverlayErrorCode>([
  'ERR_CONFIG',
  'ERR_CONFIG_MISMATCH',
  'ERR_KEY_FILE',
  'ERR_PUZZLE',
  'ERR_SIGNATURE',
  'ERR_CERTIFICATE',
  'ERR_MALFORMED',
  'ERR_VERSION',
  'ERR_REPLAY',
  'ERR_FORBIDDEN',
  'ERR_LIMIT',
  'ERR_NOT_FOUND',
  'ERR_UNREACHABLE',
  'ERR_DATA_DIR_LOCKED',
  'ERR_STOPPED',
]);

/** A code read off the wire, kept only when it names one of our error codes. */
export function asOverlayErrorCode(code: unknown): OverlayErrorCode | undefined {
  return typeof code === 'string' && OVERLAY_ERROR_CODES.has(code)
    ? (code as OverlayErrorCode)
    : undefined;
}

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8', { fatal: true });

function malformed(what: string): OverlayError {
  return new OverlayError('ERR_MALFORMED', `link frame: ${what}`);
}

function cut(reason: string): string {
  return reason.length > MAX_REASON_CHARS ? reason.slice(0, MAX_REASON_CHARS) : reason;
}

/** The frame body (type byte and payload), without the length prefix. */
export function encodeFrameBody(frame: Frame): Buffer {
  return encodeFrame(frame).subarray(4);
}

/** The whole frame, length prefix included, ready to write to the stream. */
export function encodeFrame(frame: Frame): Buffer {
  switch (frame.type) {
    case 'HELLO': {
      const h = frame.hello;
      return withType(
        FrameType.HELLO,
        encode({
          1: h.version,
          2: h.publicKey,
          3: h.nonce,
          4: h.configHash,
          5: h.role,
          6: h.overlayName,
          7: h.ephemeralKey,
        }),
      );
    }
    case 'AUTH':
      return withType(FrameType.AUTH, encode({ 1: frame.signature }));
    case 'GOAWAY':
      return withType(FrameType.GOAWAY, encode({ 1: frame.code, 2: cut(frame.reason) }));
    case 'OPEN':
      return channelFrame(FrameType.OPEN, frame.channelId, utf8.encode(frame.application));
    case 'ACCEPT':
      return channelFrame(FrameType.ACCEPT, frame.channelId);
    case 'DATA':
      return channelFrame(FrameType.DATA, frame.channelId, frame.data);
    case 'CLOSE': {
      const code = utf8.encode(frame.code ?? '');
      const reason = utf8.encode(cut(frame.reason ?? ''));
      const payload = new Uint8Array(1 + code.length + reason.length);
      payload[0] = code.length;
      payload.set(code, 1);
      payload.set(reason, 1 + code.length);
      return channelFrame(FrameType.CLOSE, frame.channelId, payload);
    }
    case 'PING':
      return channelFrame(FrameType.PING, frame.seq);
    case 'PONG':
      return channelFrame(FrameType.PONG, frame.seq);
    case 'UNKNOWN':
      return withType(frame.code, new Uint8Array(0));
  }
}

function withType(type: number, body: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out.writeUInt32BE(1 + body.length, 0);
  out[4] = type;
  out.set(body, 5);
  return out;
}

// Channel frames: type, u32 channel ID (or ping sequence), then the rest.
function channelFrame(type: number, id: number, rest: Uint8Array = new Uint8Array(0)): Buffer {
  const out = Buffer.allocUnsafe(9 + rest.length);
  out.writeUInt32BE(5 + rest.length, 0);
  out[4] = type;
  out.writeUInt32BE(id >>> 0, 5);
  out.set(rest, 9);
  return out;
}

/** Decodes one frame body (type byte and payload, without the length prefix). */
export function decodeFrame(body: Uint8Array): Frame {
  if (body.length === 0) throw malformed('empty frame');
  const type = body[0] as number;
  const payload = body.subarray(1);
  switch (type) {
    case FrameType.HELLO: {
      const map = decode(payload, 'HELLO');
      const what = 'HELLO';
      const role = field(map, 5, isString, what);
      if (role !== 'peer' && role !== 'client') throw malformed(`HELLO role "${role}" is unknown`);
      const overlayName = optionalField(map, 6, isString, what);
      return {
        type: 'HELLO',
        hello: {
          version: field(map, 1, isUint, what),
          publicKey: field(map, 2, bytesOf(PUBLIC_KEY_BYTES), what),
          nonce: field(map, 3, bytesOf(NONCE_BYTES), what),
          configHash: field(map, 4, bytesOf(CONFIG_HASH_BYTES), what),
          role,
          ephemeralKey: field(map, 7, bytesOf(EPHEMERAL_KEY_BYTES), what),
          ...(overlayName !== undefined ? { overlayName: cut(overlayName) } : {}),
        },
      };
    }
    case FrameType.AUTH:
      return {
        type: 'AUTH',
        signature: field(decode(payload, 'AUTH'), 1, bytesOf(SIGNATURE_BYTES), 'AUTH'),
      };
    case FrameType.GOAWAY: {
      const map = decode(payload, 'GOAWAY');
      const code = asOverlayErrorCode(optionalField(map, 1, isString, 'GOAWAY'));
      const reason = cut(optionalField(map, 2, isString, 'GOAWAY') ?? '');
      return code ? { type: 'GOAWAY', code, reason } : { type: 'GOAWAY', reason };
    }
    case FrameType.OPEN: {
      const channelId = readId(payload, 'OPEN');
      const application = text(payload.subarray(4), 'OPEN application name');
      if (!APPLICATION_NAME_RE.test(application)) {
        throw malformed(`OPEN application name "${application.slice(0, 64)}" is not valid`);
      }
      return { type: 'OPEN', channelId, application };
    }
    case FrameType.ACCEPT:
      return { type: 'ACCEPT', channelId: readId(payload, 'ACCEPT', true) };
    case FrameType.DATA:
      return { type: 'DATA', channelId: readId(payload, 'DATA'), data: payload.subarray(4) };
    case FrameType.CLOSE: {
      const channelId = readId(payload, 'CLOSE');
      const codeLength = payload[4] ?? 0;
      if (payload.length < 5 + codeLength) throw malformed('CLOSE code is cut short');
      const code = asOverlayErrorCode(text(payload.subarray(5, 5 + codeLength), 'CLOSE code'));
      const reason = cut(text(payload.subarray(5 + codeLength), 'CLOSE reason'));
      return {
        type: 'CLOSE',
        channelId,
        ...(code ? { code } : {}),
        ...(reason ? { reason } : {}),
      };
    }
    case FrameType.PING:
      return { type: 'PING', seq: readId(payload, 'PING', true) };
    case FrameType.PONG:
      return { type: 'PONG', seq: readId(payload, 'PONG', true) };
    default:
      return { type: 'UNKNOWN', code: type };
  }
}

function readId(payload: Uint8Array, what: string, exact = false): number {
  if (payload.length < 4 || (exact && payload.length !== 4)) {
    throw malformed(`${what} frame has ${payload.length} payload bytes`);
  }
  return (
    (((payload[0] as number) << 24) |
      ((payload[1] as number) << 16) |
      ((payload[2] as number) << 8) |
      (payload[3] as number)) >>>
    0
  );
}

function text(bytes: Uint8Array, what: string): string {
  try {
    return utf8Decoder.decode(bytes);
  } catch {
    throw malformed(`${what} is not UTF-8`);
  }
}

/**
 * Reassembles frames from stream chunks. Chunks are kept as a list and joined once per frame,
 * so a 1 MiB frame arriving in 64 KiB reads costs one copy, not sixteen.
 */
export class FrameDecoder {
  /** Frames longer than this are refused (ERR_LIMIT); raised once the handshake is done. */
  maxFrameBytes: number;
  private chunks: Buffer[] = [];
  private buffered = 0;

  constructor(maxFrameBytes = MAX_FRAME_BYTES) {
    this.maxFrameBytes = maxFrameBytes;
  }

  get bufferedBytes(): number {
    return this.buffered;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  /**
   * The next complete frame, or undefined when more bytes are needed. Throws ERR_LIMIT for an
   * oversized length and ERR_MALFORMED for an undecodable frame; the stream is then unusable.
   */
  next(): Frame | undefined {
    const body = this.nextBody();
    return body && decodeFrame(body);
  }

  /** The next complete frame body, undecoded (sealed frames are opened before decoding). */
  nextBody(): Buffer | undefined {
    if (this.buffered < 4) return undefined;
    const length = this.peekLength();
    if (length === 0) throw malformed('zero-length frame');
    if (length > this.maxFrameBytes) {
      throw new OverlayError(
        'ERR_LIMIT',
        `link frame of ${length} bytes is larger than the ${this.maxFrameBytes}-byte limit`,
      );
    }
    if (this.buffered < 4 + length) return undefined;
    this.skip(4);
    return this.take(length);
  }

  private peekLength(): number {
    const first = this.chunks[0] as Buffer;
    if (first.length >= 4) return first.readUInt32BE(0);
    const head = Buffer.concat(this.chunks, 4);
    return head.readUInt32BE(0);
  }

  private skip(n: number): void {
    this.take(n);
  }

  private take(n: number): Buffer {
    this.buffered -= n;
    const first = this.chunks[0] as Buffer;
    if (first.length > n) {
      this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    if (first.length === n) {
      this.chunks.shift();
      return first;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const chunk = this.chunks[0] as Buffer;
      const want = n - filled;
      if (chunk.length <= want) {
        out.set(chunk, filled);
        filled += chunk.length;
        this.chunks.shift();
      } else {
        out.set(chunk.subarray(0, want), filled);
        this.chunks[0] = chunk.subarray(want);
        filled += want;
      }
    }
    return out;
  }
}
