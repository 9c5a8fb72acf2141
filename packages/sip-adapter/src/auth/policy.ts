// When a node asks phones for credentials: always, never, or (default) when it listens on an
// address other hosts can reach. A softphone on the same machine needs no password.

/** `auto`: authenticate when any SIP listening address is not loopback. */
export type AuthMode = 'auto' | 'always' | 'never';

export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h);
}

/** Whether a node in `mode` listening on `hosts` requires digest authentication. */
export function authRequired(mode: AuthMode, hosts: readonly string[]): boolean {
  if (mode === 'always') return true;
  if (mode === 'never') return false;
  return hosts.some((h) => !isLoopbackHost(h));
}
