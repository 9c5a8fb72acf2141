// Whether a registering phone is behind NAT, as its REGISTER shows it. The tests are those of
// common SIP servers (Kamailio's nat_uac_test): the phone's own idea of its address (the top
// Via's sent-by, and a Contact on a private network) is not where its request came from.
// Such a phone is reached over the flow its REGISTERs come on (RFC 5626 §5.3 in spirit; the
// NAT keeps that mapping open while the phone refreshes), never at its Contact.

import type { Via } from '../message/uri.js';
import type { SipTransportAddress } from '../transport/transport.js';

/** An address compared as written: lower case, no IPv6 brackets, no IPv4-mapped prefix. */
function bare(host: string): string {
  return host
    .toLowerCase()
    .replace(/^\[|\]$/g, '')
    .replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, '');
}

/** True when two hosts are the same address as written (case, brackets, IPv4-mapped). */
export function sameHost(a: string, b: string): boolean {
  return bare(a) === bare(b);
}

/**
 * True for addresses no phone outside their own network can be reached at: RFC 1918, shared
 * address space (RFC 6598, carrier-grade NAT), IPv4 and IPv6 link-local, IPv6 unique local.
 */
export function isPrivateAddress(host: string): boolean {
  const h = bare(host);
  const v4 = /^(\d{1,3})\.(\d{1,3})\.\d{1,3}\.\d{1,3}$/.exec(h);
  if (v4) {
    const a = Number(v4[1]);
    const b = Number(v4[2]);
    return (
      a === 10 ||
      (a === 172 && b >= 16 && b <= 31) ||
      (a === 192 && b === 168) ||
      (a === 100 && b >= 64 && b <= 127) ||
      (a === 169 && b === 254)
    );
  }
  return /^f[cd][0-9a-f]{2}:/.test(h) || /^fe[89ab][0-9a-f]:/.test(h);
}

/**
 * True when a REGISTER from `source` says the phone is behind NAT: its top Via names another
 * host (or, over UDP, another port) than the one it came from, or one of its Contacts is a
 * private address other than that source.
 */
export function behindNat(
  via: Via | undefined,
  source: SipTransportAddress,
  contactHosts: readonly string[],
): boolean {
  const from = bare(source.address);
  if (via) {
    if (bare(via.host) !== from) return true;
    if (source.transport === 'udp' && (via.port ?? 5060) !== source.port) return true;
  }
  return contactHosts.some((h) => bare(h) !== from && isPrivateAddress(h));
}
