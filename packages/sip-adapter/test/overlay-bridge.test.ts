// Registrations to the overlay and back: writes only when devices change or bindings outlive
// the record, tombstones on removal, 403 reasons passed through, a brief location cache with
// invalidation. The overlay is a real OverlayNode pair on 127.0.0.1.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Clock, idToHex } from '@peerbx/dht-kademlia';
import { defaultOverlayConfig, OverlayError, OverlayNode } from '@peerbx/overlay-core';
import { RegistrarBusyError } from '../src/errors.js';
import { Locator } from '../src/overlay-bridge/locator.js';
import type { OverlayAccess } from '../src/overlay-bridge/overlay-access.js';
import { RegistrationPublisher } from '../src/overlay-bridge/registration-publisher.js';
import type { Binding } from '../src/registrar/binding-store.js';

const config = defaultOverlayConfig({
  puzzleBits: 4,
  dht: { k: 3, alpha: 3, disjointPaths: 1, maintenanceIntervalMs: 60_000 },
});

let now = Date.now();
const clock: Clock = {
  now: () => now,
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

const binding = (uri: string, expiresInS: number): Binding => ({
  aor: 'sip:bob@peerbx.local',
  uri,
  q: 1,
  expiresAt: now + expiresInS * 1000,
  callId: 'c',
  cseq: 1,
});

describe('overlay bridge', () => {
  const root = mkdtempSync(join(tmpdir(), 'peerbx-bridge-'));
  let a: OverlayNode;
  let b: OverlayNode;

  before(async () => {
    a = await OverlayNode.start({ dataDir: join(root, 'a'), config });
    b = await OverlayNode.start({ dataDir: join(root, 'b'), config, bootstrap: [a.udpAddress] });
  });

  after(async () => {
    await b.close();
    await a.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('publishes a registration once and skips refreshes that change nothing', async () => {
    const pub = new RegistrationPublisher(b, clock);
    const aor = 'sip:bob@peerbx.local';
    assert.equal(
      (await pub.sync(aor, 'bob@peerbx.local', [binding('sip:bob@10.0.0.2', 3600)])).reason,
      'new',
    );
    now += 600_000;
    assert.equal(
      (await pub.sync(aor, 'bob@peerbx.local', [binding('sip:bob@10.0.0.2', 3600)])).write,
      false,
    );
    now += 600_000;
    assert.equal(
      (await pub.sync(aor, 'bob@peerbx.local', [binding('sip:bob@10.0.0.2', 3600)])).write,
      false,
    );
    assert.equal(pub.writes, 1);
    // Bindings that outlive the record by more than half its lifetime are republished.
    now += 1_200_000;
    assert.equal(
      (await pub.sync(aor, 'bob@peerbx.local', [binding('sip:bob@10.0.0.2', 3600)])).reason,
      'extends',
    );
    // A second device is news at once.
    const two = [binding('sip:bob@10.0.0.2', 3600), binding('sip:bob@10.0.0.3', 3600)];
    assert.equal((await pub.sync(aor, 'bob@peerbx.local', two)).reason, 'devices-changed');
    assert.equal(pub.writes, 3);
  });

  it('locates the registering node, caches it, and forgets it on demand', async () => {
    const loc = new Locator(a, clock);
    const found = await loc.locate('bob@peerbx.local');
    assert.deepEqual(
      found.map((l) => idToHex(l.nodeId)),
      [idToHex(b.nodeId)],
    );
    assert.equal(found[0]!.devices, 2);
    await loc.locate('bob@peerbx.local');
    assert.equal(loc.hits, 1);
    loc.invalidate('bob@peerbx.local', b.nodeId);
    await loc.locate('bob@peerbx.local');
    assert.equal(loc.misses, 2);
  });

  it('publishes a tombstone when the last device leaves, and the user is then nowhere', async () => {
    const pub = new RegistrationPublisher(b, clock);
    await pub.sync('sip:bob@peerbx.local', 'bob@peerbx.local', [binding('sip:bob@10.0.0.2', 3600)]);
    assert.equal(
      (await pub.sync('sip:bob@peerbx.local', 'bob@peerbx.local', [])).reason,
      'removed',
    );
    assert.deepEqual(await new Locator(a, clock).locate('bob@peerbx.local'), []);
  });

  it("passes the overlay's refusal through for a name owned by another key", async () => {
    const theirs = new RegistrationPublisher(a, clock);
    await assert.rejects(
      theirs.sync('sip:bob@peerbx.local', 'bob@peerbx.local', [binding('sip:bob@10.9.9.9', 3600)]),
      (e: unknown) =>
        e instanceof OverlayError &&
        e.code === 'ERR_FORBIDDEN' &&
        /owned by another key/.test(e.message),
    );
  });

  it('keeps a few writes under way, queues more, and refuses beyond the queue', async () => {
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let started = 0;
    // The real overlay, its writes held back until the test lets them go.
    const access: OverlayAccess = {
      nodeId: b.nodeId,
      fetch: (resource, kind) => b.fetch(resource, kind),
      connect: (nodeId, application) => b.connect(nodeId, application),
      publish: async (params) => {
        started++;
        await held;
        return b.publish(params);
      },
    };
    const pub = new RegistrationPublisher(access, clock, { maxInFlight: 2, maxWaiting: 1 });
    const user = (i: number, options?: { queueAlways?: boolean }) =>
      pub.sync(
        `sip:q${i}@peerbx.local`,
        `q${i}@peerbx.local`,
        [binding(`sip:q${i}@10.0.0.9`, 3600)],
        options,
      );
    const admitted = [user(1), user(2), user(3)];
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(started, 2, 'two writes under way');
    assert.deepEqual(pub.pending, { inFlight: 2, waiting: 1 });
    await assert.rejects(
      user(4),
      (e: unknown) => e instanceof RegistrarBusyError && e.waiting === 1,
    );
    assert.equal(pub.busyRefusals, 1);
    // Bindings restored at start wait however long the queue is.
    const restored = user(5, { queueAlways: true });
    assert.deepEqual(pub.pending, { inFlight: 2, waiting: 2 });
    release();
    const done = await Promise.all([...admitted, restored]);
    assert.deepEqual(
      done.map((d) => d.reason),
      ['new', 'new', 'new', 'new'],
    );
    assert.equal(started, 4);
    assert.equal(pub.writes, 4);
    assert.deepEqual(pub.pending, { inFlight: 0, waiting: 0 });
    for (const i of [3, 5]) {
      const found = await new Locator(a, clock).locate(`q${i}@peerbx.local`);
      assert.deepEqual(
        found.map((l) => idToHex(l.nodeId)),
        [idToHex(b.nodeId)],
      );
    }
  });
});
