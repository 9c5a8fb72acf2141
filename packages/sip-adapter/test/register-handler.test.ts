// REGISTER handling (RFC 3261 §10.3) against a recording publisher: domain and alias checks,
// Contact lists and `*`, expiries and 423, q and +sip.instance, flows kept, and overlay
// refusals (403 with the overlay's reason) and outages (503 with Retry-After) undone locally,
// except a device removal, which stands and reaches the overlay at a later sweep.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Clock } from '@peerbx/dht-kademlia';
import { OverlayError } from '@peerbx/overlay-core';
import { RegistrarBusyError } from '../src/errors.js';
import { parseSipMessage, type SipRequest } from '../src/message/sip-message.js';
import { parseVia } from '../src/message/uri.js';
import { type Binding, BindingStore } from '../src/registrar/binding-store.js';
import { behindNat, isPrivateAddress } from '../src/registrar/nat.js';
import { RegisterHandler } from '../src/registrar/register-handler.js';
import type { SipTransportAddress } from '../src/transport/transport.js';

const now = 1_000_000;
const clock: Clock = {
  now: () => now,
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};
const udp: SipTransportAddress = { transport: 'udp', address: '127.0.0.1', port: 5070 };
const tcp: SipTransportAddress = {
  transport: 'tcp',
  address: '127.0.0.1',
  port: 40000,
  connectionId: 'c1',
};

let cseq = 1;
function register(to: string, headers: string[]): SipRequest {
  const text = [
    `REGISTER sip:peerbx.local SIP/2.0`,
    `Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-r${cseq}`,
    'Max-Forwards: 70',
    `From: <${to}>;tag=f1`,
    `To: <${to}>`,
    'Call-ID: reg-1@test',
    `CSeq: ${cseq++} REGISTER`,
    ...headers,
    '',
    '',
  ].join('\r\n');
  return parseSipMessage(text) as SipRequest;
}

function setup(fail?: Error) {
  const store = new BindingStore();
  const synced: { aor: string; resource: string; bindings: readonly Binding[] }[] = [];
  const kept: [string, boolean][] = [];
  const handler = new RegisterHandler({
    store,
    domain: 'peerbx.local',
    localAddresses: () => ['10.1.2.3', '10.1.2.3:5060'],
    clock,
    keepFlow: (id, keep) => kept.push([id, keep]),
    publisher: {
      sync: async (aor, resource, bindings) => {
        if (fail) throw fail;
        synced.push({ aor, resource, bindings });
      },
    },
  });
  return { store, synced, kept, handler };
}

describe('REGISTER handler', () => {
  it('binds Contacts with their expiries and q, lists them in the 200, publishes', async () => {
    const { handler, synced, store } = setup();
    const res = await handler.handle(
      register('sip:alice@peerbx.local', [
        'Contact: <sip:alice@127.0.0.1:5070>;q=0.5, <sip:alice@127.0.0.1:5071>;expires=120',
        'Expires: 600',
      ]),
      udp,
    );
    assert.equal(res.status, 200);
    const contacts = res.headers.getAll('contact');
    assert.equal(contacts.length, 2);
    assert.ok(contacts.includes('<sip:alice@127.0.0.1:5071>;expires=120'));
    assert.ok(contacts.includes('<sip:alice@127.0.0.1:5070>;expires=600;q=0.5'));
    // §10.3 step 8: the registrar's time, as an RFC 1123 date in GMT.
    assert.equal(res.headers.get('date'), new Date(now).toUTCString());
    assert.match(res.headers.get('date') ?? '', /^\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/);
    assert.equal(synced[0]?.resource, 'alice@peerbx.local');
    assert.equal(synced[0]?.aor, 'sip:alice@peerbx.local');
    const b = store.lookup('sip:alice@peerbx.local', now);
    assert.deepEqual(b[0]?.flow, { transport: 'udp', address: '127.0.0.1', port: 5070 });
  });

  it('reads localhost, 127.0.0.1 and own addresses as the overlay domain; 404 otherwise', async () => {
    const { handler, synced } = setup();
    for (const to of ['sip:bob@localhost', 'sip:bob@127.0.0.1', 'sip:bob@10.1.2.3:5060']) {
      const res = await handler.handle(register(to, ['Contact: <sip:bob@127.0.0.1:5072>']), udp);
      assert.equal(res.status, 200, to);
    }
    assert.ok(synced.every((s) => s.resource === 'bob@peerbx.local'));
    const res = await handler.handle(
      register('sip:bob@example.com', ['Contact: <sip:bob@127.0.0.1:5072>']),
      udp,
    );
    assert.equal(res.status, 404);
    assert.match(res.reason, /example\.com/);
  });

  it('answers 423 with Min-Expires, 400 for a bad Contact, and queries without Contact', async () => {
    const { handler } = setup();
    const short = await handler.handle(
      register('sip:carol@peerbx.local', ['Contact: <sip:carol@127.0.0.1:5073>', 'Expires: 5']),
      udp,
    );
    assert.equal(short.status, 423);
    assert.equal(short.header('Min-Expires'), '60');
    const bad = await handler.handle(
      register('sip:carol@peerbx.local', ['Contact: <sip:carol@127.0.0.1:5073']),
      udp,
    );
    assert.equal(bad.status, 400);
    const badQ = await handler.handle(
      register('sip:carol@peerbx.local', ['Contact: <sip:carol@127.0.0.1:5073>;q=7']),
      udp,
    );
    assert.equal(badQ.status, 400);
    // A device the node could never ring (it has no TLS; it rings sip: only): said at once.
    for (const contact of ['<sips:carol@127.0.0.1:5074>', '<tel:+15551234>']) {
      const unreachable = await handler.handle(
        register('sip:carol@peerbx.local', [`Contact: ${contact}`]),
        udp,
      );
      assert.equal(unreachable.status, 400);
      assert.match(unreachable.reason, /Contact cannot be reached/);
    }
    // The SIP domain is no device's address (ringing it would ask DNS for peerbx.local).
    const domain = await handler.handle(
      register('sip:carol@peerbx.local', ['Contact: <sip:carol@PeerBX.local;maddr=127.0.0.1>']),
      udp,
    );
    assert.equal(domain.status, 400);
    assert.match(domain.reason, /names the SIP domain, not the phone/);
    const portZero = await handler.handle(
      register('sip:carol@peerbx.local', ['Contact: <sip:carol@127.0.0.1:0>']),
      udp,
    );
    assert.equal(portZero.status, 400);
    assert.match(portZero.reason, /has port 0/);
    // Its removal is no device to ring: taken.
    const gone = await handler.handle(
      register('sip:carol@peerbx.local', ['Contact: <sips:carol@127.0.0.1:5074>', 'Expires: 0']),
      udp,
    );
    assert.equal(gone.status, 200);
    await handler.handle(register('sip:carol@peerbx.local', ['Contact: <sip:carol@h:1>']), udp);
    const query = await handler.handle(register('sip:carol@peerbx.local', []), udp);
    assert.equal(query.status, 200);
    assert.deepEqual(query.headers.getAll('contact'), ['<sip:carol@h:1>;expires=3600']);
  });

  it('removes every binding with Contact: * and Expires: 0; keeps and releases TCP flows', async () => {
    const { handler, store, kept } = setup();
    const inst = '+sip.instance="<urn:uuid:00000000-0000-0000-0000-000000000001>"';
    const res = await handler.handle(
      register('sip:dave@peerbx.local', [
        `Contact: <sip:dave@127.0.0.1:40000;transport=tcp>;${inst}`,
      ]),
      tcp,
    );
    assert.equal(res.status, 200);
    assert.equal(
      store.lookup('sip:dave@peerbx.local', now)[0]?.instance,
      '<urn:uuid:00000000-0000-0000-0000-000000000001>',
    );
    assert.deepEqual(kept, [['c1', true]]);
    const gone = await handler.handle(
      register('sip:dave@peerbx.local', ['Contact: *', 'Expires: 0']),
      tcp,
    );
    assert.equal(gone.status, 200);
    assert.equal(gone.headers.getAll('contact').length, 0);
    assert.deepEqual(kept.at(-1), ['c1', false]);
    assert.equal(store.lookup('sip:dave@peerbx.local', now).length, 0);
  });

  it('drops the bindings of a closed connection that nothing else reaches: behind NAT, not a TCP phone', async () => {
    const { handler, store, synced, kept } = setup();
    const natted: SipTransportAddress = { ...tcp, port: 40001, connectionId: 'c2' };
    // A TCP phone on a LAN address it really has, and one behind NAT (private Contact, seen
    // at another address), both erin's.
    const lan = await handler.handle(
      register('sip:erin@peerbx.local', ['Contact: <sip:erin@127.0.0.1:40000;transport=tcp>']),
      tcp,
    );
    const nat = await handler.handle(
      register('sip:erin@peerbx.local', ['Contact: <sip:erin@10.0.0.7:5060;transport=tcp>']),
      natted,
    );
    assert.deepEqual([lan.status, nat.status], [200, 200]);
    const uris = () => store.lookup('sip:erin@peerbx.local', now).map((b) => b.uri);
    assert.equal(uris().length, 2);
    const writes = synced.length;
    handler.flowClosed('c1');
    handler.flowClosed('c2');
    handler.flowClosed('unknown');
    await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(uris(), ['sip:erin@127.0.0.1:40000;transport=tcp']);
    assert.equal(synced.length, writes + 1, 'one overlay write, for the NATed phone');
    assert.deepEqual(
      synced.at(-1)?.bindings.map((b) => b.uri),
      ['sip:erin@127.0.0.1:40000;transport=tcp'],
    );
    assert.deepEqual(kept.at(-1), ['c2', false], "the NATed phone's connection let go");
  });

  it("saves a new or moved binding durably ('now') and an expiry-only refresh 'soon'", async () => {
    const saves: { aor: string; when: string | undefined; n: number }[] = [];
    const handler = new RegisterHandler({
      store: new BindingStore(),
      domain: 'peerbx.local',
      clock,
      publisher: { sync: async () => undefined },
      persistence: {
        save: async (aor, bindings, when) => {
          saves.push({ aor, when, n: bindings.length });
        },
      },
    });
    const contact = ['Contact: <sip:ann@127.0.0.1:5070>', 'Expires: 600'];
    assert.equal(
      (await handler.handle(register('sip:ann@peerbx.local', contact), udp)).status,
      200,
    );
    assert.equal(
      (await handler.handle(register('sip:ann@peerbx.local', contact), udp)).status,
      200,
    );
    // The same Contact from another source port: the flow moved, saved at once.
    const moved = { ...udp, port: 5090 };
    assert.equal(
      (await handler.handle(register('sip:ann@peerbx.local', contact), moved)).status,
      200,
    );
    const second = ['Contact: <sip:ann@127.0.0.1:5071>', 'Expires: 600'];
    assert.equal(
      (await handler.handle(register('sip:ann@peerbx.local', second), moved)).status,
      200,
    );
    assert.deepEqual(
      saves.map((x) => `${x.when}:${x.n}`),
      ['now:1', 'soon:1', 'now:1', 'now:2'],
    );
  });

  it('maps an overlay refusal to 403 with its reason and undoes the binding', async () => {
    const { handler, store } = setup(
      new OverlayError('ERR_FORBIDDEN', 'name alice@peerbx.local is owned by another key'),
    );
    const res = await handler.handle(
      register('sip:alice@peerbx.local', ['Contact: <sip:alice@127.0.0.1:5070>']),
      udp,
    );
    assert.equal(res.status, 403);
    assert.equal(
      res.reason,
      "name alice@peerbx.local is owned by another key: run peerbx user-key alice on the node where alice first registered and copy the file into this node's users/ directory",
    );
    assert.equal(store.lookup('sip:alice@peerbx.local', now).length, 0);
    assert.equal(handler.refusedByOverlay, 1);
  });

  it('answers 420 with Unsupported to a REGISTER that requires an extension', async () => {
    const { handler, store, synced } = setup();
    const res = await handler.handle(
      register('sip:alice@peerbx.local', ['Contact: <sip:alice@127.0.0.1:5070>', 'Require: gruu']),
      udp,
    );
    assert.equal(res.status, 420);
    assert.equal(res.header('Unsupported'), 'gruu');
    assert.equal(store.lookup('sip:alice@peerbx.local', now).length, 0);
    assert.equal(synced.length, 0);
  });

  it('keeps a device removal when the overlay is down, and tells the overlay at a later sweep', async () => {
    let t = now;
    let down = false;
    const synced: number[] = [];
    const store = new BindingStore();
    const handler = new RegisterHandler({
      store,
      domain: 'peerbx.local',
      clock: { ...clock, now: () => t },
      keepFlow: () => undefined,
      publisher: {
        sync: async (_aor, _resource, bindings) => {
          if (down) throw new OverlayError('ERR_UNREACHABLE', 'no peer stored the record');
          synced.push(bindings.length);
        },
      },
    });
    const aor = 'sip:alice@peerbx.local';
    const contact = 'Contact: <sip:alice@127.0.0.1:5070>';
    assert.equal((await handler.handle(register(aor, [contact]), udp)).status, 200);
    down = true;
    // A new device needs the overlay: 503, nothing bound.
    const added = await handler.handle(register(aor, ['Contact: <sip:alice@127.0.0.1:5071>']), udp);
    assert.equal(added.status, 503);
    assert.equal(store.lookup(aor, t).length, 1);
    // The phone signs off: it is gone here at once.
    const off = await handler.handle(register(aor, [contact, 'Expires: 0']), udp);
    assert.equal(off.status, 200);
    assert.equal(store.lookup(aor, t).length, 0);
    assert.deepEqual(synced, [1]);
    down = false;
    handler.sweep();
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(synced, [1], 'not before REMOVAL_RETRY_MS');
    t += 30_000;
    handler.sweep();
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(synced, [1, 0], 'the removal published once the overlay answers');
    t += 30_000;
    handler.sweep();
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(synced, [1, 0], 'and only once');
  });

  it('maps an unreachable overlay to 503 with Retry-After', async () => {
    const { handler } = setup(new OverlayError('ERR_UNREACHABLE', 'no peer stored the record'));
    const res = await handler.handle(
      register('sip:alice@peerbx.local', ['Contact: <sip:alice@127.0.0.1:5070>']),
      udp,
    );
    assert.equal(res.status, 503);
    assert.equal(res.header('Retry-After'), '30');
  });

  it('maps holders with no room for the record to 503 that says so, not 403 (QA: a filled store)', async () => {
    const { handler, store } = setup(
      new OverlayError('ERR_FULL', 'no room for the record on the nodes that hold it'),
    );
    const res = await handler.handle(
      register('sip:alice@peerbx.local', ['Contact: <sip:alice@127.0.0.1:5070>']),
      udp,
    );
    assert.equal(res.status, 503);
    assert.match(res.reason, /no room for the registration/);
    assert.equal(res.header('Retry-After'), '30');
    assert.equal(store.lookup('sip:alice@peerbx.local', now).length, 0);
  });

  it('answers 503 saying the registrar is busy when overlay writes are queued, and binds nothing', async () => {
    const { handler, store } = setup(new RegistrarBusyError(2000));
    const res = await handler.handle(
      register('sip:alice@peerbx.local', ['Contact: <sip:alice@127.0.0.1:5070>']),
      udp,
    );
    assert.equal(res.status, 503);
    assert.match(res.reason, /registrar busy: 2000 overlay writes waiting/);
    assert.equal(res.header('Retry-After'), '10');
    assert.deepEqual(store.lookup('sip:alice@peerbx.local', now), []);
  });
});

describe('a phone behind NAT, as its REGISTER shows it', () => {
  const via = (v: string) => parseVia(v)[0];
  const from = (address: string, port: number, transport: 'udp' | 'tcp' = 'udp') => ({
    transport,
    address,
    port,
  });

  it('knows private, shared and link-local addresses', () => {
    for (const a of ['10.1.2.3', '172.16.0.1', '172.31.255.255', '192.168.1.100', '100.64.0.1']) {
      assert.equal(isPrivateAddress(a), true, a);
    }
    for (const a of ['169.254.1.1', 'fd12:3456::1', '[fe80::1]', '::ffff:10.0.0.1']) {
      assert.equal(isPrivateAddress(a), true, a);
    }
    for (const a of [
      '8.8.8.8',
      '172.32.0.1',
      '100.128.0.1',
      '127.0.0.1',
      '2001:db8::1',
      'pc.lan',
    ]) {
      assert.equal(isPrivateAddress(a), false, a);
    }
  });

  it('is behind NAT when its Via or a private Contact is not where it was seen', () => {
    const seen = from('203.0.113.7', 40312);
    // A phone that knows its address: Via, Contact and source agree.
    assert.equal(
      behindNat(via('SIP/2.0/UDP 203.0.113.7:40312;rport'), seen, ['203.0.113.7']),
      false,
    );
    // The usual NAT: the phone's own private address in Via and Contact.
    assert.equal(
      behindNat(via('SIP/2.0/UDP 192.168.1.20:5060;rport'), seen, ['192.168.1.20']),
      true,
    );
    // Same host, another port over UDP (a NAT that keeps the address, or a remapped port).
    assert.equal(behindNat(via('SIP/2.0/UDP 203.0.113.7:5060'), seen, ['203.0.113.7']), true);
    // A Via set right (rport learned) but a private Contact.
    assert.equal(behindNat(via('SIP/2.0/UDP 203.0.113.7:40312'), seen, ['10.0.0.5']), true);
    // Another public Contact, from a phone that knows its address: third-party registration.
    assert.equal(behindNat(via('SIP/2.0/UDP 203.0.113.7:40312'), seen, ['198.51.100.9']), false);
    // TCP: the source port is the connection's own, not the phone's listening port.
    const overTcp = from('203.0.113.7', 51000, 'tcp');
    assert.equal(behindNat(via('SIP/2.0/TCP 203.0.113.7:5060'), overTcp, ['203.0.113.7']), false);
    assert.equal(behindNat(via('SIP/2.0/TCP 10.0.0.5:5060'), overTcp, ['10.0.0.5']), true);
    // A browser (RFC 7118 §5: an .invalid Via host) is never reached but over its connection.
    assert.equal(behindNat(via('SIP/2.0/WS df7jal23ls0d.invalid'), overTcp, []), true);
  });
});

describe('REGISTER handler sweep', () => {
  it('has the records about to lapse written again, with the bindings of the moment', async () => {
    const store = new BindingStore();
    const renewed: { aor: string; resource: string; uris: string[] }[] = [];
    const asked: number[] = [];
    const handler = new RegisterHandler({
      store,
      domain: 'peerbx.local',
      localAddresses: () => [],
      clock,
      publisher: {
        sync: async () => undefined,
        lapsing: (at, within) => {
          asked.push(within);
          return at === now ? ['sip:alice@peerbx.local'] : [];
        },
        renew: async (aor, resource, current) => {
          renewed.push({ aor, resource, uris: current().map((b) => b.uri) });
        },
      },
    });
    const ok = await handler.handle(
      register('sip:alice@peerbx.local', ['Contact: <sip:alice@127.0.0.1:5070>', 'Expires: 600']),
      udp,
    );
    assert.equal(ok.status, 200);
    handler.sweep();
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(asked, [30_000]);
    assert.deepEqual(renewed, [
      {
        aor: 'sip:alice@peerbx.local',
        resource: 'alice@peerbx.local',
        uris: ['sip:alice@127.0.0.1:5070'],
      },
    ]);
  });

  it('counts a renewal the overlay refused, not one it could not make', async () => {
    let failure = new OverlayError(
      'ERR_FORBIDDEN',
      'name cleo@peerbx.local is owned by another key',
    );
    let t = now;
    let renewals = 0;
    const handler = new RegisterHandler({
      store: new BindingStore(),
      domain: 'peerbx.local',
      localAddresses: () => [],
      clock: { ...clock, now: () => t },
      publisher: {
        sync: async () => undefined,
        lapsing: () => ['sip:cleo@peerbx.local'],
        renew: async () => {
          renewals++;
          throw failure;
        },
      },
    });
    handler.sweep();
    await new Promise((r) => setImmediate(r));
    assert.equal(handler.refusedByOverlay, 1, 'refused: the phone learns at its next REGISTER');
    failure = new OverlayError('ERR_UNREACHABLE', 'no peer stored the record');
    t = now + 60_000; // past the wait after a failed renewal
    handler.sweep();
    await new Promise((r) => setImmediate(r));
    assert.equal(renewals, 2);
    assert.equal(handler.refusedByOverlay, 1, 'not reached: tried again, not refused');
  });

  it('holds up no REGISTER while a renewal waits for the overlay, and runs one at a time', async () => {
    let renewals = 0;
    const handler = new RegisterHandler({
      store: new BindingStore(),
      domain: 'peerbx.local',
      localAddresses: () => [],
      clock,
      publisher: {
        sync: async () => undefined,
        lapsing: () => ['sip:bea@peerbx.local'],
        // A background write stuck behind a busy overlay.
        renew: () => {
          renewals++;
          return new Promise(() => undefined);
        },
      },
    });
    const reg = () =>
      handler.handle(
        register('sip:bea@peerbx.local', ['Contact: <sip:bea@127.0.0.1:5070>', 'Expires: 600']),
        udp,
      );
    assert.equal((await reg()).status, 200);
    handler.sweep();
    handler.sweep();
    assert.equal(renewals, 1, 'not a second while the first runs');
    assert.equal((await reg()).status, 200, 'a refresh is answered meanwhile');
  });
});
