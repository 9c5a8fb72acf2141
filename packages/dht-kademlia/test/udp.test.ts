// UdpTransport over real sockets on the loopback: KademliaNodes talking to each other, hostile
// datagrams, retransmission through a lossy relay, timeouts, duplicates and reply matching.

import assert from 'node:assert/strict';
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { after, before, describe, it } from 'node:test';
import {
  DhtError,
  decodeMessage,
  encodeMessage,
  encodeRequest,
  encodeResponse,
  hashToId,
  idEquals,
  KademliaNode,
  type Request,
  type Response,
  SeededRandom,
  TimeoutError,
  UdpTransport,
} from '../src/index.js';

const HOST = '127.0.0.1';

/** Polls until check() holds; fails the test instead of hanging. */
async function waitFor(check: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

interface Datagram {
  data: Buffer;
  rinfo: RemoteInfo;
}

/** A plain socket for speaking raw bytes to a transport. */
class RawSocket {
  readonly received: Datagram[] = [];
  private waiters: (() => void)[] = [];
  private constructor(readonly socket: Socket) {
    socket.on('message', (data, rinfo) => {
      this.received.push({ data, rinfo });
      for (const w of this.waiters.splice(0)) w();
    });
  }

  static async open(host = HOST): Promise<RawSocket> {
    const socket = createSocket(host.includes(':') ? 'udp6' : 'udp4');
    await new Promise<void>((resolve) => socket.bind(0, host, resolve));
    return new RawSocket(socket);
  }

  get address(): string {
    const a = this.socket.address();
    return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
  }

  send(bytes: Uint8Array, to: string): void {
    const i = to.lastIndexOf(':');
    const host = to.slice(0, i).replace(/^\[|\]$/g, '');
    this.socket.send(bytes, Number(to.slice(i + 1)), host);
  }

  /** The n-th datagram received (0-based), waiting for it if need be. */
  async nth(n: number, timeoutMs = 2000): Promise<Datagram> {
    return this.find((_, i) => i === n, timeoutMs);
  }

  /** The first datagram received that matches, waiting for it if need be. */
  async find(match: (d: Datagram, index: number) => boolean, timeoutMs = 2000): Promise<Datagram> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.received.find(match);
      if (hit) return hit;
      const left = until - Date.now();
      if (left <= 0) throw new Error(`no matching datagram within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** The reply to a transaction, waiting for it if need be. */
  async replyTo(txid: number, timeoutMs = 2000): Promise<Datagram> {
    return this.find((d) => {
      try {
        return decodeMessage(d.data).txid === txid;
      } catch {
        return false;
      }
    }, timeoutMs);
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.socket.close(() => resolve()));
  }
}

async function udpNode(name: string, k = 20): Promise<{ node: KademliaNode; udp: UdpTransport }> {
  const id = hashToId(name);
  const udp = await UdpTransport.bind({ host: HOST, port: 0, id });
  const node = new KademliaNode({ id, transport: udp, k, requestTimeoutMs: 1000 });
  return { node, udp };
}

const ping = (sender: Uint8Array): Request => ({ sender, body: { type: 'PING' } });

describe('UdpTransport: KademliaNodes on the loopback', () => {
  const nodes: { node: KademliaNode; udp: UdpTransport }[] = [];
  let raw: RawSocket;

  before(async () => {
    // k = 2 of 3 nodes: at least one node holds no copy and must fetch over UDP.
    for (const name of ['udp-a', 'udp-b', 'udp-c']) nodes.push(await udpNode(name, 2));
    raw = await RawSocket.open();
  });

  after(async () => {
    await raw.close();
    for (const { node, udp } of nodes) {
      await node.stop();
      await udp.close();
    }
  });

  it('binds a real port and reports it', () => {
    for (const { udp } of nodes) assert.match(udp.address, /^127\.0\.0\.1:[1-9]\d*$/);
    assert.equal(new Set(nodes.map((n) => n.udp.address)).size, 3);
  });

  it('bootstraps, pings, puts and gets', async () => {
    const [a, b, c] = nodes.map((n) => n.node) as [KademliaNode, KademliaNode, KademliaNode];
    a.start();
    assert.equal(await b.bootstrap([a.contact.address]), 1);
    assert.ok((await c.bootstrap([a.contact.address])) >= 1);
    assert.ok(idEquals((await c.pingAddress(b.contact.address)).id, b.id));
    assert.equal(await a.ping(c.contact), true);

    const key = hashToId('udp-key');
    const value = new TextEncoder().encode('sip:alice@192.0.2.1');
    const put = await b.put(key, value, 60_000);
    assert.equal(put.stored.length, 2);
    for (const n of [a, b, c]) {
      const got = await n.get(key);
      assert.ok(got.values.length >= 1);
      assert.deepStrictEqual(got.values[0]!.value, value);
    }
    const fetchedRemotely = nodes.some(({ node }) => node.stats.requestsIn.FIND_VALUE > 0);
    assert.ok(fetchedRemotely, 'some get went over the wire');
    for (const { udp } of nodes) {
      assert.equal(udp.stats.malformed, 0);
      assert.ok(udp.stats.datagramsIn > 0 && udp.stats.datagramsOut > 0);
    }
  });

  it('lists a node at its new address once it answers there, not on its request alone', async () => {
    const a = nodes[0]!.node;
    const first = await udpNode('udp-mover');
    first.node.start();
    assert.equal(await first.node.ping(a.contact), true);
    assert.equal(a.table.get(first.node.id)?.address, first.udp.address);
    await first.node.stop();
    await first.udp.close();
    // The same node-ID at another port (a restart, a NAT's new mapping): its request moves
    // it once it answered a PING at the new port (a forged source would not answer).
    const moved = await udpNode('udp-mover');
    moved.node.start();
    try {
      assert.equal(await moved.node.ping(a.contact), true);
      await waitFor(
        () => a.table.get(moved.node.id)?.address === moved.udp.address,
        'the node listed at its new address',
      );
    } finally {
      await moved.node.stop();
      await moved.udp.close();
    }
  });

  it('drops and counts garbage, then still answers a PING and a lookup', async () => {
    const target = nodes[0]!;
    const random = new SeededRandom(7);
    const valid = encodeRequest(4242, {
      sender: hashToId('raw'),
      body: { type: 'FIND_NODE', target: target.node.id },
    });
    const garbage: Uint8Array[] = [];
    for (let i = 0; i < 20; i++) garbage.push(random.bytes(1 + Math.floor(random.next() * 200)));
    for (const cut of [1, 2, 8, 9, 40, 41, 72]) garbage.push(valid.subarray(0, cut));
    const oversized = new Uint8Array(1500);
    oversized.set(valid);
    garbage.push(
      oversized,
      random.bytes(4000),
      new TextEncoder().encode('OPTIONS sip:x SIP/2.0\r\n\r\n'),
    );

    const before = { ...target.udp.stats };
    for (const g of garbage) raw.send(g, target.udp.address);
    await waitFor(
      () => target.udp.stats.datagramsIn >= before.datagramsIn + garbage.length,
      'the garbage to arrive',
    );
    assert.equal(target.udp.stats.malformed - before.malformed, garbage.length);

    const other = nodes[1]!.node;
    assert.equal(await other.ping(target.node.contact), true);
    const found = await other.findNode(hashToId('anything'));
    assert.ok(found.closest.some((c) => idEquals(c.id, target.node.id)));
    // A valid request from the same socket still gets its answer.
    raw.send(valid, target.udp.address);
    const reply = decodeMessage((await raw.replyTo(4242)).data);
    assert.ok(reply.kind === 'response' && reply.response.body.type === 'NODES');
  });

  it('answers a request of another version with an ERROR naming its own', async () => {
    const target = nodes[0]!;
    const bytes = encodeRequest(0xcafe, ping(hashToId('future')));
    bytes[1] = 9;
    raw.send(bytes, target.udp.address);
    const reply = decodeMessage((await raw.replyTo(0xcafe)).data);
    assert.ok(reply.kind === 'response');
    assert.equal(reply.txid, 0xcafe);
    assert.ok(idEquals(reply.response.sender, target.node.id));
    const body = reply.response.body;
    assert.ok(body.type === 'ERROR');
    assert.equal(body.code, 505);
    assert.match(body.message, /version 9.*version 1/);
  });
});

describe('UdpTransport: requests and replies', () => {
  const open: { close(): Promise<void> }[] = [];
  const bind = async (host = HOST) => {
    const t = await UdpTransport.bind({ host, port: 0, id: hashToId(`t${open.length}`) });
    open.push(t);
    return t;
  };
  const rawSocket = async (host = HOST) => {
    const r = await RawSocket.open(host);
    open.push(r);
    return r;
  };

  after(async () => {
    for (const o of open) await o.close();
  });

  it('answers duplicate requests from the reply cache without calling the handler again', async () => {
    const server = await bind();
    let calls = 0;
    server.listen(() => {
      calls++;
      return { sender: hashToId('server'), body: { type: 'PONG' } };
    });
    const raw = await rawSocket();
    const bytes = encodeRequest(77, ping(hashToId('client')));
    raw.send(bytes, server.address);
    await raw.nth(0);
    raw.send(bytes, server.address);
    const second = await raw.nth(1);
    assert.equal(calls, 1);
    assert.equal(server.stats.duplicates, 1);
    assert.deepStrictEqual(second.data, raw.received[0]!.data);
    // Another txid from the same source is a new request.
    raw.send(encodeRequest(78, ping(hashToId('client'))), server.address);
    await raw.nth(2);
    assert.equal(calls, 2);
  });

  it('accepts a reply only from the address the request went to', async () => {
    const client = await bind();
    const peer = await rawSocket();
    const impostor = await rawSocket();
    const pending = client.request(
      { id: hashToId('peer'), address: peer.address },
      ping(hashToId('c')),
      2000,
    );
    const got = decodeMessage((await peer.nth(0)).data);
    assert.ok(got.kind === 'request');
    const pong: Response = { sender: hashToId('peer'), body: { type: 'PONG' } };
    impostor.send(encodeResponse(got.txid, pong), client.address);
    await waitFor(() => client.stats.unmatched === 1, 'the forged reply');
    peer.send(encodeResponse((got.txid ^ 1) >>> 0, pong), client.address);
    await waitFor(() => client.stats.unmatched === 2, 'the wrong-txid reply');
    peer.send(encodeResponse(got.txid, pong), client.address);
    const res = await pending;
    assert.ok(idEquals(res.sender, hashToId('peer')));
  });

  it('retransmits through a relay that drops the first datagram', async () => {
    const server = await bind();
    server.listen(() => ({ sender: hashToId('server'), body: { type: 'PONG' } }));
    const client = await bind();
    const relay = await rawSocket();
    let seen = 0;
    let clientAddr: RemoteInfo | undefined;
    relay.socket.on('message', (data, rinfo) => {
      const from = `${rinfo.address}:${rinfo.port}`;
      if (from === server.address) {
        if (clientAddr) relay.socket.send(data, clientAddr.port, clientAddr.address);
        return;
      }
      clientAddr = rinfo;
      if (seen++ === 0) return; // the lost datagram
      relay.send(data, server.address);
    });
    const started = Date.now();
    const res = await client.request(
      { id: hashToId('server'), address: relay.address },
      ping(hashToId('client')),
      3000,
    );
    assert.equal(res.body.type, 'PONG');
    assert.ok(client.stats.retransmissions >= 1);
    assert.ok(Date.now() - started >= 200, 'the reply came after a retransmission');
    assert.equal(client.stats.timeouts, 0);
  });

  it('rejects with TimeoutError at timeoutMs when nobody answers', async () => {
    const dead = await RawSocket.open();
    const deadAddress = dead.address;
    await dead.close();
    const client = await bind();
    const started = Date.now();
    await assert.rejects(
      client.request({ id: hashToId('dead'), address: deadAddress }, ping(hashToId('c')), 700),
      TimeoutError,
    );
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 650 && elapsed < 1500, `took ${elapsed} ms`);
    assert.equal(client.stats.timeouts, 1);
    // Sent at 0 and 250 ms; the next would be at 750, past the deadline.
    assert.equal(client.stats.retransmissions, 1);
    assert.equal(client.stats.datagramsOut, 2);
  });

  it('rejects what it cannot send, and pending requests on close', async () => {
    const client = await UdpTransport.bind({ host: HOST, port: 0 });
    await assert.rejects(
      client.request({ id: hashToId('x'), address: 'n42' }, ping(hashToId('c')), 100),
      DhtError,
    );
    await assert.rejects(
      client.request({ id: hashToId('x'), address: '[::1]:9' }, ping(hashToId('c')), 100),
      DhtError,
    );
    const tooBig: Request = {
      sender: hashToId('c'),
      body: { type: 'STORE', key: hashToId('k'), value: new Uint8Array(2000), ttlMs: 1 },
    };
    await assert.rejects(
      client.request({ id: hashToId('x'), address: '127.0.0.1:9' }, tooBig, 100),
      (err: unknown) => err instanceof DhtError && err.code === 'ERR_TOO_LARGE',
    );
    const silent = await rawSocket();
    const pending = client.request(
      { id: hashToId('x'), address: silent.address },
      ping(hashToId('c')),
      10_000,
    );
    await silent.nth(0);
    await client.close();
    await assert.rejects(
      pending,
      (err: unknown) => err instanceof DhtError && err.code === 'ERR_STOPPED',
    );
    await assert.rejects(
      client.request({ id: hashToId('x'), address: silent.address }, ping(hashToId('c')), 100),
      (err: unknown) => err instanceof DhtError && err.code === 'ERR_STOPPED',
    );
  });

  it('a handler that throws yields an ERROR reply, not a crash', async () => {
    const server = await bind();
    server.listen(() => {
      throw new Error('boom');
    });
    const client = await bind();
    const res = await client.request(
      { id: hashToId('s'), address: server.address },
      ping(hashToId('c')),
      2000,
    );
    assert.ok(res.body.type === 'ERROR' && res.body.code === 500);
  });

  it('works over IPv6', async (t) => {
    let server: UdpTransport;
    try {
      server = await bind('::1');
    } catch {
      t.skip('no IPv6 loopback on this machine');
      return;
    }
    assert.match(server.address, /^\[::1\]:\d+$/);
    server.listen((_req, from) => ({
      sender: hashToId('v6'),
      body: { type: 'NODES', contacts: [{ id: hashToId('peer'), address: from }] },
    }));
    const client = await bind('::1');
    const res = await client.request(
      { id: hashToId('v6'), address: server.address },
      ping(hashToId('c')),
      2000,
    );
    assert.ok(res.body.type === 'NODES');
    assert.deepStrictEqual(res.body.contacts[0]!.address, client.address);
    const largest = encodeMessage({ kind: 'response', txid: 1, response: res });
    assert.ok(largest.length < 1200);
  });
});

describe('UdpTransport: values that span several datagrams', () => {
  it('pages through a holder whose values do not fit one reply', async () => {
    const slotOf = (_k: Uint8Array, v: Uint8Array) => Buffer.from(v.subarray(0, 2)).toString('hex');
    const mk = async (name: string) => {
      const id = hashToId(name);
      const udp = await UdpTransport.bind({ host: HOST, port: 0, id });
      const node = new KademliaNode({ id, transport: udp, k: 2, store: { slotOf } });
      return node;
    };
    const holder = await mk('page-holder');
    const asker = await mk('page-asker');
    try {
      holder.start();
      await asker.bootstrap([holder.contact.address]);
      const key = hashToId('many-devices');
      // 12 values of 400 bytes: about 3 fit one datagram.
      for (let i = 0; i < 12; i++) {
        const v = new Uint8Array(400).fill(i);
        v[0] = i;
        v[1] = 0xaa;
        assert.equal(holder.store.put(key, v, Date.now() + 60_000, Date.now()).ok, true);
      }
      const got = await asker.get(key);
      assert.equal(got.values.length, 12);
      assert.deepEqual(
        got.values.map((v) => v.value[0]).sort((a, b) => (a ?? 0) - (b ?? 0)),
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
      );
    } finally {
      await holder.stop();
      await asker.stop();
    }
  });
});

describe('UdpTransport: several values for one key', () => {
  it('putMany stores two values on a peer with one STORE, or one each when they do not fit', async () => {
    const slotOf = (_k: Uint8Array, v: Uint8Array) => Buffer.from(v.subarray(0, 1)).toString('hex');
    const mk = async (name: string) => {
      const id = hashToId(name);
      const udp = await UdpTransport.bind({ host: HOST, port: 0, id });
      return new KademliaNode({
        id,
        transport: udp,
        k: 2,
        requestTimeoutMs: 1000,
        store: { slotOf },
      });
    };
    const holder = await mk('many-holder');
    const putter = await mk('many-putter');
    try {
      holder.start();
      await putter.bootstrap([holder.contact.address]);
      const value = (slot: number, length: number) => new Uint8Array(length).fill(slot);
      const storedOn = (key: Uint8Array) =>
        holder.store
          .get(key, Date.now())
          .map((v) => v.value[0])
          .sort();

      const key = hashToId('two-values');
      const before = holder.stats.requestsIn.STORE;
      const results = await putter.putMany(key, [
        { value: value(1, 20), ttlMs: 60_000 },
        { value: value(2, 30), ttlMs: 30_000 },
      ]);
      assert.equal(holder.stats.requestsIn.STORE - before, 1, 'one STORE for both values');
      assert.deepEqual(storedOn(key), [1, 2]);
      for (const r of results) assert.ok(r.stored.some((c) => idEquals(c.id, holder.id)));

      // 2 × 600 bytes cannot share a datagram: one STORE each.
      const big = hashToId('two-big-values');
      const beforeBig = holder.stats.requestsIn.STORE;
      const bigResults = await putter.putMany(big, [
        { value: value(3, 600), ttlMs: 60_000 },
        { value: value(4, 600), ttlMs: 60_000 },
      ]);
      assert.equal(holder.stats.requestsIn.STORE - beforeBig, 2, 'one STORE per value');
      assert.deepEqual(storedOn(big), [3, 4]);
      for (const r of bigResults) assert.ok(r.stored.some((c) => idEquals(c.id, holder.id)));
    } finally {
      await holder.stop();
      await putter.stop();
    }
  });
});
