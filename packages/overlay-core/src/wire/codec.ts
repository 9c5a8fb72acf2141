// The overlay's body codec: MessagePack (@msgpack/msgpack), a compact, well-kept binary format.
// Bodies are maps with short numeric keys ({ 0: ..., 1: ... }: plain objects, NOT Map, which
// this library encodes as an empty map), so that old readers skip unknown fields. Signatures
// cover the exact bytes sent, so no canonical re-encoding is needed.

import { decode as msgpackDecode, encode as msgpackEncode } from '@msgpack/msgpack';
import { OverlayError } from '../errors.js';

export function encode(value: unknown): Uint8Array {
  return msgpackEncode(value, { ignoreUndefined: true, forceIntegerToFloat: false });
}

/** Decodes, turning every codec failure into ERR_MALFORMED. */
export function decode(bytes: Uint8Array, what = 'message'): unknown {
  // A Buffer in gives Buffers out; callers compare with Uint8Arrays, so decode a plain view.
  const view = Buffer.isBuffer(bytes)
    ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    : bytes;
  try {
    return msgpackDecode(view, {
      maxStrLength: 4096,
      maxBinLength: 65536,
      maxArrayLength: 1024,
      maxMapLength: 256,
    });
  } catch (err) {
    throw new OverlayError('ERR_MALFORMED', `${what} does not decode: ${(err as Error).message}`);
  }
}

/** Field readers for decoded maps: each throws ERR_MALFORMED naming the field. */
export function field<T>(
  map: unknown,
  key: number | string,
  check: (v: unknown) => v is T,
  what: string,
): T {
  if (!isMap(map)) throw new OverlayError('ERR_MALFORMED', `${what} is not a map`);
  const v = map instanceof Map ? map.get(key) : (map as Record<string, unknown>)[String(key)];
  if (!check(v))
    throw new OverlayError(
      'ERR_MALFORMED',
      `${what}: field ${key} is missing or of the wrong type`,
    );
  return v;
}

export function optionalField<T>(
  map: unknown,
  key: number | string,
  check: (v: unknown) => v is T,
  what: string,
): T | undefined {
  if (!isMap(map)) throw new OverlayError('ERR_MALFORMED', `${what} is not a map`);
  const v = map instanceof Map ? map.get(key) : (map as Record<string, unknown>)[String(key)];
  if (v === undefined || v === null) return undefined;
  if (!check(v))
    throw new OverlayError('ERR_MALFORMED', `${what}: field ${key} is of the wrong type`);
  return v;
}

function isMap(v: unknown): boolean {
  return (
    v instanceof Map ||
    (typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array))
  );
}

export const isBytes = (v: unknown): v is Uint8Array => v instanceof Uint8Array;
export const isString = (v: unknown): v is string => typeof v === 'string';
export const isUint = (v: unknown): v is number =>
  typeof v === 'number' && Number.isInteger(v) && v >= 0;
export const isBool = (v: unknown): v is boolean => typeof v === 'boolean';
export const bytesOf =
  (n: number) =>
  (v: unknown): v is Uint8Array =>
    v instanceof Uint8Array && v.length === n;

/**
 * A map with integer keys, encoded as MessagePack integers (the library writes object keys as
 * strings and a JS Map as an empty map). Undefined values are left out; at most 15 entries
 * (a fixmap). Decoders read the keys back as properties "0", "1", ...
 */
export function encodeIntKeyMap(entries: readonly (readonly [number, unknown])[]): Uint8Array {
  const present = entries.filter(([, v]) => v !== undefined);
  if (present.length > 15)
    throw new OverlayError('ERR_LIMIT', 'an integer-keyed map holds at most 15 entries');
  const parts: Uint8Array[] = [Uint8Array.of(0x80 | present.length)];
  for (const [k, v] of present) parts.push(encode(k), encode(v));
  return new Uint8Array(Buffer.concat(parts));
}
