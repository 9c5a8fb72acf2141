// The overlay message format and the signed datagram codec: round trips, tampering, unknown
// versions and fields, replays, other overlays, and the test vectors of docs/protocol.md.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import {
  type Clock,
  DhtError,
  MAX_STORE_MORE,
  MalformedMessageError,
  RejectedMessageError,
  type Request,
  type RequestBody,
  type ResponseBody,
} from '@peerbx/dht-kademlia';
import { configHash, defaultOverlayConfig } from '../src/config/overlay-config.js';
import { OverlayError } from '../src/errors.js';
import { keyPairFromSeed, nodeIdOf } from '../src/identity/keys.js';
import { ERROR_REPLIES_PER_S, SignedDatagramCodec } from '../src/transport/signed-codec.js';
import { decode, encode } from '../src/wire/codec.js';
import {
  bodyToRequest,
  bodyToResponse,
  requestToBody,
  responseToBody,
} from '../src/wire/dht-body.js';
import {
  decodeOverlayMessage,
  encodeOverlayMessage,
  Flags,
  MessageKind,
  UnsupportedVersionError,
} from '../src/wire/message.js';

const seq = (from: number) => Uint8Array.from({ length: 32 }, (_, i) => from + i);
const KEYS = keyPairFromSeed(seq(0));
const OTHER = keyPairFromSeed(seq(0x20));
const HASH = Uint8Array.from([0xc0, 0xff, 0xee, 0x00]);
const T = new Uint8Array(32).fill(0xaa);

const header = (kind: number, txid: number, flags = 0) => ({
  ttl: 32,
  overlayHash: HASH,
  kind,
  txid,
  flags,
  via: [] as Uint8Array[],
  destination: [] as Uint8Array[],
});

/** The fixed inputs of the vectors in docs/protocol.md. */
const vectors: Record<string, () => Uint8Array> = {
  'ping-request': () =>
    encodeOverlayMessage(
      header(MessageKind.DHT_REQUEST, 0x01020304),
      encode(requestToBody({ type: 'PING' })),
      KEYS,
      1_700_000_000_000,
    ),
  'find-node-request': () =>
    encodeOverlayMessage(
      header(MessageKind.DHT_REQUEST, 7, Flags.CLIENT),
      encode(requestToBody({ type: 'FIND_NODE', target: T })),
      KEYS,
      1_700_000_000_000,
    ),
  'pong-response-with-via': () =>
    encodeOverlayMessage(
      { ...header(MessageKind.DHT_RESPONSE, 0x01020304, Flags.RESPONSE), via: [T] },
      encode({ 0: 1 }),
      KEYS,
      1_700_000_000_001,
    ),
};

describe('overlay message format', () => {
  it('round-trips header, body and sender', () => {
    const bytes = encodeOverlayMessage(
      { ...header(MessageKind.DHT_REQUEST, 99), via: [seq(1)], destination: [seq(2), T] },
      encode(requestToBody({ type: 'FIND_VALUE', key: T })),
      KEYS,
      123,
    );
    const m = decodeOverlayMessage(bytes);
    assert.equal(m.header.txid, 99);
    assert.equal(m.header.ttl, 32);
    assert.deepEqual(m.header.via, [seq(1)]);
    assert.deepEqual(m.header.destination, [seq(2), T]);
    assert.deepEqual(m.senderId, nodeIdOf(KEYS.publicKey));
    assert.equal(m.timestamp, 123);
    assert.equal(m.size, bytes.length);
  });

  it('rejects a change to any byte', () => {
    const bytes = vectors['find-node-request']!();
    for (let i = 0; i < bytes.length; i++) {
      const bad = new Uint8Array(bytes);
      bad[i] = (bad[i] as number) ^ 0x01;
      assert.throws(
        () => decodeOverlayMessage(bad),
        (e: unknown) =>
          e instanceof OverlayError &&
          ['ERR_SIGNATURE', 'ERR_MALFORMED', 'ERR_VERSION'].includes(e.code),
        `byte ${i}`,
      );
    }
  });

  it('rejects every truncation as malformed, never with another error', () => {
    const bytes = vectors['ping-request']!();
    for (let n = 0; n < bytes.length; n++) {
      assert.throws(() => decodeOverlayMessage(bytes.subarray(0, n)), OverlayError);
    }
  });

  it('names the version and txid of a message of another version', () => {
    const bytes = new Uint8Array(vectors['ping-request']!());
    bytes[2] = 9;
    assert.throws(
      () => decodeOverlayMessage(bytes),
      (e: unknown) =>
        e instanceof UnsupportedVersionError && e.version === 9 && e.txid === 0x01020304,
    );
  });

  it('ignores unknown body fields', () => {
    const body = { ...requestToBody({ type: 'PING' }), 42: 'from a later version' };
    const codec = new SignedDatagramCodec({
      keys: OTHER,
      configHash: HASH,
      overlayName: 't',
      puzzleBits: 0,
    });
    const bytes = encodeOverlayMessage(
      header(MessageKind.DHT_REQUEST, 5),
      encode(body),
      KEYS,
      Date.now(),
    );
    const m = codec.decode(bytes, '127.0.0.1:1');
    assert.equal(m.kind, 'request');
    assert.equal(m.kind === 'request' && m.request.body.type, 'PING');
  });
});

describe('DHT bodies: several values in one STORE', () => {
  const text = (s: string) => new TextEncoder().encode(s);
  /** Through MessagePack bytes and back, as a body travels. */
  const requestBack = (body: RequestBody) => bodyToRequest(decode(encode(requestToBody(body))));
  const responseBack = (body: ResponseBody) => bodyToResponse(decode(encode(responseToBody(body))));
  const malformed = (fn: () => unknown, why: string) =>
    assert.throws(fn, (e: unknown) => e instanceof OverlayError && e.code === 'ERR_MALFORMED', why);

  const store: RequestBody = {
    type: 'STORE',
    key: T,
    value: text('claim'),
    ttlMs: 7_200_000,
    more: [
      { value: text('record'), ttlMs: 3_600_000 },
      { value: new Uint8Array(0), ttlMs: 1 },
    ],
  };
  const stored: ResponseBody = {
    type: 'STORED',
    ok: true,
    more: [
      { ok: true },
      { ok: false, reason: 'invalid', detail: 'record before its claim' },
      { ok: false, reason: 'too-many-values' },
    ],
  };

  it('round-trips a STORE with more values, and one without', () => {
    assert.deepStrictEqual(requestBack(store), store);
    assert.equal(requestToBody(store)[5] !== undefined, true);
    const single: RequestBody = { type: 'STORE', key: T, value: text('v'), ttlMs: 5 };
    assert.deepStrictEqual(requestBack(single), single);
    assert.equal(5 in requestToBody(single), false, 'no field 5 for one value');
    assert.equal(5 in requestToBody({ ...single, more: [] }), false, 'nor for an empty more');
    const max: RequestBody = {
      ...single,
      more: Array.from({ length: MAX_STORE_MORE }, (_, i) => ({ value: text(`${i}`), ttlMs: i })),
    };
    assert.deepStrictEqual(requestBack(max), max);
  });

  it('round-trips a LEAVE with its recipient', () => {
    const leave: RequestBody = { type: 'LEAVE', to: T };
    assert.deepStrictEqual(requestBack(leave), leave);
  });

  it('round-trips a STORED with mixed more results', () => {
    assert.deepStrictEqual(responseBack(stored), stored);
    const firstRejected: ResponseBody = {
      type: 'STORED',
      ok: false,
      reason: 'expired',
      detail: 'ttl 0',
      more: [{ ok: false, reason: 'not-responsible' }, { ok: true }],
    };
    assert.deepStrictEqual(responseBack(firstRejected), firstRejected);
    // Without more results (an older node's answer) the STORED reads without `more`.
    assert.deepStrictEqual(responseBack({ type: 'STORED', ok: true }), {
      type: 'STORED',
      ok: true,
    });
  });

  it('cuts a more detail to 100 characters, reads an empty one as none and an unknown reason as invalid', () => {
    const back = responseBack({
      type: 'STORED',
      ok: true,
      more: [
        { ok: false, reason: 'invalid', detail: 'x'.repeat(500) },
        { ok: false, reason: 'too-large', detail: '' },
      ],
    });
    assert.ok(back.type === 'STORED');
    assert.deepStrictEqual(back.more, [
      { ok: false, reason: 'invalid', detail: 'x'.repeat(100) },
      { ok: false, reason: 'too-large' },
    ]);
    const body = { ...responseToBody(stored), 9: [[false, 'from-a-later-version', 'why']] };
    const later = bodyToResponse(decode(encode(body)));
    assert.ok(later.type === 'STORED');
    assert.deepStrictEqual(later.more, [{ ok: false, reason: 'invalid', detail: 'why' }]);
  });

  it('refuses a malformed field 5 of a STORE', () => {
    const base = requestToBody({ type: 'STORE', key: T, value: text('v'), ttlMs: 5 });
    const entry = [text('w'), 1];
    const cases: [string, unknown][] = [
      ['not an array', text('w')],
      ['a map', { 0: entry }],
      ['empty', []],
      [`${MAX_STORE_MORE + 1} entries`, Array.from({ length: MAX_STORE_MORE + 1 }, () => entry)],
      ['an entry that is not an array', [text('w')]],
      ['an entry without its lifetime', [[text('w')]]],
      ['an entry with a string value', [['w', 1]]],
      ['an entry with a negative lifetime', [[text('w'), -1]]],
      ['an entry with a fractional lifetime', [[text('w'), 1.5]]],
      ['a bad entry after a good one', [entry, [1, text('w')]]],
    ];
    for (const [why, more] of cases) {
      malformed(() => bodyToRequest(decode(encode({ ...base, 5: more }))), why);
    }
    // The same entries, well formed, are read.
    const ok = bodyToRequest(decode(encode({ ...base, 5: [entry, entry] })));
    assert.ok(ok.type === 'STORE');
    assert.equal(ok.more?.length, 2);
  });

  it('refuses a malformed field 9 of a STORED', () => {
    const base = responseToBody({ type: 'STORED', ok: true });
    const cases: [string, unknown][] = [
      ['not an array', true],
      ['a string', 'ok'],
      ['empty', []],
      [`${MAX_STORE_MORE + 1} results`, Array.from({ length: MAX_STORE_MORE + 1 }, () => [true])],
      ['a result that is not an array', [true]],
      ['an empty result', [[]]],
      ['a result whose status is not a boolean', [[1]]],
      ['a rejection without a reason', [[false]]],
      ['a rejection whose reason is not a string', [[false, 4]]],
      ['a rejection whose detail is not a string', [[false, 'invalid', 7]]],
      ['a bad result after a good one', [[true], ['yes']]],
    ];
    for (const [why, more] of cases) {
      malformed(() => bodyToResponse(decode(encode({ ...base, 9: more }))), why);
    }
    const ok = bodyToResponse(
      decode(encode({ ...base, 9: Array.from({ length: 15 }, () => [true]) })),
    );
    assert.ok(ok.type === 'STORED');
    assert.equal(ok.more?.length, MAX_STORE_MORE);
  });

  it('carries a STORE with more values and its STORED through the signed codec', () => {
    const codec = (keys: typeof KEYS) =>
      new SignedDatagramCodec({ keys, configHash: HASH, overlayName: 't', puzzleBits: 0 });
    const alice = codec(KEYS);
    const bob = codec(OTHER);
    const m = bob.decode(
      alice.encodeRequest(1, { sender: nodeIdOf(KEYS.publicKey), body: store }),
      'x',
    );
    assert.ok(m.kind === 'request');
    assert.deepStrictEqual(m.request.body, store);
    const r = alice.decode(
      bob.encodeResponse(1, { sender: nodeIdOf(OTHER.publicKey), body: stored }),
      'x',
    );
    assert.ok(r.kind === 'response');
    assert.deepStrictEqual(r.response.body, stored);
  });

  it('keeps every result of a STORED whose refusal details do not fit, dropping the details', () => {
    const codec = (keys: typeof KEYS) =>
      new SignedDatagramCodec({ keys, configHash: HASH, overlayName: 't', puzzleBits: 0 });
    const refusal = { ok: false as const, reason: 'invalid' as const, detail: 'd'.repeat(150) };
    const body: ResponseBody = {
      type: 'STORED',
      ok: true,
      more: Array.from({ length: 12 }, () => refusal),
    };
    const bytes = codec(OTHER).encodeResponse(1, { sender: nodeIdOf(OTHER.publicKey), body });
    assert.ok(bytes.length <= 1200);
    const r = codec(KEYS).decode(bytes, 'x');
    assert.ok(r.kind === 'response' && r.response.body.type === 'STORED');
    assert.equal(r.response.body.ok, true);
    assert.deepStrictEqual(
      r.response.body.more,
      Array.from({ length: 12 }, () => ({ ok: false, reason: 'invalid' })),
    );
  });

  it("round-trips a STORE that asks for the recipient's contacts, and its STORED with them", () => {
    const asking: RequestBody = { ...store, closest: true };
    assert.deepStrictEqual(requestBack(asking), asking);
    assert.equal(requestToBody(asking)[6], true);
    assert.equal(6 in requestToBody(store), false, 'no field 6 unless asked');
    const contacts = [
      { id: T, address: '127.0.0.1:4000' },
      { id: new Uint8Array(32).fill(7), address: '[::1]:4001' },
    ];
    const answer: ResponseBody = { ...stored, contacts };
    assert.deepStrictEqual(responseBack(answer), answer);
    const none: ResponseBody = { type: 'STORED', ok: true, contacts: [] };
    assert.deepStrictEqual(responseBack(none), none, 'an empty list: it knows nobody else');
    // A node from before field 10 answers without it: the STORED reads without contacts.
    assert.equal('contacts' in responseBack(stored), false);
    malformed(() => bodyToResponse(decode(encode({ ...responseToBody(stored), 10: 'x' }))), '10');
    malformed(() => bodyToRequest(decode(encode({ ...requestToBody(store), 6: 1 }))), '6');
  });

  it("drops a STORED's farthest contacts to fit, and says nothing of them once none fit", () => {
    const codec = (keys: typeof KEYS) =>
      new SignedDatagramCodec({ keys, configHash: HASH, overlayName: 't', puzzleBits: 0 });
    const contacts = Array.from({ length: 20 }, (_, i) => ({
      id: new Uint8Array(32).fill(i),
      address: `127.0.0.1:${4000 + i}`,
    }));
    const send = (body: ResponseBody) => {
      const bytes = codec(OTHER).encodeResponse(1, { sender: nodeIdOf(OTHER.publicKey), body });
      assert.ok(bytes.length <= 1200);
      const r = codec(KEYS).decode(bytes, 'x');
      assert.ok(r.kind === 'response' && r.response.body.type === 'STORED');
      return r.response.body;
    };
    const refusal = { ok: false as const, reason: 'invalid' as const, detail: 'd'.repeat(100) };
    const some = send({ type: 'STORED', ok: true, more: [refusal, refusal], contacts });
    assert.ok(some.contacts && some.contacts.length > 0 && some.contacts.length < 20);
    assert.deepStrictEqual(some.contacts, contacts.slice(0, some.contacts.length), 'closest kept');
    assert.deepStrictEqual(some.more?.[0], refusal, 'details kept while contacts go');
    const full = send({
      type: 'STORED',
      ok: true,
      more: Array.from({ length: 12 }, () => ({ ...refusal, detail: 'd'.repeat(150) })),
      contacts,
    });
    assert.equal(full.contacts, undefined, 'no list rather than an empty one');
    assert.equal(full.more?.length, 12);
  });

  it('refuses as too large a STORE whose values do not fit one datagram together', () => {
    const alice = new SignedDatagramCodec({
      keys: KEYS,
      configHash: HASH,
      overlayName: 't',
      puzzleBits: 0,
    });
    const sender = nodeIdOf(KEYS.publicKey);
    const value = new Uint8Array(600);
    const one: RequestBody = { type: 'STORE', key: T, value, ttlMs: 1 };
    assert.ok(alice.encodeRequest(1, { sender, body: one }).length <= 1200);
    assert.throws(
      () => alice.encodeRequest(2, { sender, body: { ...one, more: [{ value, ttlMs: 1 }] } }),
      (e: unknown) => e instanceof DhtError && e.code === 'ERR_TOO_LARGE',
    );
  });
});

describe('signed datagram codec', () => {
  const cfgHash = configHash(defaultOverlayConfig());
  let now = 1_000_000;
  const clock: Clock = { now: () => now, setTimeout: () => ({}), clearTimeout: () => undefined };
  const alice = new SignedDatagramCodec({
    keys: KEYS,
    configHash: cfgHash,
    overlayName: 'peerbx',
    puzzleBits: 0,
    clock,
    retransmitWindowMs: 1000,
  });
  const bob = new SignedDatagramCodec({
    keys: OTHER,
    configHash: cfgHash,
    overlayName: 'peerbx',
    puzzleBits: 0,
    clock,
    retransmitWindowMs: 1000,
  });
  const req: Request = {
    sender: nodeIdOf(KEYS.publicKey),
    body: { type: 'STORE', key: T, value: new Uint8Array([1, 2, 3]), ttlMs: 60_000 },
  };

  it('carries a request whose sender is the signing key', () => {
    const m = bob.decode(alice.encodeRequest(1, req), 'x');
    assert.ok(m.kind === 'request');
    assert.deepEqual(m.request.sender, nodeIdOf(KEYS.publicKey));
    assert.deepEqual(m.request.body, req.body);
  });

  it('refuses a validly signed datagram over the 1,200-byte limit, counted as malformed', () => {
    const big = new SignedDatagramCodec({
      keys: KEYS,
      configHash: cfgHash,
      overlayName: 'peerbx',
      puzzleBits: 0,
      clock,
      maxDatagramBytes: 4000,
    });
    const large: Request = {
      ...req,
      body: { type: 'STORE', key: T, value: new Uint8Array(2000), ttlMs: 60_000 },
    };
    const bytes = big.encodeRequest(3, large);
    assert.ok(bytes.length > 1200);
    const before = bob.rejected.malformed;
    assert.throws(() => bob.decode(bytes, 'x'), /over the 1200-byte limit/);
    assert.equal(bob.rejected.malformed, before + 1);
  });

  it('lets a retransmission through but refuses the replay of a request', () => {
    const bytes = alice.encodeRequest(2, req);
    bob.decode(bytes, 'x');
    now += 500;
    bob.decode(bytes, 'x'); // a retransmission: the transport's reply cache answers it
    now += 5_000;
    assert.throws(
      () => bob.decode(bytes, 'x'),
      (e: unknown) => e instanceof RejectedMessageError && e.reason === 'replay',
    );
    assert.equal(bob.rejected.replay, 1);
  });

  it('refuses a copy of a request from another address, even within the retransmission window', () => {
    const bytes = alice.encodeRequest(11, req);
    bob.decode(bytes, '192.0.2.1:4000');
    const before = bob.rejected.replay;
    // A copy with a forged source: it would bring the victim our answer and the sender's
    // routing-table entry the victim's address.
    assert.throws(
      () => bob.decode(bytes, '198.51.100.7:53'),
      (e: unknown) =>
        e instanceof RejectedMessageError &&
        e.reason === 'replay' &&
        /198\.51\.100\.7/.test(e.message),
    );
    assert.equal(bob.rejected.replay, before + 1);
    bob.decode(bytes, '192.0.2.1:4000'); // the sender's own retransmission still passes
  });

  it('remembers a bounded number of requests against replay', () => {
    const small = new SignedDatagramCodec({
      keys: OTHER,
      configHash: cfgHash,
      overlayName: 'peerbx',
      puzzleBits: 0,
      clock,
      maxRememberedRequests: 3,
    });
    for (let txid = 200; txid < 210; txid++) small.decode(alice.encodeRequest(txid, req), 'x');
    assert.equal(small.rememberedRequests, 3);
  });

  it('refuses a request from outside the time window', () => {
    const bytes = alice.encodeRequest(3, req);
    now += 120_000;
    assert.throws(
      () => bob.decode(bytes, 'x'),
      (e: unknown) => e instanceof RejectedMessageError && e.reason === 'stale',
    );
  });

  it('refuses a forged signature and counts it', () => {
    const bytes = new Uint8Array(alice.encodeRequest(4, req));
    bytes[bytes.length - 1] = (bytes[bytes.length - 1] as number) ^ 0xff;
    assert.throws(
      () => bob.decode(bytes, 'x'),
      (e: unknown) => e instanceof RejectedMessageError && e.reason === 'signature',
    );
    assert.equal(bob.rejected.signature, 1);
  });

  it('answers a node of another overlay with a clear error', () => {
    const stranger = new SignedDatagramCodec({
      keys: KEYS,
      configHash: configHash(defaultOverlayConfig({ name: 'elsewhere' })),
      overlayName: 'elsewhere',
      puzzleBits: 0,
      clock,
    });
    let err: unknown;
    try {
      bob.decode(stranger.encodeRequest(5, req), 'x');
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof RejectedMessageError && err.reason === 'config-mismatch' && err.reply);
    const reply = stranger.decode(err.reply, 'x');
    assert.ok(reply.kind === 'response' && reply.response.body.type === 'ERROR');
    assert.match(
      reply.response.body.type === 'ERROR' ? reply.response.body.message : '',
      /configuration mismatch/,
    );
  });

  it('answers a request of another version, never a response, a stub or a flood', () => {
    const vcodec = new SignedDatagramCodec({
      keys: OTHER,
      configHash: cfgHash,
      overlayName: 'peerbx',
      puzzleBits: 0,
      clock: { ...clock, now: () => 5_000_000 },
    });
    const reply = (bytes: Uint8Array) => {
      try {
        vcodec.decode(bytes, 'x');
      } catch (e) {
        assert.ok(e instanceof RejectedMessageError && e.reason === 'version');
        return e.reply;
      }
      assert.fail('decoded a message of another version');
    };
    const later = (bytes: Uint8Array) => {
      const b = new Uint8Array(bytes);
      b[2] = 9;
      return b;
    };
    // A whole request of version 9: told which version this node speaks.
    const answered = reply(later(alice.encodeRequest(7, req)));
    assert.ok(answered);
    const decoded = alice.decode(answered, 'x');
    assert.ok(decoded.kind === 'response' && decoded.response.body.type === 'ERROR');
    assert.equal(decoded.response.body.type === 'ERROR' && decoded.response.body.code, 505);
    // A response of version 9 is not answered: two nodes would answer each other for ever.
    const response = alice.encodeResponse(7, {
      sender: nodeIdOf(KEYS.publicKey),
      body: { type: 'PONG' },
    });
    assert.equal(reply(later(response)), undefined);
    // A 14-byte stub from a forged address would get a reply many times its size: none.
    assert.equal(reply(later(alice.encodeRequest(8, req)).subarray(0, 14)), undefined);
    // Each answer costs a signature: at most ERROR_REPLIES_PER_S a second.
    const replies = Array.from({ length: 3 * ERROR_REPLIES_PER_S }, (_, i) =>
      reply(later(alice.encodeRequest(100 + i, req))),
    ).filter((r) => r !== undefined);
    assert.equal(replies.length, ERROR_REPLIES_PER_S - 1);
    assert.equal(vcodec.rejected.version, 3 + 3 * ERROR_REPLIES_PER_S);
  });

  it('refuses senders whose node-ID fails the puzzle', () => {
    const strict = new SignedDatagramCodec({
      keys: OTHER,
      configHash: cfgHash,
      overlayName: 'peerbx',
      puzzleBits: 24,
      clock,
    });
    assert.throws(
      () => strict.decode(alice.encodeRequest(6, req), 'x'),
      (e: unknown) => e instanceof RejectedMessageError && e.reason === 'puzzle',
    );
  });

  it('treats garbage as malformed', () => {
    assert.throws(
      () => bob.decode(new Uint8Array([0x50, 0x58, 1, 2, 3]), 'x'),
      MalformedMessageError,
    );
  });

  it('shrinks a reply that does not fit one datagram', () => {
    const contacts = Array.from({ length: 40 }, (_, i) => ({
      id: seq(i),
      address: `[2001:db8::${i.toString(16)}]:7400`,
    }));
    const bytes = alice.encodeResponse(8, {
      sender: nodeIdOf(KEYS.publicKey),
      body: { type: 'NODES', contacts },
    });
    assert.ok(bytes.length <= 1200, `${bytes.length} bytes`);
    const m = bob.decode(bytes, 'x');
    assert.ok(m.kind === 'response' && m.response.body.type === 'NODES');
    assert.ok(m.response.body.type === 'NODES' && m.response.body.contacts.length >= 15);
  });
});

describe('test vectors of docs/protocol.md', () => {
  const doc = readFileSync(new URL('../../docs/protocol.md', import.meta.url), 'utf8');
  const published = new Map<string, string>();
  for (const m of doc.matchAll(/^#### `([a-z0-9-]+)`\n[\s\S]*?```hex\n([\s\S]*?)```/gm)) {
    published.set(m[1]!, m[2]!.replace(/\s+/g, ''));
  }
  it('publishes every vector', () => {
    assert.deepStrictEqual([...published.keys()].sort(), Object.keys(vectors).sort());
  });
  for (const [name, make] of Object.entries(vectors)) {
    it(name, () => {
      const hex = published.get(name);
      assert.equal(Buffer.from(make()).toString('hex'), hex);
      decodeOverlayMessage(Buffer.from(hex ?? '', 'hex'));
    });
  }
});
