// Links over real TCP sockets on 127.0.0.1: handshake checks, channel multiplexing, reuse and
// re-dial, and hostile peers (garbage, stalled or replayed handshakes) that must cost only
// their own connection.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect as netConnect, Socket } from 'node:net';
import { networkInterfaces } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { idToHex, type NodeId } from '@peerbx/dht-kademlia';
import { configHash, defaultOverlayConfig } from '../src/config/overlay-config.js';
import { OverlayError } from '../src/errors.js';
import {
  generateKeyPair,
  generateNodeKeyPair,
  type KeyPair,
  meetsPuzzle,
  nodeIdOf,
  sign,
} from '../src/identity/keys.js';
import {
  decodeFrame,
  encodeFrame,
  encodeFrameBody,
  type Frame,
  FrameDecoder,
  type Hello,
  MAX_FRAME_BYTES,
  MAX_MESSAGE_BYTES,
} from '../src/links/framing.js';
import {
  deriveFrameCipher,
  type EphemeralKey,
  FrameCipher,
  handshakeTranscript,
  LINK_PROTOCOL_VERSION,
  newEphemeralKey,
  newNonce,
  SEAL_OVERHEAD_BYTES,
} from '../src/links/handshake.js';
import type { Channel, Link } from '../src/links/link.js';
import { LinkManager, type LinkManagerOptions } from '../src/links/link-manager.js';

const PUZZLE = 4;
const CONFIG_HASH = configHash(defaultOverlayConfig());
const WAIT_MS = 3000;

function withTimeout<T>(promise: Promise<T>, what: string, ms = WAIT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function waitFor<T extends unknown[]>(
  emitter: NodeJS.EventEmitter,
  event: string,
  ms = WAIT_MS,
): Promise<T> {
  return withTimeout(once(emitter, event) as Promise<T>, `"${event}"`, ms);
}

async function eventually(check: () => boolean, what: string, ms = WAIT_MS): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const managers: LinkManager[] = [];
const sockets: Socket[] = [];

async function startManager(
  overrides: Partial<LinkManagerOptions> = {},
  host = '127.0.0.1',
): Promise<LinkManager> {
  const manager = new LinkManager({
    keys: generateNodeKeyPair(PUZZLE),
    configHash: CONFIG_HASH,
    puzzleBits: PUZZLE,
    role: 'peer',
    overlayName: 'peerbx',
    ...overrides,
  });
  managers.push(manager);
  await manager.listen({ host, port: 0 });
  return manager;
}

/** An IPv4 address of this machine other than loopback, if it has one. */
function lanAddress(): string | undefined {
  return Object.values(networkInterfaces())
    .flat()
    .find((i) => i && i.family === 'IPv4' && !i.internal)?.address;
}

function echoHandler(channel: Channel): void {
  channel.on('message', (data) => channel.send(data));
}

/** Collects a channel's messages until `count` have arrived. */
function collect(channel: Channel, count: number): Promise<Uint8Array[]> {
  const got: Uint8Array[] = [];
  return withTimeout(
    new Promise((resolve) => {
      channel.on('message', (data) => {
        got.push(new Uint8Array(data));
        if (got.length === count) resolve(got);
      });
    }),
    `${count} messages`,
  );
}

async function expectReject(
  promise: Promise<unknown>,
  code: string,
  message?: RegExp,
): Promise<OverlayError> {
  const err = await withTimeout(
    promise.then(
      () => {
        throw new Error(`expected a rejection with ${code}`);
      },
      (e: unknown) => e,
    ),
    `rejection ${code}`,
  );
  assert.ok(err instanceof OverlayError, `expected an OverlayError, got ${String(err)}`);
  assert.equal(err.code, code, err.message);
  if (message) assert.match(err.message, message);
  return err;
}

/**
 * A hand-driven TCP peer, for playing a misbehaving node. Once `cipher` is set, frames after
 * the server's AUTH are opened with it, and `sendSealed` seals.
 */
class RawPeer {
  readonly socket: Socket;
  readonly frames: Frame[] = [];
  readonly closed: Promise<void>;
  cipher: FrameCipher | undefined;
  /** Frame bodies this peer could not read (sealed for someone else). */
  unreadable = 0;
  private sawAuth = false;
  private readonly decoder = new FrameDecoder(MAX_FRAME_BYTES + SEAL_OVERHEAD_BYTES);
  private wake: (() => void) | undefined;

  private constructor(socket: Socket) {
    this.socket = socket;
    sockets.push(socket);
    socket.on('error', () => {});
    socket.on('data', (chunk) => {
      this.decoder.push(chunk);
      try {
        for (let body = this.decoder.nextBody(); body; body = this.decoder.nextBody()) {
          try {
            const frame = decodeFrame(this.sawAuth && this.cipher ? this.cipher.open(body) : body);
            if (frame.type === 'AUTH') this.sawAuth = true;
            this.frames.push(frame);
          } catch {
            this.unreadable++;
          }
        }
      } catch {
        socket.destroy();
      }
      this.wake?.();
    });
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
  }

  static async connect(address: string, localAddress?: string): Promise<RawPeer> {
    const [host, port] = address.split(':') as [string, string];
    const socket = netConnect({
      host,
      port: Number(port),
      ...(localAddress ? { localAddress } : {}),
    });
    await waitFor(socket, 'connect');
    return new RawPeer(socket);
  }

  send(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  sendSealed(frame: Frame): void {
    this.socket.write((this.cipher as FrameCipher).seal(encodeFrameBody(frame)));
  }

  async next(type: Frame['type']): Promise<Frame> {
    const deadline = Date.now() + WAIT_MS;
    for (;;) {
      const i = this.frames.findIndex((f) => f.type === type);
      if (i >= 0) return this.frames.splice(i, 1)[0] as Frame;
      if (Date.now() > deadline) throw new Error(`timed out waiting for a ${type} frame`);
      await withTimeout(
        new Promise<void>((resolve) => {
          this.wake = resolve;
          setTimeout(resolve, 50);
        }),
        type,
      );
    }
  }

  isClosed(): Promise<void> {
    return withTimeout(this.closed, 'the server to close the raw socket');
  }
}

function helloOf(keys: KeyPair, nonce: Uint8Array, ephemeral: EphemeralKey): Hello {
  return {
    version: LINK_PROTOCOL_VERSION,
    publicKey: keys.publicKey,
    nonce,
    configHash: CONFIG_HASH,
    role: 'client',
    ephemeralKey: ephemeral.publicKey,
  };
}

function helloFrame(keys: KeyPair, nonce: Uint8Array): Buffer {
  return encodeFrame({ type: 'HELLO', hello: helloOf(keys, nonce, newEphemeralKey()) });
}

/** Drives a full handshake from a raw socket as the dialler; returns what it sent. */
async function rawHandshake(
  peer: RawPeer,
  keys: KeyPair,
): Promise<{ hello: Buffer; auth: Buffer }> {
  const ephemeral = newEphemeralKey();
  const own = helloOf(keys, newNonce(), ephemeral);
  const hello = encodeFrame({ type: 'HELLO', hello: own });
  peer.send(hello);
  const server = await peer.next('HELLO');
  assert.equal(server.type, 'HELLO');
  const s = server.hello;
  peer.cipher = deriveFrameCipher({
    own: ephemeral,
    peerEphemeralKey: s.ephemeralKey,
    initiator: true,
    initiatorNonce: own.nonce,
    responderNonce: s.nonce,
    configHash: CONFIG_HASH,
  });
  const auth = encodeFrame({
    type: 'AUTH',
    signature: sign(keys, handshakeTranscript(own, s, CONFIG_HASH)),
  });
  peer.send(auth);
  await peer.next('AUTH');
  return { hello, auth };
}

after(async () => {
  for (const s of sockets) s.destroy();
  await withTimeout(Promise.all(managers.map((m) => m.close())), 'managers to close', 5000);
});

describe('framing', () => {
  it('round-trips every frame type', () => {
    const frames: Frame[] = [
      {
        type: 'HELLO',
        hello: {
          version: 1,
          publicKey: new Uint8Array(32).fill(1),
          nonce: new Uint8Array(32).fill(2),
          configHash: new Uint8Array(32).fill(3),
          role: 'peer',
          ephemeralKey: new Uint8Array(32).fill(5),
          overlayName: 'office',
        },
      },
      { type: 'AUTH', signature: new Uint8Array(64).fill(4) },
      { type: 'OPEN', channelId: 7, application: 'sip' },
      { type: 'ACCEPT', channelId: 7 },
      { type: 'DATA', channelId: 0xffff_ffff, data: new Uint8Array([1, 2, 3]) },
      { type: 'CLOSE', channelId: 7, code: 'ERR_NOT_FOUND', reason: 'no such application' },
      { type: 'CLOSE', channelId: 9 },
      { type: 'PING', seq: 42 },
      { type: 'PONG', seq: 42 },
      { type: 'GOAWAY', code: 'ERR_STOPPED', reason: 'bye' },
    ];
    for (const frame of frames) {
      const bytes = encodeFrame(frame);
      assert.equal(bytes.readUInt32BE(0), bytes.length - 4);
      const decoded = decodeFrame(bytes.subarray(4));
      if (decoded.type === 'DATA') decoded.data = new Uint8Array(decoded.data);
      assert.deepEqual(decoded, frame);
    }
  });

  it('reassembles frames fed one byte at a time, and refuses oversized lengths', () => {
    const decoder = new FrameDecoder();
    const a = encodeFrame({ type: 'DATA', channelId: 1, data: new Uint8Array(300).fill(9) });
    const b = encodeFrame({ type: 'PING', seq: 5 });
    const all = Buffer.concat([a, b]);
    const out: Frame[] = [];
    for (let i = 0; i < all.length; i++) {
      decoder.push(all.subarray(i, i + 1));
      for (let f = decoder.next(); f; f = decoder.next()) out.push(f);
    }
    assert.equal(out.length, 2);
    assert.deepEqual(out[1], { type: 'PING', seq: 5 });
    const first = out[0] as Extract<Frame, { type: 'DATA' }>;
    assert.deepEqual(new Uint8Array(first.data), new Uint8Array(300).fill(9));

    const small = new FrameDecoder(4096);
    const big = Buffer.alloc(4);
    big.writeUInt32BE(4097);
    small.push(big);
    assert.throws(() => small.next(), { code: 'ERR_LIMIT' });
    const bad = new FrameDecoder();
    bad.push(Buffer.from([0, 0, 0, 3, 3, 0, 0]));
    assert.throws(() => bad.next(), { code: 'ERR_MALFORMED' });
  });
});

describe('frame sealing', () => {
  it('derives matching keys on both sides and refuses altered or reordered frames', () => {
    const i = newEphemeralKey();
    const r = newEphemeralKey();
    const nonces = { initiatorNonce: newNonce(), responderNonce: newNonce() };
    const side = (own: EphemeralKey, peer: EphemeralKey, initiator: boolean) =>
      deriveFrameCipher({
        own,
        peerEphemeralKey: peer.publicKey,
        initiator,
        configHash: CONFIG_HASH,
        ...nonces,
      });
    const initiator = side(i, r, true);
    const responder = side(r, i, false);
    const body = encodeFrameBody({ type: 'DATA', channelId: 1, data: new Uint8Array([1, 2]) });
    const first = initiator.seal(body);
    const second = initiator.seal(body);
    assert.notDeepEqual(first, second, 'a fresh nonce per frame');
    assert.deepEqual(responder.open(first.subarray(4)), body);
    assert.deepEqual(responder.open(second.subarray(4)), body);
    assert.deepEqual(initiator.open(responder.seal(body).subarray(4)), body);

    const altered = Buffer.from(initiator.seal(body));
    altered[6] = (altered[6] as number) ^ 1;
    assert.throws(() => responder.open(altered.subarray(4)), { code: 'ERR_MALFORMED' });
    const fresh = side(r, i, false);
    assert.throws(() => fresh.open(second.subarray(4)), { code: 'ERR_MALFORMED' }, 'reordered');
    assert.throws(
      () =>
        deriveFrameCipher({
          ...nonces,
          own: i,
          peerEphemeralKey: new Uint8Array(32),
          initiator: true,
          configHash: CONFIG_HASH,
        }),
      { code: 'ERR_MALFORMED' },
      'an all-zero (low-order) ephemeral key',
    );
  });
});

describe('links between two managers', () => {
  let a: LinkManager;
  let b: LinkManager;
  const resolveB = async () => b.address as string;
  const resolveA = async () => a.address as string;

  before(async () => {
    [a, b] = await Promise.all([startManager(), startManager()]);
    a.handle('echo', echoHandler);
    b.handle('echo', echoHandler);
  });

  it('authenticates both ends and opens channels both ways', async () => {
    const link = await withTimeout(b.dial(a.address as string, a.nodeId), 'dial');
    assert.equal(idToHex(link.remoteNodeId), idToHex(a.nodeId));
    assert.equal(link.remoteRole, 'peer');
    assert.equal(link.direction, 'outbound');
    await eventually(() => a.linkTo(b.nodeId) !== undefined, 'the inbound link at a');
    const back = a.linkTo(b.nodeId) as Link;
    assert.equal(back.direction, 'inbound');

    const fromB = await withTimeout(link.openChannel('echo'), 'open b->a');
    const fromA = await withTimeout(back.openChannel('echo'), 'open a->b');
    const gotB = collect(fromB, 1);
    const gotA = collect(fromA, 1);
    fromB.send(new TextEncoder().encode('hello a'));
    fromA.send(new TextEncoder().encode('hello b'));
    assert.equal(new TextDecoder().decode((await gotB)[0]), 'hello a');
    assert.equal(new TextDecoder().decode((await gotA)[0]), 'hello b');
    assert.ok(fromB.id % 2 === 1 && fromA.id % 2 === 0, 'dialler odd, acceptor even');
    // connect() from the accepting side rides the inbound link instead of dialling back.
    const viaInbound = await withTimeout(a.connect(b.nodeId, 'echo', resolveB), 'connect a->b');
    assert.equal(viaInbound.link, back);
    assert.equal(a.stats.linksOutbound, 0);
    fromB.close();
    fromA.close();
    viaInbound.close();
  });

  it('delivers 1000 messages in order and a 200 KB message intact', async () => {
    const received: Uint8Array[] = [];
    let serverSide: Channel | undefined;
    const done = withTimeout(
      new Promise<void>((resolve) => {
        a.handle('sink', (channel) => {
          serverSide = channel;
          channel.on('message', (data) => {
            received.push(new Uint8Array(data));
            if (received.length === 1001) resolve();
          });
        });
      }),
      '1001 messages',
    );
    const channel = await withTimeout(b.connect(a.nodeId, 'sink', resolveA), 'connect sink');
    for (let i = 0; i < 1000; i++) channel.send(new TextEncoder().encode(`message ${i}`));
    const large = new Uint8Array(200 * 1024);
    for (let i = 0; i < large.length; i++) large[i] = (i * 31 + 7) & 0xff;
    channel.send(large);
    await done;
    for (let i = 0; i < 1000; i++) {
      assert.equal(new TextDecoder().decode(received[i]), `message ${i}`);
    }
    assert.deepEqual(received[1000], large);
    assert.throws(() => channel.send(new Uint8Array(MAX_MESSAGE_BYTES + 1)), {
      code: 'ERR_LIMIT',
    });

    // The other direction over the same channel, echoed back.
    const echoed = collect(channel, 3);
    serverSide?.on('message', () => {});
    for (const n of [1, 2, 3]) serverSide?.send(new Uint8Array([n]));
    assert.deepEqual(
      (await echoed).map((m) => m[0]),
      [1, 2, 3],
    );
    channel.close();
  });

  it('sends the first frame of a loop turn at once and the rest of the turn in one write', async () => {
    const channel = await withTimeout(b.connect(a.nodeId, 'echo', resolveA), 'connect echo');
    const echoed = collect(channel, 3);
    // Every socket write this process makes until the echoes are back (the echo side's too),
    // with the number of frames in it.
    const writes: { socket: Socket; frames: number }[] = [];
    type Method = (this: Socket, ...args: unknown[]) => unknown;
    const proto = Socket.prototype as unknown as Record<'_write' | '_writev', Method>;
    const { _write, _writev } = proto;
    proto._write = function (...args) {
      writes.push({ socket: this, frames: 1 });
      return _write.apply(this, args);
    };
    proto._writev = function (...args) {
      writes.push({ socket: this, frames: (args[0] as unknown[]).length });
      return _writev.apply(this, args);
    };
    try {
      for (const n of [1, 2, 3]) channel.send(new Uint8Array([n]));
      assert.deepEqual(
        writes.map((w) => w.frames),
        [1],
        'the first frame written at once, the others held back',
      );
      assert.deepEqual(
        (await echoed).map((m) => m[0]),
        [1, 2, 3],
      );
    } finally {
      proto._write = _write;
      proto._writev = _writev;
    }
    // b's socket: the first frame alone, then the two held back in one write.
    const own = writes[0]?.socket;
    assert.deepEqual(
      writes.filter((w) => w.socket === own).map((w) => w.frames),
      [1, 2],
    );
    channel.close();
  });

  it('reuses the open link for further connects, and merges concurrent dials', async () => {
    const c = await startManager();
    c.handle('echo', echoHandler);
    const resolveC = async () => c.address as string;
    let lookups = 0;
    const counting = async (_id: NodeId) => {
      lookups++;
      return resolveC();
    };
    const [x, y] = await withTimeout(
      Promise.all([a.connect(c.nodeId, 'echo', counting), a.connect(c.nodeId, 'echo', counting)]),
      'two concurrent connects',
    );
    assert.equal(x.link, y.link, 'one link for both');
    const z = await withTimeout(a.connect(c.nodeId, 'echo', counting), 'third connect');
    assert.equal(z.link, x.link);
    assert.equal(lookups, 1, 'one address lookup');
    assert.equal(a.links().filter((l) => l.remoteNodeId === idToHex(c.nodeId)).length, 1);
    assert.equal(c.stats.linksInbound, 1);
    const info = a.links().find((l) => l.remoteNodeId === idToHex(c.nodeId));
    assert.equal(info?.channels.length, 3);
    assert.ok((info?.bytesOut ?? 0) > 0 && (info?.bytesIn ?? 0) > 0);
    // A plain dial by address reuses it too.
    assert.equal(await withTimeout(a.dial(c.address as string), 'dial by address'), x.link);
  });

  it('closes every channel when the socket breaks, and re-dials on the next connect', async () => {
    const outboundBefore = b.stats.linksOutbound;
    const ch = await withTimeout(b.connect(a.nodeId, 'echo', resolveA), 'connect');
    const link = ch.link;
    await eventually(() => a.linkTo(b.nodeId) !== undefined, 'link at a');
    const remoteLink = a.linkTo(b.nodeId) as Link;
    const remoteChannelClosed = new Promise<void>((resolve) => {
      a.handle('watch', (channel) => channel.on('close', () => resolve()));
    });
    const watched = await withTimeout(link.openChannel('watch'), 'open watch');
    const closes = [
      waitFor<[OverlayError?]>(ch, 'close'),
      waitFor<[OverlayError?]>(watched, 'close'),
    ];
    const linkClosed = waitFor(link, 'close');

    link.destroy();
    const [first] = await Promise.all(closes);
    const err = first?.[0];
    assert.equal(err?.code, 'ERR_UNREACHABLE');
    await linkClosed;
    assert.ok(ch.closed && link.closed);
    assert.throws(() => ch.send(new Uint8Array([1])), { code: 'ERR_UNREACHABLE' });
    await withTimeout(remoteChannelClosed, 'the remote channel to close');
    await eventually(() => remoteLink.closed, 'the remote link to close');

    const again = await withTimeout(b.connect(a.nodeId, 'echo', resolveA), 're-connect');
    assert.notEqual(again.link, link);
    assert.equal(b.stats.linksOutbound, outboundBefore + 1);
    const got = collect(again, 1);
    again.send(new Uint8Array([42]));
    assert.deepEqual((await got)[0], new Uint8Array([42]));
  });

  it('refuses a channel for an application the peer does not handle, keeping the link', async () => {
    const link = await withTimeout(b.dial(a.address as string, a.nodeId), 'dial');
    await expectReject(link.openChannel('nobody-home'), 'ERR_NOT_FOUND', /nobody-home/);
    assert.ok(!link.closed);
    const ch = await withTimeout(link.openChannel('echo'), 'open echo after refusal');
    ch.close();
  });

  it('rejects a dial that reaches a node other than the expected one', async () => {
    const other = nodeIdOf(generateNodeKeyPair(PUZZLE).publicKey);
    const err = await expectReject(
      b.dial(a.address as string, other),
      'ERR_UNREACHABLE',
      /but reached node/,
    );
    assert.match(err.message, new RegExp(idToHex(other)));
    assert.equal(b.stats.handshakesFailed['wrong-node'], 1);
    await eventually(() => a.stats.handshakesFailed.refused === 1, 'a to see the GOAWAY');
  });

  it('refuses a node with another overlay configuration, with ERR_CONFIG_MISMATCH', async () => {
    const stranger = await startManager({
      configHash: configHash(defaultOverlayConfig({ name: 'elsewhere' })),
      overlayName: 'elsewhere',
    });
    const err = await expectReject(
      stranger.dial(a.address as string),
      'ERR_CONFIG_MISMATCH',
      /configuration mismatch/,
    );
    assert.match(err.message, /"peerbx"/);
    assert.equal(stranger.stats.handshakesFailed['config-mismatch'], 1);
    await eventually(
      () => a.stats.handshakesFailed['config-mismatch'] === 1,
      'a to count the mismatch',
    );
  });

  it('refuses a node-ID that fails the crypto puzzle', async () => {
    const strict = await startManager({ puzzleBits: 8, keys: generateNodeKeyPair(8) });
    let weak = generateKeyPair();
    while (meetsPuzzle(nodeIdOf(weak.publicKey), 8)) weak = generateKeyPair();
    const cheap = await startManager({ keys: weak, puzzleBits: 0 });
    await expectReject(cheap.dial(strict.address as string), 'ERR_PUZZLE', /8-bit crypto puzzle/);
    await eventually(() => strict.stats.handshakesFailed.puzzle === 1, 'strict to count it');
    assert.equal(strict.links().length, 0);
    // And the other way: the strict node will not link to it either.
    await expectReject(strict.dial(cheap.address as string), 'ERR_PUZZLE');
  });

  it('ignores an unknown frame type from a newer peer but closes on a protocol violation', async () => {
    const peer = await RawPeer.connect(a.address as string);
    const keys = generateNodeKeyPair(PUZZLE);
    await rawHandshake(peer, keys);
    const violations = a.stats.protocolViolations;
    peer.sendSealed({ type: 'UNKNOWN', code: 200 });
    peer.sendSealed({ type: 'PING', seq: 9 });
    assert.deepEqual(await peer.next('PONG'), { type: 'PONG', seq: 9 });
    peer.sendSealed({ type: 'DATA', channelId: 77, data: new Uint8Array([1]) });
    const goaway = await peer.next('GOAWAY');
    assert.match(goaway.type === 'GOAWAY' ? goaway.reason : '', /protocol violation/);
    await peer.isClosed();
    assert.equal(a.stats.protocolViolations, violations + 1);
  });
});

describe('hostile connections', () => {
  let m: LinkManager;
  let good: LinkManager;

  before(async () => {
    [m, good] = await Promise.all([startManager({ handshakeTimeoutMs: 300 }), startManager()]);
    m.handle('echo', echoHandler);
  });

  async function stillAcceptsGoodLinks(): Promise<void> {
    const ch = await withTimeout(
      good.connect(m.nodeId, 'echo', async () => m.address as string),
      'a good connect',
    );
    const got = collect(ch, 1);
    ch.send(new Uint8Array([7]));
    assert.deepEqual((await got)[0], new Uint8Array([7]));
  }

  it('closes a socket that sends garbage, counting it', async () => {
    const statsBefore = m.stats;
    const peer = await RawPeer.connect(m.address as string);
    peer.send(Buffer.from('GET / HTTP/1.1\r\nHost: example\r\n\r\n'));
    await peer.isClosed();
    const peer2 = await RawPeer.connect(m.address as string);
    peer2.send(Buffer.from([0, 0, 0, 6, 1, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1]));
    await peer2.isClosed();
    const statsAfter = m.stats;
    assert.equal(statsAfter.handshakesFailed.malformed, statsBefore.handshakesFailed.malformed + 2);
    assert.equal(statsAfter.framesMalformed, statsBefore.framesMalformed + 2);
    await stillAcceptsGoodLinks();
  });

  it('closes a half-finished handshake after the timeout', async () => {
    const timeoutsBefore = m.stats.handshakesFailed.timeout;
    const peer = await RawPeer.connect(m.address as string);
    peer.send(helloFrame(generateNodeKeyPair(PUZZLE), newNonce()));
    await peer.next('HELLO');
    await peer.isClosed();
    assert.equal(m.stats.handshakesFailed.timeout, timeoutsBefore + 1);
    await stillAcceptsGoodLinks();
  });

  it('refuses an AUTH replayed from an earlier session', async () => {
    const keys = generateNodeKeyPair(PUZZLE);
    const first = await RawPeer.connect(m.address as string);
    const recorded = await rawHandshake(first, keys);
    await eventually(() => m.linkTo(nodeIdOf(keys.publicKey)) !== undefined, 'the first link');
    first.socket.destroy();
    await eventually(() => m.linkTo(nodeIdOf(keys.publicKey)) === undefined, 'the link to go');

    const signatureBefore = m.stats.handshakesFailed.signature;
    const replay = await RawPeer.connect(m.address as string);
    replay.send(recorded.hello);
    replay.send(recorded.auth);
    const goaway = await replay.next('GOAWAY');
    assert.equal(goaway.type === 'GOAWAY' ? goaway.code : undefined, 'ERR_SIGNATURE');
    await replay.isClosed();
    assert.equal(m.stats.handshakesFailed.signature, signatureBefore + 1);
    assert.equal(m.linkTo(nodeIdOf(keys.publicKey)), undefined);
    await stillAcceptsGoodLinks();
  });

  it('lets a relay forward both handshakes but not inject a single frame', async () => {
    // M dials the target, learns its HELLO, dials the victim posing as the target with it, and
    // forwards each side's HELLO and AUTH to the other. Both signatures verify (they cover only
    // nonces and keys), so the target believes it holds a link to the victim.
    const victim = await startManager();
    const target = await startManager();
    let handled = 0;
    target.handle('echo', (channel) => {
      handled++;
      echoHandler(channel);
    });
    const toTarget = await RawPeer.connect(target.address as string);
    const targetHello = await toTarget.next('HELLO');
    const toVictim = await RawPeer.connect(victim.address as string);
    toVictim.send(encodeFrame(targetHello));
    toTarget.send(encodeFrame(await toVictim.next('HELLO')));
    toTarget.send(encodeFrame(await toVictim.next('AUTH')));
    toVictim.send(encodeFrame(await toTarget.next('AUTH')));
    await eventually(() => target.linkTo(victim.nodeId) !== undefined, 'the relayed link');
    const relayed = target.linkTo(victim.nodeId) as Link;

    // Without the ephemeral private keys, whatever M makes up fails to open.
    const malformedBefore = target.stats.framesMalformed;
    const forged = new FrameCipher(randomBytes(32), randomBytes(32));
    toTarget.send(
      forged.seal(encodeFrameBody({ type: 'OPEN', channelId: 1, application: 'echo' })),
    );
    await withTimeout(once(relayed, 'close'), 'the relayed link to close');
    await toTarget.isClosed();
    assert.equal(target.stats.framesMalformed, malformedBefore + 1);
    assert.equal(handled, 0, 'no forged channel reached the application');
  });

  it('closes a link whose peer stops answering keepalives', async () => {
    const watchful = await startManager({ keepaliveIntervalMs: 50, maxMissedPongs: 2 });
    const peer = await RawPeer.connect(watchful.address as string);
    const keys = generateNodeKeyPair(PUZZLE);
    await rawHandshake(peer, keys);
    await eventually(() => watchful.linkTo(nodeIdOf(keys.publicKey)) !== undefined, 'the link');
    const link = watchful.linkTo(nodeIdOf(keys.publicKey)) as Link;
    const [err] = await waitFor<[OverlayError?]>(link, 'close');
    assert.match(err?.message ?? '', /keepalive/);
    assert.ok(peer.frames.some((f) => f.type === 'PING'));
    await peer.isClosed();

    // Two managers that answer keep their link through several keepalive rounds.
    const other = await startManager({ keepaliveIntervalMs: 50, maxMissedPongs: 2 });
    const live = await withTimeout(other.dial(watchful.address as string), 'dial');
    await new Promise((r) => setTimeout(r, 400));
    assert.ok(!live.closed);
  });

  it('closes a link within seconds when data sent to it meets silence (power cut)', async () => {
    const watchful = await startManager({ silenceProbeMs: 300, silenceProbeTimeoutMs: 300 });
    watchful.handle('echo', echoHandler);
    const keys = generateNodeKeyPair(PUZZLE);
    const peer = await RawPeer.connect(watchful.address as string);
    await rawHandshake(peer, keys);
    await eventually(() => watchful.linkTo(nodeIdOf(keys.publicKey)) !== undefined, 'the link');
    const link = watchful.linkTo(nodeIdOf(keys.publicKey)) as Link;
    // Idle, the link stays: silence after nothing sent is no sign of death.
    await new Promise((r) => setTimeout(r, 1000));
    assert.ok(!link.closed);
    // The peer's machine is gone (it reads nothing, answers nothing); an OPEN goes out to it.
    const opening = link.openChannel('echo').catch((err: unknown) => err as OverlayError);
    const [err] = await waitFor<[OverlayError?]>(link, 'close');
    assert.match(err?.message ?? '', /is dead: silent for \d+ ms after data was sent to it/);
    assert.ok(
      peer.frames.some((f) => f.type === 'PING'),
      'probed with a PING first',
    );
    assert.equal(((await opening) as OverlayError).code, 'ERR_UNREACHABLE');

    // A peer that answers keeps its link, however much it is sent, even one-way.
    const other = await startManager({ silenceProbeMs: 300, silenceProbeTimeoutMs: 300 });
    other.handle('sink', () => undefined);
    const ch = await withTimeout(
      watchful.connect(other.nodeId, 'sink', async () => other.address as string),
      'connect',
    );
    for (let i = 0; i < 8; i++) {
      ch.send(new Uint8Array([i]));
      await new Promise((r) => setTimeout(r, 150));
    }
    await new Promise((r) => setTimeout(r, 1000));
    assert.ok(!ch.closed, 'the answering peer keeps its link');
  });

  it('closes a link whose peer sends PINGs and never reads the PONGs', async () => {
    const flooded = await startManager({ maxUnsentBytes: 64 * 1024 });
    const keys = generateNodeKeyPair(PUZZLE);
    const peer = await RawPeer.connect(flooded.address as string);
    await rawHandshake(peer, keys);
    await eventually(() => flooded.linkTo(nodeIdOf(keys.publicKey)) !== undefined, 'the link');
    const link = flooded.linkTo(nodeIdOf(keys.publicKey)) as Link;
    const closed = waitFor<[OverlayError?]>(link, 'close', 20_000);
    peer.socket.pause();
    let sent = 0;
    while (!link.closed && sent < 400_000) {
      for (let i = 0; i < 2000; i++) peer.sendSealed({ type: 'PING', seq: sent++ });
      await new Promise((r) => setImmediate(r));
    }
    const [err] = await closed;
    assert.match(err?.message ?? '', /reads nothing/);
  });

  it('gives a connection beyond the pending-handshake limit the place of the oldest', async () => {
    const busy = await startManager({ maxPendingHandshakes: 1 });
    busy.handle('echo', echoHandler);
    const stalled = await RawPeer.connect(busy.address as string);
    await stalled.next('HELLO');
    // A connection that says nothing holds the only place: a node linking to us takes it.
    const ch = await withTimeout(
      good.connect(busy.nodeId, 'echo', async () => busy.address as string),
      'a good connect',
    );
    await stalled.isClosed();
    assert.equal(busy.stats.handshakesFailed.overload, 1);
    assert.equal(busy.stats.handshakesFailed.closed, 0, 'counted once, as overload');
    ch.close();
  });

  it('lets one host hold only a few pending handshakes (this machine excepted)', {
    skip: lanAddress() ? false : 'this machine has no IPv4 address but loopback',
  }, async () => {
    const lan = lanAddress() as string;
    const busy = await startManager({ maxPendingHandshakesPerHost: 2 }, lan);
    const silent = [await RawPeer.connect(busy.address as string, lan)];
    silent.push(await RawPeer.connect(busy.address as string, lan));
    await Promise.all(silent.map((p) => p.next('HELLO')));
    const third = await RawPeer.connect(busy.address as string, lan);
    await third.isClosed();
    assert.equal(third.frames.length, 0, 'dropped unread');
    assert.equal(busy.stats.handshakesFailed.overload, 1);
    // Another host (here: loopback, which has no such limit) still gets its handshake.
    const other = await RawPeer.connect(busy.address as string, '127.0.0.1');
    await other.next('HELLO');
    for (const p of [...silent, other]) p.socket.destroy();
  });

  it('lets one node-ID hold only a few links, closing its oldest for each one more', async () => {
    const busy = await startManager({ maxLinksPerNode: 2 });
    busy.handle('echo', echoHandler);
    // Three managers with one key pair: one node-ID dialling from three sockets.
    const keys = generateNodeKeyPair(PUZZLE);
    const twins = await Promise.all([1, 2, 3].map(() => startManager({ keys })));
    const channels: Channel[] = [];
    let oldestClosed: Promise<[OverlayError?]> | undefined;
    for (const twin of twins) {
      const ch = await withTimeout(
        twin.connect(busy.nodeId, 'echo', async () => busy.address as string),
        'a connect',
      );
      oldestClosed ??= waitFor<[OverlayError?]>(ch, 'close');
      channels.push(ch);
    }
    const [, ...rest] = channels as [Channel, Channel, Channel];
    const [err] = await (oldestClosed as Promise<[OverlayError?]>);
    assert.equal(err?.code, 'ERR_LIMIT');
    assert.match(err?.message ?? '', /opened more than 2 links; its oldest is closed/);
    assert.equal(busy.stats.linksOverLimit, 1);
    await eventually(() => busy.links().length === 2, 'two links left at the node');
    for (const ch of rest) {
      const got = collect(ch, 1);
      ch.send(new Uint8Array([9]));
      assert.deepEqual((await got)[0], new Uint8Array([9]), 'the newer links still carry data');
    }
    // Other nodes are not affected.
    const ch = await withTimeout(
      good.connect(busy.nodeId, 'echo', async () => busy.address as string),
      'a good connect',
    );
    assert.equal(busy.links().length, 3);
    ch.close();
  });

  it('closes links and notifies channels when a manager closes', async () => {
    const x = await startManager();
    const y = await startManager();
    y.handle('echo', echoHandler);
    const ch = await withTimeout(
      x.connect(y.nodeId, 'echo', async () => y.address as string),
      'c',
    );
    const closed = waitFor<[OverlayError?]>(ch, 'close');
    await withTimeout(y.close(), 'y.close');
    await closed;
    assert.equal(x.links().length, 0);
    await expectReject(y.dial(x.address as string), 'ERR_STOPPED');
  });
});

describe('WebSocket links', () => {
  it('carries the same handshake and channels over a ws:// listener', async () => {
    const server = await startManager();
    const wsAddress = await server.listen({ host: '127.0.0.1', port: 0, transport: 'ws' });
    assert.match(wsAddress, /^ws:\/\/127\.0\.0\.1:\d+$/);
    assert.deepEqual(server.addresses, [server.address, wsAddress]);
    server.handle('echo', echoHandler);
    const client = new LinkManager({
      keys: generateNodeKeyPair(PUZZLE),
      configHash: CONFIG_HASH,
      puzzleBits: PUZZLE,
      role: 'client',
    });
    managers.push(client);

    const ch = await withTimeout(
      client.connect(server.nodeId, 'echo', async () => wsAddress),
      'ws',
    );
    const large = new Uint8Array(200 * 1024).map((_, i) => i & 0xff);
    const got = collect(ch, 101);
    for (let i = 0; i < 100; i++) ch.send(new Uint8Array([i]));
    ch.send(large);
    const messages = await got;
    assert.deepEqual(
      messages.slice(0, 100).map((m) => m[0]),
      Array.from({ length: 100 }, (_, i) => i),
    );
    assert.deepEqual(messages[100], large);
    await eventually(() => server.linkTo(client.nodeId) !== undefined, 'the server side');
    assert.equal(server.linkTo(client.nodeId)?.remoteRole, 'client');

    // A wrong node behind a ws:// address is refused as over TCP.
    await expectReject(
      client.dial(wsAddress, nodeIdOf(generateNodeKeyPair(PUZZLE).publicKey)),
      'ERR_UNREACHABLE',
      /but reached node/,
    );
    const closed = waitFor(ch, 'close');
    ch.link.destroy();
    await closed;
    await eventually(() => server.linkTo(client.nodeId) === undefined, 'the server to notice');
  });
});
