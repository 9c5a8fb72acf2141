// The multi-host test: four PeerBX nodes in their own network namespaces on a private bridge,
// a SIPp caller at node 1 and a SIPp callee at node 3, a SIPp phone behind a masquerading
// router, then the demo's baresip phones on hosts of their own (test/netns/run.sh does the
// work). Runs as root where `ip netns`, sipp and
// baresip exist, as in CI; elsewhere it is skipped, saying why.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const script = fileURLToPath(new URL('./run.sh', import.meta.url));
const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const why =
  process.getuid?.() !== 0
    ? 'needs root to create network namespaces'
    : !has('ip')
      ? 'needs iproute2 (ip netns)'
      : !has('sipp')
        ? 'needs sipp (apt-get install sip-tester); CI installs it'
        : undefined;

// The NAT router needs iptables: CI installs it, so only a developer's machine may skip.
const whyNoNat = !has('iptables') && !process.env.CI ? 'needs iptables; CI installs it' : undefined;

function run(env) {
  const r = spawnSync('bash', [script], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
    timeout: 180_000,
  });
  const tail = `${r.stdout}\n${r.stderr}`.trim().split('\n').slice(-25).join('\n');
  return { code: r.status, tail };
}

// The demo's baresip phones: CI installs baresip, so only a developer's machine may skip.
const whyNoPhones =
  process.getuid?.() !== 0
    ? 'needs root to create network namespaces'
    : !has('ip')
      ? 'needs iproute2 (ip netns)'
      : !has('baresip') && !process.env.CI
        ? 'needs baresip (apt-get install baresip-core); CI installs it'
        : undefined;

describe('multi-host: nodes in network namespaces', { skip: why }, () => {
  it('places a call across hosts (INVITE/180/200/ACK/BYE)', () => {
    const r = run({});
    assert.equal(r.code, 0, r.tail);
    assert.match(r.tail, /PASS: alice@node1 .* called bob@node3/);
  });

  it("answers 480 when the callee's host is unplugged while the phone rings, and for new calls", () => {
    // Not a frozen process (its kernel would still answer TCP): the host's link goes down.
    const r = run({
      PEERBX_NETNS_HOST_GONE: '1',
      PEERBX_NETNS_PASSWORD: '',
      PEERBX_NETNS_PHONES: 'sipp',
    });
    assert.equal(r.code, 0, r.tail);
    assert.match(r.tail, /PASS: .*bob's host unplugged: 480 [\d.]+s after while ringing/);
  });

  it('reaches a phone behind NAT: calls in, calls out, BYE both ways through the router', {
    skip: whyNoNat,
  }, () => {
    // carol's phone is in 192.168.77.0/24 behind a router namespace that masquerades onto the
    // bridge (UDP ports remapped); the nodes have no route to her Via/Contact address.
    const r = run({ PEERBX_NETNS_NAT: '1' });
    assert.equal(r.code, 0, r.tail);
    assert.match(
      r.tail,
      /PASS: .*carol behind NAT \(192\.168\.77\.2:5070 seen as [\d.]+:\d+\) at node 3: called by alice@node1, called alice@node1 who hung up/,
    );
  });

  it('places the call with phones that authenticate by digest', () => {
    const r = run({ PEERBX_NETNS_PASSWORD: 'netns-secret' });
    assert.equal(r.code, 0, r.tail);
    assert.match(r.tail, /PASS:/);
  });
});

describe('multi-host: the demo phones (baresip) on hosts of their own', {
  skip: whyNoPhones,
}, () => {
  it('alice calls bob and carol calls alice: answered, RTP both ways, BYE', () => {
    const r = run({ PEERBX_NETNS_PHONES: 'baresip' });
    assert.equal(r.code, 0, r.tail);
    assert.match(r.tail, /PASS: baresip phones on their own hosts/);
  });

  it('the same with phones that authenticate by digest', () => {
    const r = run({ PEERBX_NETNS_PHONES: 'baresip', PEERBX_NETNS_PASSWORD: 'netns-secret' });
    assert.equal(r.code, 0, r.tail);
    assert.match(r.tail, /PASS: baresip phones on their own hosts/);
  });

  it('the same with nodes listening on every interface (sip: 0.0.0.0:5060)', () => {
    // Record-Route and Via must name the node's address on the phones' network, not 0.0.0.0:
    // the phones' ACK and BYE go there.
    const r = run({
      PEERBX_NETNS_PHONES: 'baresip',
      PEERBX_NETNS_PASSWORD: 'netns-secret',
      PEERBX_NETNS_SIP_ANY: '1',
    });
    assert.equal(r.code, 0, r.tail);
    assert.match(r.tail, /PASS: baresip phones on their own hosts/);
  });
});
