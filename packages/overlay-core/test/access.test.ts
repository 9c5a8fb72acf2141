import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { idToHex, type NodeId, ValueStore } from '@peerbx/dht-kademlia';
import {
  DEFAULT_KINDS,
  defaultOverlayConfig,
  type OverlayConfig,
} from '../src/config/overlay-config.js';
import { KIND_NAME_CLAIM, KIND_NODE_INFO, KIND_SIP_REGISTRATION } from '../src/constants.js';
import { encodeCertificate, issueCertificate } from '../src/identity/certificate.js';
import { nodeIdOf } from '../src/identity/keys.js';
import { type AccessRejection, checkRecord } from '../src/storage/access.js';
import {
  createRecord,
  decodeRecord,
  encodeRecord,
  type RecordParams,
  resourceId,
  type StoredRecord,
} from '../src/storage/record.js';
import {
  checkFetched,
  createOverlayStoreOptions,
  createRecordValidator,
  verifyFetched,
} from '../src/storage/record-store.js';
import { StorerShares } from '../src/storage/storer-shares.js';
import {
  ALICE,
  certificateFor,
  enrolledConfig,
  generateKeyPair,
  HOUR,
  type KeyPair,
  nameClaim,
  nodeInfo,
  openConfig,
  registration,
  storeValue,
  TestClock,
  text,
} from './fixtures/records.js';

const NOW = Date.UTC(2026, 0, 1);
const KEY = resourceId(ALICE);
const node = generateKeyPair();
const node2 = generateKeyPair();
const alice = generateKeyPair();
const mallory = generateKeyPair();
const authority = generateKeyPair();

function check(
  record: StoredRecord,
  config: OverlayConfig = openConfig(),
  claim?: Uint8Array,
  key: NodeId = resourceId(record.resource),
): AccessRejection | undefined {
  // Through the wire form, as a storing peer sees it.
  const wire = decodeRecord(encodeRecord(record));
  return checkRecord(wire, key, config, { now: NOW, existingClaim: () => claim });
}

function rejected(verdict: AccessRejection | undefined, reason: string, detail: RegExp): void {
  assert.ok(verdict, 'expected a rejection');
  assert.equal(verdict.reason, reason);
  assert.match(verdict.detail, detail);
}

/** A fresh storing node: value store with overlay options, and its validator. */
function storingNode(config: OverlayConfig = openConfig()) {
  const clock = new TestClock(NOW);
  const store = new ValueStore(createOverlayStoreOptions(config, clock));
  const validate = createRecordValidator(config, store, clock);
  const put = (r: StoredRecord, ttlMs = HOUR) =>
    storeValue(store, validate, resourceId(r.resource), encodeRecord(r), clock.t, ttlMs);
  const held = (key: NodeId = KEY) => store.get(key, clock.t).map((v) => decodeRecord(v.value));
  return { clock, store, validate, put, held };
}

describe('record access control', () => {
  it('USER-NODE-MATCH: a user registers a device keyed by its node-ID', () => {
    assert.equal(check(registration(node, alice, NOW)), undefined);
    assert.equal(check(registration(node, alice, NOW), openConfig(), alice.publicKey), undefined);
  });

  it('USER-NODE-MATCH: a dictionary key other than the writer node-ID is refused', () => {
    const rec = registration(node, alice, NOW, { dictionaryKey: nodeIdOf(node2.publicKey) });
    rejected(check(rec), 'invalid', /keyed by the writing node's ID/);
  });

  it('USER-MATCH: a name claim by its user; the claim value must be the user key', () => {
    assert.equal(check(nameClaim(node, alice, NOW)), undefined);
    const wrongValue = createRecord(
      {
        kind: KIND_NAME_CLAIM,
        resource: ALICE,
        value: mallory.publicKey,
        storedAt: NOW,
        lifetimeMs: HOUR,
      },
      node,
      alice,
    );
    rejected(check(wrongValue), 'invalid', /value must be the claiming user's key/);
  });

  it("USER-MATCH: another user's name is refused", () => {
    const rec = registration(node, mallory, NOW, { userName: 'mallory' });
    rejected(check(rec), 'invalid', /user "mallory", who does not own alice@peerbx\.local/);
    assert.equal(check(registration(node, alice, NOW, { userName: ALICE })), undefined);
  });

  it('user kinds need a user signature', () => {
    const rec = createRecord(
      {
        kind: KIND_SIP_REGISTRATION,
        resource: ALICE,
        dictionaryKey: nodeIdOf(node.publicKey),
        value: text('x'),
        storedAt: NOW,
        lifetimeMs: HOUR,
      },
      node,
    );
    rejected(check(rec), 'invalid', /no user key and user signature/);
  });

  it('a user signature that does not verify is refused though the node signature does', () => {
    const rec = registration(node, alice, NOW);
    const badUserSignature = Uint8Array.from(rec.userSignature as Uint8Array);
    badUserSignature[0] = (badUserSignature[0] as number) ^ 1;
    const verdict = check({ ...rec, userSignature: badUserSignature });
    rejected(verdict, 'invalid', /the user signature does not verify/);
    assert.equal(verdict?.forged, true, 'a bad signature marks the record forged');
    assert.equal(check(rec, openConfig(), mallory.publicKey)?.forged, undefined, 'not forged');
    // Another user's valid signature over the same bytes is no better.
    const other = registration(node, mallory, NOW, { userName: ALICE });
    rejected(
      check({ ...rec, userSignature: other.userSignature as Uint8Array }),
      'invalid',
      /the user signature does not verify/,
    );
  });

  it('open mode: another key cannot take over a claimed name', () => {
    const claim = alice.publicKey;
    rejected(
      check(nameClaim(node2, mallory, NOW), openConfig(), claim),
      'invalid',
      /^name alice@peerbx\.local is owned by another key$/,
    );
    rejected(
      check(registration(node2, mallory, NOW), openConfig(), claim),
      'invalid',
      /^name alice@peerbx\.local is owned by another key$/,
    );
    assert.equal(check(nameClaim(node, alice, NOW + 1), openConfig(), claim), undefined);
  });

  it('NODE-MATCH: only under the writer node-ID', () => {
    assert.equal(check(nodeInfo(node, NOW)), undefined);
    const other = Buffer.from(nodeIdOf(node2.publicKey)).toString('hex');
    rejected(check(nodeInfo(node, NOW, other)), 'invalid', /NODE-MATCH allows only node/);
  });

  it('refuses oversize values, bad lifetimes, unknown kinds, wrong models, wrong keys', () => {
    rejected(
      check(registration(node, alice, NOW, { value: new Uint8Array(257) })),
      'too-large',
      /257 bytes, SIP-REGISTRATION allows at most 256/,
    );
    rejected(
      check(registration(node, alice, NOW, { lifetimeMs: 25 * HOUR })),
      'invalid',
      /lifetime 90000000 ms is outside/,
    );
    rejected(check(registration(node, alice, NOW, { lifetimeMs: 0 })), 'invalid', /lifetime 0 ms/);
    rejected(
      check(registration(node, alice, NOW, { kind: 77 })),
      'invalid',
      /kind 77 is not defined/,
    );
    const indexed = registration(node, alice, NOW, { dictionaryKey: undefined, index: 0 });
    rejected(check(indexed), 'invalid', /is a dictionary: entries need a dictionary key/);
    const keyedClaim = createRecord(
      {
        kind: KIND_NAME_CLAIM,
        resource: ALICE,
        dictionaryKey: new Uint8Array(32),
        value: alice.publicKey,
        storedAt: NOW,
        lifetimeMs: HOUR,
      },
      node,
      alice,
    );
    rejected(check(keyedClaim), 'invalid', /holds a single value/);
    rejected(
      check(
        registration(node, alice, NOW),
        openConfig(),
        undefined,
        resourceId('bob@peerbx.local'),
      ),
      'invalid',
      /not under the hash of its name/,
    );
  });

  it('refuses records dated more than 5 minutes ahead, and expired ones', () => {
    assert.equal(check(registration(node, alice, NOW + 4 * 60_000)), undefined);
    rejected(
      check(registration(node, alice, NOW + 6 * 60_000)),
      'invalid',
      /more than 5 minutes ahead/,
    );
    rejected(check(registration(node, alice, NOW - 2 * HOUR)), 'expired', /expired/);
  });

  it('enrolled mode: the certificate must be current, from the authority, for this user and key', () => {
    const config = enrolledConfig(authority);
    const withCert = (user: KeyPair, cert: Uint8Array, extra: Partial<RecordParams> = {}) =>
      registration(node, user, NOW, { certificate: cert, ...extra });
    assert.equal(
      check(withCert(alice, certificateFor(authority, 'alice', alice, NOW)), config),
      undefined,
    );
    rejected(
      check(registration(node, alice, NOW), config),
      'invalid',
      /carries no user certificate/,
    );
    const expired = encodeCertificate(
      issueCertificate(authority, 'alice', alice.publicKey, 1000, NOW - HOUR),
    );
    rejected(check(withCert(alice, expired), config), 'invalid', /certificate for alice expired/);
    const foreign = certificateFor(generateKeyPair(), 'alice', alice, NOW);
    rejected(
      check(withCert(alice, foreign), config),
      'invalid',
      /not signed by this overlay's authority/,
    );
    // Mallory's genuine certificate does not let her write alice's name...
    const mallorysCert = certificateFor(authority, 'mallory', mallory, NOW);
    rejected(
      check(withCert(mallory, mallorysCert, { userName: 'mallory' }), config),
      'invalid',
      /does not own alice@/,
    );
    rejected(
      check(withCert(mallory, mallorysCert), config),
      'invalid',
      /certificate is for "mallory"/,
    );
    // ...nor does alice's certificate with Mallory's key.
    const alicesCert = certificateFor(authority, 'alice', alice, NOW);
    rejected(check(withCert(mallory, alicesCert), config), 'invalid', /names a different user key/);
    rejected(
      check(withCert(alice, new Uint8Array([1, 2, 3])), config),
      'invalid',
      /certificate is malformed/,
    );
  });

  it('a flipped byte anywhere is refused by the storing peer', () => {
    const config = enrolledConfig(authority);
    const { validate } = storingNode(config);
    const bytes = encodeRecord(
      registration(node, alice, NOW, {
        certificate: certificateFor(authority, 'alice', alice, NOW),
      }),
    );
    assert.equal(validate(KEY, bytes, new Uint8Array(32)), undefined);
    for (let i = 0; i < bytes.length; i++) {
      const bad = new Uint8Array(bytes);
      bad[i] = (bad[i] as number) ^ 0x01;
      const verdict = validate(KEY, bad, new Uint8Array(32));
      assert.ok(verdict, `byte ${i} flipped and still accepted`);
      // A flip in the date or lifetime may make it expired, found before the signatures are.
      assert.ok(['invalid', 'expired'].includes(verdict.reason), `byte ${i}: ${verdict.reason}`);
    }
  });
});

describe('record store', () => {
  it("another key's attempt to overwrite alice's registration is refused", () => {
    const s = storingNode();
    assert.deepEqual(s.put(nameClaim(node, alice, NOW)), { ok: true, changed: true });
    assert.deepEqual(s.put(registration(node, alice, NOW)), { ok: true, changed: true });
    // Same device slot (alice's node), Mallory's user key, newer date.
    const attack = s.put(registration(node, mallory, NOW + 1000));
    assert.equal(attack.ok, false);
    assert.ok(!attack.ok);
    assert.equal(attack.detail, 'name alice@peerbx.local is owned by another key');
    const steal = s.put(nameClaim(node2, mallory, NOW + 1000));
    assert.ok(!steal.ok && steal.detail === 'name alice@peerbx.local is owned by another key');
    assert.equal(s.held().length, 2);
    for (const r of s.held())
      assert.deepEqual(Buffer.from(r.user!.publicKey), Buffer.from(alice.publicKey));
  });

  it('a lapsed claim frees the name', () => {
    const s = storingNode();
    const shortClaim = createRecord(
      {
        kind: KIND_NAME_CLAIM,
        resource: ALICE,
        value: alice.publicKey,
        storedAt: NOW,
        lifetimeMs: 1000,
      },
      node,
      alice,
    );
    assert.ok(s.put(shortClaim, HOUR).ok);
    s.clock.t = NOW + 2000;
    assert.deepEqual(s.put(nameClaim(node2, mallory, NOW + 2000)), { ok: true, changed: true });
  });

  it('newer storedAt replaces older; an older replay and an equal date do not', () => {
    const s = storingNode();
    const v1 = registration(node, alice, NOW, { value: text('one') });
    const v2 = registration(node, alice, NOW + 10, { value: text('two') });
    const same = registration(node, alice, NOW + 10, { value: text('same date') });
    assert.deepEqual(s.put(v1), { ok: true, changed: true });
    assert.deepEqual(s.put(v2), { ok: true, changed: true });
    assert.deepEqual(s.put(v1), { ok: true, changed: false });
    assert.deepEqual(s.put(same), { ok: true, changed: false });
    assert.deepEqual(s.put(v2), { ok: true, changed: false }); // a republish of the same bytes
    const held = s.held();
    assert.equal(held.length, 1);
    assert.equal(Buffer.from(held[0]!.value).toString(), 'two');
  });

  it('enforces maxCount per kind and resource; replacing an entry is not a new one', () => {
    const kinds = DEFAULT_KINDS.map((k) =>
      k.id === KIND_SIP_REGISTRATION ? { ...k, maxCount: 2 } : k,
    );
    const s = storingNode(defaultOverlayConfig({ puzzleBits: 0, kinds }));
    const node3 = generateKeyPair();
    assert.ok(s.put(registration(node, alice, NOW)).ok);
    assert.ok(s.put(registration(node2, alice, NOW)).ok);
    const third = s.put(registration(node3, alice, NOW));
    assert.ok(!third.ok);
    assert.equal(third.reason, 'too-many-values');
    assert.match(third.detail ?? '', /already has 2 entries/);
    assert.deepEqual(s.put(registration(node2, alice, NOW + 5)), { ok: true, changed: true });
    // Other kinds under the same resource have their own count.
    assert.ok(s.put(nameClaim(node, alice, NOW)).ok);
  });

  it('keeps values within the per-key total of all kinds', () => {
    const options = createOverlayStoreOptions(openConfig(), new TestClock(NOW));
    assert.equal(options.maxValuesPerKey, 16 + 1 + 1);
    assert.ok((options.maxValueBytes ?? 0) > 256);
  });
});

describe('verifyFetched', () => {
  it("drops what a lying storing peer injects and keeps alice's newest records", () => {
    const claim = nameClaim(node, alice, NOW);
    const old = registration(node, alice, NOW - 1000, { value: text('old') });
    const current = registration(node, alice, NOW, { value: text('current') });
    const second = registration(node2, alice, NOW);
    // Forgeries: a changed value under alice's signature, Mallory's device under alice's name
    // (validly signed by Mallory), a record for another name, an expired one, junk.
    const tampered = encodeRecord(current);
    const at = Buffer.from(tampered).indexOf('current');
    tampered[at] = 'C'.charCodeAt(0);
    const mallorysDevice = registration(generateKeyPair(), mallory, NOW + 5);
    const bobs = registration(node, alice, NOW, { resource: 'bob@peerbx.local', userName: 'bob' });
    const expired = registration(generateKeyPair(), alice, NOW - 2 * HOUR);
    const values = [
      encodeRecord(old),
      tampered,
      { value: encodeRecord(mallorysDevice), ttlMs: HOUR },
      encodeRecord(current),
      encodeRecord(bobs),
      encodeRecord(expired),
      new Uint8Array([1, 2, 3]),
      encodeRecord(second),
      encodeRecord(claim),
      encodeRecord(nodeInfo(node, NOW)),
    ];
    const drops: string[] = [];
    const got = verifyFetched(values, ALICE, KIND_SIP_REGISTRATION, openConfig(), {
      now: NOW,
      onDrop: (d) => drops.push(d),
    });
    assert.deepEqual(
      got.map((r) => Buffer.from(r.value).toString()).sort(),
      ['current', 'sip:alice@192.0.2.1:5060'].sort(),
    );
    assert.ok(drops.some((d) => /owned by another key/.test(d)));
    assert.ok(drops.some((d) => /signature does not verify/.test(d)));
    assert.ok(drops.some((d) => /returned for alice/.test(d)));
    // All kinds at once: the claim too; the node-info record belongs to another resource.
    const all = verifyFetched(values, ALICE, undefined, openConfig(), { now: NOW });
    assert.deepEqual(all.map((r) => r.kind).sort(), [1, 1, 2]);
  });

  it("a holder's later claim of its own key does not take the name: most holders' key does, a tie trusts none", () => {
    // An honest holder returns alice's claim and device; a lying one a claim of its own key
    // for the name, dated later, with a device of that key (and leaves alice's out).
    const honest = [nameClaim(node, alice, NOW - 1000), registration(node, alice, NOW - 1000)];
    const liar = generateKeyPair();
    const lies = [
      nameClaim(liar, mallory, NOW + 60_000),
      registration(liar, mallory, NOW + 60_000, { value: text('mallory') }),
    ];
    const from = (records: StoredRecord[], ...holders: string[]) =>
      records.map((r) => ({ value: encodeRecord(r), holders: new Set(holders) }));
    const verify = (values: ReturnType<typeof from>, kind?: number) => {
      let contested = 0;
      const drops: string[] = [];
      const got = verifyFetched(values, ALICE, kind, openConfig(), {
        now: NOW,
        onDrop: (d) => drops.push(d),
        onContested: () => contested++,
      });
      return { got, contested, drops };
    };

    const tie = verify([...from(honest, 'h1'), ...from(lies, 'h2')], KIND_SIP_REGISTRATION);
    assert.deepEqual(tie.got, [], 'one holder against one: no key is trusted');
    assert.equal(tie.contested, 1);
    assert.ok(
      tie.drops.some((d) => /claimed by 2 keys/.test(d)),
      tie.drops.join('; '),
    );

    const most = verify([...from(honest, 'h1', 'h3'), ...from(lies, 'h2')]);
    assert.equal(most.contested, 0);
    assert.deepEqual(
      most.got.map((r) => [r.kind, Buffer.from(r.user!.publicKey).equals(alice.publicKey)]),
      [
        [KIND_SIP_REGISTRATION, true],
        [KIND_NAME_CLAIM, true],
      ],
      "alice's claim and device, nothing of the liar's",
    );

    // Holders unknown (a client's peer merged them): two keys' claims trust none either.
    const plain = verifyFetched(
      [...honest, ...lies].map((r) => encodeRecord(r)),
      ALICE,
      KIND_SIP_REGISTRATION,
      openConfig(),
      { now: NOW },
    );
    assert.deepEqual(plain, []);
  });

  it('names the holders that returned an older record of a slot than the newest (read repair)', () => {
    const claim = nameClaim(node, alice, NOW - 5000);
    const old = registration(node, alice, NOW - 1000, { value: text('old') });
    const removed = registration(node, alice, NOW, { value: new Uint8Array(0) });
    const other = registration(node2, alice, NOW - 1000);
    const from = (r: StoredRecord, ...holders: string[]) => ({
      value: encodeRecord(r),
      holders: new Set(holders),
    });
    const stale: { value: string; holders: string[] }[] = [];
    const got = verifyFetched(
      [
        from(claim, 'h1', 'h2', 'h3'),
        from(old, 'h1', 'h3'),
        from(removed, 'h2'),
        from(other, 'h1', 'h2', 'h3'),
        // A copy of the old record with its signature broken tells nothing.
        {
          value: encodeRecord(old).map((b, i, a) => (i === a.length - 1 ? b ^ 1 : b)),
          holders: new Set(['h4']),
        },
      ],
      ALICE,
      KIND_SIP_REGISTRATION,
      openConfig(),
      {
        now: NOW,
        onStale: (newest, holders) =>
          stale.push({
            value: Buffer.from(newest.record.value).toString(),
            holders: [...holders].sort(),
          }),
      },
    );
    assert.deepEqual(
      got.map((r) => Buffer.from(r.value).toString()),
      ['sip:alice@192.0.2.1:5060'],
      "node's device removed, node2's kept",
    );
    // The removal is newest for node's slot: h1 and h3 missed it. Where all agree, nothing.
    assert.deepEqual(stale, [{ value: '', holders: ['h1', 'h3'] }]);
    // The newest seen first or last, the same answer.
    const reversed: string[][] = [];
    verifyFetched([from(removed, 'h2'), from(old, 'h1', 'h3')], ALICE, undefined, openConfig(), {
      now: NOW,
      onStale: (_, holders) => reversed.push([...holders].sort()),
    });
    assert.deepEqual(reversed, [['h1', 'h3']]);
    // Two records of one date: told apart by their bytes, but no holder takes a tie (it
    // replaces only with a later date), so none is named.
    const twin = registration(node, alice, NOW, { value: text('twin') });
    const ties: string[][] = [];
    verifyFetched([from(removed, 'h1'), from(twin, 'h2')], ALICE, undefined, openConfig(), {
      now: NOW,
      onStale: (_, holders) => ties.push([...holders]),
    });
    assert.deepEqual(ties, []);
  });

  it('checks one value: what can never pass is lasting, what the clock decides is not', () => {
    const context = { config: openConfig(), now: NOW };
    const current = registration(node, alice, NOW);
    const good = checkFetched(encodeRecord(current), ALICE, KEY, context);
    assert.ok(
      'record' in good && Buffer.from(good.record.value).equals(Buffer.from(current.value)),
    );
    const tampered = encodeRecord(current);
    tampered[tampered.length - 1] = (tampered[tampered.length - 1] ?? 0) ^ 1;
    const bobs = registration(node, alice, NOW, { resource: 'bob@peerbx.local', userName: 'bob' });
    for (const [what, bytes] of [
      ['a broken signature', tampered],
      ['junk', new Uint8Array([1, 2, 3])],
      ["another resource's record", encodeRecord(bobs)],
    ] as const) {
      const r = checkFetched(bytes, ALICE, KEY, context);
      assert.ok('problem' in r && r.lasting, `${what} is refused for good`);
    }
    // Expired, or dated beyond the allowed clock skew: a matter of time, not of the bytes.
    const expired = checkFetched(
      encodeRecord(registration(node, alice, NOW - 2 * HOUR)),
      ALICE,
      KEY,
      context,
    );
    const ahead = checkFetched(
      encodeRecord(registration(node, alice, NOW + HOUR)),
      ALICE,
      KEY,
      context,
    );
    assert.ok('problem' in expired && !expired.lasting, JSON.stringify(expired));
    assert.ok(
      'problem' in ahead && !ahead.lasting && /ahead of this node's clock/.test(ahead.problem),
    );
  });

  it('a newer tombstone hides the entry it deletes', () => {
    const reg = registration(node, alice, NOW - 10);
    const tomb = registration(node, alice, NOW, { value: new Uint8Array(0) });
    const got = verifyFetched(
      [encodeRecord(reg), encodeRecord(tomb)],
      ALICE,
      KIND_SIP_REGISTRATION,
      openConfig(),
      { now: NOW },
    );
    assert.deepEqual(got, []);
  });

  it('without a claim among the values, user records stand on their own signatures', () => {
    const got = verifyFetched(
      [encodeRecord(registration(node, alice, NOW))],
      ALICE,
      KIND_SIP_REGISTRATION,
      openConfig(),
      { now: NOW },
    );
    assert.equal(got.length, 1);
  });

  it('NODE-INFO: kept for its node, dropped for another resource', () => {
    const hex = Buffer.from(nodeIdOf(node.publicKey)).toString('hex');
    const info = encodeRecord(nodeInfo(node, NOW));
    assert.equal(verifyFetched([info], hex, KIND_NODE_INFO, openConfig(), { now: NOW }).length, 1);
  });
});

describe("each writing node's share of a store", () => {
  it('refuses a node more new keys than its share, gives them back once gone, and never limits the node itself', () => {
    // QA: one member stored 100,000 claims of made-up names on every node, and no new user
    // could register anywhere. Its share counts the records it wrote, whoever sends them.
    const config = openConfig();
    const clock = new TestClock(NOW);
    const [x, y, self] = [generateKeyPair(), generateKeyPair(), generateKeyPair()];
    const hex = (k: KeyPair) => idToHex(nodeIdOf(k.publicKey));
    const shares = new StorerShares(2, hex(self));
    const store: ValueStore = new ValueStore({
      ...createOverlayStoreOptions(config, clock),
      onChange: (c) => shares.changed(c, store),
    });
    const validate = createRecordValidator(config, store, clock, { shares });
    const sender = (n: number) => new Uint8Array(32).fill(n);
    /** A claim of `user` written by `writer`, sent by `from`. */
    const put = (writer: KeyPair, user: string, from = sender(1), ttlMs = HOUR) => {
      const name = `${user}@peerbx.local`;
      const value = encodeRecord(nameClaim(writer, generateKeyPair(), NOW, name));
      const verdict = validate(resourceId(name), value, from);
      if (verdict) return `${verdict.reason}: ${verdict.detail}`;
      assert.ok(store.put(resourceId(name), value, clock.t + ttlMs, clock.t).ok);
      return 'stored';
    };
    assert.equal(put(x, 'x1', sender(1), HOUR / 2), 'stored');
    assert.equal(put(x, 'x2', sender(2)), 'stored', 'handed over by another node: still x');
    assert.match(
      put(x, 'x3', sender(3)),
      new RegExp(
        `^too-many-keys: this node holds 2 keys of records node ${hex(x).slice(0, 16)} wrote, the most one node may$`,
      ),
    );
    assert.equal(put(y, 'y1'), 'stored', "another node's share is its own");
    for (const user of ['s1', 's2', 's3']) assert.equal(put(self, user), 'stored');
    // x1 expires: x may bring one more.
    clock.t += HOUR / 2;
    store.deleteExpired(clock.t);
    assert.equal(put(x, 'x3'), 'stored');
    assert.match(put(x, 'x4'), /^too-many-keys/);
    assert.equal(shares.held(hex(x)), 2);
  });
});
