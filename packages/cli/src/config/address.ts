// HOST:PORT listen addresses as the user writes them ("0.0.0.0:7400", "[::1]:5060", ":0").

import { isIPv4, isIPv6 } from 'node:net';
import type { ListenAddress } from '@peerbx/overlay-core';

/** Parses HOST:PORT; undefined when it is not one. An empty host means 0.0.0.0. */
export function parseHostPort(text: string): ListenAddress | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text.trim());
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  const host = m[1] ?? m[2] ?? '';
  // Digits and dots are an IPv4 address or nothing (300.1.1.1 is no host name to look up);
  // brackets hold an IPv6 address.
  if (m[1] !== undefined ? !isIPv6(host) : /^[\d.]+$/.test(host) && !isIPv4(host)) return undefined;
  return { host: host === '' ? '0.0.0.0' : host, port };
}

export function formatHostPort(a: { host: string; port: number }): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}
