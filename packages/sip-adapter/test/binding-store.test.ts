// Registrar bindings per RFC 3261 §10.3: add, refresh, remove, "*", Min-Expires, q-values,
// several devices, CSeq ordering, expiry, and the "changed" flag that spares overlay writes.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Binding, BindingStore } from '../src/registrar/binding-store.js';

const AOR = 'sip:alice@peerbx.local';
const T0 = 1_000_000;

describe('registrar bindings', () => {
  it('adds a binding with the Expires header, then refreshes it without a change', () => {
    const s = new BindingStore();
    const r = s.register(
      {
        aor: AOR,
        callId: 'c1',
        cseq: 1,
        contacts: [{ uri: 'sip:alice@10.0.0.1:5060' }],
        expires: 600,
      },
      T0,
    );
    assert.equal(r.status, 200);
    assert.ok(r.status === 200 && r.changed);
    assert.equal(s.lookup(AOR, T0)[0]?.expiresAt, T0 + 600_000);
    const again = s.register(
      {
        aor: AOR,
        callId: 'c1',
        cseq: 2,
        contacts: [{ uri: 'sip:alice@10.0.0.1:5060' }],
        expires: 600,
      },
      T0 + 300_000,
    );
    assert.ok(
      again.status === 200 && !again.changed,
      'a refresh changes nothing the overlay cares about',
    );
    assert.equal(s.lookup(AOR, T0 + 300_000)[0]?.expiresAt, T0 + 900_000);
  });

  it('prefers the contact expires parameter over the header and caps long expiries', () => {
    const s = new BindingStore({ maxExpires: 7200 });
    s.register(
      {
        aor: AOR,
        callId: 'c',
        cseq: 1,
        contacts: [{ uri: 'sip:a@h1', expires: 120 }, { uri: 'sip:a@h2' }],
        expires: 99_999,
      },
      T0,
    );
    const byUri = new Map(s.lookup(AOR, T0).map((b) => [b.uri, b.expiresAt - T0]));
    assert.equal(byUri.get('sip:a@h1'), 120_000);
    assert.equal(byUri.get('sip:a@h2'), 7_200_000);
  });

  it('answers 423 with Min-Expires for too short a registration and changes nothing', () => {
    const s = new BindingStore({ minExpires: 60 });
    const r = s.register(
      { aor: AOR, callId: 'c', cseq: 1, contacts: [{ uri: 'sip:a@h' }], expires: 30 },
      T0,
    );
    assert.deepEqual(r, { status: 423, minExpires: 60 });
    assert.equal(s.lookup(AOR, T0).length, 0);
  });

  it('keeps several devices, ordered by q-value, and removes one with expires=0', () => {
    const s = new BindingStore();
    s.register(
      { aor: AOR, callId: 'desk', cseq: 1, contacts: [{ uri: 'sip:a@desk', q: 0.5 }] },
      T0,
    );
    s.register(
      { aor: AOR, callId: 'mobile', cseq: 1, contacts: [{ uri: 'sip:a@mobile', q: 0.9 }] },
      T0,
    );
    assert.deepEqual(
      s.lookup(AOR, T0).map((b) => b.uri),
      ['sip:a@mobile', 'sip:a@desk'],
    );
    const r = s.register(
      { aor: AOR, callId: 'desk', cseq: 2, contacts: [{ uri: 'sip:a@desk', expires: 0 }] },
      T0,
    );
    assert.ok(r.status === 200 && r.changed);
    assert.deepEqual(
      s.lookup(AOR, T0).map((b) => b.uri),
      ['sip:a@mobile'],
    );
  });

  it('removes every binding with Contact: * and Expires: 0, and refuses * otherwise', () => {
    const s = new BindingStore();
    s.register(
      { aor: AOR, callId: 'a', cseq: 1, contacts: [{ uri: 'sip:a@1' }, { uri: 'sip:a@2' }] },
      T0,
    );
    assert.equal(
      s.register({ aor: AOR, callId: 'b', cseq: 1, contacts: '*', expires: 60 }, T0).status,
      400,
    );
    const r = s.register({ aor: AOR, callId: 'b', cseq: 1, contacts: '*', expires: 0 }, T0);
    assert.ok(r.status === 200 && r.changed);
    assert.equal(s.lookup(AOR, T0).length, 0);
  });

  it('refuses an older CSeq of the same Call-ID with 500', () => {
    const s = new BindingStore();
    s.register({ aor: AOR, callId: 'c', cseq: 5, contacts: [{ uri: 'sip:a@h' }] }, T0);
    const r = s.register(
      { aor: AOR, callId: 'c', cseq: 4, contacts: [{ uri: 'sip:a@h', expires: 0 }] },
      T0,
    );
    assert.equal(r.status, 500);
    assert.equal(s.lookup(AOR, T0).length, 1);
  });

  it('takes a Contact equal by RFC 3261 §19.1.4 as the same binding, one that differs as another', () => {
    // QA: transport=UDP, then transport=udp made two bindings, and each call rang twice.
    const bindings = (...uris: string[]) => {
      const s = new BindingStore();
      for (const [i, uri] of uris.entries()) {
        s.register({ aor: AOR, callId: 'c', cseq: i + 1, contacts: [{ uri }] }, T0);
      }
      return s.lookup(AOR, T0).length;
    };
    assert.equal(bindings('sip:a@h:5070;transport=UDP', 'sip:a@h:5070;Transport=udp'), 1);
    assert.equal(bindings('sip:a@h:5070;ob', 'sip:a@h:5070'), 1, 'a parameter in one only');
    assert.equal(bindings('sip:a@h:5070;rinstance=1', 'sip:a@h:5070;rinstance=2'), 2);
    assert.equal(bindings('sip:a@h:5070;user=phone', 'sip:a@h:5070'), 2, 'user= in one only');
    assert.equal(bindings('sip:a@h:5060', 'sip:a@h'), 2, 'a default port is no port');
    assert.equal(bindings('sip:A@h:5070', 'sip:a@h:5070'), 2, 'the user part is case-sensitive');
  });

  it('matches contacts case-insensitively in scheme and host, and replaces by +sip.instance', () => {
    const s = new BindingStore();
    s.register(
      { aor: AOR, callId: 'c', cseq: 1, contacts: [{ uri: 'sip:a@Host.Example:5060' }] },
      T0,
    );
    s.register(
      { aor: AOR, callId: 'c', cseq: 2, contacts: [{ uri: 'SIP:a@host.example:5060' }] },
      T0,
    );
    assert.equal(s.lookup(AOR, T0).length, 1);
    s.register(
      {
        aor: AOR,
        callId: 'd',
        cseq: 1,
        contacts: [{ uri: 'sip:a@192.0.2.1', instance: '<urn:uuid:1>' }],
      },
      T0,
    );
    s.register(
      {
        aor: AOR,
        callId: 'd',
        cseq: 2,
        contacts: [{ uri: 'sip:a@192.0.2.99', instance: '<urn:uuid:1>' }],
      },
      T0,
    );
    assert.deepEqual(
      s
        .lookup(AOR, T0)
        .map((b) => b.uri)
        .sort(),
      ['SIP:a@host.example:5060', 'sip:a@192.0.2.99'],
    );
  });

  it('expires bindings and reports each change', () => {
    const changes: [string, Binding[]][] = [];
    const s = new BindingStore({ onChange: (aor, b) => changes.push([aor, b]) });
    s.register({ aor: AOR, callId: 'c', cseq: 1, contacts: [{ uri: 'sip:a@h', expires: 60 }] }, T0);
    assert.equal(s.expire(T0 + 59_000), 0);
    assert.equal(s.expire(T0 + 60_000), 1);
    assert.equal(changes.length, 2);
    assert.deepEqual(changes[1], [AOR, []]);
  });

  it('caps the devices of one AOR: a new one replaces the binding refreshed longest ago', () => {
    const s = new BindingStore({ maxBindingsPerAor: 2 });
    s.register({ aor: AOR, callId: 'c1', cseq: 1, contacts: [{ uri: 'sip:a@1' }] }, T0);
    s.register({ aor: AOR, callId: 'c2', cseq: 1, contacts: [{ uri: 'sip:a@2' }] }, T0 + 1000);
    // A phone that takes a new Contact at each start: its old binding makes room.
    const r = s.register(
      { aor: AOR, callId: 'c3', cseq: 1, contacts: [{ uri: 'sip:a@3' }] },
      T0 + 2000,
    );
    assert.equal(r.status, 200);
    assert.deepEqual(
      s
        .lookup(AOR, T0 + 2000)
        .map((b) => b.uri)
        .sort(),
      ['sip:a@2', 'sip:a@3'],
    );
    // A phone with a short expiry that keeps refreshing stays; the one refreshed longest ago
    // (though due to expire later) makes room.
    s.register(
      { aor: AOR, callId: 'c2', cseq: 2, contacts: [{ uri: 'sip:a@2', expires: 120 }] },
      T0 + 60_000,
    );
    s.register({ aor: AOR, callId: 'c5', cseq: 1, contacts: [{ uri: 'sip:a@5' }] }, T0 + 61_000);
    assert.deepEqual(
      s
        .lookup(AOR, T0 + 61_000)
        .map((b) => b.uri)
        .sort(),
      ['sip:a@2', 'sip:a@5'],
    );
    // More devices in one REGISTER than the limit: refused, nothing changed.
    const many = s.register(
      {
        aor: AOR,
        callId: 'c4',
        cseq: 1,
        contacts: [{ uri: 'sip:a@4' }, { uri: 'sip:a@6' }, { uri: 'sip:a@7' }],
      },
      T0 + 62_000,
    );
    assert.equal(many.status, 403);
    assert.equal(s.lookup(AOR, T0 + 62_000).length, 2);
  });

  it('takes two Contacts of one REGISTER that name the same device (the later wins)', () => {
    const s = new BindingStore();
    const inst = '<urn:uuid:00000000-0000-0000-0000-000000000001>';
    const r = s.register(
      {
        aor: AOR,
        callId: 'c',
        cseq: 1,
        contacts: [
          { uri: 'sip:a@h;transport=udp', instance: inst },
          { uri: 'sip:a@h;transport=tcp', instance: inst },
        ],
      },
      T0,
    );
    assert.equal(r.status, 200);
    assert.deepEqual(
      s.lookup(AOR, T0).map((b) => b.uri),
      ['sip:a@h;transport=tcp'],
    );
    const twice = s.register(
      { aor: AOR, callId: 'c', cseq: 2, contacts: [{ uri: 'sip:b@h' }, { uri: 'sip:b@h' }] },
      T0,
    );
    assert.equal(twice.status, 200);
    // Counted once against the limit, too.
    const one = new BindingStore({ maxBindingsPerAor: 1 });
    const dup = one.register(
      { aor: AOR, callId: 'c', cseq: 1, contacts: [{ uri: 'sip:b@h' }, { uri: 'sip:b@h' }] },
      T0,
    );
    assert.equal(dup.status, 200);
  });

  it('finds bindings by address: Contact host:port, Contact user@host, REGISTER source', () => {
    const s = new BindingStore();
    const users = (bs: Binding[]) => bs.map((b) => b.aor).sort();
    const reg = (aor: string, uri: string, cseq: number, expires = 600, address = '192.0.2.9') =>
      s.register(
        {
          aor,
          callId: `c-${aor}`,
          cseq,
          contacts: [{ uri }],
          expires,
          flow: { transport: 'udp', address, port: 40000 },
        },
        T0,
      );
    // Two lines of one gateway (one Contact address), and a phone elsewhere.
    reg('sip:a@x', 'sip:a@[2001:DB8::1]:5070', 1);
    reg('sip:b@x', 'sip:b@[2001:db8::1]:5070;transport=tcp', 1);
    reg('sip:c@x', 'sip:c@Phone.Example', 1, 60, '198.51.100.7');
    assert.deepEqual(users(s.near(['2001:db8::1:5070'], T0)), ['sip:a@x', 'sip:b@x']);
    assert.deepEqual(users(s.near(['phone.example:5060'], T0)), ['sip:c@x'], 'port 5060 unsaid');
    assert.deepEqual(users(s.near(['c@phone.example'], T0)), ['sip:c@x']);
    assert.deepEqual(users(s.near(['198.51.100.7:40000'], T0)), ['sip:c@x'], 'by flow');
    // Each binding once, however many keys find it; none after it expired.
    assert.deepEqual(
      users(s.near(['phone.example:5060', 'c@phone.example', '192.0.2.9:40000'], T0)),
      ['sip:a@x', 'sip:b@x', 'sip:c@x'],
    );
    assert.deepEqual(users(s.near(['phone.example:5060'], T0 + 61_000)), []);
    // A new Contact moves the binding; removing it takes it out.
    reg('sip:a@x', 'sip:a@[2001:db8::1]:5070', 2, 0);
    reg('sip:a@x', 'sip:a@203.0.113.5', 3);
    assert.deepEqual(users(s.near(['2001:db8::1:5070'], T0)), ['sip:b@x']);
    assert.deepEqual(users(s.near(['203.0.113.5:5060'], T0)), ['sip:a@x']);
    s.register({ aor: 'sip:b@x', callId: 'c-sip:b@x', cseq: 2, contacts: '*', expires: 0 }, T0);
    assert.deepEqual(users(s.near(['2001:db8::1:5070'], T0)), []);
    // Put back after a restart: found again.
    const other = new BindingStore();
    other.restore(s.lookup('sip:a@x', T0), T0);
    assert.deepEqual(users(other.near(['203.0.113.5:5060'], T0)), ['sip:a@x']);
    assert.deepEqual(users(s.near(['nobody.example:5060'], T0)), []);
  });
});
