// DHT requests and replies as overlay message bodies: MessagePack maps with numeric keys.
// Unknown keys are ignored, so later versions can add fields.

import {
  type Contact,
  MAX_STORE_MORE,
  type Request,
  type RequestBody,
  type Response,
  type ResponseBody,
  refusal,
  type StoreRejection,
  type StoreResult,
  type WireValue,
} from '@peerbx/dht-kademlia';
import { OverlayError } from '../errors.js';
import { bytesOf, field, isBool, isBytes, isString, isUint, optionalField } from './codec.js';

const REQUEST_TYPES = { PING: 1, FIND_NODE: 2, FIND_VALUE: 3, STORE: 4, LEAVE: 5 } as const;
const RESPONSE_TYPES = { PONG: 1, NODES: 2, VALUE: 3, STORED: 4, ERROR: 5 } as const;
const REQUEST_NAMES = invert(REQUEST_TYPES);
const RESPONSE_NAMES = invert(RESPONSE_TYPES);
const REJECTIONS: readonly StoreRejection[] = [
  'too-large',
  'too-many-values',
  'too-many-keys',
  'invalid',
  'expired',
  'not-responsible',
];

function invert<T extends Record<string, number>>(o: T): Map<number, keyof T> {
  return new Map(Object.entries(o).map(([k, v]) => [v, k as keyof T]));
}

const isId = bytesOf(32);
const isArray = (v: unknown): v is unknown[] => Array.isArray(v);

export function requestToBody(body: RequestBody): Record<number, unknown> {
  const out: Record<number, unknown> = { 0: REQUEST_TYPES[body.type] };
  switch (body.type) {
    case 'FIND_NODE':
      out[1] = body.target;
      break;
    case 'LEAVE':
      out[1] = body.to;
      break;
    case 'FIND_VALUE':
      out[1] = body.key;
      if (body.offset) out[4] = body.offset;
      break;
    case 'STORE':
      out[1] = body.key;
      out[2] = body.value;
      out[3] = ttlOut(body.ttlMs);
      if (body.more && body.more.length > MAX_STORE_MORE) {
        throw new OverlayError(
          'ERR_MALFORMED',
          `a STORE carries at most ${MAX_STORE_MORE} more values`,
        );
      }
      if (body.more && body.more.length > 0)
        out[5] = body.more.map((v) => [v.value, ttlOut(v.ttlMs)]);
      if (body.closest) out[6] = true;
      break;
  }
  return out;
}

export function bodyToRequest(map: unknown): RequestBody {
  const type = REQUEST_NAMES.get(field(map, 0, isUint, 'request'));
  switch (type) {
    case 'PING':
      return { type };
    case 'LEAVE':
      return { type, to: field(map, 1, isId, 'LEAVE') };
    case 'FIND_NODE':
      return { type, target: field(map, 1, isId, 'FIND_NODE') };
    case 'FIND_VALUE': {
      const key = field(map, 1, isId, 'FIND_VALUE');
      const offset = optionalField(map, 4, isUint, 'FIND_VALUE');
      return offset ? { type, key, offset } : { type, key };
    }
    case 'STORE': {
      const store = {
        type,
        key: field(map, 1, isId, 'STORE'),
        value: field(map, 2, isBytes, 'STORE'),
        ttlMs: field(map, 3, isUint, 'STORE'),
        ...(optionalField(map, 6, isBool, 'STORE') ? { closest: true } : {}),
      };
      const more = optionalField(map, 5, isArray, 'STORE');
      if (more === undefined) return store;
      if (more.length === 0 || more.length > MAX_STORE_MORE) {
        throw new OverlayError('ERR_MALFORMED', `STORE carries 1..${MAX_STORE_MORE} more values`);
      }
      return { ...store, more: more.map(valueIn) };
    }
    default:
      throw new OverlayError('ERR_MALFORMED', 'unknown DHT request type');
  }
}

function contactsOut(contacts: readonly Contact[]): [Uint8Array, string][] {
  return contacts.map((c) => [c.id, c.address]);
}

function contactsIn(v: unknown): Contact[] {
  if (!isArray(v) || v.length > 64) throw new OverlayError('ERR_MALFORMED', 'contact list');
  return v.map((c) => {
    if (!isArray(c) || !isId(c[0]) || !isString(c[1]) || c[1].length > 64) {
      throw new OverlayError('ERR_MALFORMED', 'contact entry');
    }
    return { id: c[0], address: c[1] };
  });
}

function ttlOut(ttlMs: number): number {
  return Math.max(0, Math.min(0xffffffff, Math.floor(ttlMs)));
}

function valueIn(v: unknown): WireValue {
  if (!isArray(v) || !isBytes(v[0]) || !isUint(v[1])) {
    throw new OverlayError('ERR_MALFORMED', 'value entry');
  }
  return { value: v[0], ttlMs: v[1] };
}

/** A refusal read back; a reason this version does not know reads as invalid. */
function resultIn(reason: string, detail: string | undefined): StoreResult {
  const r = (REJECTIONS as readonly string[]).includes(reason)
    ? (reason as StoreRejection)
    : 'invalid';
  return refusal(r, detail);
}

export function responseToBody(body: ResponseBody): Record<number, unknown> {
  const out: Record<number, unknown> = { 0: RESPONSE_TYPES[body.type] };
  switch (body.type) {
    case 'NODES':
      out[1] = contactsOut(body.contacts);
      break;
    case 'VALUE':
      out[1] = contactsOut(body.contacts);
      out[2] = body.values.map((v) => [v.value, ttlOut(v.ttlMs)]);
      if (body.truncated) out[3] = true;
      break;
    case 'STORED':
      out[4] = body.ok;
      if (!body.ok) {
        out[5] = body.reason;
        if (body.detail !== undefined) out[6] = body.detail.slice(0, 200);
      }
      if (body.more && body.more.length > 0) {
        out[9] = body.more
          .slice(0, MAX_STORE_MORE)
          .map((r) => (r.ok ? [true] : [false, r.reason, (r.detail ?? '').slice(0, 100)]));
      }
      if (body.contacts) out[10] = contactsOut(body.contacts);
      break;
    case 'ERROR':
      out[7] = body.code;
      out[8] = body.message.slice(0, 200);
      break;
  }
  return out;
}

export function bodyToResponse(map: unknown): ResponseBody {
  const type = RESPONSE_NAMES.get(field(map, 0, isUint, 'response'));
  switch (type) {
    case 'PONG':
      return { type };
    case 'NODES':
      return { type, contacts: contactsIn(field(map, 1, isArray, 'NODES')) };
    case 'VALUE': {
      const values = field(map, 2, isArray, 'VALUE').map(valueIn);
      const truncated = optionalField(map, 3, isBool, 'VALUE') ?? false;
      return { type, contacts: contactsIn(field(map, 1, isArray, 'VALUE')), values, truncated };
    }
    case 'STORED': {
      const first: StoreResult = field(map, 4, isBool, 'STORED')
        ? { ok: true }
        : resultIn(field(map, 5, isString, 'STORED'), optionalField(map, 6, isString, 'STORED'));
      const listed = optionalField(map, 10, isArray, 'STORED');
      const contacts = listed === undefined ? {} : { contacts: contactsIn(listed) };
      const more = optionalField(map, 9, isArray, 'STORED');
      if (more === undefined) return { type, ...first, ...contacts };
      if (more.length === 0 || more.length > MAX_STORE_MORE) {
        throw new OverlayError('ERR_MALFORMED', `STORED carries 1..${MAX_STORE_MORE} more results`);
      }
      return {
        type,
        ...first,
        ...contacts,
        more: more.map((r) => {
          if (!isArray(r) || !isBool(r[0])) throw new OverlayError('ERR_MALFORMED', 'store result');
          if (r[0]) return { ok: true };
          if (!isString(r[1]) || (r[2] !== undefined && !isString(r[2]))) {
            throw new OverlayError('ERR_MALFORMED', 'store result');
          }
          return resultIn(r[1], r[2] === '' ? undefined : r[2]);
        }),
      };
    }
    case 'ERROR':
      return {
        type,
        code: field(map, 7, isUint, 'ERROR'),
        message: field(map, 8, isString, 'ERROR'),
      };
    default:
      throw new OverlayError('ERR_MALFORMED', 'unknown DHT response type');
  }
}

export type { Request, Response };
