// OverlayNodes in one process over real sockets on 127.0.0.1: forged, replayed and foreign
// datagrams are refused and counted, a node of another overlay gets a clear error, channels
// connect through the overlay, the data directory is locked, and a graceful leave hands over.

import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { idToHex, type Request } from '@peerbx/dht-kademlia';
import {
  configHash,
  defaultOverlayConfig,
  type OverlayConfig,
} from '../src/config/overlay-config.js';
import { KIND_SIP_REGISTRATION } from '../src/constants.js';
import { OverlayError } from '../src/errors.js';
import { generateNodeKeyPair, nodeIdOf } from '../src/identity/keys.js';
import { OverlayNode } from '../src/overlay.js';
import { resourceId } from '../src/storage/record.js';
import { SignedDatagramCodec } from '../src/transport/signed-codec.js';

const config = (over: Partial<OverlayConfig> = {}) =>
  defaultOverlayConfig({
    puzzleBits: 4,
    dht: { k: 3, alpha: 3, disjointPaths: 1, maintenanceIntervalMs: 60_000 },
    ...over,
  });

function sendRaw(bytes: Uint8Array, to: string): Promise<void> {
  const sock = createSocket('udp4');
  const i = to.lastIndexOf(':');
  return new Promise((resolve) => {
    sock.send(bytes, Number(to.slice(i + 1)), to.slice(0, i), () => {
      sock.close();
      resolve();
    });
  });
}

async function until(check: () => boolean, what: string, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('overlay node over real sockets', () => {
  const root = mkdtempSync(join(tmpdir(), 'peerbx-node-'));
  const nodes: OverlayNode[] = [];

  before(async () => {
    nodes.push(await OverlayNode.start({ dataDir: join(root, 'a'), config: config() }));
    for (const name of ['b', 'c', 'd']) {
      nodes.push(
        await OverlayNode.start({
          dataDir: join(root, name),
          config: config(),
          bootstrap: [nodes[0]!.udpAddress],
        }),
      );
    }
  });

  after(async () => {
    for (const n of nodes) await n.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('joins and stores NODE-INFO for every node', async () => {
    for (const n of nodes)
      assert.ok(n.dht.table.size >= 2, `${idToHex(n.nodeId)} knows ${n.dht.table.size}`);
    const addr = await nodes[3]!.resolveStreamAddress(nodes[0]!.nodeId);
    assert.equal(addr, nodes[0]!.streamAddress);
  });

  it('refuses a second node on the same data directory', async () => {
    await assert.rejects(
      OverlayNode.start({ dataDir: join(root, 'a'), config: config() }),
      (e: unknown) =>
        e instanceof OverlayError && e.code === 'ERR_DATA_DIR_LOCKED' && /in use/.test(e.message),
    );
  });

  it('publishes, fetches and verifies a registration', async () => {
    const [a, , c] = nodes as [OverlayNode, OverlayNode, OverlayNode];
    const value = new TextEncoder().encode('sip:alice@127.0.0.1:5070');
    const r = await a.publish({
      kind: KIND_SIP_REGISTRATION,
      resource: 'alice@peerbx.local',
      dictionaryKey: a.nodeId,
      value,
      lifetimeMs: 60_000,
    });
    assert.ok(r.replicas >= 2);
    const got = await c.fetch('alice@peerbx.local', KIND_SIP_REGISTRATION);
    assert.equal(got.length, 1);
    assert.deepEqual(got[0]!.value, value);
    assert.equal(got[0]!.user?.name, 'alice');
  });

  it('refuses forged and replayed datagrams and counts them', async () => {
    const target = nodes[1]!;
    const keys = generateNodeKeyPair(4);
    const codec = new SignedDatagramCodec({
      keys,
      configHash: configHash(config()),
      overlayName: 'peerbx',
      puzzleBits: 4,
      retransmitWindowMs: 10_000,
    });
    const req: Request = { sender: nodeIdOf(keys.publicKey), body: { type: 'PING' } };
    const good = codec.encodeRequest(42, req);
    const before = target.stats().rejections.byReason;

    const forged = new Uint8Array(good);
    forged[20] = (forged[20] as number) ^ 0xff;
    await sendRaw(forged, target.udpAddress);
    await until(
      () => target.stats().rejections.byReason.signature === (before.signature ?? 0) + 1,
      'the forgery to be counted',
    );

    // The replay: the same signed request again after the retransmission window. The window
    // is 10 s in the node, so shift the copy's life instead: a fresh node's codec has not seen
    // it; ours has, so feed it twice through the target's own codec clock.
    target.codec.decode(good, 'x');
    const realNow = Date.now;
    Date.now = () => realNow() + 11_000;
    try {
      assert.throws(() => target.codec.decode(good, 'x'), /replayed/);
    } finally {
      Date.now = realNow;
    }
    assert.equal(target.stats().rejections.byReason.replay, (before.replay ?? 0) + 1);

    await sendRaw(new Uint8Array([1, 2, 3, 4, 5]), target.udpAddress);
    await until(() => target.stats().rejections.malformed >= 1, 'garbage to be counted');
    assert.equal(await nodes[0]!.dht.ping(target.contact), true, 'the node still answers');
  });

  it('tells a node of another overlay why it cannot join', async () => {
    await assert.rejects(
      OverlayNode.start({
        dataDir: join(root, 'stranger'),
        config: config({ name: 'other-office' }),
        bootstrap: [nodes[0]!.udpAddress],
      }),
      (e: unknown) =>
        e instanceof OverlayError &&
        e.code === 'ERR_UNREACHABLE' &&
        /configuration mismatch/.test(e.message),
    );
  });

  it('connects a channel to a node found through the overlay', async () => {
    const [a, , , d] = nodes as [OverlayNode, OverlayNode, OverlayNode, OverlayNode];
    const received: string[] = [];
    d.links.handle('echo', (channel) => {
      channel.on('message', (bytes: Uint8Array) => {
        received.push(Buffer.from(bytes).toString());
        channel.send(bytes);
      });
    });
    const ch = await a.connect(d.nodeId, 'echo');
    const echoed: string[] = [];
    ch.on('message', (bytes: Uint8Array) => echoed.push(Buffer.from(bytes).toString()));
    for (let i = 0; i < 20; i++) ch.send(new TextEncoder().encode(`INVITE ${i}`));
    await until(() => echoed.length === 20, 'the echoes');
    assert.deepEqual(
      echoed,
      Array.from({ length: 20 }, (_, i) => `INVITE ${i}`),
    );
    assert.equal(received.length, 20);
  });

  it('hands held records over on a graceful leave', async () => {
    const key = resourceId('alice@peerbx.local');
    const holds = (n: OverlayNode) =>
      n.store.entries(key, Date.now()).some((e) => e.slot.startsWith('1:'));
    // k = 3 of 4 nodes: make the leaver a holder, so the fourth node must receive the record.
    const leaving = nodes.find(holds)!;
    nodes.splice(nodes.indexOf(leaving), 1);
    await leaving.leave();
    assert.deepEqual(nodes.map(holds), [true, true, true]);
    const got = await nodes[1]!.fetch('alice@peerbx.local', KIND_SIP_REGISTRATION);
    assert.equal(got.length, 1);
  });
});
