// UDP endpoint addresses as the DHT writes them ("1.2.3.4:5", "[::1]:5") and as raw bytes on
// the wire. One canonical text form per endpoint, so that addresses compare as strings.

import { isIPv4, isIPv6 } from 'node:net';

export interface IpEndpoint {
  readonly family: 4 | 6;
  /** 4 or 16 bytes, network order. */
  readonly ip: Uint8Array;
  readonly port: number;
}

/** Parses "a.b.c.d:port" or "[v6]:port"; undefined for anything else (simulator names, zones). */
export function parseEndpoint(address: string): IpEndpoint | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(address);
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return undefined;
  const host = m[1] ?? m[2]!;
  const ip = m[1] !== undefined ? parseIPv6(host) : parseIPv4(host);
  if (!ip) return undefined;
  return { family: ip.length === 4 ? 4 : 6, ip, port };
}

/** The canonical text form of an endpoint (RFC 5952 for IPv6). */
export function formatEndpoint(ip: Uint8Array, port: number): string {
  return ip.length === 4 ? `${formatIPv4(ip)}:${port}` : `[${formatIPv6(ip)}]:${port}`;
}

/**
 * The canonical form of a host and port as a socket reports them. IPv4-mapped IPv6 sources
 * (seen on dual-stack sockets) become plain IPv4, so a reply matches the address we sent to.
 * Hosts that do not parse (link-local with a zone, say) are kept as they are.
 */
export function endpointKey(host: string, port: number): string {
  const ip = isIPv6(host) ? parseIPv6(host) : parseIPv4(host);
  if (!ip) return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  return formatEndpoint(unmapIPv4(ip), port);
}

/** ::ffff:a.b.c.d becomes a.b.c.d; anything else is returned as it is. */
export function unmapIPv4(ip: Uint8Array): Uint8Array {
  if (ip.length !== 16) return ip;
  for (let i = 0; i < 10; i++) if (ip[i] !== 0) return ip;
  if (ip[10] !== 0xff || ip[11] !== 0xff) return ip;
  return ip.slice(12);
}

export function parseIPv4(host: string): Uint8Array | undefined {
  if (!isIPv4(host)) return undefined;
  return Uint8Array.from(host.split('.').map(Number));
}

export function parseIPv6(host: string): Uint8Array | undefined {
  if (host.includes('%') || !isIPv6(host)) return undefined;
  const out = new Uint8Array(16);
  let tail = host;
  let v4: Uint8Array | undefined;
  const lastColon = host.lastIndexOf(':');
  if (host.indexOf('.', lastColon) >= 0) {
    v4 = parseIPv4(host.slice(lastColon + 1));
    if (!v4) return undefined;
    // "::1.2.3.4" keeps its "::"; "::ffff:1.2.3.4" drops the colon before the IPv4 part.
    tail = host.slice(0, lastColon + 1);
    if (!tail.endsWith('::')) tail = tail.slice(0, -1);
  }
  const groupsNeeded = v4 ? 6 : 8;
  const [head = '', rest] = tail.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const restGroups = rest === undefined || rest === '' ? [] : rest.split(':');
  const groups =
    rest === undefined
      ? headGroups
      : [
          ...headGroups,
          ...new Array<string>(groupsNeeded - headGroups.length - restGroups.length).fill('0'),
          ...restGroups,
        ];
  if (groups.length !== groupsNeeded) return undefined;
  groups.forEach((g, i) => {
    const v = Number.parseInt(g, 16);
    out[i * 2] = v >> 8;
    out[i * 2 + 1] = v & 0xff;
  });
  if (v4) out.set(v4, 12);
  return out;
}

function formatIPv4(ip: Uint8Array): string {
  return `${ip[0]}.${ip[1]}.${ip[2]}.${ip[3]}`;
}

/** RFC 5952: lower case, no leading zeros, the longest run (2+) of zero groups as "::". */
function formatIPv6(ip: Uint8Array): string {
  const mapped = unmapIPv4(ip);
  if (mapped.length === 4) return `::ffff:${formatIPv4(mapped)}`;
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((ip[i] as number) << 8) | (ip[i + 1] as number));
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  const left = hex.slice(0, bestStart).join(':');
  const right = hex.slice(bestStart + bestLen).join(':');
  return `${left}::${right}`;
}
