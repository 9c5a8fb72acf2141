// Overlay nodes in separate processes on 127.0.0.1. Twelve: records stored and fetched across
// nodes, another key's overwrite refused, a node killed with SIGKILL back with its data, and a
// third of the overlay killed at once without losing a record. Five: a removal made while two
// of them were stopped (SIGSTOP) reaches them once they run again.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { compareDistance, idFromHex } from '@peerbx/dht-kademlia';
import { resourceId } from '../src/storage/record.js';
import { NodeProcess, sleep } from './helpers/node-process.js';

const K = 5;
const MAINTENANCE_MS = 1500;
const ARGS = ['--k', String(K), '--maintenance', String(MAINTENANCE_MS), '--puzzle', '4'];
const USERS = Array.from({ length: 10 }, (_, i) => `user${i}@peerbx.local`);

interface Fetched {
  records: { kind: number; value: string; dictionaryKey?: string; user?: string }[];
}

/**
 * `count` node processes with data directories under a new temporary directory, the first
 * founding the overlay and the rest joining through it, started in `before`; killed (after a
 * SIGCONT, in case a test stopped one) and their directories removed in `after`.
 */
function overlayOf(count: number, prefix: string, args = ARGS): NodeProcess[] {
  const root = mkdtempSync(join(tmpdir(), prefix));
  const nodes: NodeProcess[] = [];
  before(async () => {
    nodes.push(await NodeProcess.start(join(root, 'n0'), args));
    const joins: Promise<NodeProcess>[] = [];
    for (let i = 1; i < count; i++)
      joins.push(NodeProcess.start(join(root, `n${i}`), [...args, '--bootstrap', nodes[0]!.udp]));
    nodes.push(...(await Promise.all(joins)));
  });
  after(async () => {
    for (const n of nodes) if (n.alive) n.child.kill('SIGCONT');
    await Promise.all(nodes.map((n) => n.kill()));
    rmSync(root, { recursive: true, force: true });
  });
  return nodes;
}

describe('overlay: twelve node processes on the loopback', () => {
  const nodes = overlayOf(12, 'peerbx-overlay-');

  it('stores registrations from ten nodes and fetches each from another node', async () => {
    for (const [i, user] of USERS.entries()) {
      const value = Buffer.from(`contact of ${user}`).toString('base64');
      const r = await nodes[i]!.ok<{ replicas: number }>({
        cmd: 'publish',
        kind: 1,
        resource: user,
        self: true,
        value,
      });
      assert.ok(r.replicas >= K - 1, `${user} stored on ${r.replicas} nodes`);
    }
    for (const [i, user] of USERS.entries()) {
      const f = await nodes[(i + 5) % 12]!.ok<Fetched>({ cmd: 'fetch', resource: user, kind: 1 });
      assert.equal(f.records.length, 1, user);
      assert.equal(Buffer.from(f.records[0]!.value, 'base64').toString(), `contact of ${user}`);
      assert.equal(f.records[0]!.dictionaryKey, nodes[i]!.nodeId);
    }
  });

  it("refuses another key's attempt to take over a registered name", async () => {
    // Node 11 has its own key for "user0": the name is claimed by node 0's user key.
    const r = await nodes[11]!.send({
      cmd: 'publish',
      kind: 1,
      resource: USERS[0],
      self: true,
      value: 'aGk=',
    });
    assert.equal(r.ok, false);
    assert.equal(r.code, 'ERR_FORBIDDEN');
    assert.match(r.error ?? '', /owned by another key/);
    const f = await nodes[3]!.ok<Fetched>({ cmd: 'fetch', resource: USERS[0], kind: 1 });
    assert.deepEqual(
      f.records.map((x) => x.dictionaryKey),
      [nodes[0]!.nodeId],
    );
  });

  it('brings a node killed with SIGKILL back with its identity and stored records', async () => {
    const victim = nodes[7]!;
    const before = await victim.ok<{ records: { total: number } }>({ cmd: 'stats' });
    assert.ok(before.records.total > 0, 'node 7 holds records');
    await victim.kill('SIGKILL');
    const again = await NodeProcess.start(victim.dataDir, [...ARGS, '--bootstrap', nodes[0]!.udp]);
    nodes[7] = again;
    assert.equal(again.nodeId, victim.nodeId);
    const after = await again.ok<{ records: { total: number } }>({ cmd: 'stats' });
    assert.ok(
      after.records.total >= before.records.total,
      `${after.records.total} of ${before.records.total} records back`,
    );
  });

  it('brings a node killed in its first minute back without --bootstrap, through those it joined', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'peerbx-first-minute-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    // Contacts are saved every maintenance period and once joined; killed at once, the
    // node has had no period yet.
    const first = await NodeProcess.start(dir, [...ARGS, '--bootstrap', nodes[0]!.udp]);
    await first.kill('SIGKILL');
    const again = await NodeProcess.start(dir, ARGS);
    t.after(() => again.kill());
    const stats = await again.ok<{ routingTable: { contacts: number } }>({ cmd: 'stats' });
    assert.ok(stats.routingTable.contacts > 0, 'back in the overlay, not alone');
  });

  it('loses no record when a third of the nodes die at once, and restores k replicas', async (t) => {
    // Kill the four nodes that hold most registrations, never node 0 (the bootstrap).
    const holdings = await Promise.all(
      nodes.map(async (n, i) => {
        let held = 0;
        for (const user of USERS)
          held += (await n.ok<{ count: number }>({ cmd: 'holds', resource: user, kind: 1 })).count;
        return { i, held };
      }),
    );
    const victims = holdings
      .filter((h) => h.i !== 0)
      .sort((a, b) => b.held - a.held)
      .slice(0, 4)
      .map((h) => h.i);
    await Promise.all(victims.map((i) => nodes[i]!.kill('SIGKILL')));
    const killedAt = Date.now();
    const survivors = nodes.filter((_, i) => !victims.includes(i));
    assert.equal(survivors.length, 8);

    for (const [i, user] of USERS.entries()) {
      const f: Fetched = await survivors[i % survivors.length]!.ok<Fetched>(
        { cmd: 'fetch', resource: user, kind: 1 },
        30_000,
      );
      assert.equal(f.records.length, 1, `${user} still found`);
    }
    // Replicas come back once the survivors notice the dead holders: at their next maintenance
    // check, after two unanswered PINGs to each, then a lookup and the stores (one more check
    // where a store was refused as not-responsible). Seconds on an idle machine; the bound is
    // for a loaded one, and far below the republish interval (REPUBLISH_PERIODS = 60 periods,
    // 90 s), so what this sees is the repair, not the hourly republish. Poll, and report how
    // long it took.
    const deadline = killedAt + 20 * MAINTENANCE_MS;
    let short: string[] = [];
    for (;;) {
      short = [];
      for (const user of USERS) {
        let replicas = 0;
        for (const n of survivors)
          replicas += (await n.ok<{ count: number }>({ cmd: 'holds', resource: user, kind: 1 }))
            .count;
        if (replicas < K) short.push(`${user}: ${replicas}`);
      }
      if (short.length === 0 || Date.now() > deadline) break;
      await sleep(250);
    }
    assert.deepEqual(short, [], 'records below k live replicas');
    t.diagnostic(
      `k replicas restored ${Date.now() - killedAt} ms after the kill (maintenance period ${MAINTENANCE_MS} ms)`,
    );
  });
});

/** Polls `check` every 250 ms until it holds or `ms` have passed; returns whether it held. */
async function eventually(check: () => Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await sleep(250);
  }
}

describe('overlay: five node processes, two of them stopped for a while', () => {
  // k = 5: every node holds every name, as in an office overlay.
  const nodes = overlayOf(5, 'peerbx-overlay-stop-');

  it('brings a removal made while they were stopped to them once they run again', async (t) => {
    const user = 'ivan@peerbx.local';
    const publisher = nodes[0]!;
    const held = (n: NodeProcess) =>
      n.ok<{ values: string[] }>({ cmd: 'holds', resource: user, kind: 1 }).then((r) => r.values);
    const device = Buffer.from('sip:ivan@127.0.0.1:5070').toString('base64');
    await publisher.ok({ cmd: 'publish', kind: 1, resource: user, self: true, value: device });
    const everywhere = await eventually(async () => {
      for (const n of nodes) if ((await held(n))[0] !== device) return false;
      return true;
    }, 10_000);
    assert.ok(everywhere, 'every node holds the registration');

    // The two nodes closest to the name stop (SIGSTOP: a frozen VM, a laptop lid closed); the
    // publisher finds them silent (its store, its upkeep checks) and drops them.
    const key = resourceId(user);
    const stopped = nodes
      .slice(1)
      .sort((a, b) => compareDistance(key, idFromHex(a.nodeId), idFromHex(b.nodeId)))
      .slice(0, 2);
    for (const n of stopped) n.child.kill('SIGSTOP');
    // Ivan unregisters at once: his record is removed (an empty value) on the nodes running,
    // while the publisher still lists the stopped ones (QA: it dropped them seconds later).
    await publisher.ok({ cmd: 'publish', kind: 1, resource: user, self: true, value: '' });
    const contacts = () =>
      publisher
        .ok<{ routingTable: { contacts: number } }>({ cmd: 'stats' })
        .then((s) => s.routingTable.contacts);
    assert.ok(await eventually(async () => (await contacts()) === 2, 30_000), 'dropped');
    // Stopped a while longer, as in QA's runs (10 s): the publisher's retries of the store
    // are over by then (it reached every node it lists).
    await sleep(10_000);
    for (const n of stopped) n.child.kill('SIGCONT');
    const continuedAt = Date.now();

    // Bounded well below the republish interval (60 maintenance periods): what this sees is
    // the hand-over to nodes that are back, not the hourly republish.
    const reached = await eventually(async () => {
      for (const n of stopped) if ((await held(n))[0] !== '') return false;
      return true;
    }, 10 * MAINTENANCE_MS);
    assert.ok(reached, 'the stopped nodes hold the removal');
    // By hand-overs (no fetch ran yet to repair them), counted in the nodes' stats.
    let handOvers = 0;
    for (const n of nodes) {
      const s = await n.ok<{ messages: { handOvers: number } }>({ cmd: 'stats' });
      handOvers += s.messages.handOvers;
    }
    assert.ok(handOvers >= stopped.length, `${handOvers} hand-overs`);
    for (const n of nodes) {
      const f = await n.ok<Fetched>({ cmd: 'fetch', resource: user, kind: 1 });
      assert.deepEqual(f.records, [], 'ivan is found nowhere');
    }
    t.diagnostic(`the removal reached both ${Date.now() - continuedAt} ms after SIGCONT`);
  });
});

describe('overlay: a node stopped long enough for its peers to drop it', () => {
  // Upkeep once a minute, as by default: a node running again would send its peers nothing
  // before its next one, and they would dial it as "not in the overlay" until then.
  const nodes = overlayOf(3, 'peerbx-overlay-stall-', [
    '--k',
    '3',
    '--maintenance',
    '60000',
    '--puzzle',
    '4',
  ]);
  const contacts = (n: NodeProcess) =>
    n
      .ok<{ routingTable: { contacts: number } }>({ cmd: 'stats' })
      .then((s) => s.routingTable.contacts);

  it('tells them it is back as soon as it runs again', async () => {
    const [a, b, stopped] = nodes as [NodeProcess, NodeProcess, NodeProcess];
    assert.equal(await contacts(a), 2);
    stopped.child.kill('SIGSTOP');
    const stoppedAt = Date.now();
    // The others find it silent (PINGs unanswered) and drop it.
    const dropped = await eventually(async () => {
      await Promise.all([a, b].map((n) => n.send({ cmd: 'ping', node: stopped.nodeId })));
      return (await contacts(a)) === 1 && (await contacts(b)) === 1;
    }, 30_000);
    assert.ok(dropped, 'dropped by the others');
    // Stopped long enough to see, once it runs, that it had not (STALL_MS, 5 s).
    await sleep(Math.max(0, stoppedAt + 7000 - Date.now()));
    stopped.child.kill('SIGCONT');
    const listed = await eventually(
      async () => (await contacts(a)) === 2 && (await contacts(b)) === 2,
      5000,
    );
    assert.ok(listed, 'listed by the others again within 5 s of running again');
  });
});
