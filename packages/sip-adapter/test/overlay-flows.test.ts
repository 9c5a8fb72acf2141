// SIP flows over overlay channels: a node whose dial timed out is not dialled again for a
// while (calls to it fail at once), one that refused at once is, a channel it opens ends that
// wait, as does the overlay hearing from it (once per wait), and a closed channel is reported
// so that what awaits an answer on it ends.

import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import { idFromHex, type NodeId } from '@peerbx/dht-kademlia';
import { type Channel, OverlayError } from '@peerbx/overlay-core';
import {
  NOT_FOUND_MEMORY_MS,
  OverlayFlows,
  UNREACHABLE_MEMORY_MS,
} from '../src/node/overlay-flows.js';

const NODE = 'ab'.repeat(32);

/** Just what OverlayFlows uses of a channel. */
function fakeChannel(nodeHex: string): Channel & EventEmitter {
  const ch = new EventEmitter() as Channel & EventEmitter;
  Object.assign(ch, {
    remoteNodeId: idFromHex(nodeHex),
    send: () => true,
    probe: () => undefined,
    close: () => ch.emit('close'),
  });
  return ch;
}

function setup(
  dialMs = 5000,
  failure = 'handshake timed out',
  code: 'ERR_UNREACHABLE' | 'ERR_NOT_FOUND' = 'ERR_UNREACHABLE',
) {
  let now = 1_000_000;
  const dials: NodeId[] = [];
  let reachable = false;
  /** When the overlay last heard from the node (OverlayNode.heardWithin), if it did. */
  let heardAt: number | undefined;
  const closed: string[] = [];
  const flows = new OverlayFlows({
    connect: async (id) => {
      dials.push(id);
      if (!reachable) {
        // A dead host: the dial fails after its timeout; a refusing one at once.
        now += dialMs;
        throw new OverlayError(code, failure);
      }
      return fakeChannel(NODE);
    },
    heardWithin: (_id, ms) => heardAt !== undefined && now - heardAt <= ms,
    onMessage: () => undefined,
    onClosed: (id) => closed.push(id),
    now: () => now,
  });
  return {
    flows,
    dials,
    closed,
    advance: (ms: number) => {
      now += ms;
    },
    time: () => now,
    setReachable: (r: boolean) => {
      reachable = r;
    },
    hear: () => {
      heardAt = now;
    },
  };
}

describe('overlay flows', () => {
  it('does not dial a node it could not reach again for a while', async () => {
    const t = setup();
    await assert.rejects(Promise.resolve(t.flows.toNode(NODE)), /handshake timed out/);
    assert.equal(t.dials.length, 1);
    // A second call at once fails without a dial (a dead host would cost another timeout).
    await assert.rejects(
      Promise.resolve(t.flows.toNode(NODE)),
      (e: unknown) => e instanceof OverlayError && /could not be reached 0 s ago/.test(e.message),
    );
    assert.equal(t.dials.length, 1);
    // Once the memory lapses it is dialled again.
    t.advance(UNREACHABLE_MEMORY_MS);
    t.setReachable(true);
    const id = await t.flows.toNode(NODE);
    assert.equal(t.dials.length, 2);
    assert.ok(t.flows.has(id));
  });

  for (const [what, dialMs, failure, code] of [
    ['failed at once', 0, 'handshake timed out', 'ERR_UNREACHABLE'],
    [
      'refused after a slow lookup',
      3000,
      'cannot reach node ab at 10.0.0.7:7000: ECONNREFUSED',
      'ERR_UNREACHABLE',
    ],
  ] as const) {
    it(`dials again at once a node whose dial ${what} (restarting)`, async () => {
      const t = setup(dialMs, failure, code);
      await assert.rejects(Promise.resolve(t.flows.toNode(NODE)));
      t.setReachable(true);
      await t.flows.toNode(NODE);
      assert.equal(t.dials.length, 2);
    });
  }

  it('dials a node a slow lookup did not find again after a few seconds only (crashed, coming back)', async () => {
    const t = setup(1600, 'node ab is not in the overlay', 'ERR_NOT_FOUND');
    await assert.rejects(Promise.resolve(t.flows.toNode(NODE)), /not in the overlay/);
    await assert.rejects(Promise.resolve(t.flows.toNode(NODE)), /could not be reached/);
    assert.equal(t.dials.length, 1);
    t.advance(NOT_FOUND_MEMORY_MS);
    t.setReachable(true);
    await t.flows.toNode(NODE);
    assert.equal(t.dials.length, 2);
  });

  it('dials at once a node remembered unreachable that wrote a record since (back after a power cut)', async () => {
    const t = setup();
    await assert.rejects(Promise.resolve(t.flows.toNode(NODE)));
    const failedAt = t.time();
    // A record it wrote before the dial failed (or within the clock-skew margin) says nothing.
    t.flows.heardOf(NODE, failedAt - 10_000);
    t.flows.heardOf(NODE, failedAt + 500);
    await assert.rejects(Promise.resolve(t.flows.toNode(NODE)), /could not be reached/);
    assert.equal(t.dials.length, 1);
    // One it wrote after: it is up.
    t.advance(4_000);
    t.flows.heardOf(NODE, t.time() - 1_000);
    t.setReachable(true);
    await t.flows.toNode(NODE);
    assert.equal(t.dials.length, 2);
  });

  it('dials at once a node remembered unreachable that the overlay heard from since (back from a stall)', async () => {
    const t = setup();
    t.hear(); // before the dial failed: says nothing
    await assert.rejects(Promise.resolve(t.flows.toNode(NODE)));
    t.advance(2_000);
    await assert.rejects(Promise.resolve(t.flows.toNode(NODE)), /could not be reached/);
    assert.equal(t.dials.length, 1);
    t.hear();
    t.setReachable(true);
    await t.flows.toNode(NODE);
    assert.equal(t.dials.length, 2);
  });

  it('dials a node the overlay hears from but cannot reach once more per memory only (a firewall)', async () => {
    const t = setup();
    await assert.rejects(Promise.resolve(t.flows.toNode(NODE)));
    t.advance(1_000);
    t.hear();
    await assert.rejects(Promise.resolve(t.flows.toNode(NODE)), /handshake timed out/);
    assert.equal(t.dials.length, 2);
    // Heard from again and again: calls fail at once for the rest of the memory.
    t.advance(1_000);
    t.hear();
    await assert.rejects(Promise.resolve(t.flows.toNode(NODE)), /could not be reached/);
    assert.equal(t.dials.length, 2);
    t.advance(UNREACHABLE_MEMORY_MS);
    t.setReachable(true);
    await t.flows.toNode(NODE);
    assert.equal(t.dials.length, 3);
  });

  it("judges a node's records by its own clock once one was seen before its dial failed", async () => {
    const t = setup();
    // Its clock runs a minute fast: the record it wrote before dying looks newer than anything.
    const fast = t.time() + 60_000;
    t.flows.heardOf(NODE, fast);
    await assert.rejects(Promise.resolve(t.flows.toNode(NODE)));
    t.flows.heardOf(NODE, fast);
    await assert.rejects(Promise.resolve(t.flows.toNode(NODE)), /could not be reached/);
    assert.equal(t.dials.length, 1, 'the same old record: still unreachable');
    t.flows.heardOf(NODE, fast + 2_000);
    t.setReachable(true);
    await t.flows.toNode(NODE);
    assert.equal(t.dials.length, 2, 'a newer record: dialled');
  });

  it('takes a channel the unreachable node opens to us, and dials it again after', async () => {
    const t = setup();
    await assert.rejects(Promise.resolve(t.flows.toNode(NODE)));
    const ch = fakeChannel(NODE);
    const id = t.flows.adopt(ch);
    assert.equal(t.flows.toNode(NODE), id);
    ch.close();
    assert.deepEqual(t.closed, [id]);
    assert.equal(t.flows.has(id), false);
    t.setReachable(true);
    await t.flows.toNode(NODE);
    assert.equal(t.dials.length, 2);
  });
});
