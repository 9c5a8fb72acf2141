// The value of a SIP-REGISTRATION record (dictionary entry keyed by the registering node's
// ID): how many devices the user has at that node and until when. The node-ID is the key;
// phones' own contacts never leave the node (callers reach them through it).

import { decode, encode } from '@msgpack/msgpack';
import { OverlayError } from '@peerbx/overlay-core';

export interface RegistrationValue {
  /** Devices registered at this node for the AOR. */
  devices: number;
  /** When the last of them expires, ms since the epoch. */
  expiresAt: number;
}

export function encodeRegistrationValue(v: RegistrationValue): Uint8Array {
  return encode({ 0: v.devices, 1: v.expiresAt });
}

export function decodeRegistrationValue(bytes: Uint8Array): RegistrationValue {
  let m: unknown;
  try {
    m = decode(bytes);
  } catch (err) {
    throw new OverlayError('ERR_MALFORMED', `SIP-REGISTRATION value: ${(err as Error).message}`);
  }
  const o = m as Record<string, unknown>;
  if (
    typeof m !== 'object' ||
    m === null ||
    !Number.isInteger(o['0']) ||
    !Number.isInteger(o['1'])
  ) {
    throw new OverlayError(
      'ERR_MALFORMED',
      'SIP-REGISTRATION value: devices and expiry must be integers',
    );
  }
  return { devices: o['0'] as number, expiresAt: o['1'] as number };
}
