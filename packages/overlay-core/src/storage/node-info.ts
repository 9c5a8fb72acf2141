// NODE-INFO: what a node publishes about itself under its own node-ID (NODE-MATCH): where its
// stream links listen, its software version and its role.

import { OverlayError } from '../errors.js';
import { decode, encode, field, isString, isUint, optionalField } from '../wire/codec.js';

export interface NodeInfo {
  /** TCP port of the node's stream links; the host is the one its DHT traffic comes from. */
  streamPort: number;
  /** Explicit stream addresses ("host:port"), when the node knows addresses others should use. */
  streamAddresses: string[];
  version: string;
  role: 'peer' | 'client';
}

export function encodeNodeInfo(info: NodeInfo): Uint8Array {
  return encode({ 0: info.streamPort, 1: info.streamAddresses, 2: info.version, 3: info.role });
}

export function decodeNodeInfo(bytes: Uint8Array): NodeInfo {
  const m = decode(bytes, 'NODE-INFO');
  const addresses = optionalField(m, 1, Array.isArray, 'NODE-INFO') ?? [];
  if (!addresses.every((a) => typeof a === 'string' && a.length < 64)) {
    throw new OverlayError(
      'ERR_MALFORMED',
      'NODE-INFO: stream addresses must be host:port strings',
    );
  }
  const role = optionalField(m, 3, isString, 'NODE-INFO');
  return {
    streamPort: field(m, 0, isUint, 'NODE-INFO'),
    streamAddresses: addresses as string[],
    version: optionalField(m, 2, isString, 'NODE-INFO') ?? '',
    role: role === 'client' ? 'client' : 'peer',
  };
}
