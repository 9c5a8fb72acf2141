import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type Contact,
  compareDistance,
  idToHex,
  lookup,
  type QueryAnswer,
  SeededRandom,
} from '../src/index.js';

const rnd = new SeededRandom(11);

/** A static world of contacts where each node knows everyone and answers with its k closest. */
function world(n: number) {
  const contacts: Contact[] = [];
  for (let i = 0; i < n; i++) contacts.push({ id: rnd.bytes(32), address: `n${i}` });
  const closest = (target: Uint8Array, k: number) =>
    [...contacts].sort((a, b) => compareDistance(target, a.id, b.id)).slice(0, k);
  return { contacts, closest };
}

/** A value lookup asking one contact at a time (alpha 1, one path), k = 3. */
function oneAtATime(
  params: Pick<
    Parameters<typeof lookup>[0],
    'target' | 'quorum' | 'initial' | 'query' | 'onValues'
  >,
) {
  return lookup({ ownId: rnd.bytes(32), k: 3, alpha: 1, paths: 1, maxRequests: 100, ...params });
}

describe('iterative lookup', () => {
  it('finds the true k closest and ends by the termination rule', async () => {
    const w = world(300);
    const target = rnd.bytes(32);
    const asked = new Set<string>();
    const r = await lookup({
      target,
      ownId: rnd.bytes(32),
      k: 8,
      alpha: 3,
      paths: 1,
      maxRequests: 1000,
      initial: w.contacts.slice(0, 8),
      query: async (c): Promise<QueryAnswer> => {
        asked.add(c.address);
        // Each node knows only a narrow slice: its own 8 closest to the target, plus noise.
        return {
          contacts: w
            .closest(c.id, 4)
            .concat(w.closest(target, 300).slice(asked.size, asked.size + 3)),
        };
      },
    });
    assert.deepEqual(
      r.closest.map((c) => c.address),
      w.closest(target, 8).map((c) => c.address),
    );
    assert.equal(r.requests, asked.size);
    assert.ok(r.requests < 300, `asked ${r.requests}`);
  });

  it('asks a node presumed dead at one address where another node names it at a new one', async () => {
    const w = world(50);
    const target = rnd.bytes(32);
    const [moved] = w.closest(target, 1);
    assert.ok(moved);
    const old = { id: moved.id, address: 'old-port' };
    const asked: string[] = [];
    const r = await lookup({
      target,
      ownId: rnd.bytes(32),
      k: 3,
      alpha: 1,
      paths: 1,
      maxRequests: 100,
      // Seeded at its old address, presumed dead there; the others name it at its new one.
      initial: [old, ...w.contacts.filter((c) => c !== moved).slice(0, 5)],
      presumedSilent: (c) => c.address === 'old-port',
      query: async (c) => {
        asked.push(c.address);
        return { contacts: w.closest(target, 5) };
      },
    });
    assert.ok(asked.includes(moved.address), 'asked at its new address');
    assert.ok(!asked.includes('old-port'), 'never at the old one');
    assert.equal(r.closest[0]?.address, moved.address);
    assert.equal(r.closestSilent, 0);
  });

  it('routes around failing contacts', async () => {
    const w = world(200);
    const target = rnd.bytes(32);
    const dead = new Set(w.closest(target, 3).map((c) => c.address));
    const r = await lookup({
      target,
      ownId: rnd.bytes(32),
      k: 5,
      alpha: 3,
      paths: 1,
      maxRequests: 1000,
      initial: w.contacts.slice(0, 10),
      query: async (c) => {
        if (dead.has(c.address)) throw new Error('timeout');
        return { contacts: w.closest(target, 20) };
      },
    });
    const live = w.closest(target, 8).filter((c) => !dead.has(c.address));
    assert.deepEqual(
      r.closest.map((c) => c.address),
      live.map((c) => c.address),
    );
    assert.equal(r.failures, 3);
  });

  it('never sends more than maxRequests', async () => {
    const w = world(200);
    const r = await lookup({
      target: rnd.bytes(32),
      ownId: rnd.bytes(32),
      k: 20,
      alpha: 3,
      paths: 1,
      maxRequests: 7,
      initial: w.contacts.slice(0, 20),
      // Every answer brings fresh contacts, so only the cap ends this lookup.
      query: async () => ({ contacts: w.contacts.slice(0, 200) }),
    });
    assert.equal(r.requests, 7);
  });

  it('keeps disjoint paths disjoint: no node is asked twice', async () => {
    const w = world(400);
    const target = rnd.bytes(32);
    const askedBy = new Map<string, number>();
    const r = await lookup({
      target,
      ownId: rnd.bytes(32),
      k: 8,
      alpha: 2,
      paths: 4,
      maxRequests: 1000,
      initial: w.contacts.slice(0, 32),
      trace: true,
      query: async (c) => {
        askedBy.set(c.address, (askedBy.get(c.address) ?? 0) + 1);
        return { contacts: w.closest(target, 30).concat(w.closest(c.id, 5)) };
      },
    });
    assert.ok([...askedBy.values()].every((n) => n === 1));
    const paths = new Set(r.trace.map((s) => s.path));
    assert.equal(paths.size, 4);
    assert.equal(r.closest[0]?.address, w.closest(target, 1)[0]?.address);
  });

  it('stops a value lookup once the quorum of holders answered and reports hops', async () => {
    const w = world(300);
    const target = rnd.bytes(32);
    const holders = new Set(w.closest(target, 5).map((c) => idToHex(c.id)));
    const value = new Uint8Array([1, 2, 3]);
    const r = await lookup({
      target,
      ownId: rnd.bytes(32),
      k: 8,
      alpha: 1,
      paths: 1,
      maxRequests: 1000,
      quorum: 2,
      initial: w.contacts.slice(0, 1),
      query: async (c) => ({
        contacts: w
          .closest(target, 300)
          .filter((x) => compareDistance(target, x.id, c.id) < 0)
          .slice(-3),
        values: holders.has(idToHex(c.id)) ? [{ value, ttlMs: 1000 }] : [],
      }),
    });
    assert.equal(r.values.length, 2);
    assert.ok(r.values.every((v) => holders.has(idToHex(v.holder.id))));
    assert.ok(r.hops >= 2);
  });

  it('hands each holder but the last of the quorum to onValues, after sending the next request', async () => {
    const w = world(50);
    const target = rnd.bytes(32);
    const holders = w.closest(target, 3);
    const early: string[] = [];
    const sentBefore: number[] = [];
    let queries = 0;
    const r = await oneAtATime({
      target,
      quorum: 3,
      initial: holders.slice(0, 1),
      query: async (c) => {
        queries++;
        const rank = holders.findIndex((h) => h.address === c.address);
        return { contacts: holders, values: [{ value: new Uint8Array([rank]), ttlMs: 1000 }] };
      },
      onValues: (values, holder) => {
        sentBefore.push(queries);
        early.push(`${holder.address}:${values[0]?.value[0]}`);
      },
    });
    assert.equal(r.values.length, 3);
    // The first two holders are handed over; the third completes the quorum and ends the lookup.
    assert.deepEqual(early, [`${holders[0]?.address}:0`, `${holders[1]?.address}:1`]);
    // One request at a time (alpha 1): the next holder was asked before onValues ran.
    assert.deepEqual(sentBefore, [2, 3]);
  });

  it('after a holder answered, keeps out only the requests the quorum needs until they are late', async () => {
    const w = world(30);
    const target = rnd.bytes(32);
    // Asked first: a holder, a slow holder and a node holding nothing, whose answers name three
    // closer nodes, the closest of which holds the value too.
    const near = w.closest(target, 6);
    const [closer, fast, slow, empty] = [near[0], near[3], near[4], near[5]];
    const value = new Uint8Array([9]);
    const asked: string[] = [];
    const later = new Map<string, () => void>();
    const hedges: { fn: () => void; ms: number; canceled: boolean }[] = [];
    const run = (withHedge: boolean, paths = 1) => {
      asked.length = 0;
      later.clear();
      hedges.length = 0;
      return lookup({
        target,
        ownId: rnd.bytes(32),
        k: 3,
        alpha: 3,
        paths,
        maxRequests: 100,
        quorum: 2,
        initial: [fast, slow, empty] as Contact[],
        query: (c) => {
          asked.push(c.address);
          const answer: QueryAnswer = {
            contacts: near,
            values: c === fast || c === slow || c === closer ? [{ value, ttlMs: 1000 }] : [],
          };
          if (c === slow) return new Promise((resolve) => later.set('slow', () => resolve(answer)));
          return Promise.resolve(answer);
        },
        ...(withHedge
          ? {
              hedge: {
                afterMs: 7,
                schedule: (fn: () => void, ms: number) => {
                  const h = { fn, ms, canceled: false };
                  hedges.push(h);
                  return () => {
                    h.canceled = true;
                  };
                },
              },
            }
          : {}),
      });
    };
    const flush = () => new Promise((r) => setImmediate(r));

    // Without a hedge, every answer tops the path up to alpha requests, the closer holder's
    // answer completing the quorum while the slow one is still out.
    const classic = await run(false);
    assert.equal(asked.length, 5, asked.join(' '));
    assert.equal(classic.values.length, 2);

    // With one: the fast holder's and the empty node's answers send nothing more, since the
    // slow holder's answer would complete the quorum.
    const hedged = run(true);
    await flush();
    assert.deepEqual(
      asked,
      [fast, slow, empty].map((c) => c?.address),
    );
    assert.equal(hedges.length, 1);
    assert.equal(hedges[0]?.ms, 7);
    // The slow holder is late: the hedge asks the next contacts (alpha again).
    hedges[0]?.fn();
    await flush();
    assert.ok(asked.length > 3, asked.join(' '));
    const r = await hedged;
    assert.equal(r.values.length, 2);
    assert.ok(
      !r.values.some((v) => v.holder === slow),
      'ended by a hedged request, not the slow holder',
    );

    // A quorum completed in time cancels the hedge and asks no one else.
    const onTime = run(true);
    await flush();
    later.get('slow')?.();
    const done = await onTime;
    assert.equal(done.values.length, 2);
    assert.equal(asked.length, 3);
    assert.equal(hedges[0]?.canceled, true);

    // Over disjoint paths nothing is held back: each path goes on as it would alone.
    const settle = async (p: ReturnType<typeof run>) => {
      await flush();
      later.get('slow')?.();
      return p;
    };
    const plain = await settle(run(false, 2));
    const plainAsked = [...asked];
    const withHedge = await settle(run(true, 2));
    assert.deepEqual(asked, plainAsked);
    assert.equal(hedges.length, 0);
    assert.equal(withHedge.values.length, plain.values.length);
  });

  it('finishes a value lookup whose onValues throws', async () => {
    const w = world(20);
    const target = rnd.bytes(32);
    let calls = 0;
    const r = await oneAtATime({
      target,
      quorum: 2,
      initial: w.closest(target, 1),
      query: async () => ({
        contacts: w.closest(target, 3),
        values: [{ value: new Uint8Array([7]), ttlMs: 1000 }],
      }),
      onValues: () => {
        calls++;
        throw new Error('a caller bug');
      },
    });
    assert.equal(calls, 1);
    assert.equal(r.values.length, 2);
  });

  it('drops contacts refused by the contact hook', async () => {
    const w = world(100);
    const target = rnd.bytes(32);
    const banned = new Set(w.closest(target, 4).map((c) => c.address));
    const r = await lookup({
      target,
      ownId: rnd.bytes(32),
      k: 4,
      alpha: 3,
      paths: 1,
      maxRequests: 1000,
      initial: w.contacts.slice(0, 10),
      accept: (c) => !banned.has(c.address),
      query: async () => ({ contacts: w.closest(target, 20) }),
    });
    assert.ok(r.closest.every((c) => !banned.has(c.address)));
    assert.equal(r.closest.length, 4);
  });
});
