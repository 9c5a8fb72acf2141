// The node's own addresses when it listens on every interface (0.0.0.0 or ::). A bound address
// of 0.0.0.0 is no address a phone can send to: what goes into Record-Route and Via must be the
// address of the interface that faces that phone (RFC 3261 §16.6 step 4: the Record-Route URI
// "MUST resolve to the element inserting it"), and a Route, Request-URI or To naming any of the
// machine's addresses names this node.

import { BlockList } from 'node:net';
import { type NetworkInterfaceInfo, networkInterfaces } from 'node:os';

/** True for an address that means "every interface". */
export function isWildcardAddress(address: string): boolean {
  return address === '0.0.0.0' || address === '::' || address === '::0';
}

/** How long the interface list is reused before it is read again (DHCP may change it), ms. */
const INTERFACES_TTL_MS = 10_000;

export interface InterfaceAddressesOptions {
  /** The interface list; default os.networkInterfaces(). */
  read?: () => NodeJS.Dict<NetworkInterfaceInfo[]>;
  now?: () => number;
}

export class InterfaceAddresses {
  private readonly read: () => NodeJS.Dict<NetworkInterfaceInfo[]>;
  private readonly now: () => number;
  private cached:
    | {
        at: number;
        list: NetworkInterfaceInfo[];
        /** The external interfaces' subnets, built once per read of the list. */
        subnets: { address: string; v6: boolean; block: BlockList }[];
      }
    | undefined;

  constructor(options: InterfaceAddressesOptions = {}) {
    this.read = options.read ?? networkInterfaces;
    this.now = options.now ?? (() => performance.now());
  }

  /** Every address of every interface, loopback included. */
  list(): readonly NetworkInterfaceInfo[] {
    return this.current().list;
  }

  private current(): NonNullable<InterfaceAddresses['cached']> {
    const now = this.now();
    if (!this.cached || now - this.cached.at > INTERFACES_TTL_MS) {
      let list: NetworkInterfaceInfo[] = [];
      try {
        list = Object.values(this.read()).flatMap((xs) => xs ?? []);
      } catch {
        // No interface list (a sandbox without /proc, say): loopback is all we can name.
      }
      const subnets = [];
      for (const i of list) {
        if (i.internal || i.cidr === null) continue;
        const v6 = i.family === 'IPv6';
        const [net, bits] = i.cidr.split('/');
        const block = new BlockList();
        try {
          block.addSubnet(net as string, Number(bits), v6 ? 'ipv6' : 'ipv4');
          subnets.push({ address: i.address, v6, block });
        } catch {
          // A CIDR that does not parse names no subnet.
        }
      }
      this.cached = { at: now, list, subnets };
    }
    return this.cached;
  }

  /** True when `host` (an IP literal, any case, IPv6 with or without brackets) is ours. */
  has(host: string): boolean {
    const h = bare(host);
    return this.list().some((i) => i.address.toLowerCase() === h);
  }

  /**
   * The local address a message to `remote` leaves from: loopback for a loopback peer, else
   * the address of the interface whose subnet holds `remote`, else the first address of the
   * same family on an interface that is not loopback (the one a default route most likely
   * uses), else loopback. Bare (no brackets around IPv6).
   */
  facing(remote: string | undefined): string {
    const r = remote === undefined ? undefined : bare(remote);
    const v6 = r?.includes(':') ?? false;
    const loopback = v6 ? '::1' : '127.0.0.1';
    if (r === undefined) return this.firstExternal(false) ?? loopback;
    if (v6 ? r === '::1' : r.startsWith('127.')) return loopback;
    const family = v6 ? 'ipv6' : 'ipv4';
    for (const subnet of this.current().subnets) {
      if (subnet.v6 !== v6) continue;
      try {
        if (subnet.block.check(r, family)) return subnet.address;
      } catch {
        // Not an address of this family after all: no subnet holds it.
      }
    }
    return this.firstExternal(v6) ?? loopback;
  }

  private firstExternal(v6: boolean): string | undefined {
    const family = v6 ? 'IPv6' : 'IPv4';
    // A link-local IPv6 address needs a zone to be reached: a global one is preferred.
    const candidates = this.list().filter((i) => i.family === family && !i.internal);
    return (candidates.find((i) => !i.address.toLowerCase().startsWith('fe80:')) ?? candidates[0])
      ?.address;
  }
}

function bare(host: string): string {
  return host.toLowerCase().replace(/^\[|\]$/g, '');
}
