// Registrations to the overlay and back: writes only when devices change or bindings outlive
// the record, tombstones on removal, 403 reasons passed through, a brief location cache with
// invalidation. The overlay is a real OverlayNode pair on 127.0.0.1.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Clock, idToHex } from '@peerbx/dht-kademlia';
import {
  defaultOverlayConfig,
  KIND_SIP_REGISTRATION,
  OverlayError,
  OverlayNode,
} from '@peerbx/overlay-core';
import { LocatorBusyError, RegistrarBusyError } from '../src/errors.js';
import { LOCATION_CACHE_MS, Locator } from '../src/overlay-bridge/locator.js';
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

  it('renews a record about to lapse while bindings refreshed here outlive it', async () => {
    const pub = new RegistrationPublisher(b, clock);
    const aor = 'sip:renee@peerbx.local';
    const resource = 'renee@peerbx.local';
    const phone = (s: number) => [{ ...binding('sip:renee@10.0.0.9', s), aor }];
    await pub.sync(aor, resource, phone(120));
    // Registered anew 40 s later (a phone restarted): 40 s more is no news for the overlay.
    now += 40_000;
    assert.equal((await pub.sync(aor, resource, phone(120))).write, false);
    assert.deepEqual(pub.lapsing(now, 30_000), [], '80 s left');
    now += 55_000;
    assert.deepEqual(pub.lapsing(now, 30_000), [aor], '25 s left');
    assert.equal(await pub.renew(aor, resource, () => phone(65)), true);
    assert.equal(pub.writes, 2);
    assert.deepEqual(pub.lapsing(now, 30_000), [], 'renewed to the binding, 65 s');
    const [found] = await new Locator(a, clock).locate(resource);
    assert.equal(found?.expiresAt, now + 65_000, 'the overlay has the renewed record');
    // The record keeps the lifetime it was written with: a refresh extending the bindings by
    // half of it (60 s) is no news yet.
    now += 5_000;
    assert.equal((await pub.sync(aor, resource, phone(120))).write, false);
    // Nothing to renew when the bindings end with the record; forgotten once all are gone.
    now += 40_000;
    assert.equal(await pub.renew(aor, resource, () => phone(20)), false);
    now += 30_000;
    assert.equal(await pub.renew(aor, resource, () => []), false);
    assert.deepEqual(pub.lapsing(now, 30_000), []);
    assert.equal(pub.writes, 2);
  });

  it('locates the registering node, caches it, and forgets it on demand', async () => {
    const written: [string, number][] = [];
    const before = Date.now();
    const loc = new Locator(a, clock, undefined, {}, (id, at) => written.push([idToHex(id), at]));
    const found = await loc.locate('bob@peerbx.local');
    assert.deepEqual(
      found.map((l) => idToHex(l.nodeId)),
      [idToHex(b.nodeId)],
    );
    // Who wrote the record, and when (by its clock): a node that did lately is up.
    assert.equal(written.length, 1);
    assert.equal(written[0]?.[0], idToHex(b.nodeId));
    assert.ok((written[0]?.[1] ?? 0) <= Date.now() && (written[0]?.[1] ?? 0) > before - 60_000);
    assert.equal(found[0]!.devices, 2);
    await loc.locate('bob@peerbx.local');
    assert.equal(loc.hits, 1);
    loc.invalidate('bob@peerbx.local', b.nodeId);
    await loc.locate('bob@peerbx.local');
    assert.equal(loc.misses, 2);
    // A lapsed answer goes once read (QA soak: one entry per user ever called stayed).
    assert.equal(loc.cached, 1);
    const was = now;
    now += LOCATION_CACHE_MS;
    try {
      assert.equal(loc.isCached('bob@peerbx.local'), false);
      assert.equal(loc.cached, 0);
    } finally {
      now = was;
    }
  });

  it('publishes a tombstone when the last device leaves, and the user is then nowhere', async () => {
    const pub = new RegistrationPublisher(b, clock);
    await pub.sync('sip:bob@peerbx.local', 'bob@peerbx.local', [binding('sip:bob@10.0.0.2', 3600)]);
    assert.equal(pub.tracked, 1);
    assert.equal(
      (await pub.sync('sip:bob@peerbx.local', 'bob@peerbx.local', [])).reason,
      'removed',
    );
    // QA soak: each user that came and went stayed in memory for good.
    assert.equal(pub.tracked, 0, 'a user gone leaves nothing behind');
    assert.equal((await pub.sync('sip:bob@peerbx.local', 'bob@peerbx.local', [])).write, false);
    const loc = new Locator(a, clock);
    assert.deepEqual(await loc.locate('bob@peerbx.local'), []);
    // Not logged in, yet known (its name stays claimed), unlike a name nobody registered.
    assert.equal(loc.isKnownUser('bob@peerbx.local'), true);
    assert.deepEqual(await loc.locate('nobody@peerbx.local'), []);
    assert.equal(loc.isKnownUser('nobody@peerbx.local'), false);
    // The tombstone lives as long as the record it replaced would have: a holder that missed
    // the removal must not bring bob back when it lapses elsewhere.
    const [tombstone] = (await b.ownRecords(KIND_SIP_REGISTRATION, b.nodeId)).filter(
      (r) => r.resource === 'bob@peerbx.local',
    );
    assert.equal(tombstone?.value.length, 0);
    assert.ok(tombstone.lifetimeMs >= 3_590_000, `${tombstone.lifetimeMs} ms`);
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

  /** The real overlay b, its writes held back until the test lets them go (or fail). */
  /** Overlay access whose fetches wait for `release()`; `started` lists what they asked. */
  function heldFetches() {
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const started: string[] = [];
    const access: OverlayAccess = {
      nodeId: b.nodeId,
      fetch: async (resource, kind) => {
        started.push(resource);
        await held;
        return b.fetch(resource, kind);
      },
      connect: (nodeId, application) => b.connect(nodeId, application),
      publish: (params) => b.publish(params),
    };
    return { access, started, release: () => release() };
  }

  function heldOverlay() {
    let release: () => void = () => undefined;
    let held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const started: string[] = [];
    const failing = new Set<string>();
    const access: OverlayAccess = {
      nodeId: b.nodeId,
      fetch: (resource, kind) => b.fetch(resource, kind),
      connect: (nodeId, application) => b.connect(nodeId, application),
      publish: async (params) => {
        started.push(params.resource);
        await held;
        if (failing.has(params.resource)) {
          throw new OverlayError('ERR_UNREACHABLE', 'no peer stored the record');
        }
        return b.publish(params);
      },
    };
    return {
      access,
      started,
      failing,
      release: () => {
        release();
        held = Promise.resolve();
      },
    };
  }

  const sync = (pub: RegistrationPublisher, user: string) =>
    pub.sync(`sip:${user}@peerbx.local`, `${user}@peerbx.local`, [
      binding(`sip:${user}@10.0.0.9`, 3600),
    ]);

  it('keeps a few writes under way, queues more, and refuses beyond the queue', async () => {
    const o = heldOverlay();
    const pub = new RegistrationPublisher(o.access, clock, { maxInFlight: 2, maxWaiting: 1 });
    o.failing.add('q2@peerbx.local');
    const admitted = [sync(pub, 'q1'), sync(pub, 'q2'), sync(pub, 'q3')];
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(o.started, ['q1@peerbx.local', 'q2@peerbx.local'], 'two writes under way');
    assert.deepEqual(pub.pending, { inFlight: 2, waiting: 1, background: 0 });
    await assert.rejects(
      sync(pub, 'q4'),
      (e: unknown) => e instanceof RegistrarBusyError && e.waiting === 1,
    );
    assert.equal(pub.busyRefusals, 1);
    o.release();
    const done = await Promise.allSettled(admitted);
    assert.deepEqual(
      done.map((d) => d.status),
      ['fulfilled', 'rejected', 'fulfilled'],
    );
    // The failed write gave its place back like the others.
    assert.deepEqual(pub.pending, { inFlight: 0, waiting: 0, background: 0 });
    assert.equal(pub.writes, 2);
    const found = await new Locator(a, clock).locate('q3@peerbx.local');
    assert.deepEqual(
      found.map((l) => idToHex(l.nodeId)),
      [idToHex(b.nodeId)],
    );
  });

  it('gives up a write that waited too long when its turn comes', async () => {
    const o = heldOverlay();
    const pub = new RegistrationPublisher(o.access, clock, { maxInFlight: 1, maxWaitMs: 5000 });
    const first = sync(pub, 'w1');
    const late = sync(pub, 'w2');
    await new Promise((resolve) => setImmediate(resolve));
    now += 6000;
    o.release();
    await first;
    await assert.rejects(late, (e: unknown) => e instanceof RegistrarBusyError);
    assert.deepEqual(o.started, ['w1@peerbx.local']);
    assert.deepEqual(pub.pending, { inFlight: 0, waiting: 0, background: 0 });
  });

  it('refuses a write whose wait ran out while the write ahead of it still runs', {
    timeout: 5000,
  }, async () => {
    const o = heldOverlay();
    const pub = new RegistrationPublisher(o.access, clock, { maxInFlight: 1, maxWaitMs: 50 });
    const first = sync(pub, 'x1');
    const late = sync(pub, 'x2');
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(pub.pending, { inFlight: 1, waiting: 1, background: 0 });
    now += 30;
    const later = sync(pub, 'x3');
    now += 30;
    // No place frees up and no other REGISTER comes: the wait's own timer refuses x2, then,
    // moved on to the next oldest, x3 once its own wait ran out.
    await assert.rejects(late, (e: unknown) => e instanceof RegistrarBusyError);
    assert.deepEqual(pub.pending, { inFlight: 1, waiting: 1, background: 0 });
    now += 100;
    await assert.rejects(later, (e: unknown) => e instanceof RegistrarBusyError);
    assert.deepEqual(pub.pending, { inFlight: 1, waiting: 0, background: 0 });
    assert.equal(pub.busyRefusals, 2);
    o.release();
    await first;
    assert.deepEqual(o.started, ['x1@peerbx.local']);
    assert.deepEqual(pub.pending, { inFlight: 0, waiting: 0, background: 0 });
  });

  it('keeps a few location lookups under way, one per resource, and refuses beyond', async () => {
    const { access, started, release } = heldFetches();
    const loc = new Locator(access, clock, undefined, {
      maxInFlight: 2,
      maxWaiting: 1,
      maxWaitMs: 5000,
    });
    const first = loc.locate('bob@peerbx.local');
    const again = loc.locate('bob@peerbx.local');
    const other = loc.locate('q1@peerbx.local');
    const late = loc.locate('q3@peerbx.local');
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(started, ['bob@peerbx.local', 'q1@peerbx.local'], 'bob asked once');
    assert.deepEqual(loc.pending, { inFlight: 2, waiting: 1 });
    await assert.rejects(
      loc.locate('q4@peerbx.local'),
      (e: unknown) => e instanceof LocatorBusyError && e.waiting === 1,
    );
    // The waiting lookup's turn comes after it waited too long: refused, not started.
    const refused = assert.rejects(late, (e: unknown) => e instanceof LocatorBusyError);
    now += 6000;
    release();
    const [x, y] = await Promise.all([first, again, other]);
    assert.equal(x, y, 'the second call to bob got the first lookup');
    await refused;
    assert.equal(loc.busyRefusals, 2);
    assert.deepEqual(started, ['bob@peerbx.local', 'q1@peerbx.local']);
    assert.deepEqual(loc.pending, { inFlight: 0, waiting: 0 });
  });

  it('does not cache what a lookup found when a call through it failed meanwhile', async () => {
    let release: () => void = () => undefined;
    let held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let fetches = 0;
    const access: OverlayAccess = {
      nodeId: b.nodeId,
      fetch: async (resource, kind) => {
        fetches++;
        await held;
        return b.fetch(resource, kind);
      },
      connect: (nodeId, application) => b.connect(nodeId, application),
      publish: (params) => b.publish(params),
    };
    await sync(new RegistrationPublisher(b, clock), 'l1');
    const loc = new Locator(access, clock);
    const before = loc.locate('l1@peerbx.local');
    await new Promise((resolve) => setImmediate(resolve));
    loc.invalidate('l1@peerbx.local', b.nodeId);
    const after = loc.locate('l1@peerbx.local');
    release();
    held = Promise.resolve();
    assert.equal((await before).length, 1, 'its callers still get the answer');
    await after;
    assert.equal(fetches, 2, 'a call after the failure started a lookup of its own');
    await loc.locate('l1@peerbx.local');
    assert.equal(fetches, 2, "the newer lookup's answer was cached");
    loc.invalidate('l1@peerbx.local');
    const x = loc.locate('l1@peerbx.local');
    loc.invalidate('l1@peerbx.local');
    await x;
    await loc.locate('l1@peerbx.local');
    assert.equal(fetches, 4, 'an answer from before the failure was not cached');
  });

  it('takes a cached answer, or a lookup under way, only when it began within maxAgeMs', async () => {
    let fetches = 0;
    const access: OverlayAccess = {
      nodeId: b.nodeId,
      fetch: (resource, kind) => {
        fetches++;
        return b.fetch(resource, kind);
      },
      connect: (nodeId, application) => b.connect(nodeId, application),
      publish: (params) => b.publish(params),
    };
    await sync(new RegistrationPublisher(b, clock), 'm1');
    const loc = new Locator(access, clock);
    await loc.locate('m1@peerbx.local');
    now += 500;
    await loc.locate('m1@peerbx.local', { maxAgeMs: 1000 });
    assert.equal(fetches, 1, 'a 500 ms old answer will do');
    now += 600;
    const one = loc.locate('m1@peerbx.local', { maxAgeMs: 1000 });
    const two = loc.locate('m1@peerbx.local', { maxAgeMs: 1000 });
    assert.equal((await one).length, 1);
    assert.equal(await two, await one, 'the second shares the lookup the first began');
    assert.equal(fetches, 2, 'a 1100 ms old answer was looked up again, once');
    assert.equal(loc.staleHits, 2);
    await loc.locate('m1@peerbx.local', { maxAgeMs: 1000 });
    await loc.locate('m1@peerbx.local');
    assert.equal(fetches, 2, 'the new answer was cached');
    assert.equal(loc.hits, 3);
  });

  it('keeps rechecks (background lookups) to themselves, and refuses them past maxWaiting', async () => {
    const { access, started, release } = heldFetches();
    await sync(new RegistrationPublisher(b, clock), 'g1');
    const loc = new Locator(access, clock, undefined, {
      maxInFlight: 1,
      maxWaiting: 1,
      maxWaitMs: 5000,
    });
    const recheck = loc.locate('g1@peerbx.local', { background: true });
    const call = loc.locate('g1@peerbx.local');
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(started, ['g1@peerbx.local'], 'the recheck runs, the call waits for a place');
    assert.deepEqual(loc.pending, { inFlight: 1, waiting: 1 }, 'the call did not join the recheck');
    const second = loc.locate('q1@peerbx.local', { background: true });
    await assert.rejects(
      loc.locate('q3@peerbx.local', { background: true }),
      (e: unknown) => e instanceof LocatorBusyError,
      'one background lookup may wait, not two',
    );
    release();
    assert.equal((await recheck).length, 1);
    assert.equal((await call).length, 1);
    await second;
    assert.deepEqual(started, ['g1@peerbx.local', 'g1@peerbx.local', 'q1@peerbx.local']);
  });

  it('after a restart, writes only what its record from before the stop does not cover', async () => {
    // b's records from "before the restart", written by a publisher the restarted one never saw.
    const before = new RegistrationPublisher(b, clock);
    for (const user of ['rs1', 'rs2']) await sync(before, user);
    const pub = new RegistrationPublisher(b, clock);
    // What a restarted SipNode hands its publisher: b's own records, by resource.
    const own = new Map(
      (await b.ownRecords(KIND_SIP_REGISTRATION, b.nodeId)).map((r) => [r.resource, r]),
    );
    const phones = (user: string, n: number) =>
      Array.from({ length: n }, (_, i) => binding(`sip:${user}@10.0.0.${i + 9}`, 3600));
    const restore = (user: string, n: number) =>
      pub.restore(
        `sip:${user}@peerbx.local`,
        `${user}@peerbx.local`,
        () => phones(user, n),
        Promise.resolve(own.get(`${user}@peerbx.local`)),
      );
    await restore('rs1', 1); // what the record says: nothing to write
    assert.equal(pub.writes, 0);
    await restore('rs2', 2); // a device more than the record has
    await restore('rs3', 1); // no record of it
    assert.equal(pub.writes, 2);
    assert.equal((await new Locator(a, clock).locate('rs2@peerbx.local')).length, 1);
    // The record from before counts as published: a refresh adding nothing is no news, a
    // removal writes a tombstone.
    assert.equal((await sync(pub, 'rs1')).write, false);
    const gone = await pub.sync('sip:rs1@peerbx.local', 'rs1@peerbx.local', []);
    assert.equal(gone.reason, 'removed');
    assert.deepEqual(await new Locator(a, clock).locate('rs1@peerbx.local'), []);
  });

  it('restores after a restart in the background, after REGISTERs, without stale writes', async () => {
    const o = heldOverlay();
    const pub = new RegistrationPublisher(o.access, clock, { maxInFlight: 1, maxWaiting: 1 });
    const bindings = new Map<string, Binding[]>([
      ['r1', [binding('sip:r1@10.0.0.9', 3600)]],
      ['r2', [binding('sip:r2@10.0.0.9', 3600)]],
      ['r3', [binding('sip:r3@10.0.0.9', 3600)]],
    ]);
    const restore = (user: string) =>
      pub.restore(
        `sip:${user}@peerbx.local`,
        `${user}@peerbx.local`,
        () => bindings.get(user) ?? [],
      );
    const restores = [restore('r1'), restore('r2'), restore('r3')];
    await new Promise((resolve) => setImmediate(resolve));
    // Background writes never make a REGISTER wait behind them in the count.
    assert.deepEqual(pub.pending, { inFlight: 1, waiting: 0, background: 2 });
    // r2 leaves while its restore waits: a tombstone, though nothing was written since start.
    bindings.set('r2', []);
    const leave = pub.sync('sip:r2@peerbx.local', 'r2@peerbx.local', []);
    // The queue (one place here) holds the removal: REGISTERs beyond it are refused, while
    // the two restores still waiting never counted.
    assert.deepEqual(pub.pending, { inFlight: 1, waiting: 1, background: 2 });
    await assert.rejects(sync(pub, 'r9'), (e: unknown) => e instanceof RegistrarBusyError);
    o.release();
    assert.equal((await leave).reason, 'removed');
    await Promise.all(restores);
    // r1's restore, then the removal (before the restores still waiting), then r3's restore;
    // r2's restore found nothing left to write.
    assert.deepEqual(o.started, ['r1@peerbx.local', 'r2@peerbx.local', 'r3@peerbx.local']);
    assert.deepEqual(await new Locator(a, clock).locate('r2@peerbx.local'), []);
    assert.equal((await new Locator(a, clock).locate('r3@peerbx.local')).length, 1);
  });

  it("runs one AOR's writes one after the other: a removal during a restore write wins", async () => {
    const o = heldOverlay();
    const pub = new RegistrationPublisher(o.access, clock);
    let bindings: Binding[] = [binding('sip:t1@10.0.0.9', 3600), binding('sip:t1@10.0.0.8', 3600)];
    const restored = pub.restore('sip:t1@peerbx.local', 't1@peerbx.local', () => bindings);
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(o.started, ['t1@peerbx.local'], 'the restore write is under way');
    bindings = [];
    const removal = pub.sync('sip:t1@peerbx.local', 't1@peerbx.local', bindings);
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(o.started, ['t1@peerbx.local'], 'the removal waits for it');
    o.release();
    await restored;
    assert.equal((await removal).reason, 'removed');
    assert.deepEqual(o.started, ['t1@peerbx.local', 't1@peerbx.local']);
    assert.deepEqual(await new Locator(a, clock).locate('t1@peerbx.local'), []);
  });
});
