// OverlayNodes in one process over real sockets on 127.0.0.1: forged, replayed and foreign
// datagrams are refused and counted, a node of another overlay gets a clear error, channels
// connect through the overlay, the data directory is locked, and a graceful leave hands over
// and tells the others.

import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { copyFileSync, existsSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  compareDistance,
  idToHex,
  type Request,
  type Response,
  type ValueStore,
} from '@peerbx/dht-kademlia';
import { OverlayClient } from '../src/client.js';
import { CLIENT_APPLICATION } from '../src/client-protocol.js';
import {
  configHash,
  defaultOverlayConfig,
  type OverlayConfig,
  signOverlayConfig,
} from '../src/config/overlay-config.js';
import { KIND_NAME_CLAIM, KIND_SIP_REGISTRATION } from '../src/constants.js';
import { OverlayError } from '../src/errors.js';
import { encodeCertificate, issueCertificate } from '../src/identity/certificate.js';
import { ensureDataDir, loadUserKey, userCertificatePath } from '../src/identity/data-dir.js';
import {
  generateKeyPair,
  generateNodeKeyPair,
  type KeyPair,
  nodeIdOf,
} from '../src/identity/keys.js';
import {
  MAX_CLIENT_REQUESTS_IN_FLIGHT,
  OverlayNode,
  type OverlayNodeOptions,
} from '../src/overlay.js';
import { PersistentStore } from '../src/storage/persistent-store.js';
import { decodeRecord, encodeRecord, resourceId } from '../src/storage/record.js';
import { SignedDatagramCodec } from '../src/transport/signed-codec.js';
import { ALICE, HOUR, nameClaim, registration } from './fixtures/records.js';

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

/** A SIP-REGISTRATION of the publisher's own node for `resource`: `value` is its device. */
function publishDevice(
  publisher: OverlayNode | OverlayClient,
  resource: string,
  value: Uint8Array,
  lifetimeMs = 60_000,
) {
  return publisher.publish({
    kind: KIND_SIP_REGISTRATION,
    resource,
    dictionaryKey: publisher.nodeId,
    value,
    lifetimeMs,
  });
}

/**
 * What a thief sends for someone else's name: a claim of its own key for the name and a device
 * of that key, dated a minute after `now`, validly signed (encoded records).
 */
function forgedClaim(resource: string, now: number, thiefNode = generateKeyPair()): Uint8Array[] {
  const thief = generateKeyPair();
  return [
    nameClaim(thiefNode, thief, now + 60_000, resource),
    registration(thiefNode, thief, now + 60_000, {
      resource,
      userName: resource.split('@')[0]!,
      value: new TextEncoder().encode('sip:thief@192.0.2.66:5060'),
    }),
  ].map((r) => encodeRecord(r));
}

/** The first name prefix0@, prefix1@... whose nodes, closest first, `fits` takes. */
function nameWhere(
  nodes: readonly OverlayNode[],
  prefix: string,
  fits: (order: OverlayNode[]) => boolean,
): { name: string; order: OverlayNode[] } {
  for (let i = 0; ; i++) {
    const name = `${prefix}${i}@peerbx.local`;
    const key = resourceId(name);
    const order = [...nodes].sort((x, y) => compareDistance(key, x.nodeId, y.nodeId));
    if (fits(order)) return { name, order };
  }
}

/**
 * `thief`, with a key of its own, publishes a device under `name`, which `owner` registered
 * (its device `owned`): refused as owned by another key, with nothing left to republish nor in
 * the thief's own store, and a fetch there finds the owner's device only.
 */
async function assertTakeoverRefused(
  thief: OverlayNode,
  owner: OverlayNode,
  name: string,
  owned: string,
): Promise<void> {
  const published = thief.stats().published;
  await assert.rejects(
    publishDevice(thief, name, new TextEncoder().encode('sip:thief@192.0.2.7:5060')),
    (e: unknown) =>
      e instanceof OverlayError &&
      e.code === 'ERR_FORBIDDEN' &&
      e.message === `name ${name} is owned by another key`,
  );
  assert.equal(thief.stats().published, published, 'neither claim nor device republished');
  assert.deepEqual(foreignHeld(thief, name, owner), [], "nor kept in the thief's own store");
  const got = await thief.fetch(name, KIND_SIP_REGISTRATION);
  assert.deepEqual(
    got.map((r) => Buffer.from(r.value).toString()),
    [owned],
  );
}

/**
 * What `node` holds under `resource` that `owner` did not sign: name claims of other keys, and
 * devices registered under them.
 */
function foreignHeld(node: OverlayNode, resource: string, owner: OverlayNode): string[] {
  const key = resourceId(resource);
  const now = Date.now();
  const ownerClaim = owner.store
    .get(key, now)
    .map((v) => decodeRecord(v.value))
    .find((r) => r.kind === KIND_NAME_CLAIM);
  assert.ok(ownerClaim, "the owner's node holds its claim");
  return node.store
    .get(key, now)
    .map((v) => decodeRecord(v.value))
    .filter((r) => Buffer.compare(r.user?.publicKey ?? new Uint8Array(), ownerClaim.value) !== 0)
    .map((r) => (r.kind === KIND_NAME_CLAIM ? 'claim' : Buffer.from(r.value).toString()));
}

/**
 * A STORE of `values` under key, sent to `to` by a node of its own (valid puzzle and
 * signature) whose ID is farther from key than every node in `nodes`: the verdicts, first
 * value's first.
 */
async function storeFromFarNode(
  to: string,
  key: Uint8Array,
  values: Uint8Array[],
  nodes: readonly OverlayNode[],
  overlay: OverlayConfig,
  sender?: KeyPair,
) {
  let keys = sender ?? generateNodeKeyPair(4);
  const nearer = (n: OverlayNode) => compareDistance(key, n.nodeId, nodeIdOf(keys.publicKey)) < 0;
  while (!sender && !nodes.every(nearer)) keys = generateNodeKeyPair(4);
  const codec = new SignedDatagramCodec({
    keys,
    configHash: configHash(overlay),
    overlayName: overlay.name,
    puzzleBits: overlay.puzzleBits,
  });
  const [first, ...rest] = values.map((value) => ({ value, ttlMs: HOUR }));
  const body = { type: 'STORE' as const, key, ...first!, more: rest };
  const sock = createSocket('udp4');
  const i = to.lastIndexOf(':');
  // A txid of its own, as a node's: a new socket may get the port of one closed a moment ago,
  // and the node answers a txid seen from that address lately from its reply cache.
  const txid = randomInt(2 ** 32);
  try {
    // The answer to our STORE (the node may PING us, a contact new to it, meanwhile).
    const reply = new Promise<Response>((resolve) =>
      sock.on('message', (bytes) => {
        try {
          const m = codec.decode(bytes, to);
          if (m.kind === 'response' && m.txid === txid) resolve(m.response);
        } catch {
          // Not the answer (a request of the node's own that this codec refuses, say).
        }
      }),
    );
    sock.send(
      codec.encodeRequest(txid, { sender: nodeIdOf(keys.publicKey), body }),
      Number(to.slice(i + 1)),
      to.slice(0, i),
    );
    const response = await Promise.race([
      reply,
      new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error(`no answer to the STORE from ${to}`)), 3000).unref(),
      ),
    ]);
    assert.equal(response.body.type, 'STORED');
    const { more, ...verdict } = response.body as Extract<Response['body'], { type: 'STORED' }>;
    return [verdict, ...(more ?? [])];
  } finally {
    sock.close();
  }
}

/** Nodes named `names` under root, in `nodes`: the first founds the overlay, the rest join it. */
async function startNodes(
  root: string,
  names: string[],
  nodes: OverlayNode[],
  overlay = config(),
  more: Partial<OverlayNodeOptions> = {},
): Promise<void> {
  const first = nodes.length;
  for (const name of names) {
    const founder = nodes[first];
    nodes.push(
      await OverlayNode.start({
        dataDir: join(root, name),
        config: overlay,
        ...(founder ? { bootstrap: [founder.udpAddress] } : {}),
        ...more,
      }),
    );
  }
}

/**
 * Five nodes with the default k (20) under a fresh root, each knowing every other, started
 * before the describe's tests and closed after: every node holds every name.
 */
function fiveNodes(prefix: string, more: Partial<OverlayNodeOptions> = {}) {
  const root = mkdtempSync(join(tmpdir(), prefix));
  const nodes: OverlayNode[] = [];
  const overlay = config({
    dht: { k: 20, alpha: 3, disjointPaths: 1, maintenanceIntervalMs: 60_000 },
  });
  before(async () => {
    await startNodes(root, ['a', 'b', 'c', 'd', 'e'], nodes, overlay, more);
    for (const x of nodes) for (const y of nodes) if (x !== y) await x.dht.ping(y.dht.contact);
  });
  after(() => closeAll(root, nodes));
  return { root, nodes, overlay };
}

/** Nodes a, b, c, d under root, b to d bootstrapped from a. */
const startFour = (root: string, nodes: OverlayNode[]) =>
  startNodes(root, ['a', 'b', 'c', 'd'], nodes);

async function closeAll(root: string, nodes: OverlayNode[]): Promise<void> {
  for (const n of nodes) await n.close();
  rmSync(root, { recursive: true, force: true });
}

async function until(check: () => boolean, what: string, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The user key (hex) of the name claim n holds under `key`, or undefined. */
function claimKeyAt(n: OverlayNode, key: Uint8Array): string | undefined {
  for (const { value } of n.store.get(key, Date.now())) {
    const r = decodeRecord(value);
    if (r.kind === KIND_NAME_CLAIM) return Buffer.from(r.user!.publicKey).toString('hex');
  }
  return undefined;
}

/** What `holders` held under `key` replaced with `forged` (a thief's claim and device). */
function feed(holders: readonly OverlayNode[], key: Uint8Array, forged: Uint8Array[]): void {
  const now = Date.now();
  for (const h of holders) {
    h.store.delete(key);
    for (const bytes of forged) h.store.put(key, bytes, now + HOUR, now);
  }
}

/**
 * A thief's STORE of `forged` at `holder`: refused as another key's claim is held there, and
 * the claim check the refusal starts keeps the claim the holder held; or, `checked` false (a
 * claim held too long to settle), no check starts.
 */
async function assertClaimKept(
  holder: OverlayNode,
  key: Uint8Array,
  forged: Uint8Array[],
  nodes: readonly OverlayNode[],
  overlay: OverlayConfig,
  checked = true,
): Promise<void> {
  const held = claimKeyAt(holder, key);
  const { claimsChecked, claimsReplaced } = holder.stats().rejections;
  const [r] = await storeFromFarNode(holder.udpAddress, key, forged, nodes, overlay);
  assert.ok(r && !r.ok && /owned by another key/.test(r.detail ?? ''));
  if (checked) {
    await until(() => holder.stats().rejections.claimsChecked > claimsChecked, 'the check', 15_000);
  } else {
    // A check is a lookup among a few nodes on loopback: it would have ended by now.
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(holder.stats().rejections.claimsChecked, claimsChecked, 'no check');
  }
  assert.equal(claimKeyAt(holder, key), held);
  assert.equal(holder.stats().rejections.claimsReplaced, claimsReplaced);
}

describe('overlay node over real sockets', () => {
  const root = mkdtempSync(join(tmpdir(), 'peerbx-node-'));
  const nodes: OverlayNode[] = [];

  before(() => startFour(root, nodes));
  after(() => closeAll(root, nodes));

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
    // a has heard each of the others answer, as a node soon has after joining (right after
    // the join it may not have, and then looks up first).
    for (const other of a.dht.table.closest(resourceId('alice@peerbx.local'), 3))
      assert.ok(await a.dht.ping(other));
    const lookups = a.dht.stats.lookups;
    const r = await publishDevice(a, 'alice@peerbx.local', value);
    assert.ok(r.replicas >= 2);
    const got = await c.fetch('alice@peerbx.local', KIND_SIP_REGISTRATION);
    assert.equal(got.length, 1);
    assert.deepEqual(got[0]!.value, value);
    assert.equal(got[0]!.user?.name, 'alice');
    // A first registration stores alice's name claim too, both in the same STOREs, and with
    // no lookup: every node's buckets (MIN_BUCKET_SIZE, more than k) hold all the others.
    assert.equal(a.dht.stats.lookups - lookups, 0, 'claim and record stored without a lookup');
    const all = await c.fetch('alice@peerbx.local');
    assert.deepEqual(
      all.map((x) => x.kind).sort(),
      [KIND_NAME_CLAIM, KIND_SIP_REGISTRATION].sort(),
    );
    // Every node that holds the record holds the claim as well.
    const key = resourceId('alice@peerbx.local');
    const holders = nodes.filter((n) => n.store.get(key, Date.now()).length > 0);
    assert.ok(holders.length >= 2);
    for (const n of holders) assert.equal(n.store.get(key, Date.now()).length, 2);
  });

  it('keeps a name with its owner when a node was sent a later claim and device of another key', async () => {
    const [a] = nodes as [OverlayNode];
    const IVAN = 'ivan@peerbx.local';
    const value = new TextEncoder().encode('sip:ivan@127.0.0.1:5070');
    await publishDevice(a, IVAN, value);
    const key = resourceId(IVAN);
    const now = Date.now();
    const holders = nodes.filter((n) => n.store.get(key, now).length > 0);
    assert.equal(holders.length, 3, 'k = 3 of 4 nodes hold the name');
    // The fourth node's store holds a claim of another key for the name and a device of that
    // key, dated a minute later (put there directly: a STORE of them would be refused, as the
    // node is not among the closest; a thief's own node holds what it likes): its own store
    // counts as one holder, so its first lookup (quorum 2) sees one claim against one and must
    // ask k holders.
    const asker = nodes.find((n) => !holders.includes(n))!;
    for (const bytes of forgedClaim(IVAN, now)) asker.store.put(key, bytes, now + HOUR, now);

    for (let i = 0; i < 2; i++) {
      const lookups = asker.dht.stats.lookups;
      const got = await asker.fetch(IVAN, KIND_SIP_REGISTRATION);
      assert.equal(asker.dht.stats.lookups - lookups, 2, `fetch ${i}: contested, asked again`);
      assert.equal(got.length, 1, `fetch ${i}`);
      assert.deepEqual(got[0]!.value, value, "ivan's own device");
    }
  });

  it("tells a node whose table misses one of a name's holders that another key owns the name", async () => {
    // A name whose k = 3 closest nodes include a, the publisher; the fourth node is "other".
    const { name, order } = nameWhere(nodes, 'quinn', (order) => order[3] !== nodes[0]);
    const [a] = nodes as [OverlayNode];
    const other = order[3]!;
    await publishDevice(a, name, new TextEncoder().encode('sip:quinn@127.0.0.1:5070'));
    const key = resourceId(name);
    const holders = nodes.filter((n) => n.store.get(key, Date.now()).length > 0);
    assert.deepEqual(new Set(holders), new Set(order.slice(0, 3)));
    // other, with a key of its own for the name, has lost one of the holders from its table (a
    // table not yet settled): it stores at once on the two it knows and on itself, where the
    // name is unclaimed; the two refuse and name the third, which the lookup that follows
    // finds and which refuses as well. One copy taken, three holders refusing: refused.
    const missed = holders.find((n) => n !== a)!;
    for (const h of holders) if (h !== missed) assert.ok(await other.dht.ping(h.dht.contact));
    assert.ok(other.dht.table.remove(missed.nodeId));
    await assertTakeoverRefused(other, a, name, 'sip:quinn@127.0.0.1:5070');
  });

  it("holds a claim of another key than its own, on a name it published, to the holders' verdict", async () => {
    // a published the name (claim and device). A claim of another key for it, stored through
    // a later (a key file copied in, say, or a claim made again after a's lapsed and another
    // key took the name): no refresh of a's own, so the holders' verdict stands. Two refuse,
    // one (which lost what it held) takes it: refused.
    const { name, order } = nameWhere(nodes, 'sela', (o) => !o.slice(0, 3).includes(nodes[0]!));
    const [a] = nodes as [OverlayNode];
    await publishDevice(a, name, new TextEncoder().encode('sip:sela@127.0.0.1:5070'));
    order[2]!.store.delete(resourceId(name));
    const claim = nameClaim(generateKeyPair(), generateKeyPair(), Date.now(), name);
    await assert.rejects(
      a.storeRecord(claim),
      (e: unknown) =>
        e instanceof OverlayError &&
        e.code === 'ERR_FORBIDDEN' &&
        e.message === `name ${name} is owned by another key`,
    );
  });

  it("keeps storing and republishing an own name when holders were fed another key's claim", async () => {
    // A lying holder can store a claim of its own for a name at a node next in line, which
    // holds it once another holder dies: two holders then refuse the owner's refresh as
    // invalid and one takes it. The owner keeps what it had published stored where it is
    // taken, and republished (fetches are outvoted meanwhile; its name is not given up).
    const { name, order } = nameWhere(nodes, 'rhea', (order) =>
      order.slice(0, 3).includes(nodes[0]!),
    );
    const [a] = nodes as [OverlayNode];
    const key = resourceId(name);
    await publishDevice(a, name, new TextEncoder().encode('sip:rhea@127.0.0.1:5070'));
    const published = a.stats().published;
    const now = Date.now();
    const fed = order.slice(0, 3).filter((n) => n !== a);
    feed(fed, key, forgedClaim(name, now));
    const refreshed = await publishDevice(
      a,
      name,
      new TextEncoder().encode('sip:rhea@127.0.0.1:5071'),
    );
    assert.equal(refreshed.replicas, 1, "stored by a's own store, refused by the two fed");
    assert.equal(a.stats().published, published, 'claim and device still republished');
  });

  it('drops a forged record every holder returns and still finds the real one', async () => {
    const key = resourceId(ALICE);
    const holders = nodes.filter((n) => n.store.get(key, Date.now()).length > 0);
    const fetcher = nodes.find((n) => !holders.includes(n)) ?? (nodes[2] as OverlayNode);
    // A registration for a device of its own under alice's name, its node signature broken:
    // every holder returns it beside the real one, and the fetch checks the first holder's
    // answer while it waits for the second.
    const bytes = encodeRecord(registration(generateKeyPair(), generateKeyPair(), Date.now()));
    bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 1;
    const before = holders.map((h) => h.store.entries(key, Date.now()));
    for (const h of holders) h.store.put(key, bytes, Date.now() + 60_000, Date.now());
    const got = await fetcher.fetch(ALICE, KIND_SIP_REGISTRATION);
    assert.equal(got.length, 1);
    assert.equal(Buffer.from(got[0]!.value).toString(), 'sip:alice@127.0.0.1:5070');
    // The holders get back what they held, for the tests after this one.
    holders.forEach((h, i) => {
      h.store.delete(key);
      for (const e of before[i] ?? [])
        h.store.put(key, e.stored.value, e.stored.expiresAt, Date.now());
    });
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

    // A response to nothing the target asked, badly signed as well: dropped before the
    // signature is even checked, so a flood of them costs no verification.
    const signatureRejections = target.stats().rejections.byReason.signature ?? 0;
    const unmatched = target.stats().messages.unmatched;
    const bogus = new Uint8Array(
      codec.encodeResponse(0x5eed, { sender: nodeIdOf(keys.publicKey), body: { type: 'PONG' } }),
    );
    bogus[bogus.length - 1] = (bogus[bogus.length - 1] as number) ^ 0xff;
    await sendRaw(bogus, target.udpAddress);
    await until(
      () => target.stats().messages.unmatched === unmatched + 1,
      'the unsolicited response to be counted',
    );
    assert.equal(target.stats().rejections.byReason.signature ?? 0, signatureRejections);

    await sendRaw(new Uint8Array([1, 2, 3, 4, 5]), target.udpAddress);
    await until(() => target.stats().rejections.malformed >= 1, 'garbage to be counted');
    assert.equal(await nodes[0]!.dht.ping(target.contact), true, 'the node still answers');
  });

  it("refuses a member's request replayed to another node, and keeps the sender at its address", async () => {
    const [, target, sender, recipient] = nodes as [
      OverlayNode,
      OverlayNode,
      OverlayNode,
      OverlayNode,
    ];
    const listedAt = target.dht.table.get(sender.nodeId)?.address;
    assert.equal(listedAt, sender.udpAddress);
    const ping: Request = { sender: sender.nodeId, body: { type: 'PING' } };
    const before = target.stats().rejections.byReason.misdirected ?? 0;
    // What the recipient was sent, sent on to the target from the recipient's side's socket.
    await sendRaw(sender.codec.encodeRequest(7, ping, recipient.nodeId), target.udpAddress);
    await until(
      () => target.stats().rejections.byReason.misdirected === before + 1,
      'the misdirected request to be counted',
    );
    // Unaddressed (a bootstrap PING names no node): answered, but it moves nobody.
    const refused = target.dht.stats.contactsRefused;
    await sendRaw(sender.codec.encodeRequest(8, ping), target.udpAddress);
    await until(
      () => target.dht.stats.contactsRefused === refused + 1,
      'the unaddressed request to be refused as a move',
    );
    assert.equal(target.dht.table.get(sender.nodeId)?.address, listedAt);
    // Addressed to the target, from another address (a forged source, QA): the sender stays
    // listed where it is, as nobody answers there as it.
    const pings = target.dht.stats.requestsIn.PING;
    await sendRaw(sender.codec.encodeRequest(9, ping, target.nodeId), target.udpAddress);
    await until(() => target.dht.stats.requestsIn.PING > pings, 'the forged PING to be handled');
    await new Promise((r) => setTimeout(r, 300)); // the PING back to its source times out
    assert.equal(target.dht.table.get(sender.nodeId)?.address, listedAt);
    // Addressed to the target, from the sender's own address: as ever.
    assert.equal(await sender.dht.ping(target.contact), true);
  });

  it('dials no node at an address it was only heard from, which may be forged (QA)', async () => {
    const [a, target] = nodes as [OverlayNode, OverlayNode];
    // A node new to the target, heard in one signed PING from an address where nothing
    // answers as it (a forged source).
    const keys = generateNodeKeyPair(4);
    const id = nodeIdOf(keys.publicKey);
    const codec = new SignedDatagramCodec({
      keys,
      configHash: configHash(a.config),
      overlayName: a.config.name,
      puzzleBits: a.config.puzzleBits,
    });
    const pings = target.dht.stats.requestsIn.PING;
    await sendRaw(
      codec.encodeRequest(3, { sender: id, body: { type: 'PING' } }, target.nodeId),
      target.udpAddress,
    );
    await until(() => target.dht.stats.requestsIn.PING > pings, 'the PING to be handled');
    assert.ok(target.dht.table.get(id), 'listed, as a sender');
    await assert.rejects(target.findContact(id), /not in the overlay/);
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

  it('finds the newest record on a second look (othersOnly) though two of three holders missed it', async () => {
    const ERIN = 'erin@peerbx.local';
    const key = resourceId(ERIN);
    const [a] = nodes as [OverlayNode];
    const device = (n: OverlayNode) => {
      for (const { value } of n.store.get(key, Date.now())) {
        const r = decodeRecord(value);
        if (r.kind === KIND_SIP_REGISTRATION) return Buffer.from(r.value).toString();
      }
      return undefined;
    };
    await publishDevice(a, ERIN, new TextEncoder().encode('sip:erin@127.0.0.1:5071'));
    const holders = nodes.filter((n) => device(n) !== undefined);
    assert.equal(holders.length, 3);
    const before = holders.map((h) => h.store.entries(key, Date.now()));
    await publishDevice(a, ERIN, new TextEncoder().encode('sip:erin@127.0.0.1:5072'));
    // Two holders other than the publisher were away: they hold the first device still.
    const stale = holders.filter((h) => h !== a).slice(0, 2);
    for (const h of stale) {
      h.store.delete(key);
      for (const e of before[holders.indexOf(h)] ?? [])
        h.store.put(key, e.stored.value, e.stored.expiresAt, Date.now());
    }
    const asker = nodes.find((n) => !holders.includes(n)) ?? stale[0]!;
    const got = await asker.fetch(ERIN, KIND_SIP_REGISTRATION, { othersOnly: true });
    assert.deepEqual(
      got.map((r) => Buffer.from(r.value).toString()),
      ['sip:erin@127.0.0.1:5072'],
    );
  });

  it('hands held records over on a graceful leave', async () => {
    const key = resourceId('alice@peerbx.local');
    const holds = (n: OverlayNode) =>
      n.store.entries(key, Date.now()).some((e) => e.slot.startsWith('1:'));
    // k = 3 of 4 nodes: make the leaver a holder, so the fourth node must receive the record.
    const leaving = nodes.find(holds)!;
    nodes.splice(nodes.indexOf(leaving), 1);
    assert.ok(nodes.every((n) => n.dht.table.has(leaving.nodeId)));
    await leaving.leave();
    assert.deepEqual(nodes.map(holds), [true, true, true]);
    // Each was told (LEAVE): none keeps the leaver in its routing table, waiting for timeouts.
    assert.deepEqual(
      nodes.map((n) => n.dht.table.has(leaving.nodeId)),
      [false, false, false],
    );
    assert.ok(nodes.every((n) => n.dht.stats.requestsIn.LEAVE === 1));
    const got = await nodes[1]!.fetch('alice@peerbx.local', KIND_SIP_REGISTRATION);
    assert.equal(got.length, 1);
  });
});

describe("a takeover tried after one of a name's holders died", () => {
  const root = mkdtempSync(join(tmpdir(), 'peerbx-takeover-'));
  const nodes: OverlayNode[] = [];

  before(async () => {
    await startNodes(root, ['a', 'b', 'c', 'd', 'e', 'f'], nodes, config());
    for (const x of nodes) for (const y of nodes) if (x !== y) await x.dht.ping(y.dht.contact);
  });
  after(() => closeAll(root, nodes));

  it('is refused though the thief took a copy itself, where the others count a tie', async () => {
    // A name whose k = 3 holders are a (the owner's node), dead and live; next come the
    // fourth and fifth nodes. dead crashes and the others drop it: the fourth node is a holder
    // now, though it holds nothing yet. The fifth, with a key of its own for the name, has
    // not heard of live: it stores at once on itself, on a (which refuses) and on the fourth
    // (which takes it: unclaimed there); its lookup then finds live, which refuses. Among the
    // holders two refused and one took: refused. Its own copy, beyond the holders, is no vote.
    const { name, order } = nameWhere(nodes, 'rita', (order) =>
      order.slice(0, 3).includes(nodes[0]!),
    );
    const [a] = nodes as [OverlayNode];
    const [dead, live] = order.slice(0, 3).filter((n) => n !== a) as [OverlayNode, OverlayNode];
    const thief = order[4]!;
    await publishDevice(a, name, new TextEncoder().encode('sip:rita@127.0.0.1:5070'));
    await dead.close();
    nodes.splice(nodes.indexOf(dead), 1);
    for (const n of nodes) n.dht.table.remove(dead.nodeId);
    assert.ok(thief.dht.table.remove(live.nodeId));
    await assertTakeoverRefused(thief, a, name, 'sip:rita@127.0.0.1:5070');
  });
});

describe("a holder that took a liar's claim of a name first (a newcomer, raced)", () => {
  const root = mkdtempSync(join(tmpdir(), 'peerbx-raced-'));
  const nodes: OverlayNode[] = [];

  before(async () => {
    await startNodes(root, ['a', 'b', 'c', 'd', 'e'], nodes, config());
    for (const x of nodes) for (const y of nodes) if (x !== y) await x.dht.ping(y.dht.contact);
  });
  after(() => closeAll(root, nodes));

  const claimAt = (n: OverlayNode, name: string) => claimKeyAt(n, resourceId(name));
  const devicesAt = (n: OverlayNode, name: string) =>
    n.store
      .get(resourceId(name), Date.now())
      .map(({ value }) => decodeRecord(value))
      .filter((r) => r.kind === KIND_SIP_REGISTRATION)
      .map((r) => Buffer.from(r.value).toString());

  it("takes the owner's claim and records once the owner's STORE is refused and most other holders hold them", async () => {
    // QA: a member stored its own claim for a name on each node that joined, before the
    // hand-over brought the owner's; the newcomer then refused the owner's claim and records
    // for as long as the false claim lasted (24 h, up to 7 days), and a few such newcomers
    // outvoted the honest holders. Here a holder's store is emptied and given a thief's claim
    // and device, as such a newcomer's was.
    const { name, order } = nameWhere(nodes, 'nora', (o) => o.slice(0, 3).includes(nodes[0]!));
    const [a] = nodes as [OverlayNode];
    await publishDevice(a, name, new TextEncoder().encode('sip:nora@127.0.0.1:5070'));
    const owner = claimAt(a, name);
    const raced = order.slice(0, 3).find((n) => n !== a)!;
    const key = resourceId(name);
    const replaced = raced.stats().rejections.claimsReplaced;
    feed([raced], key, forgedClaim(name, Date.now()));
    assert.notEqual(claimAt(raced, name), owner);

    // The owner's next STORE there is refused, as before; the refusal has the holder ask the
    // name's other holders, and most of them hold the owner's claim.
    await publishDevice(a, name, new TextEncoder().encode('sip:nora@127.0.0.1:5071'));
    await until(() => claimAt(raced, name) === owner, "the owner's claim at the raced holder");
    await until(
      () => devicesAt(raced, name).join() === 'sip:nora@127.0.0.1:5071',
      "the owner's device, and not the thief's, at the raced holder",
    );
    assert.equal(raced.stats().rejections.claimsReplaced, replaced + 1);
    // The next refresh is taken there as anywhere.
    const r = await publishDevice(a, name, new TextEncoder().encode('sip:nora@127.0.0.1:5072'));
    assert.equal(r.replicas, 3);
  });

  it("keeps the owner's claim when a thief's STORE is refused: the other holders hold the owner's", async () => {
    const { name, order } = nameWhere(nodes, 'otto', (o) => o.slice(0, 3).includes(nodes[0]!));
    const [a] = nodes as [OverlayNode];
    await publishDevice(a, name, new TextEncoder().encode('sip:otto@127.0.0.1:5070'));
    const holder = order.slice(0, 3).find((n) => n !== a)!;
    assert.equal(claimAt(holder, name), claimAt(a, name));
    // The refusal has the holder check its claim with the others (a lookup), which keep it.
    await assertClaimKept(holder, resourceId(name), forgedClaim(name, Date.now()), nodes, config());
  });

  it('never gives up the claim of its own user, which it published, though the others were fed another', async () => {
    // QA: newcomers fed a thief's claim outvoted the user's own node, which then refused its
    // user's REGISTER as "owned by another key".
    const { name, order } = nameWhere(nodes, 'uma', (o) => o.slice(0, 3).includes(nodes[0]!));
    const [a] = nodes as [OverlayNode];
    await publishDevice(a, name, new TextEncoder().encode('sip:uma@127.0.0.1:5070'));
    const key = resourceId(name);
    const forged = forgedClaim(name, Date.now());
    feed(
      order.slice(0, 3).filter((n) => n !== a),
      key,
      forged,
    );
    await assertClaimKept(a, key, forged, nodes, config());
  });

  it("keeps the owner's claim against a liar among its fellow holders while the others are away", async () => {
    // The holders are three other nodes: one lies (it holds a claim of its own for the name),
    // one lost what it held. A thief's STORE to the third has it check: one holder against
    // none is no majority once its own claim counts too.
    const { name, order } = nameWhere(nodes, 'lia', (o) => !o.slice(0, 3).includes(nodes[0]!));
    const [a] = nodes as [OverlayNode];
    await publishDevice(a, name, new TextEncoder().encode('sip:lia@127.0.0.1:5070'));
    const [holder, liar, away] = order.slice(0, 3) as [OverlayNode, OverlayNode, OverlayNode];
    const owner = claimAt(holder, name);
    assert.ok(owner);
    const key = resourceId(name);
    const forged = forgedClaim(name, Date.now());
    feed([liar], key, forged);
    away.store.delete(key);
    await assertClaimKept(holder, key, forged, nodes, config());
    assert.equal(claimAt(holder, name), owner);
  });
});

describe('five nodes with the default k (20): holders of a name fed a false claim', () => {
  // The default k (20) on five nodes: every node holds every name, and no key can be held by
  // more than half of k. QA: a member that stored its own claim on each node that joined
  // before the hand-over did kept every such newcomer, against a 6-to-1 honest majority.
  const { root, nodes, overlay } = fiveNodes('peerbx-small-');

  it("takes the owner's claim the others hold, a liar among them", async () => {
    const [a, raced, liar] = nodes as [OverlayNode, OverlayNode, OverlayNode];
    const name = 'wes@peerbx.local';
    const key = resourceId(name);
    await publishDevice(a, name, new TextEncoder().encode('sip:wes@127.0.0.1:5070'));
    const owner = claimKeyAt(a, key);
    assert.ok(
      nodes.every((n) => claimKeyAt(n, key) === owner),
      'every node holds the name',
    );
    const forged = forgedClaim(name, Date.now());
    feed([raced, liar], key, forged);
    const replaced = raced.stats().rejections.claimsReplaced;
    // The owner's refresh is refused at the raced node; the others hold the owner's claim 3
    // to 1, of 4 asked.
    await publishDevice(a, name, new TextEncoder().encode('sip:wes@127.0.0.1:5071'));
    await until(() => claimKeyAt(raced, key) === owner, "the owner's claim at the raced node");
    assert.equal(raced.stats().rejections.claimsReplaced, replaced + 1);
  });

  it('keeps a claim read back at a restart, most of the other holders fed another: only one that came in by STORE within the hour may go (QA)', async () => {
    const [a, b] = nodes as [OverlayNode, OverlayNode];
    const name = 'xena@peerbx.local';
    const key = resourceId(name);
    await publishDevice(a, name, new TextEncoder().encode('sip:xena@127.0.0.1:5070'));
    const owner = claimKeyAt(b, key);
    assert.ok(owner);
    await b.close();
    // b first started two hours ago (its key's age): no newcomer at its restart.
    const twoHoursAgo = new Date(Date.now() - 2 * HOUR);
    utimesSync(join(root, 'b', 'node.key'), twoHoursAgo, twoHoursAgo);
    const back = await OverlayNode.start({
      dataDir: join(root, 'b'),
      config: overlay,
      bootstrap: [a.udpAddress],
    });
    nodes[1] = back;
    for (const x of nodes) if (x !== back) await x.dht.ping(back.dht.contact);
    const forged = forgedClaim(name, Date.now());
    feed(nodes.slice(2), key, forged);
    // Three of four others hold the thief's claim: a claim that came in lately would go.
    assert.equal(claimKeyAt(back, key), owner);
    await assertClaimKept(back, key, forged, nodes, overlay, false);
    // Nor is a new name's first claim, which its owner's node stored there (review: the
    // process's age made every restart a newcomer, open to IDs chosen near a new name).
    const fresh = 'xander@peerbx.local';
    const freshKey = resourceId(fresh);
    await publishDevice(a, fresh, new TextEncoder().encode('sip:xander@127.0.0.1:5070'));
    const freshForged = forgedClaim(fresh, Date.now());
    feed(nodes.slice(2), freshKey, freshForged);
    await assertClaimKept(back, freshKey, freshForged, nodes, overlay, false);
  });
});

describe('five nodes past their first hour (k = 20): a name registered a moment ago', () => {
  const { nodes, overlay } = fiveNodes('peerbx-settled-', { claimSettling: { newcomerForMs: 0 } });

  it("keeps the owner's first claim against IDs chosen near the name, most of the others (review)", async () => {
    // The review: a claim a node's owner stored there counted as new to settle for an hour,
    // and six IDs near a name answering with a thief's claim turned its three other holders.
    const [a, b] = nodes as [OverlayNode, OverlayNode];
    const name = 'yuri@peerbx.local';
    const key = resourceId(name);
    await publishDevice(a, name, new TextEncoder().encode('sip:yuri@127.0.0.1:5070'));
    const owner = claimKeyAt(b, key);
    assert.ok(owner);
    const forged = forgedClaim(name, Date.now());
    feed(nodes.slice(2), key, forged);
    await assertClaimKept(b, key, forged, nodes, overlay, false);
    assert.equal(claimKeyAt(b, key), owner);
  });
});

describe('a newcomer its writer stored a false claim on, no STORE refused there', () => {
  const { nodes, overlay } = fiveNodes('peerbx-first-', {
    claimSettling: { firstCheckAfterMs: 200 },
  });

  /**
   * `user` registered at node a; the owner's key, once the newcomers `checked` (raced, say)
   * have had the first check of the owner's claim, new there too (it finds nothing to do).
   */
  async function registered(user: string, ...checked: OverlayNode[]): Promise<string | undefined> {
    const key = resourceId(`${user}@peerbx.local`);
    const before = checked.map((n) => n.stats().rejections.claimsChecked);
    const contact = new TextEncoder().encode(`sip:${user}@127.0.0.1:5070`);
    await publishDevice(nodes[0]!, `${user}@peerbx.local`, contact);
    const done = () => checked.every((n, i) => n.stats().rejections.claimsChecked > before[i]!);
    await until(done, 'the first checks');
    return claimKeyAt(nodes[0]!, key);
  }

  /**
   * `forged` stored at `raced` by `sender`, where no claim of the name is held: taken, then
   * replaced by the owner's claim at its first check, in `ms` at most.
   */
  async function assertFirstCheckReplaces(
    raced: OverlayNode,
    key: Uint8Array,
    forged: Uint8Array[],
    sender: KeyPair,
    owner: string | undefined,
    ms = 10_000,
  ): Promise<void> {
    raced.store.delete(key);
    const replaced = raced.stats().rejections.claimsReplaced;
    const stored = await storeFromFarNode(raced.udpAddress, key, forged, nodes, overlay, sender);
    assert.ok(
      stored.every((r) => r.ok),
      'taken: no claim was held',
    );
    assert.notEqual(claimKeyAt(raced, key), owner);
    await until(() => claimKeyAt(raced, key) === owner, "the owner's claim at the newcomer", ms);
    assert.equal(raced.stats().rejections.claimsReplaced, replaced + 1);
  }

  for (const via of ['its writer', 'another node'] as const) {
    it(`checks the name a while later, and takes the owner's claim the others hold: sent by ${via} (QA)`, async () => {
      // QA: with the liar's ID the closest to a name, no honest node handed the name over to
      // the newcomers it fed, so no STORE was ever refused there to start a check; and a
      // claim signed with a node key of no node, or passed on by a newcomer it fed, had none.
      const raced = nodes[1]!;
      const user = `zoe-${via.replace(' ', '-')}`;
      const owner = await registered(user, raced);
      const liar = generateNodeKeyPair(overlay.puzzleBits);
      const forged = forgedClaim(`${user}@peerbx.local`, Date.now(), liar);
      const sender = via === 'its writer' ? liar : generateNodeKeyPair(overlay.puzzleBits);
      await assertFirstCheckReplaces(
        raced,
        resourceId(`${user}@peerbx.local`),
        forged,
        sender,
        owner,
      );
    });
  }

  it('checks every claim that came in, however many came before (QA: beyond 256 waiting, one went unchecked)', async () => {
    const raced = nodes[1]!;
    const checked = raced.stats().rejections.claimsChecked;
    const owner = await registered('zack', raced);
    // The liar sends 300 claims of made-up names first, then its claim of zack.
    const liar = generateNodeKeyPair(overlay.puzzleBits);
    for (let i = 0; i < 300; i++) {
      const junk = `junk${i}@peerbx.local`;
      const claim = encodeRecord(nameClaim(liar, generateKeyPair(), Date.now(), junk));
      const to = raced.udpAddress;
      const [r] = await storeFromFarNode(to, resourceId(junk), [claim], nodes, overlay, liar);
      assert.ok(r?.ok, `junk claim ${i} taken`);
    }
    // Each a lookup the liar caused: 30 a second at most (those of two seconds end in one).
    const before = raced.stats().rejections.claimsChecked;
    await new Promise((r) => setTimeout(r, 1000));
    const inASecond = raced.stats().rejections.claimsChecked - before;
    assert.ok(inASecond > 0 && inASecond <= 60, `${inASecond} checks in a second`);
    const forged = forgedClaim('zack@peerbx.local', Date.now(), liar);
    await assertFirstCheckReplaces(
      raced,
      resourceId('zack@peerbx.local'),
      forged,
      liar,
      owner,
      30_000,
    );
    // The owner's claim, the 300 and the liar's: each checked (a check ends in 10 s at most).
    const all = () => raced.stats().rejections.claimsChecked === checked + 302;
    await until(all, 'a check of each claim', 15_000);
  });

  it("keeps the owner's claim at an honest newcomer against a liar and a newcomer it fed, two to the owner's node (QA of 5663d3b)", async () => {
    // QA: with a newcomer's own claim no vote at its first check, an honest node in its first
    // hour gave the name up to the liar and a newcomer the liar had fed a moment before, two
    // against one, and the poison spread to every later newcomer.
    const [a, raced, liar, fed, gone] = nodes as [
      OverlayNode,
      OverlayNode,
      OverlayNode,
      OverlayNode,
      OverlayNode,
    ];
    // Three others hold the name: the fifth node leaves (dropped from every table, no vote).
    await gone.close();
    for (const n of nodes) n.dht.table.remove(gone.nodeId);
    // Their own first checks of the owner's claim over (they would find the owner's now).
    const owner = await registered('zed', raced, liar, fed);
    const key = resourceId('zed@peerbx.local');
    const ownerClaim = a.store
      .get(key, Date.now())
      .map(({ value }) => value)
      .find((v) => decodeRecord(v).kind === KIND_NAME_CLAIM)!;
    const liarKeys = generateNodeKeyPair(overlay.puzzleBits);
    feed([liar, fed], key, forgedClaim('zed@peerbx.local', Date.now(), liarKeys));
    // The owner's claim reaches raced anew (a hand-over, say): its first check asks a, liar
    // and fed.
    raced.store.delete(key);
    const checked = raced.stats().rejections.claimsChecked;
    const sender = generateNodeKeyPair(overlay.puzzleBits);
    const stored = await storeFromFarNode(
      raced.udpAddress,
      key,
      [ownerClaim],
      nodes,
      overlay,
      sender,
    );
    assert.ok(stored.every((r) => r.ok));
    await until(() => raced.stats().rejections.claimsChecked > checked, 'the first check');
    assert.equal(claimKeyAt(raced, key), owner);
  });
});

describe('a newcomer with claims waiting for their first check', () => {
  const { nodes, overlay } = fiveNodes('peerbx-waiting-', {
    claimSettling: { firstCheckAfterMs: 60_000, maxFirstChecksWaiting: 3 },
  });

  it('refuses more for now, as a full store does, rather than take them unchecked (review)', async () => {
    // Review: behind enough made-up names, a liar's claim went past its hour unchecked.
    const raced = nodes[1]!;
    const liar = generateNodeKeyPair(overlay.puzzleBits);
    const store = async (user: string) => {
      const name = `${user}@peerbx.local`;
      const claim = encodeRecord(nameClaim(liar, generateKeyPair(), Date.now(), name));
      const to = raced.udpAddress;
      const [r] = await storeFromFarNode(to, resourceId(name), [claim], nodes, overlay, liar);
      return r;
    };
    for (const user of ['w1', 'w2', 'w3']) assert.equal((await store(user))?.ok, true, user);
    const refused = await store('w4');
    assert.equal(refused?.ok, false);
    assert.equal(refused?.ok === false && refused.reason, 'too-many-keys');
    assert.match(
      (refused?.ok === false && refused.detail) || '',
      /^3 name claims wait for a check at this node \(in its first hour\): try again later$/,
    );
    assert.equal(claimKeyAt(raced, resourceId('w4@peerbx.local')), undefined);
    assert.equal(raced.stats().rejections.claimChecksWaiting, 3);
  });
});

describe('two liars among four holders of a name, one honest holder away', () => {
  const root = mkdtempSync(join(tmpdir(), 'peerbx-cascade-'));
  const nodes: OverlayNode[] = [];
  const overlay = config({
    dht: { k: 4, alpha: 3, disjointPaths: 1, maintenanceIntervalMs: 60_000 },
  });

  before(async () => {
    await startNodes(root, ['a', 'b', 'c', 'd', 'e', 'f'], nodes, overlay);
    for (const x of nodes) for (const y of nodes) if (x !== y) await x.dht.ping(y.dht.contact);
  });
  after(() => closeAll(root, nodes));

  it("cannot turn the honest holders one by one with a thief's STOREs (review)", async () => {
    // Holders h1, h2 (honest) and t1, t2 (answering with a thief's claim): a fetch sees a tie.
    // h2 restarts; a thief's STORE at h1 meanwhile, then at h2: a claim check counting only
    // the others that answered would have turned h1 (two against none), then h2 (three
    // against none), and the thief would own the name.
    const { name, order } = nameWhere(nodes, 'vic', (o) => o.indexOf(nodes[0]!) >= 4);
    const [a] = nodes as [OverlayNode];
    await publishDevice(a, name, new TextEncoder().encode('sip:vic@127.0.0.1:5070'));
    const key = resourceId(name);
    const [h1, h2, t1, t2] = order as [OverlayNode, OverlayNode, OverlayNode, OverlayNode];
    const owner = claimKeyAt(h1, key);
    const forged = forgedClaim(name, Date.now());
    feed([t1, t2], key, forged);
    const h2Dir = join(root, ['a', 'b', 'c', 'd', 'e', 'f'][nodes.indexOf(h2)]!);
    await h2.close();
    await assertClaimKept(h1, key, forged, nodes, overlay);
    const back = await OverlayNode.start({
      dataDir: h2Dir,
      config: overlay,
      bootstrap: [a.udpAddress],
    });
    nodes[nodes.indexOf(h2)] = back;
    for (const x of nodes) if (x !== back) await x.dht.ping(back.dht.contact);
    assert.equal(claimKeyAt(back, key), owner);
    // Its claim read back from its store is no newcomer's: it is not even checked.
    await assertClaimKept(back, key, forged, nodes, overlay, false);
    const got = await order[5]!.fetch(name, KIND_SIP_REGISTRATION).catch(() => []);
    assert.ok(!got.some((r) => /thief/.test(Buffer.from(r.value).toString())));
    const r = await publishDevice(a, name, new TextEncoder().encode('sip:vic@127.0.0.1:5071'));
    assert.ok(r.replicas >= 2, "the owner's refresh is taken");
  });
});

describe("a node's share of another node's store", () => {
  const root = mkdtempSync(join(tmpdir(), 'peerbx-shares-'));
  const nodes: OverlayNode[] = [];
  const startB = () =>
    OverlayNode.start({
      dataDir: join(root, 'b'),
      config: config(),
      bootstrap: [nodes[0]!.udpAddress],
      maxKeysPerStorer: 2,
    });

  before(async () => {
    await startNodes(root, ['a'], nodes);
    nodes.push(await startB());
  });
  after(() => closeAll(root, nodes));

  it("refuses records of new keys beyond their writer's share, after a restart too (QA: one member filled every store)", async () => {
    let b = nodes[1]!;
    const member = generateNodeKeyPair(4);
    /** A claim of a made-up name written by the member, sent by the member or a node `via`. */
    const junk = async (user: string, via?: KeyPair) => {
      const name = `${user}@peerbx.local`;
      const claim = encodeRecord(nameClaim(member, generateKeyPair(), Date.now(), name));
      const to = b.udpAddress;
      const [r] = await storeFromFarNode(
        to,
        resourceId(name),
        [claim],
        nodes,
        config(),
        via ?? member,
      );
      return r?.ok ? 'stored' : `${r?.reason}: ${r?.detail}`;
    };
    assert.equal(await junk('junk1'), 'stored');
    assert.equal(await junk('junk2', generateNodeKeyPair(4)), 'stored');
    assert.match(
      await junk('junk3', generateNodeKeyPair(4)),
      /^too-many-keys: this node holds 2 keys of records node [0-9a-f]{16} wrote/,
    );
    assert.equal(b.stats().rejections.stores['too-many-keys'], 1);
    // Another node's records still find room.
    const r = await publishDevice(
      nodes[0]!,
      'pia@peerbx.local',
      new TextEncoder().encode('sip:pia@127.0.0.1:5070'),
    );
    assert.equal(r.replicas, 2);
    // Restarted, b counts the member's keys it loads: still full for it.
    await b.close();
    b = await startB();
    nodes[1] = b;
    assert.match(await junk('junk4'), /^too-many-keys/);
  });
});

describe('a node that names where to dial it', () => {
  const root = mkdtempSync(join(tmpdir(), 'peerbx-advertise-'));
  const nodes: OverlayNode[] = [];
  after(() => closeAll(root, nodes));

  it('is dialled there on its own host only, not at another host it names (QA)', async () => {
    await startNodes(root, ['a'], nodes);
    const start = async (name: string, advertise: string[]) => {
      const n = await OverlayNode.start({
        dataDir: join(root, name),
        config: config(),
        bootstrap: [nodes[0]!.udpAddress],
        advertise,
      });
      nodes.push(n);
      return n;
    };
    const elsewhere = await start('b', ['192.0.2.66:22']);
    const [a] = nodes as [OverlayNode];
    assert.equal(await a.resolveStreamAddress(elsewhere.nodeId), elsewhere.streamAddress);
    const port = Number(elsewhere.streamAddress.split(':')[1]) + 1;
    const here = await start('c', ['192.0.2.66:22', `127.0.0.1:${port}`]);
    assert.equal(await a.resolveStreamAddress(here.nodeId), `127.0.0.1:${port}`);
  });
});

describe('a node that is not among the closest to a name', () => {
  const root = mkdtempSync(join(tmpdir(), 'peerbx-far-'));
  const nodes: OverlayNode[] = [];
  const k = 2;
  const overlay = config({ dht: { k, alpha: 3, disjointPaths: 1, maintenanceIntervalMs: 60_000 } });

  before(async () => {
    await startNodes(root, ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'], nodes, overlay);
  });
  after(() => closeAll(root, nodes));

  it("refuses a thief's claim and device for the name, as the nodes holding its claim do", async () => {
    // A name and a node that knows k nodes closer to it than itself.
    let name = '';
    let far: OverlayNode | undefined;
    for (let i = 0; !far && i < 50; i++) {
      name = `kate${i}@peerbx.local`;
      const key = resourceId(name);
      for (const n of nodes) await n.dht.findNode(key);
      far = nodes.find((n) => !n.dht.isResponsibleFor(key));
    }
    assert.ok(far, 'a name with a node far from it among 8 nodes');
    const key = resourceId(name);
    await publishDevice(nodes[0]!, name, new TextEncoder().encode('sip:kate@127.0.0.1:5070'));
    const holds = (n: OverlayNode) => n.store.get(key, Date.now()).length > 0;
    assert.equal(holds(far), false);
    const forged = forgedClaim(name, Date.now());

    // Holding no claim for the name, it would have taken the thief's (nothing it holds says
    // who owns the name), and a lookup that met it first would have counted it as a holder.
    const atFar = await storeFromFarNode(far.udpAddress, key, forged, nodes, overlay);
    assert.deepEqual(
      atFar.map((v) => v.ok || v.reason),
      ['not-responsible', 'not-responsible'],
    );
    assert.equal(holds(far), false);
    const holders = nodes.filter(holds);
    assert.ok(holders.length >= k);
    for (const holder of holders) {
      const [claim] = await storeFromFarNode(holder.udpAddress, key, forged, nodes, overlay);
      assert.ok(claim && !claim.ok && /owned by another key/.test(claim.detail ?? ''));
    }
    const got = await far.fetch(name, KIND_SIP_REGISTRATION);
    assert.deepEqual(
      got.map((r) => Buffer.from(r.value).toString()),
      ['sip:kate@127.0.0.1:5070'],
    );
  });
});

describe('a fetch whose holders disagree', () => {
  // Two nodes, k = 3: both hold every name, and a fetch (quorum 2) asks the other one.
  const root = mkdtempSync(join(tmpdir(), 'peerbx-repair-'));
  const nodes: OverlayNode[] = [];

  before(() => startNodes(root, ['a', 'b'], nodes));
  after(() => closeAll(root, nodes));

  const DAVE = 'dave@peerbx.local';
  const key = resourceId(DAVE);
  const enc = (s: string) => new TextEncoder().encode(s);
  /** The device of dave's SIP-REGISTRATION in n's store ('' when removed), or undefined. */
  const device = (n: OverlayNode) => {
    for (const { value } of n.store.get(key, Date.now())) {
      const r = decodeRecord(value);
      if (r.kind === KIND_SIP_REGISTRATION) return Buffer.from(r.value).toString();
    }
    return undefined;
  };
  /** n was away while dave's registration changed: what it held before is put back. */
  const heldBefore = (n: OverlayNode, entries: ReturnType<ValueStore['entries']>) => {
    n.store.delete(key);
    for (const e of entries) n.store.put(key, e.stored.value, e.stored.expiresAt, Date.now());
  };

  it('sends the newest record to a holder that returned an older one, and to its own store', async () => {
    const [a, b] = nodes as [OverlayNode, OverlayNode];
    await publishDevice(a, DAVE, enc('sip:dave@127.0.0.1:5071'));
    await until(() => device(b) !== undefined, "b holds dave's device");
    const first = b.store.entries(key, Date.now());

    // Dave moves; b missed it.
    await publishDevice(a, DAVE, enc('sip:dave@127.0.0.1:5072'));
    heldBefore(b, first);
    assert.equal(device(b), 'sip:dave@127.0.0.1:5071');
    const got = await a.fetch(DAVE, KIND_SIP_REGISTRATION);
    assert.deepEqual(
      got.map((r) => Buffer.from(r.value).toString()),
      ['sip:dave@127.0.0.1:5072'],
    );
    assert.equal(a.stats().messages.staleRepaired, 1);
    await until(() => device(b) === 'sip:dave@127.0.0.1:5072', 'b holds the newest device');

    // Dave unregisters (his record removed); the fetcher's own store missed it this time.
    const moved = a.store.entries(key, Date.now());
    await publishDevice(a, DAVE, new Uint8Array(0));
    heldBefore(a, moved);
    const removed = await a.fetch(DAVE, KIND_SIP_REGISTRATION);
    assert.deepEqual(removed, [], 'found removed where the old record was held');
    assert.equal(a.stats().messages.staleRepaired, 2);
    await until(() => device(a) === '', 'a holds the removal');
    // Holders that agree are sent nothing.
    await a.fetch(DAVE, KIND_SIP_REGISTRATION);
    await b.fetch(DAVE, KIND_SIP_REGISTRATION);
    assert.equal(a.stats().messages.staleRepaired + b.stats().messages.staleRepaired, 2);
  });

  it('says unreachable, not "no record", when the holders stay split on who owns the name', async () => {
    const [a, b] = nodes as [OverlayNode, OverlayNode];
    const XENA = 'xena@peerbx.local';
    const xkey = resourceId(XENA);
    await publishDevice(a, XENA, enc('sip:xena@127.0.0.1:5073'));
    await until(() => b.store.get(xkey, Date.now()).length === 2, "b holds xena's claim");
    // b lies: a claim of another key, dated later, and a device of that key. One holder
    // against one, at quorum 2 and at k (both nodes): no key is the owner.
    const now = Date.now();
    for (const bytes of forgedClaim(XENA, now)) b.store.put(xkey, bytes, now + HOUR, now);
    const before = a.stats().rejections;
    await assert.rejects(
      a.fetch(XENA, KIND_SIP_REGISTRATION),
      (e: unknown) =>
        e instanceof OverlayError &&
        e.code === 'ERR_UNREACHABLE' &&
        /holders of xena@peerbx\.local disagree on which key owns the name/.test(e.message),
    );
    const after = a.stats().rejections;
    assert.equal(after.contestedFetches - before.contestedFetches, 1);
    assert.ok(after.fetchedDropped > before.fetchedDropped, 'the records left out are counted');
  });
});

describe('a node started again from its data directory', () => {
  const root = mkdtempSync(join(tmpdir(), 'peerbx-republish-'));
  const nodes: OverlayNode[] = [];

  before(() => startFour(root, nodes));
  after(() => closeAll(root, nodes));

  it('stores what it published before again, name claim included', async () => {
    const d = nodes[3]!;
    const value = new TextEncoder().encode('sip:zoe@127.0.0.1:5070');
    await publishDevice(d, 'zoe@peerbx.local', value, 600_000);
    // Everyone goes; a new overlay of three empty nodes has never seen zoe.
    for (const n of nodes.splice(0)) await n.close();
    await startNodes(root, ['e', 'f', 'g'], nodes);
    assert.deepEqual(await nodes[0]!.fetch('zoe@peerbx.local'), []);
    nodes.push(
      await OverlayNode.start({
        dataDir: join(root, 'd'),
        config: config(),
        bootstrap: [nodes[0]!.udpAddress],
      }),
    );
    const key = resourceId('zoe@peerbx.local');
    const held = () => nodes.slice(0, 3).filter((n) => n.store.get(key, Date.now()).length === 2);
    await until(() => held().length >= 2, "zoe's claim and record on the new nodes");
    const got = await nodes[1]!.fetch('zoe@peerbx.local');
    assert.deepEqual(
      got.map((r) => r.kind).sort(),
      [KIND_NAME_CLAIM, KIND_SIP_REGISTRATION].sort(),
    );
    assert.deepEqual(got.find((r) => r.kind === KIND_SIP_REGISTRATION)?.value, value);
  });
});

describe('a node started again without a reachable bootstrap node', () => {
  const root = mkdtempSync(join(tmpdir(), 'peerbx-comeback-'));
  const nodes: OverlayNode[] = [];

  before(() => startFour(root, nodes));
  after(() => closeAll(root, nodes));

  it('comes back through the nodes it knew: the founder, after a graceful leave', async () => {
    const founder = nodes[0]!;
    await founder.leave();
    // The others dropped it on its LEAVE; started again as it was first, with no bootstrap.
    for (const n of nodes.slice(1)) assert.equal(n.dht.table.has(founder.nodeId), false);
    const again = await OverlayNode.start({ dataDir: join(root, 'a'), config: config() });
    nodes[0] = again;
    assert.ok(again.dht.table.size >= 2, `it knows ${again.dht.table.size} nodes`);
    assert.equal(again.stats().routingTable.isolated, false);
    const value = new TextEncoder().encode('sip:yan@127.0.0.1:5070');
    await publishDevice(nodes[3]!, 'yan@peerbx.local', value, 600_000);
    const found = await again.fetch('yan@peerbx.local');
    assert.deepEqual(found.find((r) => r.kind === KIND_SIP_REGISTRATION)?.value, value);
    await until(
      () => nodes.slice(1).every((n) => n.dht.table.has(again.nodeId)),
      'the others knowing the founder again',
    );
  });

  it('joins through the nodes it knew when its bootstrap node is down', async () => {
    const bootstrap = nodes[0]!.udpAddress;
    for (const n of nodes.splice(0, 2)) await n.close();
    nodes.unshift(
      await OverlayNode.start({
        dataDir: join(root, 'b'),
        config: config(),
        bootstrap: [bootstrap],
      }),
    );
    const b = nodes[0]!;
    assert.ok(
      b.dht.table.has(nodes[1]!.nodeId) && b.dht.table.has(nodes[2]!.nodeId),
      'b rejoined through c and d',
    );
    assert.equal(b.stats().routingTable.isolated, false);
  });
});

describe('a node whose NODE-INFO is out of date where it is found first', () => {
  const root = mkdtempSync(join(tmpdir(), 'peerbx-moved-'));
  const nodes: OverlayNode[] = [];

  before(() => startFour(root, nodes));
  after(() => closeAll(root, nodes));

  it('is dialled at the address the quorum of holders gives', async () => {
    const [a, , , d] = nodes as [OverlayNode, OverlayNode, OverlayNode, OverlayNode];
    const key = resourceId(idToHex(d.nodeId));
    const holder = nodes.find((n) => n.store.get(key, Date.now()).length > 0)!;
    const old = holder.store.get(key, Date.now())[0]!;
    // d restarts on other ports: its new NODE-INFO replaces the old one on the holders.
    await d.close();
    const moved = await OverlayNode.start({
      dataDir: join(root, 'd'),
      config: config(),
      bootstrap: [a.udpAddress],
    });
    nodes[3] = moved;
    assert.notEqual(moved.streamAddress, d.streamAddress);
    // a itself still holds the old one, so the first NODE-INFO it finds names the old address.
    a.store.delete(key);
    a.store.put(key, old.value, old.expiresAt, Date.now());
    moved.links.handle('echo', (channel) => {
      channel.on('message', (bytes: Uint8Array) => channel.send(bytes));
    });
    const ch = await a.connect(moved.nodeId, 'echo');
    assert.equal(idToHex(ch.remoteNodeId), idToHex(moved.nodeId));
    const echoed = new Promise<string>((resolve) =>
      ch.on('message', (bytes: Uint8Array) => resolve(Buffer.from(bytes).toString())),
    );
    ch.send(new TextEncoder().encode('hello'));
    assert.equal(await echoed, 'hello');
  });
});

describe('client role', () => {
  const root = mkdtempSync(join(tmpdir(), 'peerbx-client-'));
  const peers: OverlayNode[] = [];
  let client: OverlayClient;

  before(async () => {
    peers.push(await OverlayNode.start({ dataDir: join(root, 'p0'), config: config() }));
    for (const name of ['p1', 'p2']) {
      peers.push(
        await OverlayNode.start({
          dataDir: join(root, name),
          config: config(),
          bootstrap: [peers[0]!.udpAddress],
        }),
      );
    }
    client = await OverlayClient.start({
      dataDir: join(root, 'client'),
      config: config(),
      peer: peers[1]!.streamAddress,
    });
  });

  after(async () => {
    await client.close();
    for (const n of peers) await n.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('stores and fetches through its peer, signing and verifying itself', async () => {
    const value = new TextEncoder().encode('sip:dave@10.0.0.9:5060');
    const r = await publishDevice(client, 'dave@peerbx.local', value);
    assert.ok(r.replicas >= 2);
    const seen = await peers[2]!.fetch('dave@peerbx.local', KIND_SIP_REGISTRATION);
    assert.equal(seen.length, 1);
    assert.deepEqual(seen[0]!.dictionaryKey, client.nodeId);
    const back = await client.fetch('dave@peerbx.local', KIND_SIP_REGISTRATION);
    assert.deepEqual(back[0]!.value, value);
  });

  it("gets the owner's records through its peer when the peer's store holds another key's claim", async () => {
    const OLGA = 'olga@peerbx.local';
    const value = new TextEncoder().encode('sip:olga@10.0.0.9:5060');
    await publishDevice(client, OLGA, value);
    const key = resourceId(OLGA);
    const now = Date.now();
    // The client's peer holds a claim and device of another key instead of olga's: one holder
    // (itself) against the first other one, so the peer asks all k holders and keeps olga's.
    const peer = peers[1]!;
    peer.store.delete(key);
    for (const bytes of forgedClaim(OLGA, now)) peer.store.put(key, bytes, now + HOUR, now);
    const lookups = peer.dht.stats.lookups;
    const back = await client.fetch(OLGA, KIND_SIP_REGISTRATION);
    assert.equal(peer.dht.stats.lookups - lookups, 2, 'contested at the peer, asked again');
    assert.equal(back.length, 1);
    assert.deepEqual(back[0]!.value, value);
  });

  it('has a few requests served at once, the rest refused with ERR_LIMIT, not queued', async () => {
    const results = await Promise.allSettled(
      Array.from({ length: 3 * MAX_CLIENT_REQUESTS_IN_FLIGHT }, (_, i) =>
        client.fetch(`nobody-${i}@peerbx.local`),
      ),
    );
    const limited = (r: PromiseSettledResult<unknown>) =>
      r.status === 'rejected' && r.reason instanceof OverlayError && r.reason.code === 'ERR_LIMIT';
    assert.ok(results.some(limited), 'some requests were refused');
    // Served: answered, or failed in the lookup itself (a loaded machine's timeouts), but not
    // turned away.
    assert.ok(
      results.filter((r) => !limited(r)).length >= MAX_CLIENT_REQUESTS_IN_FLIGHT,
      `as many as the limit were served: ${results.map((r) => (r.status === 'fulfilled' ? 'ok' : (r.reason as Error).message)).join('; ')}`,
    );
    // Once the answers are in, the client is served again: answered, or (a machine loaded
    // enough that the burst's own lookups timed out and the peer dropped its contacts) told
    // the overlay is out of reach, never refused for the limit.
    const again = await client.fetch('nobody@peerbx.local').catch((e: unknown) => e);
    if (Array.isArray(again)) assert.deepEqual(again, []);
    else {
      assert.ok(again instanceof OverlayError, String(again));
      assert.equal(again.code, 'ERR_UNREACHABLE', again.message);
    }
  });

  it('is never put in a routing table', () => {
    for (const p of peers) assert.equal(p.dht.table.has(client.nodeId), false);
  });

  it('counts requests on a client channel that do not decode, and still serves the client', async () => {
    const peer = peers[1]!;
    const before = peer.stats().rejections.clientRequestsMalformed;
    const channel = await peers[0]!.connect(peer.nodeId, CLIENT_APPLICATION);
    for (const junk of ['not msgpack', '\x93\x01\x02\x03', '']) channel.send(Buffer.from(junk));
    await until(
      () => peer.stats().rejections.clientRequestsMalformed === before + 3,
      'the three counted',
    );
    channel.close();
    assert.deepEqual(await client.fetch('nobody-else@peerbx.local'), []);
  });

  it("gets the storing peers' refusal for a name owned by another key", async () => {
    await publishDevice(peers[0]!, 'erin@peerbx.local', Uint8Array.of(1));
    await assert.rejects(
      publishDevice(client, 'erin@peerbx.local', Uint8Array.of(2)),
      (e: unknown) =>
        e instanceof OverlayError &&
        e.code === 'ERR_FORBIDDEN' &&
        /owned by another key/.test(e.message),
    );
  });

  it('connects directly to a node whose address its peer resolves', async () => {
    peers[2]!.links.handle('echo', (channel) =>
      channel.on('message', (b: Uint8Array) => channel.send(b)),
    );
    const ch = await client.connect(peers[2]!.nodeId, 'echo');
    const got = new Promise<string>((resolve) =>
      ch.on('message', (b: Uint8Array) => resolve(Buffer.from(b).toString())),
    );
    ch.send(new TextEncoder().encode('OPTIONS'));
    assert.equal(await got, 'OPTIONS');
  });
});

describe('enrolled mode', () => {
  const root = mkdtempSync(join(tmpdir(), 'peerbx-enrolled-'));
  const authority = generateKeyPair();
  const enrolled = signOverlayConfig(
    config({
      enrollment: 'enrolled',
      authorityKey: Buffer.from(authority.publicKey).toString('hex'),
    }),
    authority,
  );
  const nodes: OverlayNode[] = [];

  /** A data directory whose user `user` holds a certificate signed by `by`. */
  function enrol(dir: string, user: string, by = authority): void {
    const paths = ensureDataDir(dir);
    const key = loadUserKey(paths, user);
    const cert = issueCertificate(by, user, key.publicKey, 3_600_000, Date.now());
    writeFileSync(userCertificatePath(paths, user), encodeCertificate(cert));
  }

  before(async () => {
    enrol(join(root, 'e0'), 'bob');
    enrol(join(root, 'e1'), 'mallory', generateKeyPair());
    nodes.push(await OverlayNode.start({ dataDir: join(root, 'e0'), config: enrolled }));
    nodes.push(
      await OverlayNode.start({
        dataDir: join(root, 'e1'),
        config: enrolled,
        bootstrap: [nodes[0]!.udpAddress],
      }),
    );
    nodes.push(
      await OverlayNode.start({
        dataDir: join(root, 'e2'),
        config: enrolled,
        bootstrap: [nodes[0]!.udpAddress],
      }),
    );
  });

  after(async () => {
    for (const n of nodes) await n.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('refuses a configuration the authority did not sign', async () => {
    await assert.rejects(
      OverlayNode.start({
        dataDir: join(root, 'unsigned'),
        config: { ...enrolled, puzzleBits: 5 },
      }),
      (e: unknown) => e instanceof OverlayError && e.code === 'ERR_SIGNATURE',
    );
  });

  it('stores a registration of a certified user', async () => {
    await publishDevice(nodes[0]!, 'bob@peerbx.local', Uint8Array.of(7));
    const got = await nodes[2]!.fetch('bob@peerbx.local', KIND_SIP_REGISTRATION);
    assert.equal(got.length, 1);
  });

  it('tells a user without a certificate what to do', async () => {
    await assert.rejects(
      publishDevice(nodes[2]!, 'carol@peerbx.local', Uint8Array.of(1)),
      (e: unknown) =>
        e instanceof OverlayError &&
        e.code === 'ERR_CERTIFICATE' &&
        /peerbx ca issue carol/.test(e.message),
    );
    assert.ok(!existsSync(join(root, 'e2', 'users', 'carol.key')), 'no key made for carol');
  });

  it("refuses a certificate signed by someone other than the overlay's authority", async () => {
    await assert.rejects(
      publishDevice(nodes[1]!, 'mallory@peerbx.local', Uint8Array.of(1)),
      (e: unknown) =>
        e instanceof OverlayError && e.code === 'ERR_FORBIDDEN' && /authority/.test(e.message),
    );
  });
});

describe('an isolated node', () => {
  it('reports the overlay unreachable, not an empty answer, when no peer answers', async () => {
    const root = mkdtempSync(join(tmpdir(), 'peerbx-alone-'));
    const a = await OverlayNode.start({ dataDir: join(root, 'a'), config: config() });
    const b = await OverlayNode.start({
      dataDir: join(root, 'b'),
      config: config(),
      bootstrap: [a.udpAddress],
    });
    try {
      await a.close();
      await assert.rejects(
        b.fetch('nobody@peerbx.local'),
        (e: unknown) => e instanceof OverlayError && e.code === 'ERR_UNREACHABLE',
      );
    } finally {
      await b.close();
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('a lookup whose holders are silent', () => {
  it('is not taken for "no such record" when most of the closest nodes did not answer', async () => {
    const root = mkdtempSync(join(tmpdir(), 'peerbx-silent-'));
    const nodes: OverlayNode[] = [];
    await startNodes(root, ['a', 'b', 'c', 'd'], nodes);
    const a = nodes[0]!;
    // k = 3. The two nodes other than a closest to the name go silent, one after the other:
    // with a itself they are among the three closest to it.
    const name = 'nobody@peerbx.local';
    const key = resourceId(name);
    const [first, second] = nodes
      .filter((n) => n !== a)
      .sort((x, y) => compareDistance(key, x.nodeId, y.nodeId)) as [OverlayNode, OverlayNode];
    try {
      // One silent of the three closest: the other two speak for the overlay.
      await first.close();
      assert.deepEqual(await a.fetch(name), []);
      // Two silent: the record may be on them (an overloaded holder is silent too).
      await second.close();
      await assert.rejects(
        a.fetch(name),
        (e: unknown) =>
          e instanceof OverlayError &&
          e.code === 'ERR_UNREACHABLE' &&
          /did not answer/.test(e.message),
      );
    } finally {
      await closeAll(root, nodes);
    }
  });
});

describe('overlay upkeep', () => {
  const root = mkdtempSync(join(tmpdir(), 'peerbx-upkeep-'));
  const nodes: OverlayNode[] = [];
  const PERIOD_MS = 250;

  before(async () => {
    for (const name of ['x', 'y', 'z']) {
      const founder = nodes[0];
      nodes.push(
        await OverlayNode.start({
          dataDir: join(root, name),
          config: config({
            dht: { k: 3, alpha: 3, disjointPaths: 1, maintenanceIntervalMs: PERIOD_MS },
          }),
          ...(founder ? { bootstrap: [founder.udpAddress] } : {}),
        }),
      );
    }
  });
  after(() => closeAll(root, nodes));

  it('does not store a record stored everywhere again at every maintenance period', async () => {
    const x = nodes[0]!;
    const r = await publishDevice(
      x,
      'upkeep@peerbx.local',
      new TextEncoder().encode('sip:upkeep@127.0.0.1:5070'),
      3_600_000,
    );
    assert.equal(r.replicas, 3);
    const stores = () =>
      nodes.reduce((sum, n) => sum + (n.stats().messages.requestsIn.STORE ?? 0), 0);
    const before = stores();
    await new Promise((resolve) => setTimeout(resolve, 8 * PERIOD_MS));
    // Before, every period re-sent every published record: 8 periods, 8 rounds of STOREs.
    assert.equal(stores() - before, 0, 'no STORE in 8 maintenance periods');
  });

  it('forgets its own records once they expired, in memory and on disk', async () => {
    const y = nodes[1]!;
    const before = y.stats().published;
    const r = await publishDevice(
      y,
      'brief@peerbx.local',
      new TextEncoder().encode('sip:brief@127.0.0.1:5070'),
      1_000,
    );
    assert.ok(r.replicas >= 1);
    // The device, and the name claim stored with it (which lives for days).
    assert.equal(y.stats().published, before + 2);
    await new Promise((resolve) => setTimeout(resolve, 1_000 + 4 * PERIOD_MS));
    assert.equal(y.stats().published, before + 1, 'the expired device is forgotten');
    await y.close();
    const disk = new PersistentStore(join(root, 'y', 'store'));
    await disk.open();
    try {
      const kept = (await disk.loadPublished()).map((e) => e.id);
      const key = idToHex(resourceId('brief@peerbx.local'));
      const device = `${key}/${KIND_SIP_REGISTRATION}:${idToHex(y.nodeId)}`;
      assert.ok(
        kept.some((id) => id.startsWith(`${key}/`) && id !== device),
        'the live claim stays on disk',
      );
      assert.ok(!kept.includes(device), `the expired device is gone from disk: ${kept}`);
    } finally {
      await disk.close();
    }
  });
});

describe('two nodes started with one key (a copied data directory)', () => {
  const root = mkdtempSync(join(tmpdir(), 'peerbx-twin-'));
  const nodes: OverlayNode[] = [];
  after(() => closeAll(root, nodes));

  it('each finds the other and says so, and no node warns of itself', async () => {
    const a = await OverlayNode.start({ dataDir: join(root, 'a'), config: config() });
    nodes.push(a);
    const c = await OverlayNode.start({
      dataDir: join(root, 'c'),
      config: config(),
      bootstrap: [a.udpAddress],
    });
    nodes.push(c);
    assert.equal(a.dht.stats.identityClashes + c.dht.stats.identityClashes, 0);
    // The copy: a's key in a directory of its own, started while a runs.
    copyFileSync(
      join(root, 'a', 'node.key'),
      join(ensureDataDir(join(root, 'b')).root, 'node.key'),
    );
    const b = await OverlayNode.start({
      dataDir: join(root, 'b'),
      config: config(),
      bootstrap: [c.udpAddress],
    });
    nodes.push(b);
    assert.equal(idToHex(b.nodeId), idToHex(a.nodeId));
    await a.dht.findNode(c.nodeId);
    await b.dht.findNode(c.nodeId);
    await until(
      () => a.dht.stats.identityClashes > 0 && b.dht.stats.identityClashes > 0,
      'both copies to find the other',
      5000,
    );
    assert.equal(c.dht.stats.identityClashes, 0);
  });
});

describe('a node that lost every peer', () => {
  const PERIOD_MS = 250;
  const overlay = config({
    dht: { k: 3, alpha: 3, disjointPaths: 1, maintenanceIntervalMs: PERIOD_MS },
  });
  const port = (address: string) => Number(address.slice(address.lastIndexOf(':') + 1));
  const lostTouch = (e: unknown) =>
    e instanceof OverlayError && e.code === 'ERR_UNREACHABLE' && /lost touch/.test(e.message);

  it('says the overlay is unreachable, not that a name is unknown, and rejoins its peer', async () => {
    const root = mkdtempSync(join(tmpdir(), 'peerbx-rejoin-'));
    const nodes: OverlayNode[] = [];
    try {
      const a = await OverlayNode.start({ dataDir: join(root, 'a'), config: overlay });
      nodes.push(a);
      // A founder that never had a peer is alone, not cut off: an unknown name is not found.
      await new Promise((r) => setTimeout(r, 4 * PERIOD_MS));
      assert.deepEqual(await a.fetch('nobody@peerbx.local'), []);
      const b = await OverlayNode.start({
        dataDir: join(root, 'b'),
        config: overlay,
        bootstrap: [a.udpAddress],
      });
      nodes.push(b);
      const device = new TextEncoder().encode('sip:back@127.0.0.1:5070');
      // b's record, a replica of which a holds: a PINGs b as one of the nodes closest to it.
      assert.equal((await publishDevice(b, 'back@peerbx.local', device, HOUR)).replicas, 2);
      const bAt = { udp: port(b.udpAddress), stream: port(b.streamAddress) };
      await b.close();
      nodes.pop();
      // a's upkeep finds b dead: its routing table is empty. A name it does not hold is not
      // "not registered": it asked nobody.
      const isolated = Date.now() + 40 * PERIOD_MS;
      for (;;) {
        const outcome = await a.fetch('nobody@peerbx.local').then(
          () => undefined,
          (e: unknown) => e,
        );
        if (lostTouch(outcome)) {
          assert.equal(a.stats().routingTable.isolated, true);
          break;
        }
        assert.ok(Date.now() < isolated, `still ${String(outcome)} after 40 periods`);
        await new Promise((r) => setTimeout(r, PERIOD_MS));
      }
      // b comes back at its address, joining through nobody: they find each other again
      // (a's rejoin PINGs the contacts it dropped; b also reaches a on its own, so this does
      // not depend on the rejoin: the simulator's outage test does).
      const again = await OverlayNode.start({
        dataDir: join(root, 'b'),
        config: overlay,
        udp: { host: '127.0.0.1', port: bAt.udp },
        stream: { host: '127.0.0.1', port: bAt.stream },
      });
      nodes.push(again);
      const rejoined = Date.now() + 40 * PERIOD_MS;
      for (;;) {
        const outcome = await a.fetch('nobody@peerbx.local').then(
          (records) => records,
          (e: unknown) => e,
        );
        if (Array.isArray(outcome)) {
          assert.deepEqual(outcome, []);
          break;
        }
        // Lost touch still, or (b just back and slow to answer) another ERR_UNREACHABLE.
        assert.ok(
          outcome instanceof OverlayError && outcome.code === 'ERR_UNREACHABLE',
          String(outcome),
        );
        assert.ok(Date.now() < rejoined, 'no rejoin within 40 periods');
        await new Promise((r) => setTimeout(r, PERIOD_MS));
      }
      assert.deepEqual(a.stats().routingTable, { contacts: 1, buckets: 1, isolated: false });
      const later = new TextEncoder().encode('sip:later@127.0.0.1:5070');
      assert.equal((await publishDevice(a, 'later@peerbx.local', later, HOUR)).replicas, 2);
    } finally {
      await closeAll(root, nodes);
    }
  });

  it('started again when none of the nodes it knew answers: cut off, then back once one is', async () => {
    const root = mkdtempSync(join(tmpdir(), 'peerbx-restart-alone-'));
    const nodes: OverlayNode[] = [];
    try {
      const a = await OverlayNode.start({ dataDir: join(root, 'a'), config: overlay });
      const b = await OverlayNode.start({
        dataDir: join(root, 'b'),
        config: overlay,
        bootstrap: [a.udpAddress],
      });
      const bAt = { udp: port(b.udpAddress), stream: port(b.streamAddress) };
      await b.close();
      await a.close();
      // The founder again, with no bootstrap: b, the node it knew, is down. It starts, and
      // says the overlay is unreachable rather than that a name is unknown.
      const again = await OverlayNode.start({ dataDir: join(root, 'a'), config: overlay });
      nodes.push(again);
      assert.equal(again.stats().routingTable.isolated, true);
      await assert.rejects(again.fetch('nobody@peerbx.local'), lostTouch);
      // b back at its address: the founder's upkeep finds it.
      nodes.push(
        await OverlayNode.start({
          dataDir: join(root, 'b'),
          config: overlay,
          udp: { host: '127.0.0.1', port: bAt.udp },
          stream: { host: '127.0.0.1', port: bAt.stream },
        }),
      );
      await until(() => !again.stats().routingTable.isolated, 'the founder back', 40 * PERIOD_MS);
      assert.deepEqual(await again.fetch('nobody@peerbx.local'), []);
    } finally {
      await closeAll(root, nodes);
    }
  });
});

describe('a node back at its address right after a graceful leave', () => {
  const root = mkdtempSync(join(tmpdir(), 'peerbx-back-'));
  const nodes: OverlayNode[] = [];

  before(() => startFour(root, nodes));
  after(() => closeAll(root, nodes));

  it('is reachable at once by a node that took its leave notice', async () => {
    const c = nodes[2]!;
    const d = nodes[3]!;
    const at = (a: string) => {
      const i = a.lastIndexOf(':');
      return { host: a.slice(0, i), port: Number(a.slice(i + 1)) };
    };
    const udp = at(c.udpAddress);
    const stream = at(c.stats().stream);
    await c.leave();
    assert.equal(d.dht.table.has(c.nodeId), false, 'd dropped c on its LEAVE');
    const again = await OverlayNode.start({
      dataDir: join(root, 'c'),
      config: config(),
      bootstrap: [nodes[0]!.udpAddress],
      udp,
      stream,
    });
    nodes[2] = again;
    again.links.handle('probe', () => undefined);
    // As a call to one of its users does as soon as it is ready: its stream address, found.
    assert.equal(await d.resolveStreamAddress(again.nodeId), again.stats().stream);
    const channel = await d.connect(again.nodeId, 'probe');
    channel.close();
  });
});

describe('a node whose one bootstrap try and saved contacts all went unanswered', () => {
  const root = mkdtempSync(join(tmpdir(), 'peerbx-retry-'));
  const nodes: OverlayNode[] = [];
  let relay: ReturnType<typeof createSocket> | undefined;

  after(async () => {
    relay?.close();
    await closeAll(root, nodes);
  });

  it('gives the bootstrap node its three tries before refusing to start', async () => {
    await startNodes(root, ['a'], nodes);
    const a = nodes[0]!;
    // A relay in front of a that drops the first `drop` datagrams b sends it.
    const sock = createSocket('udp4');
    relay = sock;
    const aAt = a.udpAddress.split(':');
    let drop = 0;
    let client: { address: string; port: number } | undefined;
    sock.on('message', (m, from) => {
      if (from.port === Number(aAt[1])) {
        if (client) sock.send(m, client.port, client.address);
        return;
      }
      client = from;
      if (drop > 0) drop--;
      else sock.send(m, Number(aAt[1]), aAt[0]);
    });
    await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', () => resolve()));
    const via = `127.0.0.1:${sock.address().port}`;
    const start = () =>
      OverlayNode.start({ dataDir: join(root, 'b'), config: config(), bootstrap: [via] });
    // b joins through the relay: the one contact it saves is a, at the relay's address.
    await (await start()).close();
    // Back: its single bootstrap try and the try of its saved contact are dropped (each a
    // PING sent 4 times in 2 s); the bootstrap node's three tries follow, and the first of
    // them gets through.
    drop = 8;
    const b = await start();
    nodes.push(b);
    assert.equal(drop, 0, 'both tries were dropped');
    assert.ok(b.dht.table.has(a.nodeId), 'b joined through a');
    assert.equal(b.stats().routingTable.isolated, false);
  });
});
