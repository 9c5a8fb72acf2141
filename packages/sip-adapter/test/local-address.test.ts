// The address a node listening on every interface (0.0.0.0) gives each peer: the interface on
// the peer's subnet, loopback for a loopback peer, else the first external one.

import assert from 'node:assert/strict';
import type { NetworkInterfaceInfo } from 'node:os';
import { describe, it } from 'node:test';
import { InterfaceAddresses, isWildcardAddress } from '../src/transport/local-address.js';

const iface = (
  address: string,
  bits: number,
  family: 'IPv4' | 'IPv6',
  internal = false,
): NetworkInterfaceInfo =>
  ({ address, family, internal, mac: '00:00:00:00:00:00', cidr: `${address}/${bits}` }) as never;

const machine = () => ({
  lo: [iface('127.0.0.1', 8, 'IPv4', true), iface('::1', 128, 'IPv6', true)],
  eth0: [
    iface('10.1.2.3', 16, 'IPv4'),
    iface('fe80::1', 64, 'IPv6'),
    iface('2001:db8::7', 64, 'IPv6'),
  ],
  wlan0: [iface('192.168.1.20', 24, 'IPv4'), iface('2001:db8:1::20', 64, 'IPv6')],
});

describe('interface addresses of a node bound to every interface', () => {
  it('names the interface on the peer subnet, loopback for loopback, else the first external', () => {
    const ifs = new InterfaceAddresses({ read: machine });
    assert.equal(ifs.facing('192.168.1.77'), '192.168.1.20');
    assert.equal(ifs.facing('10.1.200.9'), '10.1.2.3');
    assert.equal(ifs.facing('127.0.0.1'), '127.0.0.1');
    assert.equal(ifs.facing('127.8.0.1'), '127.0.0.1');
    assert.equal(ifs.facing('::1'), '::1');
    assert.equal(ifs.facing('203.0.113.5'), '10.1.2.3', 'off every subnet: the first external');
    assert.equal(ifs.facing('2001:db8:1::99'), '2001:db8:1::20');
    assert.equal(ifs.facing('2001:db8:5::1'), '2001:db8::7', 'a global IPv6 before link-local');
    assert.equal(ifs.facing(undefined), '10.1.2.3');
  });

  it('knows its own addresses in any spelling, and falls back to loopback without interfaces', () => {
    const ifs = new InterfaceAddresses({ read: machine });
    assert.ok(ifs.has('192.168.1.20'));
    assert.ok(ifs.has('[2001:DB8::7]'));
    assert.ok(!ifs.has('192.168.1.21'));
    const bare = new InterfaceAddresses({
      read: () => {
        throw new Error('no /proc');
      },
    });
    assert.equal(bare.facing('192.168.1.77'), '127.0.0.1');
    assert.ok(!bare.has('192.168.1.20'));
  });

  it('reads the interfaces again after a while (an address from DHCP may change)', () => {
    let now = 0;
    let reads = 0;
    const ifs = new InterfaceAddresses({
      read: () => {
        reads++;
        return machine();
      },
      now: () => now,
    });
    ifs.has('10.1.2.3');
    ifs.facing('10.1.0.1');
    assert.equal(reads, 1);
    now = 60_000;
    ifs.has('10.1.2.3');
    assert.equal(reads, 2);
  });

  it('tells wildcard addresses', () => {
    assert.ok(isWildcardAddress('0.0.0.0'));
    assert.ok(isWildcardAddress('::'));
    assert.ok(!isWildcardAddress('127.0.0.1'));
  });
});
