import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type Contact,
  commonPrefixLength,
  compareDistance,
  idEquals,
  MAX_CONTACT_FAILURES,
  RoutingTable,
  randomIdAtPrefix,
  SeededRandom,
} from '../src/index.js';

const rnd = new SeededRandom(7);
const contact = (id: Uint8Array, n = 0): Contact => ({ id, address: `a${n}` });

describe('routing table', () => {
  it('ignores its own id', () => {
    const own = rnd.bytes(32);
    const t = new RoutingTable(own, { bucketSize: 4 });
    assert.equal(t.add(contact(own), 0).status, 'self');
    assert.equal(t.size, 0);
  });

  it('spreads the contacts to come back through over its buckets, proven and least recently seen first', () => {
    const own = rnd.bytes(32);
    const t = new RoutingTable(own, { bucketSize: 4 });
    // Bucket 0 (far half): p1, p2 answered requests of ours; n1 only ever sent requests,
    // and it sends them often (seen last). Bucket 1: q1 answered; f1 answered, then failed.
    const at = (d: number, n: number) => contact(randomIdAtPrefix(own, d, rnd), n);
    const [p1, p2, n1, q1, f1] = [at(0, 1), at(0, 2), at(0, 3), at(1, 4), at(1, 5)];
    t.add(p1, 1, true);
    t.add(p2, 2, true);
    t.add(q1, 3, true);
    t.add(f1, 4, true);
    t.recordFailure(f1.id, 5);
    for (let i = 6; i < 10; i++) t.add(n1, i);
    assert.deepEqual(
      t.spread(16).map((c) => c.address),
      ['a1', 'a4', 'a2', 'a3', 'a5'],
    );
    assert.deepEqual(
      t.spread(2).map((c) => c.address),
      ['a1', 'a4'],
    );
  });

  it('splits only the bucket holding its own id and keeps cpl invariants', () => {
    const own = rnd.bytes(32);
    const t = new RoutingTable(own, { bucketSize: 4 });
    for (let i = 0; i < 400; i++) t.add(contact(rnd.bytes(32), i), i);
    assert.ok(t.bucketCount > 1);
    const last = t.bucketCount - 1;
    for (let i = 0; i < t.bucketCount; i++) {
      for (const e of t.bucket(i).entries) {
        const cpl = commonPrefixLength(own, e.contact.id);
        if (i < last) assert.equal(cpl, i);
        else assert.ok(cpl >= last);
      }
      assert.ok(t.bucket(i).size <= 4);
    }
  });

  it('reports a full far bucket with its least-recently-seen contact and caches the newcomer', () => {
    const own = rnd.bytes(32);
    const t = new RoutingTable(own, { bucketSize: 2 });
    // Force a split first so bucket 0 (the far half) can no longer split.
    for (let d = 1; d < 4; d++) t.add(contact(randomIdAtPrefix(own, d, rnd), d), d);
    const first = contact(randomIdAtPrefix(own, 0, rnd), 10);
    const second = contact(randomIdAtPrefix(own, 0, rnd), 11);
    const third = contact(randomIdAtPrefix(own, 0, rnd), 12);
    assert.equal(t.add(first, 20).status, 'added');
    assert.equal(t.add(second, 21).status, 'added');
    const r = t.add(third, 22);
    assert.equal(r.status, 'full');
    assert.ok(r.status === 'full' && idEquals(r.leastRecentlySeen.id, first.id));
    assert.equal(t.has(third.id), false);
    assert.deepEqual(
      t.bucket(0).replacements.map((c) => c.address),
      ['a12'],
    );

    // The pinged contact failed: the newcomer takes its slot at once.
    assert.equal(t.recordFailure(first.id, 23), true);
    assert.equal(t.has(first.id), false);
    assert.equal(t.has(third.id), true);
  });

  it('keeps a pinged contact that answered, moving it to most-recently-seen', () => {
    const own = rnd.bytes(32);
    const t = new RoutingTable(own, { bucketSize: 2 });
    for (let d = 1; d < 4; d++) t.add(contact(randomIdAtPrefix(own, d, rnd), d), d);
    const a = contact(randomIdAtPrefix(own, 0, rnd), 1);
    const b = contact(randomIdAtPrefix(own, 0, rnd), 2);
    t.add(a, 1);
    t.add(b, 2);
    t.keep(a, 3);
    assert.ok(idEquals(t.bucket(0).leastRecentlySeen()!.contact.id, b.id));
  });

  it('drops a failing contact with no replacement only after repeated failures', () => {
    const own = rnd.bytes(32);
    const t = new RoutingTable(own, { bucketSize: 20 });
    const c = contact(rnd.bytes(32));
    t.add(c, 0);
    for (let i = 1; i < MAX_CONTACT_FAILURES; i++) assert.equal(t.recordFailure(c.id, i), false);
    assert.equal(t.recordFailure(c.id, 9), true);
    assert.equal(t.size, 0);
  });

  it('returns exactly the n closest contacts, closest first', () => {
    const own = rnd.bytes(32);
    const t = new RoutingTable(own, { bucketSize: 8 });
    const all: Contact[] = [];
    for (let i = 0; i < 2000; i++) {
      const c = contact(rnd.bytes(32), i);
      if (t.add(c, i).status === 'added') all.push(c);
    }
    for (let i = 0; i < 50; i++) {
      const target = i % 2 ? rnd.bytes(32) : randomIdAtPrefix(own, i % 12, rnd);
      const truth = [...t.contacts()]
        .sort((a, b) => compareDistance(target, a.id, b.id))
        .slice(0, 8);
      assert.deepEqual(
        t.closest(target, 8).map((c) => c.address),
        truth.map((c) => c.address),
      );
    }
    assert.ok(all.length > 8);
  });
});
