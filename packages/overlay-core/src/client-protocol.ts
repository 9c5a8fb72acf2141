// The client protocol: a client (a phone-only device, a node behind a hostile NAT) attaches to
// one peer over an authenticated link and asks it, on the "peerbx.client" channel, to store,
// fetch and resolve on its behalf. The client signs its own records and verifies what it
// fetches: the peer cannot forge a record. It is trusted to find them, and in open mode to
// weigh name claims of two keys by the holders that returned them, which the client cannot see.

import { OverlayError, type OverlayErrorCode } from './errors.js';
import { decode, encode, field, isBool, isString, isUint, optionalField } from './wire/codec.js';

export const CLIENT_APPLICATION = 'peerbx.client';

export type ClientOp = 'store' | 'fetch' | 'resolve';

export interface ClientRequest {
  id: number;
  op: ClientOp;
  /** store: record bytes; fetch: resource name; resolve: node-ID bytes. */
  arg: Uint8Array | string;
}

export type ClientResponse =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; code: OverlayErrorCode | string; message: string };

export function encodeClientRequest(r: ClientRequest): Uint8Array {
  return encode({ 0: r.id, 1: r.op, 2: r.arg });
}

export function decodeClientRequest(bytes: Uint8Array): ClientRequest {
  const m = decode(bytes, 'client request');
  const op = field(m, 1, isString, 'client request');
  if (op !== 'store' && op !== 'fetch' && op !== 'resolve') {
    throw new OverlayError('ERR_MALFORMED', `client request: unknown op ${op}`);
  }
  const arg = field(
    m,
    2,
    (v): v is Uint8Array | string => typeof v === 'string' || v instanceof Uint8Array,
    'client request',
  );
  return { id: field(m, 0, isUint, 'client request'), op, arg };
}

export function encodeClientResponse(r: ClientResponse): Uint8Array {
  return encode(
    r.ok ? { 0: r.id, 1: true, 2: r.result } : { 0: r.id, 1: false, 3: r.code, 4: r.message },
  );
}

export function decodeClientResponse(bytes: Uint8Array): ClientResponse {
  const m = decode(bytes, 'client response');
  const id = field(m, 0, isUint, 'client response');
  if (field(m, 1, isBool, 'client response')) {
    return { id, ok: true, result: (m as Record<string, unknown>)['2'] };
  }
  return {
    id,
    ok: false,
    code: optionalField(m, 3, isString, 'client response') ?? 'ERR',
    message: optionalField(m, 4, isString, 'client response') ?? 'request failed',
  };
}
