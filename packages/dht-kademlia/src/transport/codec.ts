// The DHT's datagram format: one Request or Response per UDP datagram, versioned, compact,
// and never larger than MAX_DATAGRAM_BYTES. Specified in docs/wire-format.md.
//
// Decoding trusts nothing: every length is checked, nothing is read past the end, trailing
// bytes are refused, and every failure is a MalformedMessageError.

import { ID_BYTES, MAX_DATAGRAM_BYTES } from '../constants.js';
import type { Contact } from '../contact.js';
import { DhtError, MalformedMessageError } from '../errors.js';
import { isNodeId, type NodeId } from '../node-id.js';
import {
  MAX_STORE_MORE,
  type Request,
  type RequestBody,
  type Response,
  type ResponseBody,
  type StoreRejection,
  type StoreResult,
  type WireValue,
} from '../rpc/messages.js';
import { formatEndpoint, parseEndpoint } from './address.js';

/** First byte of every datagram: outside ASCII and the RFC 7983 ranges (STUN, DTLS, RTP). */
export const WIRE_MAGIC = 0xdb;
/** The version this code writes and reads. */
export const WIRE_VERSION = 1;
/** Bytes before the body: magic, version, kind, type, txid, flags, sender id. */
export const HEADER_BYTES = 9 + ID_BYTES;
/** ERROR code a node sends back to a request of a version it does not speak. */
export const ERROR_UNSUPPORTED_VERSION = 505;

const KIND_REQUEST = 0;
const KIND_RESPONSE = 1;
const FLAG_CLIENT = 0x01;
const FLAG_TRUNCATED = 0x02;
const FAMILY_IPV4 = 4;
const FAMILY_IPV6 = 6;
const MAX_U32 = 0xffff_ffff;
const MAX_COUNT = 0xff;

const REQUEST_TYPES = { PING: 1, FIND_NODE: 2, FIND_VALUE: 3, STORE: 4, LEAVE: 5 } as const;
const RESPONSE_TYPES = { PONG: 1, NODES: 2, VALUE: 3, STORED: 4, ERROR: 5 } as const;
/** STORED status byte: 0 is ok, the rest name the rejection. Codes never change meaning. */
const REJECTION_CODES: Record<StoreRejection, number> = {
  'too-large': 1,
  'too-many-values': 2,
  'too-many-keys': 3,
  invalid: 4,
  expired: 5,
  'not-responsible': 6,
};
const REJECTIONS = new Map<number, StoreRejection>(
  Object.entries(REJECTION_CODES).map(([r, c]) => [c, r as StoreRejection]),
);

export type WireMessage =
  | { readonly kind: 'request'; readonly txid: number; readonly request: Request }
  | { readonly kind: 'response'; readonly txid: number; readonly response: Response };

/**
 * A datagram of another protocol version. Bytes 0-7 (magic, version, kind, type, txid) keep
 * their place in every version, so the txid is known and the sender can be told which
 * version this node speaks.
 */
export class UnsupportedVersionError extends MalformedMessageError {
  readonly version: number;
  readonly txid: number;
  readonly isRequest: boolean;
  constructor(version: number, txid: number, isRequest: boolean) {
    super(`unsupported wire version ${version} (this node speaks ${WIRE_VERSION})`);
    this.name = 'UnsupportedVersionError';
    this.version = version;
    this.txid = txid;
    this.isRequest = isRequest;
  }
}

// --- Encoding ------------------------------------------------------------------------------

/**
 * Encodes one message into at most maxBytes. Replies that would not fit shrink: a VALUE keeps
 * as many values as fit (and says it was truncated), contact lists lose their farthest
 * entries, texts are cut. A STORE whose value cannot fit throws ERR_TOO_LARGE.
 */
export function encodeMessage(message: WireMessage, maxBytes = MAX_DATAGRAM_BYTES): Uint8Array {
  if (!Number.isInteger(message.txid) || message.txid < 0 || message.txid > MAX_U32) {
    throw new DhtError(
      'ERR_MALFORMED',
      `txid must be a 32-bit unsigned integer, got ${message.txid}`,
    );
  }
  if (maxBytes < HEADER_BYTES + 4)
    throw new DhtError('ERR_TOO_LARGE', `maxBytes ${maxBytes} is too small`);
  const w = new Writer(maxBytes);
  w.u8(WIRE_MAGIC);
  w.u8(WIRE_VERSION);
  if (message.kind === 'request') {
    const { request } = message;
    w.u8(KIND_REQUEST);
    w.u8(REQUEST_TYPES[request.body.type]);
    w.u32(message.txid);
    w.u8(request.client ? FLAG_CLIENT : 0);
    w.id(request.sender, 'sender');
    writeRequestBody(w, request.body);
  } else {
    const { response } = message;
    w.u8(KIND_RESPONSE);
    w.u8(RESPONSE_TYPES[response.body.type]);
    w.u32(message.txid);
    const flagsAt = w.length;
    w.u8(0);
    w.id(response.sender, 'sender');
    if (writeResponseBody(w, response.body)) w.setU8(flagsAt, FLAG_TRUNCATED);
  }
  return w.finish();
}

export function encodeRequest(txid: number, request: Request, maxBytes?: number): Uint8Array {
  return encodeMessage({ kind: 'request', txid, request }, maxBytes);
}

export function encodeResponse(txid: number, response: Response, maxBytes?: number): Uint8Array {
  return encodeMessage({ kind: 'response', txid, response }, maxBytes);
}

function writeRequestBody(w: Writer, body: RequestBody): void {
  switch (body.type) {
    case 'PING':
      return;
    case 'LEAVE':
      w.id(body.to, 'to');
      return;
    case 'FIND_NODE':
      w.id(body.target, 'target');
      return;
    case 'FIND_VALUE':
      w.id(body.key, 'key');
      // Paging through a holder's values: absent means from the first.
      if (body.offset) w.u16(Math.min(0xffff, body.offset));
      return;
    case 'STORE': {
      w.id(body.key, 'key');
      const need = 4 + 2 + body.value.length;
      if (need > w.remaining) {
        throw new DhtError(
          'ERR_TOO_LARGE',
          `a ${body.value.length}-byte value does not fit one datagram (at most ${w.remaining - 6} bytes)`,
        );
      }
      w.u32(clampTtl(body.ttlMs));
      w.u16(body.value.length);
      w.bytes(body.value);
      if (body.more && body.more.length > 0) {
        if (body.more.length > MAX_STORE_MORE) {
          throw new DhtError(
            'ERR_MALFORMED',
            `a STORE carries at most ${MAX_STORE_MORE} more values`,
          );
        }
        const more = 1 + body.more.reduce((n, v) => n + 6 + v.value.length, 0);
        if (more > w.remaining) {
          throw new DhtError(
            'ERR_TOO_LARGE',
            `${body.more.length + 1} values need ${more} more bytes than one datagram holds`,
          );
        }
        w.u8(body.more.length);
        for (const v of body.more) {
          w.u32(clampTtl(v.ttlMs));
          w.u16(v.value.length);
          w.bytes(v.value);
        }
      }
      return;
    }
  }
}

/** Writes a response body; true when something had to be left out of a VALUE. */
function writeResponseBody(w: Writer, body: ResponseBody): boolean {
  switch (body.type) {
    case 'PONG':
      return false;
    case 'NODES':
      writeContacts(w, body.contacts);
      return false;
    case 'VALUE': {
      // Values come first: they are what the asker wants. Contacts fill what room is left.
      const countAt = w.length;
      w.u8(0);
      let room = w.remaining - 1; // keep the contact count byte
      let count = 0;
      let truncated = body.truncated === true;
      for (const v of body.values) {
        const size = 6 + v.value.length;
        if (count === MAX_COUNT || size > room || v.value.length > 0xffff) {
          truncated = true;
          continue;
        }
        w.u32(clampTtl(v.ttlMs));
        w.u16(v.value.length);
        w.bytes(v.value);
        room -= size;
        count++;
      }
      w.setU8(countAt, count);
      writeContacts(w, body.contacts);
      return truncated;
    }
    case 'STORED': {
      const more = (body.more ?? []).slice(0, MAX_STORE_MORE);
      // Each result gets an equal share of the room, so a long detail cannot crowd out the
      // results after it.
      const share = Math.floor((w.remaining - (more.length > 0 ? 1 : 0)) / (more.length + 1));
      writeStoreResult(w, body, share);
      if (more.length > 0) {
        w.u8(more.length);
        for (const r of more) writeStoreResult(w, r, share);
      }
      return false;
    }
    case 'ERROR':
      if (!Number.isInteger(body.code) || body.code < 0 || body.code > 0xffff) {
        throw new DhtError('ERR_MALFORMED', `error code must fit 16 bits, got ${body.code}`);
      }
      w.u16(body.code);
      writeText(w, body.message);
      return false;
  }
}

/** Count byte, then the contacts closest first until one does not fit; the rest are dropped. */
function writeContacts(w: Writer, contacts: readonly Contact[]): void {
  const countAt = w.length;
  w.u8(0);
  let count = 0;
  for (const c of contacts) {
    if (count === MAX_COUNT) break;
    // Simulator names and zoned addresses have no wire form: such contacts are skipped.
    const ep = parseEndpoint(c.address);
    if (!ep || !isNodeId(c.id)) continue;
    const size = ID_BYTES + 1 + ep.ip.length + 2;
    if (size > w.remaining) break;
    w.bytes(c.id);
    w.u8(ep.family === 4 ? FAMILY_IPV4 : FAMILY_IPV6);
    w.bytes(ep.ip);
    w.u16(ep.port);
    count++;
  }
  w.setU8(countAt, count);
}

/** Length-prefixed UTF-8, cut on a character boundary to fit `maxBytes` (prefix included). */
function writeText(w: Writer, text: string, maxBytes = w.remaining): void {
  let bytes = new TextEncoder().encode(text);
  const room = Math.min(0xffff, w.remaining - 2, maxBytes - 2);
  if (bytes.length > room) {
    let end = Math.max(0, room);
    while (end > 0 && ((bytes[end] as number) & 0xc0) === 0x80) end--;
    bytes = bytes.subarray(0, end);
  }
  w.u16(bytes.length);
  w.bytes(bytes);
}

function clampTtl(ttlMs: number): number {
  if (!(ttlMs > 0)) return 0;
  return Math.min(MAX_U32, Math.floor(ttlMs));
}

class Writer {
  private readonly buf: Uint8Array;
  private readonly view: DataView;
  private at = 0;

  constructor(max: number) {
    this.buf = new Uint8Array(max);
    this.view = new DataView(this.buf.buffer);
  }

  get length(): number {
    return this.at;
  }

  get remaining(): number {
    return this.buf.length - this.at;
  }

  private need(n: number): void {
    // Callers size everything first; this guards the datagram limit against a slip.
    if (this.at + n > this.buf.length) {
      throw new DhtError('ERR_TOO_LARGE', `message exceeds ${this.buf.length} bytes`);
    }
  }

  u8(v: number): void {
    this.need(1);
    this.view.setUint8(this.at, v);
    this.at += 1;
  }

  setU8(at: number, v: number): void {
    this.view.setUint8(at, v);
  }

  u16(v: number): void {
    this.need(2);
    this.view.setUint16(this.at, v);
    this.at += 2;
  }

  u32(v: number): void {
    this.need(4);
    this.view.setUint32(this.at, v);
    this.at += 4;
  }

  bytes(b: Uint8Array): void {
    this.need(b.length);
    this.buf.set(b, this.at);
    this.at += b.length;
  }

  id(id: NodeId, what: string): void {
    if (!isNodeId(id)) throw new DhtError('ERR_INVALID_ID', `${what} must be ${ID_BYTES} bytes`);
    this.bytes(id);
  }

  finish(): Uint8Array {
    return this.buf.slice(0, this.at);
  }
}

// --- Decoding ------------------------------------------------------------------------------

/** Decodes one datagram. Throws MalformedMessageError (UnsupportedVersionError for versions). */
export function decodeMessage(data: Uint8Array, maxBytes = MAX_DATAGRAM_BYTES): WireMessage {
  if (data.length > maxBytes) {
    throw new MalformedMessageError(`datagram of ${data.length} bytes exceeds ${maxBytes}`);
  }
  const r = new Reader(data);
  if (r.u8('magic') !== WIRE_MAGIC) throw new MalformedMessageError('bad magic byte');
  const version = r.u8('version');
  const kind = r.u8('kind');
  const type = r.u8('type');
  const txid = r.u32('txid');
  if (version !== WIRE_VERSION)
    throw new UnsupportedVersionError(version, txid, kind === KIND_REQUEST);
  // Unknown flag bits are ignored: a later minor change may define them.
  const flags = r.u8('flags');
  const sender = r.id('sender');
  let message: WireMessage;
  if (kind === KIND_REQUEST) {
    const body = readRequestBody(r, type);
    const request: Request =
      flags & FLAG_CLIENT ? { sender, client: true, body } : { sender, body };
    message = { kind: 'request', txid, request };
  } else if (kind === KIND_RESPONSE) {
    const body = readResponseBody(r, type, (flags & FLAG_TRUNCATED) !== 0);
    message = { kind: 'response', txid, response: { sender, body } };
  } else {
    throw new MalformedMessageError(`unknown message kind ${kind}`);
  }
  if (r.remaining !== 0) throw new MalformedMessageError(`${r.remaining} trailing bytes`);
  return message;
}

function readRequestBody(r: Reader, type: number): RequestBody {
  switch (type) {
    case REQUEST_TYPES.PING:
      return { type: 'PING' };
    case REQUEST_TYPES.LEAVE:
      return { type: 'LEAVE', to: r.id('to') };
    case REQUEST_TYPES.FIND_NODE:
      return { type: 'FIND_NODE', target: r.id('target') };
    case REQUEST_TYPES.FIND_VALUE: {
      const key = r.id('key');
      if (r.remaining === 0) return { type: 'FIND_VALUE', key };
      return { type: 'FIND_VALUE', key, offset: r.u16('offset') };
    }
    case REQUEST_TYPES.STORE: {
      const key = r.id('key');
      const ttlMs = r.u32('ttl');
      const value = r.bytes(r.u16('value length'), 'value');
      const count = readMoreCount(r);
      if (count === 0) return { type: 'STORE', key, value, ttlMs };
      const more: WireValue[] = [];
      for (let i = 0; i < count; i++) {
        const ttl = r.u32('ttl');
        more.push({ value: r.bytes(r.u16('value length'), 'value'), ttlMs: ttl });
      }
      return { type: 'STORE', key, value, ttlMs, more };
    }
    default:
      throw new MalformedMessageError(`unknown request type ${type}`);
  }
}

function readResponseBody(r: Reader, type: number, truncated: boolean): ResponseBody {
  switch (type) {
    case RESPONSE_TYPES.PONG:
      return { type: 'PONG' };
    case RESPONSE_TYPES.NODES:
      return { type: 'NODES', contacts: readContacts(r) };
    case RESPONSE_TYPES.VALUE: {
      const count = r.u8('value count');
      const values: WireValue[] = [];
      for (let i = 0; i < count; i++) {
        const ttlMs = r.u32('ttl');
        const value = r.bytes(r.u16('value length'), 'value');
        values.push({ value, ttlMs });
      }
      const contacts = readContacts(r);
      return truncated
        ? { type: 'VALUE', values, contacts, truncated: true }
        : { type: 'VALUE', values, contacts };
    }
    case RESPONSE_TYPES.STORED: {
      const first = readStoreResult(r);
      const count = readMoreCount(r);
      if (count === 0) return { type: 'STORED', ...first };
      const more: StoreResult[] = [];
      for (let i = 0; i < count; i++) more.push(readStoreResult(r));
      return { type: 'STORED', ...first, more };
    }
    case RESPONSE_TYPES.ERROR: {
      const code = r.u16('error code');
      return { type: 'ERROR', code, message: r.text('error message') };
    }
    default:
      throw new MalformedMessageError(`unknown response type ${type}`);
  }
}

/**
 * Status byte, then for a rejection the detail (always written, empty when absent, so no
 * truncation decodes as valid), all in at most `room` bytes.
 */
function writeStoreResult(w: Writer, r: StoreResult, room: number): void {
  if (r.ok) {
    w.u8(0);
    return;
  }
  w.u8(REJECTION_CODES[r.reason]);
  writeText(w, r.detail ?? '', room - 1);
}

function readStoreResult(r: Reader): StoreResult {
  const status = r.u8('status');
  if (status === 0) return { ok: true };
  const reason = REJECTIONS.get(status);
  if (!reason) throw new MalformedMessageError(`unknown store rejection ${status}`);
  const detail = r.text('detail');
  return detail === '' ? { ok: false, reason } : { ok: false, reason, detail };
}

/** The optional count (1..MAX_STORE_MORE) and entries that end a STORE or STORED. */
function readMoreCount(r: Reader): number {
  if (r.remaining === 0) return 0;
  const count = r.u8('more count');
  if (count === 0 || count > MAX_STORE_MORE) {
    throw new MalformedMessageError(`more count ${count} is outside 1..${MAX_STORE_MORE}`);
  }
  return count;
}

function readContacts(r: Reader): Contact[] {
  const count = r.u8('contact count');
  const contacts: Contact[] = [];
  for (let i = 0; i < count; i++) {
    const id = r.id('contact id');
    const family = r.u8('address family');
    let ip: Uint8Array;
    if (family === FAMILY_IPV4) ip = r.bytes(4, 'IPv4 address');
    else if (family === FAMILY_IPV6) ip = r.bytes(16, 'IPv6 address');
    else throw new MalformedMessageError(`unknown address family ${family}`);
    const port = r.u16('port');
    if (port === 0) throw new MalformedMessageError('contact port 0');
    contacts.push({ id, address: formatEndpoint(ip, port) });
  }
  return contacts;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

class Reader {
  private readonly data: Uint8Array;
  private readonly view: DataView;
  private at = 0;

  constructor(data: Uint8Array) {
    // A plain view even for a Buffer, whose slice() would alias instead of copy.
    this.data = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    this.view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  }

  get remaining(): number {
    return this.data.length - this.at;
  }

  private take(n: number, what: string): number {
    if (n > this.remaining) {
      throw new MalformedMessageError(
        `truncated: ${what} needs ${n} bytes at offset ${this.at}, ${this.remaining} left`,
      );
    }
    const at = this.at;
    this.at += n;
    return at;
  }

  u8(what: string): number {
    return this.view.getUint8(this.take(1, what));
  }

  u16(what: string): number {
    return this.view.getUint16(this.take(2, what));
  }

  u32(what: string): number {
    return this.view.getUint32(this.take(4, what));
  }

  /** A copy, so decoded values never pin or alias the datagram buffer. */
  bytes(n: number, what: string): Uint8Array {
    const at = this.take(n, what);
    return this.data.slice(at, at + n);
  }

  id(what: string): NodeId {
    return this.bytes(ID_BYTES, what);
  }

  text(what: string): string {
    const bytes = this.bytes(this.u16(`${what} length`), what);
    try {
      return utf8.decode(bytes);
    } catch {
      throw new MalformedMessageError(`${what} is not UTF-8`);
    }
  }
}
