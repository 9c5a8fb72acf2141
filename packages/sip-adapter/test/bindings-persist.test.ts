// Bindings survive a restart: FileBindingsStore on its own (atomic JSON file, UDP and TCP
// bindings kept without their connection, WebSocket and NATed TCP ones not, expired ones
// dropped, coalesced writes, damaged files tolerated), then a SipNode closed and started again
// on the same data directory, whose restored bindings take an INVITE to the phone (a TCP one
// over a new connection).

import assert from 'node:assert/strict';
import { appendFileSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { KIND_SIP_REGISTRATION } from '@peerbx/overlay-core';
import { createResponse } from '../src/message/response.js';
import { serialize } from '../src/message/sip-message.js';
import type { Binding } from '../src/registrar/binding-store.js';
import { FileBindingsStore } from '../src/registrar/file-bindings-store.js';
import { rawRegister, startPeer, tempRoot } from './fixtures/sipp.js';
import { TcpPhone } from './fixtures/tcp-phone.js';
import { request, UdpPhone } from './fixtures/udp-phone.js';

const AOR = 'sip:alice@peerbx.local';

function binding(uri: string, over: Partial<Binding> = {}): Binding {
  return {
    aor: AOR,
    uri,
    q: 1,
    expiresAt: Date.now() + 3_600_000,
    callId: 'c1@test',
    cseq: 1,
    flow: { transport: 'udp', address: '127.0.0.1', port: 5070 },
    ...over,
  };
}

describe('FileBindingsStore', () => {
  const tmp = tempRoot('peerbx-bindings-');
  after(() => tmp.remove());

  it('saves UDP and TCP bindings (not their connection), drops WS, NATed TCP and expired ones', async () => {
    const dataDir = join(tmp.root, 'one');
    const store = new FileBindingsStore({ dataDir });
    assert.deepEqual(await store.load(), []);
    const udp = binding('sip:alice@127.0.0.1:5070', { instance: '<urn:uuid:1>' });
    const tcp = binding('sip:alice@127.0.0.1:5071;transport=tcp', {
      flow: { transport: 'tcp', address: '127.0.0.1', port: 40000, connectionId: 'c9' },
    });
    const natted = binding('sip:alice@10.0.0.5:5060;transport=tcp', {
      flow: { transport: 'tcp', address: '127.0.0.1', port: 40001, connectionId: 'c10', nat: true },
    });
    const ws = binding('sip:alice@df7jal23ls0d.invalid;transport=ws', {
      flow: { transport: 'ws', address: '127.0.0.1', port: 40002, connectionId: 'w1', nat: true },
    });
    const old = binding('sip:bob@127.0.0.1:5072', { aor: 'sip:bob@peerbx.local', expiresAt: 1 });
    await store.save(AOR, [udp, tcp, natted, ws]);
    await store.save('sip:bob@peerbx.local', [old]);
    assert.deepEqual(readdirSync(dataDir), ['bindings.json.journal'], 'one journal, nothing else');
    const again = new FileBindingsStore({ dataDir });
    const tcpKept = { ...tcp, flow: { transport: 'tcp', address: '127.0.0.1', port: 40000 } };
    assert.deepEqual(await again.load(), [udp, tcpKept]);
    await again.save(AOR, []);
    await Promise.all([store.close(), again.close()]);
    assert.deepEqual(await new FileBindingsStore({ dataDir }).load(), []);
  });

  it('coalesces saves made while a write runs', async () => {
    const store = new FileBindingsStore({ dataDir: join(tmp.root, 'many') });
    const saves = [];
    for (let i = 0; i < 50; i++) {
      saves.push(
        store.save(`sip:u${i}@peerbx.local`, [
          binding(`sip:u${i}@127.0.0.1:${6000 + i}`, { aor: `sip:u${i}@peerbx.local` }),
        ]),
      );
    }
    await Promise.all(saves);
    await store.close();
    assert.ok(store.writes <= 2, `${store.writes} writes`);
    assert.equal(
      (await new FileBindingsStore({ dataDir: join(tmp.root, 'many') }).load()).length,
      50,
    );
  });

  it("writes expiry-only refreshes ('soon') once for many, and flush() makes them durable", async () => {
    const dataDir = join(tmp.root, 'soon');
    const store = new FileBindingsStore({ dataDir });
    await store.save(AOR, [binding('sip:alice@127.0.0.1:5070')]);
    assert.equal(store.writes, 1);
    const later = Date.now() + 7_200_000;
    for (let i = 0; i < 100; i++) {
      await store.save(
        AOR,
        [binding('sip:alice@127.0.0.1:5070', { expiresAt: later + i })],
        'soon',
      );
    }
    assert.equal(store.writes, 1, "'soon' resolves before writing");
    await store.flush();
    assert.equal(store.writes, 2, 'one write for 100 refreshes');
    await store.close();
    const [saved] = await new FileBindingsStore({ dataDir }).load();
    assert.equal(saved?.expiresAt, later + 99);
  });

  it('replays the journal over the snapshot, stops at a torn line, and rewrites before appending', async () => {
    const dataDir = join(tmp.root, 'journal');
    const store = new FileBindingsStore({ dataDir });
    await store.load();
    // Enough saves to fold the journal into a snapshot at least once.
    const big = (i: number) =>
      binding(`sip:u${i}@127.0.0.1:${6000 + (i % 1000)};${'x'.repeat(200)}`, {
        aor: `sip:u${i}@peerbx.local`,
      });
    for (let i = 0; i < 2000; i++) await store.save(`sip:u${i}@peerbx.local`, [big(i)]);
    await store.save('sip:u7@peerbx.local', []);
    await store.close();
    assert.ok(store.snapshots >= 1, `${store.snapshots} snapshots`);
    const loaded = await new FileBindingsStore({ dataDir }).load();
    assert.equal(loaded.length, 1999);
    assert.ok(!loaded.some((b) => b.aor === 'sip:u7@peerbx.local'), 'the removal replayed');

    // A crash in the middle of an append: half a line at the end.
    appendFileSync(store.journalPath, '{"aor":"sip:torn@peerbx.local","bindings":[{"ao');
    const after = new FileBindingsStore({ dataDir });
    assert.equal((await after.load()).length, 1999);
    await after.save(AOR, [binding('sip:alice@127.0.0.1:5070')]);
    await after.close();
    assert.equal(after.snapshots, 1, 'a torn journal is folded into a snapshot, not appended to');
    const again = await new FileBindingsStore({ dataDir }).load();
    assert.equal(again.length, 2000);
    assert.ok(again.some((b) => b.aor === AOR));
  });

  it('skips journal lines damaged on disk and replays the lines after them', async () => {
    const dataDir = join(tmp.root, 'damaged');
    const store = new FileBindingsStore({ dataDir });
    await store.load();
    const aor = (i: number) => `sip:d${i}@peerbx.local`;
    for (let i = 0; i < 10; i++) {
      await store.save(aor(i), [binding(`sip:d${i}@127.0.0.1:${7000 + i}`, { aor: aor(i) })]);
    }
    await store.close();
    // Zeros over the middle of the 4th line, and over the 7th line's end (it joins the 8th).
    const text = Buffer.from(readFileSync(store.journalPath));
    const ends = [...text.entries()].filter(([, c]) => c === 0x0a).map(([i]) => i);
    text.fill(0, ends[2]! + 10, ends[2]! + 30);
    text.fill(0, ends[6]! - 5, ends[6]! + 1);
    writeFileSync(store.journalPath, text);
    const after = new FileBindingsStore({ dataDir });
    const loaded = (await after.load()).map((b) => b.aor).sort();
    assert.deepEqual(loaded, [0, 1, 2, 4, 5, 8, 9].map(aor).sort(), 'all but the damaged lines');
    await after.save(aor(3), [binding('sip:d3@127.0.0.1:7003', { aor: aor(3) })]);
    await after.close();
    assert.equal(after.snapshots, 1, 'a damaged journal is rewritten, not appended to');
    assert.equal((await new FileBindingsStore({ dataDir }).load()).length, 8);
  });

  it('starts empty from a damaged or foreign file', async () => {
    const dataDir = join(tmp.root, 'bad');
    const store = new FileBindingsStore({ dataDir });
    await store.save(AOR, [binding('sip:alice@127.0.0.1:5070')]);
    await store.close();
    writeFileSync(store.journalPath, 'not json\n');
    writeFileSync(store.path, '{"version":1,"bindings":[{"aor":');
    assert.deepEqual(await new FileBindingsStore({ dataDir }).load(), []);
    writeFileSync(store.path, '{"version":7,"bindings":[]}');
    assert.deepEqual(await new FileBindingsStore({ dataDir }).load(), []);
    writeFileSync(
      store.path,
      JSON.stringify({ version: 1, bindings: [{ aor: 1 }, binding('sip:x@h')] }),
    );
    assert.equal((await new FileBindingsStore({ dataDir }).load()).length, 1);
  });
});

describe('bindings across a SipNode restart', () => {
  const tmp = tempRoot('peerbx-restart-');
  const phones: UdpPhone[] = [];
  after(() => {
    for (const p of phones) p.close();
    tmp.remove();
  });

  it('restores a TCP binding without its connection, and calls the phone over a new one', async () => {
    const dataDir = join(tmp.root, 'tcp-node');
    const tcp = await TcpPhone.open();
    const caller = await UdpPhone.open();
    phones.push(caller);
    const first = await startPeer(dataDir, [], {
      bindingsStore: new FileBindingsStore({ dataDir }),
    });
    try {
      assert.equal(await tcp.register(first, 'tom'), 'SIP/2.0 200 OK');
    } finally {
      await first.close();
    }
    const second = await startPeer(dataDir, [], {
      bindingsStore: new FileBindingsStore({ dataDir }),
    });
    try {
      const call = request('INVITE', 'sip:tom@peerbx.local', caller);
      caller.send(call.text, second.port);
      const { request: inv, socket } = await tcp.request();
      assert.equal(inv.callId, call.callId);
      assert.equal(inv.uri, tcp.contact('tom'));
      socket.write(serialize(createResponse(inv, 200, { toTag: 'restored' })));
      await caller.response(200, 'INVITE');
    } finally {
      tcp.close();
      await second.close();
    }
  });

  it('does not write again after a restart the registrations the overlay holds from before', async () => {
    const dataDir = join(tmp.root, 'rewrite-node');
    const phone = await UdpPhone.open();
    phones.push(phone);
    const users = ['rw1', 'rw2', 'rw3'];
    const first = await startPeer(dataDir, [], {
      bindingsStore: new FileBindingsStore({ dataDir }),
    });
    try {
      for (const user of users) {
        assert.equal(
          await rawRegister(first, user, `sip:${user}@${phone.contact}`),
          'SIP/2.0 200 OK',
        );
      }
      assert.equal(first.sip.publisher.writes, users.length);
    } finally {
      await first.close();
    }
    const second = await startPeer(dataDir, [], {
      bindingsStore: new FileBindingsStore({ dataDir }),
    });
    try {
      const aors = users.map((u) => `sip:${u}@peerbx.local`);
      // Restores under way are left out of lapsing(); all three listed = all three restored.
      const restored = () => second.sip.publisher.lapsing(Date.now(), 1e12).length === 3;
      for (let i = 0; i < 100 && !restored(); i++) await sleep(20);
      assert.deepEqual(second.sip.publisher.lapsing(Date.now(), 1e12).sort(), aors);
      assert.equal(
        second.sip.publisher.writes,
        0,
        'the records from before are stored again as they were',
      );
      const [record] = await second.overlay.fetch('rw2@peerbx.local', KIND_SIP_REGISTRATION);
      assert.ok(record && record.value.length > 0, 'rw2 is registered in the overlay');
      // A second device is news: written.
      assert.equal(await rawRegister(second, 'rw2', 'sip:rw2@127.0.0.1:9'), 'SIP/2.0 200 OK');
      assert.equal(second.sip.publisher.writes, 1);
    } finally {
      await second.close();
    }
  });

  it('tells the overlay after a restart of devices that left before it could be told', async () => {
    const dataDir = join(tmp.root, 'removal-node');
    const phone = await UdpPhone.open();
    phones.push(phone);
    const first = await startPeer(dataDir, [], {
      bindingsStore: new FileBindingsStore({ dataDir }),
    });
    try {
      for (const user of ['gone', 'kept']) {
        assert.equal(
          await rawRegister(first, user, `sip:${user}@${phone.contact}`),
          'SIP/2.0 200 OK',
        );
      }
    } finally {
      await first.close();
    }
    // What a node keeps when a phone unregistered while the overlay could not be told (or it
    // stopped right after): the binding gone from its data directory, the record still out.
    const store = new FileBindingsStore({ dataDir });
    await store.load();
    await store.save('sip:gone@peerbx.local', []);
    await store.close();
    const second = await startPeer(dataDir, [], {
      bindingsStore: new FileBindingsStore({ dataDir }),
    });
    try {
      const registered = async (user: string) =>
        (await second.overlay.fetch(`${user}@peerbx.local`, KIND_SIP_REGISTRATION)).some(
          (r) => r.value.length > 0,
        );
      for (let i = 0; i < 100 && (await registered('gone')); i++) await sleep(20);
      assert.equal(await registered('gone'), false, 'a tombstone replaced the record');
      assert.equal(await registered('kept'), true);
      assert.equal(second.sip.publisher.writes, 1, 'the tombstone, nothing for kept');
    } finally {
      await second.close();
    }
  });

  it('restores a UDP binding from the data directory, and an INVITE reaches the phone', async () => {
    const dataDir = join(tmp.root, 'node');
    const callee = await UdpPhone.open();
    const caller = await UdpPhone.open();
    phones.push(callee, caller);

    const first = await startPeer(dataDir, [], {
      bindingsStore: new FileBindingsStore({ dataDir }),
    });
    try {
      assert.equal(
        await rawRegister(first, 'alice', `sip:alice@${callee.contact}`),
        'SIP/2.0 200 OK',
      );
    } finally {
      await first.close();
    }
    const saved = await new FileBindingsStore({ dataDir }).load();
    assert.equal(saved[0]?.uri, `sip:alice@${callee.contact}`);

    const second = await startPeer(dataDir, [], {
      bindingsStore: new FileBindingsStore({ dataDir }),
    });
    try {
      const restored = second.sip.bindings.lookup(AOR, Date.now());
      assert.equal(restored.length, 1);
      assert.equal(restored[0]?.uri, `sip:alice@${callee.contact}`);
      const call = request('INVITE', 'sip:alice@peerbx.local', caller);
      caller.send(call.text, second.port);
      const inv = await callee.request('INVITE');
      assert.equal(inv.callId, call.callId);
      callee.answer(inv, 200, second.port, 'restored');
      const ok = await caller.response(200, 'INVITE');
      assert.equal(ok.callId, call.callId);
    } finally {
      await second.close();
    }
  });
});
