// The DHT over the in-process simulator: join, lookup, store, expiry, republish, replication,
// hand-over, churn, silent and lying nodes. Seeds are fixed, so every run is the same run.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  BOOTSTRAP_PING_ATTEMPTS,
  type Contact,
  hashToId,
  idEquals,
  type KademliaNode,
  NoPeersError,
  PRESUMED_DEAD_MS,
  REJOIN_SLOW_EVERY,
  type Request,
  type Response,
  Simulator,
  Swarm,
} from '../src/index.js';
import { answerSize } from '../src/rpc/handlers/find-node.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const text = (s: string) => new TextEncoder().encode(s);

async function swarm(
  n: number,
  seed: number,
  options: ConstructorParameters<typeof Swarm>[1] = {},
) {
  const sim = new Simulator({ seed });
  const s = new Swarm(sim, { k: 8, ...options });
  await s.grow(n, 10);
  return s;
}

function holders(s: Swarm, key: Uint8Array): KademliaNode[] {
  const now = s.sim.now();
  return s.alive.filter((n) => n.store.get(key, now).length > 0);
}

/** STORE requests received, summed over the live nodes. */
function storesIn(s: Swarm): number {
  return s.alive.reduce((sum, n) => sum + n.stats.requestsIn.STORE, 0);
}

/** Two PINGs from one node to a contact, the second after the first's answer or timeout. */
async function pingTwice(s: Swarm, from: KademliaNode, to: Contact): Promise<[boolean, boolean]> {
  return [await s.sim.settle(from.ping(to)), await s.sim.settle(from.ping(to))];
}

/** What a node holds under a key, as sorted texts. */
function held(s: Swarm, n: KademliaNode, key: Uint8Array): string[] {
  return n.store
    .get(key, s.sim.now())
    .map((v) => Buffer.from(v.value).toString())
    .sort();
}

/** The node answers lookups but leaves its STOREs unanswered until the returned function runs. */
function dropStores(s: Swarm, node: KademliaNode): () => void {
  const endpoint = s.sim.endpoint(node.contact.address)!;
  const handler = endpoint.handler!;
  let dropping = true;
  endpoint.handler = (req, from) =>
    dropping && req.body.type === 'STORE' ? new Promise(() => undefined) : handler(req, from);
  return () => {
    dropping = false;
  };
}

/** The node answers every STORE `not-responsible` (its table lists k nodes closer, say). */
function refuseStores(s: Swarm, node: KademliaNode): void {
  const endpoint = s.sim.endpoint(node.contact.address)!;
  const handler = endpoint.handler!;
  endpoint.handler = (req, from) =>
    req.body.type === 'STORE'
      ? Promise.resolve({
          sender: node.id,
          body: { type: 'STORED', ok: false, reason: 'not-responsible' },
        } satisfies Response)
      : handler(req, from);
}

const addresses = (contacts: readonly { address: string }[]) =>
  contacts.map((c) => c.address).sort();

/** A swarm whose nodes keep each value in its own slot, and a key with a publisher outside its k + 1 closest. */
async function putManySetup(seed: number, name: string) {
  const s = await swarm(60, seed, { store: { slotOf: (_k, v) => Buffer.from(v).toString() } });
  const key = hashToId(name);
  const closest = s.closestAlive(key, 9);
  const publisher = s.alive.find((n) => !closest.includes(n))!;
  const targets = s.closestAlive(key, 8);
  const values = [
    { value: text('claim'), ttlMs: 2 * HOUR },
    { value: text('record'), ttlMs: HOUR },
  ];
  return { s, key, publisher, targets, values };
}

describe('kademlia over the simulator', () => {
  it('joins 150 nodes and finds the true closest node for any target', async () => {
    const s = await swarm(150, 1);
    assert.ok(
      s.alive.every((n) => n.table.size >= 8),
      'every node knows at least k others',
    );
    for (let i = 0; i < 20; i++) {
      const target = s.sim.random.bytes(32);
      const asker = s.alive[i * 7]!;
      const r = await s.sim.settle(asker.findNode(target));
      const truth = s
        .closestAlive(target, 9)
        .filter((n) => n !== asker)
        .slice(0, 8);
      assert.deepEqual(
        r.closest.map((c) => c.address),
        truth.map((n) => n.contact.address),
      );
    }
  });

  it("pings a full bucket's least-recently-seen contact only when it went unheard for a while", async () => {
    const s = await swarm(60, 11, { k: 2 });
    await s.sim.runFor(30_000);
    // A node a, and a sender b that falls in a full bucket of a's and is not in it.
    let pair: { a: KademliaNode; b: KademliaNode } | undefined;
    for (const a of s.alive) {
      const b = s.alive.find(
        (x) =>
          x !== a &&
          !a.table.has(x.id) &&
          a.table.bucket(a.table.bucketIndexOf(x.id)).isFull &&
          a.table.bucketIndexOf(x.id) < a.table.bucketCount - 1,
      );
      if (b) {
        pair = { a, b };
        break;
      }
    }
    assert.ok(pair, 'a full bucket and a node outside it');
    const { a, b } = pair;
    const bucket = a.table.bucket(a.table.bucketIndexOf(b.id));
    const nodeOf = (c: { id: Uint8Array } | undefined) =>
      s.alive.find((x) => c !== undefined && idEquals(x.id, c.id));
    // a hears from every contact of that bucket, so all of them are fresh...
    for (const e of [...bucket.entries]) await s.sim.settle(nodeOf(e.contact)!.ping(a.contact));
    const lrsNode = nodeOf(bucket.leastRecentlySeen()?.contact);
    assert.ok(lrsNode);
    const pingsAtLrs = () => lrsNode.stats.requestsIn.PING;
    // ... then from b: no PING to keep the least recently seen of them.
    const before = pingsAtLrs();
    await s.sim.settle(b.ping(a.contact));
    await s.sim.runFor(1000);
    assert.equal(pingsAtLrs(), before, 'a contact heard from seconds ago is kept without a PING');
    // A minute of silence later, b again: now a pings it before deciding.
    await s.sim.runFor(60_000);
    await s.sim.settle(b.ping(a.contact));
    await s.sim.runFor(1000);
    assert.equal(pingsAtLrs(), before + 1, 'a contact unheard for a minute is pinged first');
  });

  it('stores on the k closest and fetches from anywhere', async () => {
    const s = await swarm(120, 2);
    for (let i = 0; i < 15; i++) {
      const key = hashToId(`user${i}`);
      const put = await s.sim.settle(s.alive[i]!.put(key, text(`v${i}`), HOUR));
      assert.equal(put.stored.length, 8);
      const truth = s
        .closestAlive(key, 8)
        .map((n) => n.contact.address)
        .sort();
      assert.deepEqual(put.stored.map((c) => c.address).sort(), truth);
      const got = await s.sim.settle(s.alive[119 - i]!.get(key));
      assert.equal(Buffer.from(got.values[0]!.value).toString(), `v${i}`);
    }
  });

  it('asks other holders, not counting its own copy, when told its own may be stale (othersOnly)', async () => {
    const s = await swarm(30, 50);
    const key = hashToId('own copy may be stale');
    await s.sim.settle(s.alive[0]!.put(key, text('v'), HOUR));
    const holder = holders(s, key).find((n) => n !== s.alive[0])!;
    const own = await s.sim.settle(holder.get(key));
    assert.equal(own.requests, 0, 'its own copy answers');
    const others = await s.sim.settle(holder.get(key, { othersOnly: true }));
    assert.ok(others.requests > 0);
    const remote = others.values.filter((v) => !idEquals(v.holder.id, holder.id));
    assert.ok(remote.length >= 1, 'another holder answered');
  });

  it('putMany stores several values from one lookup, each peer getting them in order', async () => {
    // One slot per value (as the overlay does per record), so both stay under the key.
    const s = await swarm(100, 12, { store: { slotOf: (_k, v) => Buffer.from(v).toString() } });
    // Every node accepts "record" only when it already holds "claim" under that key: a
    // record arriving before its claim anywhere is refused, and the test sees it.
    for (const n of s.alive) {
      Object.assign(n, {
        validateValue: (key: Uint8Array, value: Uint8Array) =>
          Buffer.from(value).toString() === 'record' &&
          !n.store.get(key, s.sim.now()).some((v) => Buffer.from(v.value).toString() === 'claim')
            ? { reason: 'invalid' as const, detail: 'record before its claim' }
            : undefined,
      });
    }
    for (let i = 0; i < 10; i++) {
      const key = hashToId(`many${i}`);
      // Publisher 0 is sometimes among the k closest (stores locally too), mostly not.
      const publisher = i === 0 ? s.closestAlive(key, 1)[0]! : s.alive[i * 9]!;
      const lookupsBefore = publisher.stats.lookups;
      const [claim, record] = await s.sim.settle(
        publisher.putMany(key, [
          { value: text('claim'), ttlMs: 2 * HOUR },
          { value: text('record'), ttlMs: HOUR },
        ]),
      );
      // None where its table holds every node near the key (storeOnClosest).
      assert.ok(publisher.stats.lookups - lookupsBefore <= 1, 'one lookup for both values');
      const truth = s
        .closestAlive(key, 8)
        .map((n) => n.contact.address)
        .sort();
      assert.deepEqual(claim!.stored.map((c) => c.address).sort(), truth);
      assert.deepEqual(record!.stored.map((c) => c.address).sort(), truth);
      assert.deepEqual(record!.rejected, []);
      assert.equal(claim!.lookup, record!.lookup);
      for (const holder of holders(s, key)) {
        const vs = holder.store.get(key, s.sim.now());
        assert.deepEqual(vs.map((v) => Buffer.from(v.value).toString()).sort(), [
          'claim',
          'record',
        ]);
        const lifetimes = new Map(
          vs.map((v) => [Buffer.from(v.value).toString(), v.expiresAt - s.sim.now()]),
        );
        assert.ok((lifetimes.get('claim') ?? 0) > 1.9 * HOUR, 'claim keeps its own lifetime');
        assert.ok((lifetimes.get('record') ?? 0) <= HOUR, 'record keeps its own lifetime');
      }
    }
    assert.deepEqual(await s.sim.settle(s.alive[0]!.putMany(hashToId('none'), [])), []);
  });

  it('putMany sends both values to each remote target in one STORE', async () => {
    const { s, key, publisher, targets, values } = await putManySetup(14, 'one-store');
    const before = storesIn(s);
    const [claim, record] = await s.sim.settle(publisher.putMany(key, values));
    assert.deepEqual(addresses(claim!.stored), addresses(targets.map((n) => n.contact)));
    assert.deepEqual(addresses(record!.stored), addresses(targets.map((n) => n.contact)));
    assert.equal(storesIn(s) - before, targets.length, 'one STORE per remote target');
    for (const t of targets) {
      assert.deepEqual(held(s, t, key), ['claim', 'record'], t.contact.address);
      const stored = t.store
        .get(key, s.sim.now())
        .find((v) => Buffer.from(v.value).toString() === 'record');
      assert.ok(stored && stored.expiresAt - s.sim.now() <= HOUR, 'record keeps its own lifetime');
    }
  });

  it('putMany stores the values one by one on a node that ignores more', async () => {
    const { s, key, publisher, targets, values } = await putManySetup(15, 'older-node');
    // An older node: it never sees `more` (as a reader that ignores an unknown field) and so
    // answers for the first value only.
    const older = targets[3]!;
    const endpoint = s.sim.endpoint(older.contact.address)!;
    const handle = endpoint.handler!;
    const moreSeen: number[] = [];
    endpoint.handler = async (req: Request, from: string): Promise<Response> => {
      let request = req;
      if (req.body.type === 'STORE') {
        moreSeen.push(req.body.more?.length ?? 0);
        const { more: _more, ...body } = req.body;
        request = { ...req, body };
      }
      const res = await handle(request, from);
      if (res.body.type !== 'STORED') return res;
      const { more: _more, ...body } = res.body;
      return { ...res, body };
    };
    const before = storesIn(s);
    const olderBefore = older.stats.requestsIn.STORE;
    const [claim, record] = await s.sim.settle(publisher.putMany(key, values));
    assert.deepEqual(moreSeen, [1, 0], 'both values in one STORE, then the second alone');
    assert.equal(older.stats.requestsIn.STORE - olderBefore, 2);
    assert.equal(storesIn(s) - before, targets.length + 1);
    assert.deepEqual(held(s, older, key), ['claim', 'record']);
    for (const r of [claim!, record!]) {
      assert.deepEqual(addresses(r.stored), addresses(targets.map((n) => n.contact)));
      assert.ok(r.stored.some((c) => idEquals(c.id, older.id)));
      assert.deepEqual(r.rejected, []);
    }
  });

  it('putMany reports a refusal of one value of a STORE against that value alone', async () => {
    const { s, key, publisher, targets, values } = await putManySetup(16, 'one-refused');
    const picky = targets[2]!;
    Object.assign(picky, {
      validateValue: (_key: Uint8Array, value: Uint8Array) =>
        Buffer.from(value).toString() === 'record'
          ? { reason: 'invalid' as const, detail: 'no records here' }
          : undefined,
    });
    const before = picky.stats.requestsIn.STORE;
    const [claim, record] = await s.sim.settle(publisher.putMany(key, values));
    assert.equal(picky.stats.requestsIn.STORE - before, 1, 'one STORE for both values');
    assert.equal(picky.stats.storeRejections.invalid, 1);
    assert.deepEqual(held(s, picky, key), ['claim']);
    assert.deepEqual(addresses(claim!.stored), addresses(targets.map((n) => n.contact)));
    assert.deepEqual(claim!.rejected, []);
    assert.deepEqual(
      addresses(record!.stored),
      addresses(targets.filter((n) => n !== picky).map((n) => n.contact)),
    );
    assert.equal(record!.rejected.length, 1);
    const [refusal] = record!.rejected;
    assert.ok(idEquals(refusal!.contact.id, picky.id));
    assert.equal(refusal!.contact.address, picky.contact.address);
    assert.equal(refusal!.reason, 'invalid');
    assert.equal(refusal!.detail, 'no records here');
  });

  it('refuses the values after a forged one unchecked: a forged batch costs one check', async () => {
    const { s, key, publisher, targets, values } = await putManySetup(16, 'first-refused');
    const picky = targets[1]!;
    const checked: string[] = [];
    Object.assign(picky, {
      validateValue: (_key: Uint8Array, value: Uint8Array) => {
        checked.push(Buffer.from(value).toString());
        return Buffer.from(value).toString() === 'claim'
          ? { reason: 'invalid' as const, detail: 'bad claim', forged: true }
          : undefined;
      },
    });
    const [claim, record] = await s.sim.settle(publisher.putMany(key, values));
    assert.deepEqual(checked, ['claim'], 'the record after the invalid claim was not checked');
    assert.deepEqual(held(s, picky, key), []);
    assert.equal(picky.stats.storeRejections.invalid, 2);
    assert.equal(claim!.rejected[0]?.detail, 'bad claim');
    assert.equal(record!.rejected.length, 1);
    assert.equal(record!.rejected[0]?.reason, 'invalid');
    assert.match(record!.rejected[0]?.detail ?? '', /not checked: an earlier value/);
    // Invalid only here (a clock too far off, a kind this node does not know) is not forged:
    // the values after it are still checked, and stored.
    const {
      s: s2,
      key: key2,
      publisher: p2,
      targets: t2,
      values: v2,
    } = await putManySetup(16, 'first-invalid-not-forged');
    const strict = t2[1]!;
    Object.assign(strict, {
      validateValue: (_key: Uint8Array, value: Uint8Array) =>
        Buffer.from(value).toString() === 'claim'
          ? { reason: 'invalid' as const, detail: 'dated in the future' }
          : undefined,
    });
    const [, record2] = await s2.sim.settle(p2.putMany(key2, v2));
    assert.deepEqual(held(s2, strict, key2), ['record']);
    assert.ok(record2!.stored.some((c) => idEquals(c.id, strict.id)));
  });

  it('republishes every value of a putMany', async () => {
    const s = await swarm(80, 13, {
      store: { slotOf: (_k, v) => Buffer.from(v).toString() },
      republishIntervalMs: 10 * MIN,
      replicateIntervalMs: 10 * HOUR,
    });
    const key = hashToId('many-republished');
    const publisher = s.alive.find((n) => !s.closestAlive(key, 8).includes(n))!;
    await s.sim.settle(
      publisher.putMany(key, [
        { value: text('a'), ttlMs: 3 * HOUR },
        { value: text('b'), ttlMs: 3 * HOUR },
      ]),
    );
    assert.equal(publisher.publishedValues().length, 2);
    for (const n of holders(s, key)) s.crash(n);
    assert.equal(holders(s, key).length, 0);
    const lookups = publisher.stats.lookups;
    await s.sim.runFor(12 * MIN);
    // One republish round (the interval is 10 min ± 10%), one lookup for both values.
    assert.equal(publisher.stats.lookups - lookups, 1);
    const now = s.sim.now();
    const after = holders(s, key);
    assert.equal(after.length, 8);
    assert.ok(after.every((n) => n.store.get(key, now).length === 2));
  });

  it('expires values at the end of their lifetime', async () => {
    const s = await swarm(60, 3, { expireCheckIntervalMs: MIN });
    const key = hashToId('short-lived');
    await s.sim.settle(s.alive[0]!.put(key, text('x'), 10 * MIN));
    assert.equal(holders(s, key).length, 8);
    await s.sim.runFor(12 * MIN);
    assert.equal(holders(s, key).length, 0);
    const got = await s.sim.settle(s.alive[30]!.get(key));
    assert.equal(got.values.length, 0);
  });

  it('republishes a value after every node that held it died', async () => {
    const s = await swarm(80, 4, { republishIntervalMs: 10 * MIN, replicateIntervalMs: 10 * HOUR });
    const key = hashToId('republished');
    const publisher = s.alive.find((n) => !s.closestAlive(key, 8).includes(n))!;
    await s.sim.settle(publisher.put(key, text('x'), 3 * HOUR));
    for (const n of holders(s, key)) s.crash(n);
    assert.equal(holders(s, key).length, 0);
    await s.sim.runFor(12 * MIN);
    assert.equal(holders(s, key).length, 8);
  });

  it('restores k replicas within one replication period after holders die', async () => {
    const s = await swarm(80, 5, { replicateIntervalMs: 10 * MIN, republishIntervalMs: 10 * HOUR });
    const key = hashToId('replicated');
    const publisher = s.alive[0]!;
    await s.sim.settle(publisher.put(key, text('x'), 3 * HOUR));
    s.crash(publisher);
    const before = holders(s, key);
    for (const n of before.slice(0, 5)) s.crash(n);
    assert.ok(holders(s, key).length <= 3);
    await s.sim.runFor(12 * MIN);
    const after = holders(s, key);
    assert.equal(after.length, 8);
    assert.deepEqual(
      after.map((n) => n.contact.address).sort(),
      s
        .closestAlive(key, 8)
        .map((n) => n.contact.address)
        .sort(),
    );
  });

  it('stores nothing again when a node of an overlay smaller than k dies, or comes back', async () => {
    // Five nodes, k = 8: every node holds every key, and no other could take a dead one's place.
    const s = await swarm(5, 41, { upkeepCheckIntervalMs: MIN });
    const publisher = s.alive[0]!;
    for (let i = 0; i < 40; i++) {
      await s.sim.settle(publisher.put(hashToId(`office-${i}`), text(`v${i}`), 3 * HOUR));
    }
    const stores = () => s.alive.reduce((n, x) => n + (x.stats.requestsIn.STORE ?? 0), 0);
    const before = stores();
    const victim = s.alive[3]!;
    s.silence(victim);
    await s.sim.runFor(3 * MIN);
    assert.equal(stores() - before, 0, 'no replication for a replica nobody can replace');
    for (const n of s.alive) {
      if (n !== victim) assert.equal(n.store.keyCount, 40, `${n.contact.address} holds all`);
    }
    // Back (a restart with its store): it is handed what was stored meanwhile, not all again;
    // the one new value by each node that dropped it (any of them may have been away too).
    await s.sim.settle(publisher.put(hashToId('office-new'), text('new'), 3 * HOUR));
    const victimStores = victim.stats.requestsIn.STORE ?? 0;
    s.sim.setBehaviour(victim.contact.address, 'honest');
    await s.sim.settle(
      Promise.all(s.alive.filter((n) => n !== victim).map((n) => victim.ping(n.contact))),
    );
    await s.sim.runFor(MIN);
    assert.equal(victim.store.keyCount, 41);
    assert.ok(
      (victim.stats.requestsIn.STORE ?? 0) - victimStores <= s.alive.length - 1,
      `${(victim.stats.requestsIn.STORE ?? 0) - victimStores} STOREs to the node back`,
    );
  });

  // The overlay's setting: upkeep checked every minute, what is stored everywhere re-sent
  // hourly (a node that published thousands of records does not re-send them every minute).
  const MINUTE_CHECKS = {
    upkeepCheckIntervalMs: MIN,
    republishIntervalMs: HOUR,
    replicateIntervalMs: HOUR,
  };

  it('replicates the values it held before a restart spread over an interval, not all at once', async () => {
    const s = await swarm(30, 24, MINUTE_CHECKS);
    // A node back from a restart: 600 values from its store on disk, loaded before it starts.
    const back = s.create(MINUTE_CHECKS);
    const now = s.sim.now();
    for (let i = 0; i < 600; i++) {
      assert.ok(back.store.put(hashToId(`held ${i}`), text('v'), now + 3 * HOUR, now).ok);
    }
    await s.sim.settle(back.bootstrap([s.alive[0]!.contact]));
    await s.sim.runFor(5 * MIN);
    const early = back.stats.keysReplicated;
    // About 5 minutes' share of an hour (50); all 600 at the first check before.
    assert.ok(early > 0 && early < 150, `${early} replicated in the first 5 minutes`);
    await s.sim.runFor(HOUR);
    assert.ok(back.stats.keysReplicated >= 600, `${back.stats.keysReplicated} within the hour`);
    for (let i = 0; i < 600; i += 50) {
      const key = hashToId(`held ${i}`);
      assert.ok(holders(s, key).length >= 8, `held ${i} is on k nodes`);
    }
  });

  it('checking upkeep every minute, stores a value stored everywhere again only hourly', async () => {
    const s = await swarm(80, 21, MINUTE_CHECKS);
    const key = hashToId('hourly');
    const publisher = s.alive.find((n) => !s.closestAlive(key, 8).includes(n))!;
    const put = await s.sim.settle(publisher.put(key, text('x'), 3 * HOUR));
    assert.equal(put.stored.length, 8);
    const stores = storesIn(s);
    const lookups = publisher.stats.lookups;
    await s.sim.runFor(50 * MIN);
    assert.equal(storesIn(s) - stores, 0, 'nothing stored again in 50 checks');
    assert.equal(publisher.stats.lookups - lookups, 0);
    await s.sim.runFor(12 * MIN);
    assert.equal(publisher.stats.lookups - lookups, 1, 'republished once, near the hour');
    assert.equal(storesIn(s) - stores, 8, "the publisher's 8 STOREs, no holder replicating");
    assert.equal(holders(s, key).length, 8);
  });

  it('spreads the republishing of values restored at start over a quarter hour', async () => {
    const s = await swarm(80, 26, MINUTE_CHECKS);
    const publisher = s.alive[0]!;
    const now = s.sim.now();
    const values = Array.from({ length: 40 }, (_, i) => ({
      key: hashToId(`restored-${i}`),
      value: text(`${i}`),
      expiresAt: now + 3 * HOUR,
    }));
    await s.sim.settle(publisher.putAll(values));
    const stores = storesIn(s);
    // Due 58 min after their store, less up to 15 min: from 43 min on, not all in one check.
    await s.sim.runFor(50 * MIN);
    const early = storesIn(s) - stores;
    assert.ok(early > 0 && early < 40 * 8, `${early / 8} of 40 republished by 50 min`);
    await s.sim.runFor(10 * MIN);
    assert.ok(storesIn(s) - stores >= 40 * 8 - 8, 'nearly all republished by the hour');
  });

  it('stores a value again at the next check when its store missed a target', async () => {
    const s = await swarm(80, 22, MINUTE_CHECKS);
    const key = hashToId('missed');
    const publisher = s.alive.find((n) => !s.closestAlive(key, 8).includes(n))!;
    const flaky = s.closestAlive(key, 8)[0]!;
    // The flaky node answers lookups but its STOREs go unanswered for a while.
    const answerStores = dropStores(s, flaky);
    const put = await s.sim.settle(publisher.put(key, text('x'), 3 * HOUR));
    assert.equal(put.stored.length, 7);
    assert.equal(flaky.store.get(key, s.sim.now()).length, 0);
    answerStores();
    const lookups = publisher.stats.lookups;
    await s.sim.runFor(2 * MIN);
    assert.equal(flaky.store.get(key, s.sim.now()).length, 1, 'retried within a check or two');
    assert.equal(publisher.stats.lookups - lookups, 1);
    await s.sim.runFor(30 * MIN);
    assert.equal(publisher.stats.lookups - lookups, 1, 'complete now: not retried again');
  });

  it('gets a value to the node next in line, whose refusal finds a closer node dead', async () => {
    const s = await swarm(60, 24, MINUTE_CHECKS);
    // A node that refuses what does not belong to it, as an open overlay's nodes do.
    let self: KademliaNode | undefined;
    const next = await s.join({
      validateValue: (key, _value, sender) =>
        !self || self.isResponsibleFor(key, sender) ? undefined : { reason: 'not-responsible' },
    });
    self = next;
    let key = hashToId('next-0');
    for (let i = 1; s.closestAlive(key, 9)[8] !== next; i++) key = hashToId(`next-${i}`);
    const [dead] = s.closestAlive(key, 8);
    await s.sim.settle(next.findNode(key)); // it knows the 8 closer nodes, which answered it
    assert.equal(next.isResponsibleFor(key), false);
    await s.sim.runFor(15_000);
    s.crash(dead!); // one of them dies, unknown to it: it still counts 8 closer nodes

    const publisher = s.alive.find((n) => !s.closestAlive(key, 16).includes(n))!;
    const put = await s.sim.settle(publisher.put(key, text('x'), 3 * HOUR));
    assert.deepEqual(
      put.rejected.map((r) => [r.contact.address, r.reason]),
      [[next.contact.address, 'not-responsible']],
    );
    // Its refusal pinged the dead node (well before any upkeep check would have), which then
    // stops counting; the publisher's store at its next check is taken.
    await s.sim.runFor(5_000);
    assert.equal(next.isResponsibleFor(key), true);
    await s.sim.runFor(2 * MIN);
    assert.equal(next.store.get(key, s.sim.now()).length, 1);
  });

  it('stores again once where a target answered not-responsible, then leaves it', async () => {
    const s = await swarm(80, 23, MINUTE_CHECKS);
    const key = hashToId('refused');
    const publisher = s.alive.find((n) => !s.closestAlive(key, 8).includes(n))!;
    refuseStores(s, s.closestAlive(key, 8)[0]!);
    const put = await s.sim.settle(publisher.put(key, text('x'), 3 * HOUR));
    assert.equal(put.stored.length, 7);
    assert.deepEqual(
      put.rejected.map((r) => r.reason),
      ['not-responsible'],
    );
    const lookups = publisher.stats.lookups;
    await s.sim.runFor(2 * MIN);
    assert.equal(publisher.stats.lookups - lookups, 1, 'the refuser may have checked its table');
    await s.sim.runFor(30 * MIN);
    assert.equal(publisher.stats.lookups - lookups, 1, 'refused again: taken as its answer');
  });

  /**
   * Checks every minute, nothing republished or replicated by the clock: a value stored on the
   * 8 nodes closest to `name` by a publisher outside its 9 closest.
   */
  async function storedOnEight(seed: number, name: string) {
    const s = await swarm(80, seed, {
      ...MINUTE_CHECKS,
      republishIntervalMs: 10 * HOUR,
      replicateIntervalMs: 10 * HOUR,
    });
    const key = hashToId(name);
    const publisher = s.alive.find((n) => !s.closestAlive(key, 9).includes(n))!;
    await s.sim.settle(publisher.put(key, text('x'), 3 * HOUR));
    return { s, key, publisher };
  }

  /**
   * A value whose publisher died, stored on the 8 closest; the node 9th closest refuses STOREs
   * as not-responsible: each sender's first only (`firstOnly`), or all. Then a holder dies and
   * the others replicate. Returns the 9th node and the STOREs it received per sender.
   */
  async function refusedReplication(seed: number, firstOnly: boolean) {
    const { s, key, publisher } = await storedOnEight(seed, `replicated after a refusal ${seed}`);
    s.crash(publisher);
    const next = s.closestAlive(key, 9)[8]!;
    assert.equal(next.store.get(key, s.sim.now()).length, 0);
    const stores = new Map<string, number>();
    const endpoint = s.sim.endpoint(next.contact.address)!;
    const handler = endpoint.handler!;
    endpoint.handler = (req, from) => {
      if (req.body.type !== 'STORE') return handler(req, from);
      const n = (stores.get(from) ?? 0) + 1;
      stores.set(from, n);
      if (firstOnly && n > 1) return handler(req, from);
      return Promise.resolve({
        sender: next.id,
        body: { type: 'STORED', ok: false, reason: 'not-responsible' },
      } satisfies Response);
    };
    s.crash(s.closestAlive(key, 1)[0]!);
    return { s, key, next, stores };
  }

  it('replicates a key whose holder died and was dropped from every table before the check', async () => {
    const { s, key, publisher } = await storedOnEight(43, 'dropped before the check');
    s.crash(publisher);
    const [gone, ...rest] = holders(s, key);
    s.crash(gone!);
    // Every other holder finds it dead by requests of its own (lookups, say) and drops it,
    // before its replication check could PING it.
    for (const h of rest) {
      await pingTwice(s, h, gone!.contact);
      assert.equal(h.table.has(gone!.id), false);
    }
    assert.equal(holders(s, key).length, 7);
    await s.sim.runFor(2 * MIN);
    assert.equal(holders(s, key).length, 8);
  });

  it('does not replicate for a contact dropped after a stall that is back before the check', async () => {
    const { s, key } = await storedOnEight(44, 'a stall, not a death');
    const [stalled, ...rest] = holders(s, key);
    s.silence(stalled!);
    for (const h of rest) {
      await pingTwice(s, h, stalled!.contact);
    }
    s.sim.setBehaviour(stalled!.contact.address, 'honest');
    for (const h of rest) await s.sim.settle(stalled!.ping(h.contact));
    for (const h of rest) assert.ok(h.table.has(stalled!.id), 'back in the table');
    const stores = storesIn(s);
    await s.sim.runFor(2 * MIN);
    assert.equal(storesIn(s) - stores, 0, 'nothing replicated');
  });

  it('replicates once more where a target answered not-responsible', async () => {
    const { s, key, next, stores } = await refusedReplication(41, true);
    await s.sim.runFor(5 * MIN);
    assert.ok(stores.size > 0, 'the holders replicated to it');
    assert.equal(next.store.get(key, s.sim.now()).length, 1, 'a second try was taken');
  });

  it('replicates only once more where a target keeps answering not-responsible', async () => {
    const { s, stores } = await refusedReplication(42, false);
    await s.sim.runFor(30 * MIN);
    assert.ok(stores.size > 0, 'the holders replicated to it');
    for (const [from, n] of stores) assert.ok(n <= 2, `${from} sent ${n} STOREs`);
    assert.ok([...stores.values()].includes(2), 'a holder tried once more');
  });

  it('goes on past the k contacts it knows closest to a target when they all died', async () => {
    const s = await swarm(60, 31);
    const key = hashToId('past the dead');
    const asker = s.alive.find((n) => !s.closestAlive(key, 16).includes(n))!;
    const known = asker.table.closest(key, 8);
    assert.equal(known.length, 8);
    for (const c of known) s.crash(s.alive.find((n) => idEquals(n.id, c.id))!);
    const found = await s.sim.settle(asker.findNode(key));
    assert.ok(found.failures > 0, 'dead contacts were asked');
    assert.deepEqual(
      addresses(found.closest),
      addresses(s.closestAlive(key, 8).map((n) => n.contact)),
    );
  });

  it('asks no contact that left two requests in a row unanswered lately, and counts it silent', async () => {
    const s = await swarm(60, 32);
    const key = hashToId('presumed dead');
    const asker = s.alive.find((n) => !s.closestAlive(key, 16).includes(n))!;
    const dead = s.closestAlive(key, 3).map((n) => n.contact);
    for (const c of dead) s.crash(s.alive.find((n) => idEquals(n.id, c.id))!);
    for (const c of dead) {
      assert.deepEqual(await pingTwice(s, asker, c), [false, false]);
      assert.equal(asker.table.has(c.id), false, 'two silences drop a contact');
    }
    const quick = await s.sim.settle(asker.get(key));
    assert.equal(quick.failures, 0, 'none of the dead was asked');
    assert.deepEqual(
      addresses(quick.closest),
      addresses(s.closestAlive(key, 8).map((n) => n.contact)),
    );
    // The others still name them: they stand for the three closest, silent.
    assert.deepEqual([quick.closestSilent, quick.closestAsked], [3, 8]);
    // Not for ever: a lookup a while later asks them again.
    await s.sim.runFor(PRESUMED_DEAD_MS + 1_000);
    const later = await s.sim.settle(asker.get(key));
    assert.ok(later.failures > 0, 'asked again');
  });

  it('drops a node that left gracefully at once: lookups then ask it nothing', async () => {
    const s = await swarm(60, 33);
    const key = hashToId('left gracefully');
    const [leaver] = s.closestAlive(key, 1);
    assert.ok(leaver);
    const knew = s.alive.filter((n) => n !== leaver && n.table.has(leaver.id));
    assert.ok(knew.length > 0);
    const told = leaver.table.size;
    await s.sim.settle(leaver.leave());
    s.crash(leaver);
    const notified = s.alive.filter((n) => n.stats.requestsIn.LEAVE === 1);
    assert.equal(notified.length, told, 'every contact of its table was told');
    for (const n of notified) assert.equal(n.table.has(leaver.id), false);
    // Nodes it did not tell still name it (stale tables): those told ask it nothing anyway.
    const stale = s.alive.filter((n) => !notified.includes(n));
    for (const n of stale) n.table.add(leaver.contact, s.sim.now(), true);
    assert.ok(stale.some((n) => n.table.has(leaver.id)));
    for (const n of notified.slice(0, 10)) {
      const r = await s.sim.settle(n.get(key));
      assert.equal(r.failures, 0, 'the node that left was not asked');
    }
    // One never told asks it, and waits out its silence.
    const unaware = stale.find((n) => n.table.has(leaver.id));
    assert.ok(unaware);
    assert.ok((await s.sim.settle(unaware.get(key))).failures > 0);
  });

  it('hands its keys over for the time it is given, then tells its contacts it leaves all the same', async () => {
    // QA: a node holding 100,000 keys signed every STORE of its hand-over at once, held its
    // event loop for 20 s, and exited before its LEAVEs went.
    const s = await swarm(12, 47);
    const [quick, slow] = s.alive as [KademliaNode, KademliaNode];
    const keys = Array.from({ length: 200 }, (_, i) => hashToId(`held ${i}`));
    for (const n of [quick, slow]) {
      for (const key of keys) n.store.put(key, text('v'), s.sim.now() + HOUR, s.sim.now());
    }
    // No time for it: nothing handed over, every contact told.
    const told = quick.table.size;
    assert.equal(await s.sim.settle(quick.leave(0)), 0);
    s.crash(quick);
    assert.equal(s.alive.filter((n) => n.stats.requestsIn.LEAVE === 1).length, told);
    // The default time: all 200 keys reach their closest other nodes.
    assert.ok((await s.sim.settle(slow.leave())) >= keys.length);
    s.crash(slow);
    for (const key of keys) assert.ok(holders(s, key).length > 0, 'each key handed over');
  });

  it('does not wait past its hand-over time for STOREs a silent node leaves unanswered', async () => {
    const s = await swarm(12, 53);
    const [leaver, silent] = s.alive as [KademliaNode, KademliaNode];
    for (let i = 0; i < 100; i++) {
      leaver.store.put(hashToId(`held ${i}`), text('v'), s.sim.now() + HOUR, s.sim.now());
    }
    s.silence(silent);
    const t0 = s.sim.now();
    await s.sim.settle(leaver.leave(1000));
    // The hand-over's second, then one round of LEAVEs (500 ms for the silent one's answer):
    // not the STOREs' timeouts at the silent node on top.
    assert.ok(s.sim.now() - t0 <= 1600, `left after ${s.sim.now() - t0} ms`);
  });

  it('is alone, not rejoining through it, once the last node it knew left gracefully', async () => {
    const s = await swarm(4, 41);
    const [a, b, c, d] = s.alive as [KademliaNode, KademliaNode, KademliaNode, KademliaNode];
    await s.sim.settle(c.leave());
    s.crash(c);
    // d dies silently; a knows it is gone, b does not: b's LEAVE to d waits for an answer.
    s.crash(d);
    a.table.remove(d.id);
    assert.deepEqual(
      [a.table.size, b.table.has(d.id)],
      [1, true],
      'a knows only b; b still lists d',
    );
    const leaving = b.leave();
    // b hands its values over first (d's STORE times out), then tells a and d it leaves.
    for (let i = 0; i < 300 && a.table.size > 0; i++) await s.sim.runFor(100);
    assert.equal(a.table.size, 0, 'a dropped b on its LEAVE');
    assert.equal(a.stats.requestsIn.LEAVE, 2, "c's and b's");
    await s.sim.settle(leaving);
    s.crash(b);
    assert.equal(a.table.has(b.id), false, 'a did not take b back while b was still leaving');
    assert.equal(a.isolated, false, 'alone, as a founder: its lookups answer from its store');
  });

  it('rejoins through a node it dropped for silence when the last one it knew leaves', async () => {
    const s = await swarm(4, 43);
    const [a, b, c, d] = s.alive as [KademliaNode, KademliaNode, KademliaNode, KademliaNode];
    // a lost c for silence (a network outage), and knows d no more: only b is in its table.
    s.silence(c);
    await pingTwice(s, a, c.contact);
    s.sim.setBehaviour(c.contact.address, 'honest');
    a.table.remove(d.id);
    assert.deepEqual([a.table.size, a.table.has(b.id)], [1, true]);
    await s.sim.settle(b.leave());
    s.crash(b);
    for (let i = 0; i < 50 && !a.table.has(c.id); i++) await s.sim.runFor(100);
    assert.ok(a.table.has(c.id), 'a rejoined through c, which is back');
    assert.equal(a.table.has(b.id), false);
    assert.equal(a.isolated, false);
  });

  it('asks contacts presumed dead when told to (a store tried again after a refusal)', async () => {
    const s = await swarm(40, 37);
    const key = hashToId('ask them all');
    const asker = s.alive.find((n) => !s.closestAlive(key, 16).includes(n))!;
    const [closest] = s.closestAlive(key, 1) as [KademliaNode];
    s.silence(closest);
    await pingTwice(s, asker, closest.contact);
    s.sim.setBehaviour(closest.contact.address, 'honest');
    const has = (r: { closest: { address: string }[] }) =>
      r.closest.some((c) => c.address === closest.contact.address);
    assert.equal(has(await s.sim.settle(asker.findNode(key))), false, 'presumed dead');
    assert.equal(has(await s.sim.settle(asker.findNode(key, { askPresumedDead: true }))), true);
  });

  it('asks a contact presumed dead again once it sent a request of its own', async () => {
    const s = await swarm(12, 33);
    const [asker, back] = s.alive as [KademliaNode, KademliaNode];
    s.silence(back);
    await pingTwice(s, asker, back.contact);
    s.sim.setBehaviour(back.contact.address, 'honest');
    const skipped = await s.sim.settle(asker.findNode(back.id));
    assert.equal(skipped.closestSilent, 1, 'another node named it');
    assert.equal(
      skipped.closest.some((c) => idEquals(c.id, back.id)),
      false,
    );
    await s.sim.settle(back.ping(asker.contact));
    const asked = await s.sim.settle(asker.findNode(back.id));
    assert.ok(asked.closest.some((c) => idEquals(c.id, back.id)));
    // The same for one that answers a PING to its address (a bootstrap seed, say).
    const seed = s.alive[2]!;
    s.silence(seed);
    await pingTwice(s, asker, seed.contact);
    s.sim.setBehaviour(seed.contact.address, 'honest');
    await s.sim.settle(asker.pingAddress(seed.contact.address));
    const again = await s.sim.settle(asker.findNode(seed.id));
    assert.ok(again.closest.some((c) => idEquals(c.id, seed.id)));
  });

  it('stores a value again seconds after its silent holders answer again, not at the next check', async () => {
    // Ten nodes (an office), k = 8: six of them stall, so a value reaches only four.
    const s = await swarm(10, 47, { upkeepCheckIntervalMs: 10 * MIN });
    const key = hashToId('stored while its holders were silent');
    const [publisher, ...others] = s.alive;
    const stalled = others.slice(0, 6);
    for (const n of stalled) s.silence(n);
    const put = await s.sim.settle(publisher!.put(key, text('x'), 3 * HOUR));
    assert.ok(put.stored.length < 8, `stored on ${put.stored.length} while they were silent`);
    assert.equal(publisher!.isolated, false);
    for (const n of stalled) s.sim.setBehaviour(n.contact.address, 'honest');
    // Stored again within seconds (5 s, then 10 s, ...), not at the check 10 minutes on.
    await s.sim.runFor(MIN);
    assert.ok(holders(s, key).length >= 8, `${holders(s, key).length} hold it`);
  });

  for (const droppedFirst of [true, false]) {
    it(`brings holders that were silent while a value was replaced up to date when they are back (${droppedFirst ? 'dropped before' : 'dropped after'} the change)`, async () => {
      // Five nodes (an office), k = 8: every node holds every key. The two closest to the key
      // stall while its publisher replaces the value; the others find them silent and drop
      // them, before the change or after it (the store's own requests to them time out, and a
      // later one drops them), so the new value reaches every node still listed: a complete
      // store, not retried.
      const newer = {
        shouldReplace: (_k: unknown, a: { value: Uint8Array }, b: { value: Uint8Array }) =>
          Buffer.compare(b.value, a.value) > 0,
      };
      const told: { to: string; back: boolean }[] = [];
      const s = await swarm(5, 48, {
        upkeepCheckIntervalMs: 10 * MIN,
        store: newer,
        onHandOver: (to, _keys, back) => told.push({ to: to.address, back }),
      });
      const key = hashToId('replaced while two holders stalled');
      const [first, second, ...rest] = s.closestAlive(key, 5);
      const stalled = [first!, second!];
      const publisher = rest[rest.length - 1]!;
      await s.sim.settle(publisher.put(key, text('v1'), 3 * HOUR));
      assert.equal(holders(s, key).length, 5);
      for (const n of stalled) s.silence(n);
      const drop = async () => {
        for (const n of rest) for (const st of stalled) await pingTwice(s, n, st.contact);
        for (const n of rest) for (const st of stalled) assert.equal(n.table.has(st.id), false);
      };
      if (droppedFirst) await drop();
      publisher.unpublish(key, text('v1'));
      await s.sim.settle(publisher.put(key, text('v2'), 3 * HOUR));
      if (!droppedFirst) {
        await s.sim.runFor(5_000);
        await drop();
      }
      for (const n of rest) assert.deepEqual(held(s, n, key), ['v2']);
      // They answer again, and are heard from (their own requests) by the others, in turn.
      for (const n of stalled) s.sim.setBehaviour(n.contact.address, 'honest');
      for (const st of stalled) for (const n of rest) await s.sim.settle(st.ping(n.contact));
      await s.sim.runFor(MIN);
      for (const n of s.alive) assert.deepEqual(held(s, n, key), ['v2'], n.contact.address);
      // Told as hand-overs to nodes back after silence (by the holders that saw the silence
      // begin before the change: the publisher at least).
      for (const st of stalled) {
        const to = told.filter((t) => t.to === st.contact.address);
        assert.ok(to.length >= 1 && to.every((t) => t.back), JSON.stringify(told));
      }
    });
  }

  for (const holding of [false, true]) {
    it(`rejoins as soon as another node is heard from after it lost every contact, not at the next check${holding ? ', and stores what it put meanwhile' : ''}`, async () => {
      const s = await swarm(10, 49, { upkeepCheckIntervalMs: 10 * MIN });
      const [cutOff, ...others] = s.alive as [KademliaNode, ...KademliaNode[]];
      // Its own line is down: nobody answers it, and it drops every contact.
      for (const n of others) s.silence(n);
      for (let round = 0; round < 3; round++)
        await s.sim.settle(cutOff.findNode(hashToId(`cut off ${round}`)));
      assert.equal(cutOff.table.size, 0);
      const key = hashToId('put while cut off');
      if (holding) await s.sim.settle(cutOff.put(key, text('x'), 3 * HOUR));
      // Its first try to rejoin, when the last contact went, reached nobody either.
      await s.sim.runFor(MIN);
      assert.equal(cutOff.isolated, true);
      // The line is back, and another node sends it a request (a lookup, say).
      for (const n of others) s.sim.setBehaviour(n.contact.address, 'honest');
      await s.sim.settle(others[4]!.ping(cutOff.contact));
      await s.sim.runFor(MIN);
      assert.equal(cutOff.isolated, false);
      assert.ok(cutOff.table.size >= 5, `it knows ${cutOff.table.size}`);
      if (holding) assert.ok(holders(s, key).length >= 8, `${holders(s, key).length} hold it`);
    });
  }

  it('finds the others again after an outage that emptied every routing table', async () => {
    const s = await swarm(10, 35, { upkeepCheckIntervalMs: MIN });
    const key = hashToId('across an outage');
    await s.sim.settle(s.alive[0]!.put(key, text('x'), 3 * HOUR));
    for (const n of s.alive) assert.equal(n.isolated, false);
    // The office network goes down: no node answers any other, and each drops every contact.
    for (const n of s.alive) s.silence(n);
    for (let round = 0; round < 3; round++)
      for (const n of s.alive) await s.sim.settle(n.findNode(hashToId(`outage ${round}`)));
    for (const n of s.alive) {
      assert.equal(n.table.size, 0);
      assert.equal(n.isolated, true);
    }
    // A value put while cut off is held there alone: it is stored again once rejoined.
    const during = hashToId('put during the outage');
    await s.sim.settle(s.alive[5]!.put(during, text('y'), 3 * HOUR));
    assert.equal(holders(s, during).length, 1);
    for (const n of s.alive) s.sim.setBehaviour(n.contact.address, 'honest');
    await s.sim.runFor(3 * MIN);
    for (const n of s.alive) assert.ok(n.table.size >= 5, `${n.contact.address}: ${n.table.size}`);
    const got = await s.sim.settle(s.alive[9]!.get(key));
    assert.equal(got.values.length > 0, true);
    assert.ok(holders(s, during).length >= 8, `${holders(s, during).length} hold it`);
  });

  it('tries a silent bootstrap node as many times as asked (once, with other nodes to try)', async () => {
    const s = await swarm(3, 39);
    const silent = s.alive[0]!;
    const endpoint = s.sim.endpoint(silent.contact.address)!;
    const pings = new Map<string, number>();
    endpoint.handler = (req, from) => {
      if (req.body.type === 'PING') pings.set(from, (pings.get(from) ?? 0) + 1);
      return new Promise(() => undefined);
    };
    for (const attempts of [undefined, 1]) {
      const newcomer = s.create();
      const err = await s.sim.settle(
        newcomer.bootstrap([silent.contact.address], attempts).then(
          () => undefined,
          (e: unknown) => e,
        ),
      );
      assert.ok(err instanceof NoPeersError && err.silent, 'a silent bootstrap node');
      assert.equal(pings.get(newcomer.contact.address), attempts ?? BOOTSTRAP_PING_ATTEMPTS);
    }
  });

  it('tries to rejoin as soon as the routing table loses its last contact', async () => {
    const s = await swarm(3, 38);
    const [node, ...others] = s.alive as [KademliaNode, ...KademliaNode[]];
    // A stall: each of the others leaves this node's first two PINGs unanswered, then is back.
    for (const n of others) {
      const endpoint = s.sim.endpoint(n.contact.address)!;
      const handler = endpoint.handler!;
      let unanswered = 0;
      endpoint.handler = (req, from) =>
        from === node.contact.address && req.body.type === 'PING' && unanswered++ < 2
          ? new Promise(() => undefined)
          : handler(req, from);
    }
    await s.sim.settle(Promise.all(others.map((n) => node.ping(n.contact))));
    await s.sim.settle(Promise.all(others.map((n) => node.ping(n.contact))));
    // The second silence dropped the last contact; the rejoin that started then was answered.
    await s.sim.runFor(5_000);
    assert.equal(node.table.size, 2);
    assert.equal(node.isolated, false);
  });

  it('takes the others as gone after 20 checks that reached none of them, and tries less often', async () => {
    const s = await swarm(3, 36, { upkeepCheckIntervalMs: MIN });
    const [lone, ...others] = s.alive as [KademliaNode, ...KademliaNode[]];
    for (const n of others) s.crash(n);
    await s.sim.settle(lone.findNode(hashToId('gone 1')));
    await s.sim.settle(lone.findNode(hashToId('gone 2')));
    assert.equal(lone.table.size, 0);
    assert.equal(lone.isolated, true);
    await s.sim.runFor(19 * MIN);
    assert.equal(lone.isolated, true, 'still trying after 19 checks');
    await s.sim.runFor(3 * MIN);
    assert.equal(lone.isolated, false, 'alone after 20');
    const sent = lone.stats.requestsOut;
    await s.sim.runFor(32 * MIN);
    // One try every REJOIN_SLOW_EVERY checks, each one PING to each of the two addresses it
    // knew: not one at every check.
    const tries = 32 / REJOIN_SLOW_EVERY;
    const made = lone.stats.requestsOut - sent;
    assert.ok(made <= 2 * (tries + 1), `${made} requests`);
    assert.ok(made >= 2 * (tries - 1), `${made} requests: it still tries`);
    assert.ok(REJOIN_SLOW_EVERY > 1);
  });

  it('holds a silence at an address someone named for a node against that address only', async () => {
    const s = await swarm(40, 34);
    const [asker, named] = s.alive as [KademliaNode, KademliaNode];
    await s.sim.settle(asker.ping(named.contact));
    assert.ok(asker.table.has(named.id));
    // A liar names the node at an address where nothing answers; the asker tries it twice.
    const bogus = { id: named.id, address: 'nowhere' };
    assert.deepEqual(await pingTwice(s, asker, bogus), [false, false]);
    assert.ok(asker.table.has(named.id), 'still listed at its own address');
    // Or at another node's address, where a node of another ID answers.
    const elsewhere = { id: named.id, address: s.alive[5]!.contact.address };
    assert.deepEqual(await pingTwice(s, asker, elsewhere), [false, false]);
    assert.ok(asker.table.has(named.id), 'still listed');
    const found = await s.sim.settle(asker.findNode(named.id));
    assert.ok(
      found.closest.some((c) => idEquals(c.id, named.id)),
      'and asked there',
    );
  });

  it('says how many of the closest nodes a lookup asked stayed silent', async () => {
    const s = await swarm(60, 25);
    const key = hashToId('silent-holders');
    const asker = s.alive.find((n) => !s.closestAlive(key, 8).includes(n))!;
    const quiet = await s.sim.settle(asker.get(key));
    assert.equal(quiet.values.length, 0);
    assert.deepEqual([quiet.closestSilent, quiet.closestAsked], [0, 8]);
    for (const n of s.closestAlive(key, 8).slice(0, 5)) s.silence(n);
    const silent = await s.sim.settle(asker.get(key));
    assert.equal(silent.values.length, 0);
    assert.equal(silent.closestAsked, 8);
    assert.equal(silent.closestSilent, 5, 'the five silent nodes are the closest it asked');
  });

  it('counts closest nodes it dropped lately as silent when no node names them any more', async () => {
    // A small overlay, where each node knows the others.
    const s = await swarm(20, 25);
    const key = hashToId('holders-all-gone');
    const dead = s.closestAlive(key, 5);
    const asker = s.alive.find(
      (n) => !s.closestAlive(key, 8).includes(n) && dead.every((d) => n.table.has(d.id)),
    )!;
    for (const n of dead) s.crash(n);
    // The asker finds each silent twice (its upkeep's PINGs) and drops it; the others forgot
    // them too, so no answer names them.
    for (let i = 0; i < 2; i++) {
      await s.sim.settle(
        Promise.all(dead.map((n) => asker.ping(n.contact).catch(() => undefined))),
      );
    }
    for (const n of s.alive) for (const d of dead) n.table.remove(d.id);
    const got = await s.sim.settle(asker.get(key));
    assert.equal(got.failures, 0, 'the dropped nodes are not asked');
    assert.equal(got.closestSilent, 5, 'but they count, silent, among the closest');
    // A minute later they are taken as gone: the closest are the live ones.
    await s.sim.runFor(PRESUMED_DEAD_MS + 1000);
    const later = await s.sim.settle(asker.get(key));
    assert.equal(later.closestSilent, 0);
  });

  it('counts itself among the targets: a missed STORE in a small overlay is retried too', async () => {
    const s = await swarm(5, 24, MINUTE_CHECKS);
    const key = hashToId('small-missed');
    const [publisher, flaky] = s.alive as [KademliaNode, KademliaNode];
    const answerStores = dropStores(s, flaky);
    const put = await s.sim.settle(publisher.put(key, text('x'), 3 * HOUR));
    // Every node of five should hold it (k = 8): the publisher and three others do.
    assert.equal(put.stored.length, 4);
    answerStores();
    await s.sim.runFor(2 * MIN);
    assert.equal(holders(s, key).length, 5);
  });

  it('checking upkeep every minute, restores k replicas within minutes after holders die', async () => {
    const s = await swarm(80, 23, MINUTE_CHECKS);
    const key = hashToId('replicated-minutes');
    const publisher = s.alive[0]!;
    await s.sim.settle(publisher.put(key, text('x'), 3 * HOUR));
    s.crash(publisher);
    for (const n of holders(s, key).slice(0, 5)) s.crash(n);
    assert.ok(holders(s, key).length <= 3);
    await s.sim.runFor(3 * MIN);
    assert.deepEqual(
      addresses(holders(s, key).map((n) => n.contact)),
      addresses(s.closestAlive(key, 8).map((n) => n.contact)),
    );
  });

  it('hands stored keys over to a new node that is closer, and counts and reports it', async () => {
    const told: { to: string; keys: number; back: boolean }[] = [];
    const s = await swarm(60, 6, {
      onHandOver: (to, keys, back) => told.push({ to: to.address, keys, back }),
    });
    const key = hashToId('handover');
    await s.sim.settle(s.alive[0]!.put(key, text('x'), HOUR));
    const before = s.alive.reduce((sum, n) => sum + n.stats.keysHandedOver, 0);
    told.length = 0;
    const closeId = new Uint8Array(key);
    closeId[31] = (closeId[31] as number) ^ 1;
    const newcomer = await s.join({}, closeId);
    await s.sim.runFor(5_000);
    assert.ok(idEquals(s.closestAlive(key, 1)[0]!.id, newcomer.id));
    assert.equal(newcomer.store.get(key, s.sim.now()).length, 1);
    // The closest holder before it handed it the key: counted, and told as a newcomer.
    const toNewcomer = told.filter((t) => t.to === newcomer.contact.address);
    assert.ok(toNewcomer.length >= 1, JSON.stringify(told));
    assert.ok(toNewcomer.every((t) => t.keys >= 1 && !t.back));
    const after = s.alive.reduce((sum, n) => sum + n.stats.keysHandedOver, 0);
    assert.ok(after - before >= toNewcomer.length);
    assert.equal(s.alive.reduce((sum, n) => sum + n.stats.handOvers, 0) >= toNewcomer.length, true);
  });

  it('has the two closest holders before it hand a newcomer the key: a lying closest one is not its only source', async () => {
    // QA: a member with an ID chosen next to a name was the only node that handed newcomers
    // the name's records, and gave them its own claim instead.
    const told: string[] = [];
    const s = await swarm(60, 7, { onHandOver: (to) => told.push(to.address) });
    const key = hashToId('handed by two');
    await s.sim.settle(s.alive[0]!.put(key, text('x'), HOUR));
    const [closest, second] = s.closestAlive(key, 2) as [KademliaNode, KademliaNode];
    s.silence(closest); // the liar: it hands nothing over
    const closeId = new Uint8Array(key);
    closeId[31] = (closeId[31] as number) ^ 1;
    const newcomer = await s.join({}, closeId);
    await s.sim.runFor(5_000);
    assert.equal(newcomer.store.get(key, s.sim.now()).length, 1, 'handed over all the same');
    assert.ok(second.stats.keysHandedOver >= 1, 'by the second closest');
  });

  it("stops a hand-over at the newcomer's first silence, and sends the rest when it answers", async () => {
    // Five nodes, k = 8: every node holds every key, so a node back is handed every key that
    // changed while it was away, by each node that dropped it.
    const s = await swarm(5, 47, { upkeepCheckIntervalMs: MIN });
    const [publisher, , , , back] = s.alive as [
      KademliaNode,
      KademliaNode,
      KademliaNode,
      KademliaNode,
      KademliaNode,
    ];
    s.silence(back);
    for (const n of s.alive) if (n !== back) await pingTwice(s, n, back.contact);
    for (let i = 0; i < 60; i++) {
      await s.sim.settle(publisher.put(hashToId(`away-${i}`), text(`v${i}`), 3 * HOUR));
    }
    // It answers again, but takes no STORE (a node too busy to keep up): each STORE waits
    // for its timeout at the sender.
    const endpoint = s.sim.endpoint(back.contact.address)!;
    const handler = endpoint.handler!;
    let storesHeld = 0;
    let dropping = true;
    endpoint.handler = (req, from) => {
      if (!dropping || req.body.type !== 'STORE') return handler(req, from);
      storesHeld++;
      return new Promise(() => undefined);
    };
    s.sim.setBehaviour(back.contact.address, 'honest');
    await s.sim.settle(
      Promise.all(s.alive.filter((n) => n !== back).map((n) => back.ping(n.contact))),
    );
    await s.sim.runFor(30_000);
    // Four senders with 60 keys each: a few STOREs each in flight when the first timed out
    // (and a few more each retry while it was still listed), not 240.
    assert.ok(storesHeld > 0, 'a hand-over began');
    assert.ok(storesHeld <= 4 * 2 * 8, `${storesHeld} STOREs sent into a node that answered none`);
    dropping = false;
    await s.sim.settle(
      Promise.all(s.alive.filter((n) => n !== back).map((n) => back.ping(n.contact))),
    );
    await s.sim.runFor(MIN);
    for (let i = 0; i < 60; i++) {
      assert.deepEqual(held(s, back, hashToId(`away-${i}`)), [`v${i}`], `away-${i}`);
    }
  });

  it('hands nothing to a newcomer heard only from a forged address before it answered there', async () => {
    const s = await swarm(60, 6);
    const key = hashToId('handover, forged');
    await s.sim.settle(s.alive[0]!.put(key, text('x'), HOUR));
    const holder = s.closestAlive(key, 1)[0] as KademliaNode;
    // A node ID closer to the key than any, claimed in a request "from" the victim's address
    // (a signed request of the attacker's own, its source forged).
    const forgedId = new Uint8Array(key);
    forgedId[31] = (forgedId[31] as number) ^ 1;
    const victim = s.alive.find((n) => n !== holder) as KademliaNode;
    const victimEndpoint = s.sim.endpoint(victim.contact.address)!;
    const victimHandler = victimEndpoint.handler!;
    const reached: string[] = [];
    victimEndpoint.handler = (req, from) => {
      if (from === holder.contact.address) reached.push(req.body.type);
      return victimHandler(req, from);
    };
    const holderHandler = s.sim.endpoint(holder.contact.address)!.handler!;
    await s.sim.settle(
      Promise.resolve(
        holderHandler({ sender: forgedId, body: { type: 'PING' } }, victim.contact.address),
      ),
    );
    await s.sim.runFor(5_000);
    // One PING to see who answers there (the victim, under its own ID): no STORE.
    assert.deepEqual(reached, ['PING']);
  });

  it('keeps every value reachable through churn', async () => {
    const s = await swarm(100, 7, {
      republishIntervalMs: 20 * MIN,
      replicateIntervalMs: 20 * MIN,
      refreshIntervalMs: 20 * MIN,
    });
    const keys = Array.from({ length: 10 }, (_, i) => hashToId(`churn${i}`));
    const publishers = s.alive.slice(0, 10);
    for (const [i, key] of keys.entries())
      await s.sim.settle(publishers[i]!.put(key, text(`${i}`), 4 * HOUR));
    // Every 5 minutes for an hour, 5 random nodes (never the publishers) die and 5 join.
    for (let round = 0; round < 12; round++) {
      const victims = s.alive.filter((n) => !publishers.includes(n));
      for (let j = 0; j < 5; j++)
        s.crash(victims[Math.floor(s.sim.random.next() * victims.length)]!);
      await s.grow(100, 5);
      await s.sim.runFor(5 * MIN);
    }
    let found = 0;
    for (const [i, key] of keys.entries()) {
      const got = await s.sim.settle(s.alive[s.alive.length - 1 - i]!.get(key));
      if (got.values.length > 0) found++;
    }
    assert.equal(found, keys.length);
  });

  it('finds values despite 20% silent nodes and 5% packet loss', async () => {
    const sim = new Simulator({ seed: 8, lossRate: 0.05 });
    const s = new Swarm(sim, { k: 8, requestTimeoutMs: 1_000 });
    await s.grow(150, 10);
    const keys = Array.from({ length: 20 }, (_, i) => hashToId(`silent${i}`));
    for (const key of keys) await sim.settle(s.alive[0]!.put(key, text('x'), HOUR));
    for (let i = 0; i < 30; i++) s.silence(s.alive[1 + i * 5]!);
    let found = 0;
    for (const [i, key] of keys.entries()) {
      const got = await sim.settle(s.alive[149 - i]!.get(key));
      if (got.values.length > 0) found++;
    }
    assert.ok(found >= 19, `found ${found} of 20`);
  });

  it('resists 20% lying nodes better with 4 disjoint paths than with 1', async () => {
    const sim = new Simulator({ seed: 9 });
    const s = new Swarm(sim, { k: 8 });
    await s.grow(200, 10);
    const keys = Array.from({ length: 30 }, (_, i) => hashToId(`liar${i}`));
    const honest = s.alive.slice(0, 160);
    for (const key of keys) await sim.settle(honest[0]!.put(key, text('x'), HOUR));
    for (const n of s.alive.slice(160)) s.corrupt(n);
    const success = async (paths: number) => {
      let ok = 0;
      for (const [i, key] of keys.entries()) {
        const got = await sim.settle(honest[1 + i]!.get(key, { paths }));
        if (got.values.length > 0) ok++;
      }
      return ok;
    };
    const d1 = await success(1);
    const d4 = await success(4);
    assert.ok(d4 >= d1, `d=4 found ${d4}, d=1 found ${d1}`);
    assert.ok(d4 >= 28, `d=4 found ${d4} of 30`);
  });
});

describe('responsibility for a key (isResponsibleFor, what a storer asks before it takes a value)', () => {
  it('holds for the k closest, not for a node that knows k closer, not counting the sender or silent contacts', async () => {
    const k = 8;
    const s = await swarm(60, 11);
    const key = hashToId('who holds this');
    const ranked = s.closestAlive(key, 3 * k);

    // The (k+1)-th, after a lookup of the key showed it the k closer ones.
    const next = ranked[k]!;
    await s.sim.settle(next.findNode(key));
    assert.equal(next.isResponsibleFor(key), false);
    // A holder storing on it (handing over as it leaves, say) does not count against it; a
    // node farther from the key than itself changes nothing.
    assert.equal(next.isResponsibleFor(key, ranked[0]!.id), true);
    assert.equal(next.isResponsibleFor(key, ranked[2 * k]!.id), false);
    // A closer node that stopped answering no longer counts, not even when it sends messages
    // of its own (a node that cannot be reached, or one that only pretends to be near).
    const mute = ranked[0]!;
    s.silence(mute);
    assert.equal(await s.sim.settle(next.ping(mute.contact)), false);
    assert.equal(next.isResponsibleFor(key), true);
    assert.equal(await s.sim.settle(mute.ping(next.contact)), true);
    assert.equal(next.isResponsibleFor(key), true);

    // A node far down the list, after a lookup of the key.
    const far = ranked[3 * k - 1]!;
    await s.sim.settle(far.findNode(key));
    assert.equal(far.isResponsibleFor(key), false);
    // Leaving out a sender among the closer ones still leaves it knowing k closer ones.
    const nearest = far.table.closestAnswering(key, 1)[0]!;
    assert.equal(far.isResponsibleFor(key, nearest.id), false);
  });
});

describe('storing without a lookup first (where the table knows every node near the key)', () => {
  /** FIND_NODE requests received, summed over the live nodes. */
  const findNodesIn = (s: Swarm) =>
    s.alive.reduce((sum, n) => sum + n.stats.requestsIn.FIND_NODE, 0);

  /**
   * 12 nodes, k = 8, and a publisher outside the key's 9 closest that knows all the others
   * (no bucket of its is full) and has heard each of them answer.
   */
  async function small(seed: number, name: string) {
    const s = await swarm(12, seed);
    const key = hashToId(name);
    const publisher = s.alive.find(
      (n) => !s.closestAlive(key, 9).includes(n) && n.table.size === 11,
    )!;
    for (const c of publisher.table.closest(key, 11)) await s.sim.settle(publisher.ping(c));
    const truth = addresses(s.closestAlive(key, 8).map((n) => n.contact));
    return { s, key, publisher, truth };
  }

  it('stores on the k closest with k STOREs and no FIND_NODE', async () => {
    const { s, key, publisher, truth } = await small(61, 'no lookup');
    const lookups = publisher.stats.lookups;
    const [findNodes, stores] = [findNodesIn(s), storesIn(s)];
    const put = await s.sim.settle(publisher.put(key, text('v'), HOUR));
    assert.deepEqual(addresses(put.stored), truth);
    assert.equal(publisher.stats.lookups - lookups, 0);
    assert.equal(findNodesIn(s) - findNodes, 0, 'no FIND_NODE');
    assert.equal(storesIn(s) - stores, 8, 'one STORE per holder');
    assert.equal(holders(s, key).length, 8);
  });

  /** small(), and the publisher has not heard of the `index`-th closest: it takes the 9th. */
  async function oneUnheard(seed: number, name: string, index: number) {
    const setup = await small(seed, name);
    const { s, key, publisher } = setup;
    const hidden = s.closestAlive(key, 8)[index]!;
    const ninth = s.closestAlive(key, 9)[8]!;
    assert.ok(publisher.table.remove(hidden.id));
    return { ...setup, hidden, ninth };
  }

  it('looks up after all when a target names a closer node, which then gets the value', async () => {
    const { s, key, publisher, truth, hidden, ninth } = await oneUnheard(
      66,
      'a closer node named',
      3,
    );
    // The 9th has heard the 8 closer answer (isResponsibleFor counts only those).
    for (const c of ninth.table.closest(key, 11)) await s.sim.settle(ninth.ping(c));
    const lookups = publisher.stats.lookups;
    const put = await s.sim.settle(publisher.put(key, text('v'), HOUR));
    assert.equal(publisher.stats.lookups - lookups, 1, 'one lookup, after the STOREs');
    assert.deepEqual(addresses(put.stored), truth);
    assert.equal(held(s, hidden, key).length, 1, 'the node the publisher missed has it');
    // The 9th knows the 8 closer: a STORE sent without a lookup is not taken there.
    assert.deepEqual(held(s, ninth, key), []);
    assert.deepEqual(
      put.rejected.map((r) => [r.contact.address, r.reason]),
      [],
      'a refusal by a node the lookup did not end at is not reported',
    );
    assert.equal(holders(s, key).length, 8);
  });

  it('looks up after all when every target took the value but one names a closer node', async () => {
    const { s, key, publisher, truth, hidden, ninth } = await oneUnheard(
      67,
      'taken, but a closer node named',
      2,
    );
    // The 9th has heard too few of the closer ones answer to refuse (isResponsibleFor).
    assert.ok(ninth.isResponsibleFor(key, publisher.id));
    const lookups = publisher.stats.lookups;
    const put = await s.sim.settle(publisher.put(key, text('v'), HOUR));
    assert.equal(publisher.stats.lookups - lookups, 1);
    assert.equal(held(s, hidden, key).length, 1, 'the node the publisher missed has it');
    // The 9th keeps its copy until the value expires; the holders, which the result counts,
    // are the lookup's k closest.
    assert.equal(held(s, ninth, key).length, 1, 'the 9th keeps its copy');
    assert.deepEqual(addresses(put.stored), truth);
  });

  it('looks up when a target answers without its contacts (a node from before them)', async () => {
    const { s, key, publisher, truth } = await small(63, 'an older node');
    const older = s.closestAlive(key, 8)[5]!;
    const endpoint = s.sim.endpoint(older.contact.address)!;
    const handle = endpoint.handler!;
    endpoint.handler = async (req: Request, from: string): Promise<Response> => {
      const res = await handle(req, from);
      if (res.body.type !== 'STORED') return res;
      const { contacts: _contacts, ...body } = res.body;
      return { ...res, body };
    };
    const lookups = publisher.stats.lookups;
    const stores = storesIn(s);
    const put = await s.sim.settle(publisher.put(key, text('v'), HOUR));
    assert.equal(publisher.stats.lookups - lookups, 1);
    assert.deepEqual(addresses(put.stored), truth);
    assert.equal(storesIn(s) - stores, 8, 'no node that answered gets the value twice');
  });

  it('stores with k STOREs where buckets larger than k (bucketSize) hold every node', async () => {
    // 20 nodes, k = 3, a node that has heard every other answer. Buckets of 3 are full, so it
    // looks a key up before storing; buckets of 20 hold all 19 others, so it stores on the 3
    // closest at once. Its FIND_NODE
    // answers stay as large as k makes them (answerSize), not a whole bucket.
    const key = hashToId('bigger buckets');
    const stored = async (bucketSize: number | undefined) => {
      const s = await swarm(20, 68, { k: 3, ...(bucketSize ? { bucketSize } : {}) });
      const publisher = s.alive.find((n) => !s.closestAlive(key, 4).includes(n))!;
      // It has heard every other node answer (what a node of a small overlay does in time).
      for (const n of s.alive) if (n !== publisher) await s.sim.settle(publisher.ping(n.contact));
      const [lookups, stores] = [publisher.stats.lookups, storesIn(s)];
      const put = await s.sim.settle(publisher.put(key, text('v'), HOUR));
      assert.deepEqual(
        addresses(put.stored),
        addresses(s.closestAlive(key, 3).map((n) => n.contact)),
      );
      // A FIND_NODE from a node the publisher knows, as it arrives at the publisher.
      const asker = s.closestAlive(key, 1)[0]!;
      const handler = s.sim.endpoint(publisher.contact.address)!.handler!;
      const request: Request = { sender: asker.id, body: { type: 'FIND_NODE', target: key } };
      const answer = await s.sim.settle(Promise.resolve(handler(request, asker.contact.address)));
      return {
        known: publisher.table.size,
        lookups: publisher.stats.lookups - lookups,
        stores: storesIn(s) - stores,
        answered: answer.body.type === 'NODES' ? answer.body.contacts.length : -1,
      };
    };
    const big = await stored(20);
    assert.equal(big.known, 19, 'knows every other node');
    assert.deepEqual([big.lookups, big.stores], [0, 3]);
    assert.equal(big.answered, answerSize(3), 'a FIND_NODE answer as large as k makes it');
    const small = await stored(undefined);
    assert.ok(small.known < 19);
    assert.equal(small.lookups, 1, 'buckets of k: a lookup first');
  });

  it('looks up first where a bucket near the key is full, and for a republish', async () => {
    // 80 nodes, k = 8: buckets far from a node are full.
    const s = await swarm(80, 64);
    const key = hashToId('far away');
    const publisher = s.alive.find(
      (n) =>
        !s.closestAlive(key, 9).includes(n) && n.table.bucket(n.table.bucketIndexOf(key)).isFull,
    )!;
    const lookups = publisher.stats.lookups;
    const put = await s.sim.settle(publisher.put(key, text('v'), HOUR));
    assert.equal(publisher.stats.lookups - lookups, 1);
    assert.deepEqual(
      addresses(put.stored),
      addresses(s.closestAlive(key, 8).map((n) => n.contact)),
    );
    const near = (await small(65, 'republished')).s;
    const k2 = hashToId('republished');
    const p2 = near.alive.find((n) => !near.closestAlive(k2, 9).includes(n))!;
    await near.sim.settle(p2.put(k2, text('v'), 3 * HOUR));
    const before = p2.stats.lookups;
    await near.sim.runFor(70 * MIN);
    assert.ok(p2.stats.lookups - before >= 1, 'the hourly republish looked up');
  });
});
