// The datagram codec: round trips, the 1200-byte limit, hostile input, and the test vectors
// published in docs/wire-format.md.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import {
  type Contact,
  DhtError,
  decodeMessage,
  encodeMessage,
  formatEndpoint,
  MAX_DATAGRAM_BYTES,
  MAX_STORE_MORE,
  MalformedMessageError,
  parseEndpoint,
  type Request,
  type Response,
  SeededRandom,
  UnsupportedVersionError,
  type WireMessage,
} from '../src/index.js';

const seq = (start: number) => Uint8Array.from({ length: 32 }, (_, i) => (start + i) & 0xff);
const S = seq(0x00);
const A = seq(0x40);
const B = seq(0x80);
const T = new Uint8Array(32).fill(0xaa);
const text = (s: string) => new TextEncoder().encode(s);

const req = (txid: number, request: Request): WireMessage => ({ kind: 'request', txid, request });
const res = (txid: number, response: Response): WireMessage => ({
  kind: 'response',
  txid,
  response,
});

/** The fixed inputs of the vectors in docs/wire-format.md, by name. */
const vectors: Record<string, WireMessage> = {
  'ping-request': req(0x01020304, { sender: S, body: { type: 'PING' } }),
  'find-node-request-client': req(0xdeadbeef, {
    sender: S,
    client: true,
    body: { type: 'FIND_NODE', target: T },
  }),
  'store-request': req(7, {
    sender: S,
    body: { type: 'STORE', key: T, value: text('hello'), ttlMs: 3_600_000 },
  }),
  'store-request-more': req(8, {
    sender: S,
    body: {
      type: 'STORE',
      key: T,
      value: text('claim'),
      ttlMs: 7_200_000,
      more: [{ value: text('rec'), ttlMs: 3_600_000 }],
    },
  }),
  'nodes-response': res(0x01020304, {
    sender: A,
    body: {
      type: 'NODES',
      contacts: [
        { id: B, address: '192.0.2.1:4000' },
        { id: S, address: '[2001:db8::1]:4001' },
      ],
    },
  }),
  'value-response-truncated': res(42, {
    sender: A,
    body: {
      type: 'VALUE',
      values: [{ value: text('hi'), ttlMs: 60_000 }],
      contacts: [{ id: B, address: '192.0.2.1:4000' }],
      truncated: true,
    },
  }),
  'stored-rejected': res(7, {
    sender: A,
    body: { type: 'STORED', ok: false, reason: 'too-large', detail: 'max 1000 bytes' },
  }),
  'error-response': res(9, {
    sender: A,
    body: { type: 'ERROR', code: 505, message: 'unsupported version 2' },
  }),
};

/** Every message type at least once, for round trips and truncation. */
const samples: Record<string, WireMessage> = {
  ...vectors,
  'find-value-request': req(1, { sender: S, body: { type: 'FIND_VALUE', key: T } }),
  'leave-request': req(3, { sender: S, body: { type: 'LEAVE', to: T } }),
  'store-request-empty-value': req(2, {
    sender: S,
    body: { type: 'STORE', key: T, value: new Uint8Array(0), ttlMs: 0 },
  }),
  'pong-response': res(3, { sender: A, body: { type: 'PONG' } }),
  'nodes-response-empty': res(4, { sender: A, body: { type: 'NODES', contacts: [] } }),
  'value-response': res(5, {
    sender: A,
    body: {
      type: 'VALUE',
      values: [
        { value: text('one'), ttlMs: 1 },
        { value: new Uint8Array(300).fill(7), ttlMs: 0xffff_ffff },
      ],
      contacts: [{ id: B, address: '[::ffff:10.0.0.1]:65535' }],
    },
  }),
  'stored-ok': res(6, { sender: A, body: { type: 'STORED', ok: true } }),
  'stored-rejected-no-detail': res(7, {
    sender: A,
    body: { type: 'STORED', ok: false, reason: 'not-responsible' },
  }),
  'error-utf8': res(8, { sender: A, body: { type: 'ERROR', code: 0, message: 'nœud occupé ☎' } }),
  'store-request-two-more': req(9, {
    sender: S,
    body: {
      type: 'STORE',
      key: T,
      value: text('claim'),
      ttlMs: 7_200_000,
      more: [
        { value: text('record'), ttlMs: 3_600_000 },
        { value: new Uint8Array(0), ttlMs: 1 },
      ],
    },
  }),
  'stored-more-mixed': res(10, {
    sender: A,
    body: {
      type: 'STORED',
      ok: true,
      more: [
        { ok: true },
        { ok: false, reason: 'invalid', detail: 'record before its claim' },
        { ok: false, reason: 'too-many-values' },
      ],
    },
  }),
  'stored-rejected-more': res(11, {
    sender: A,
    body: {
      type: 'STORED',
      ok: false,
      reason: 'expired',
      detail: 'ttl 0',
      more: [{ ok: false, reason: 'not-responsible' }, { ok: true }],
    },
  }),
};

/**
 * A STORE or STORED with `more`, without it: the message its bytes up to the end of the
 * first value or result spell (the optional tail is simply absent).
 */
function withoutMore(m: WireMessage): WireMessage | undefined {
  if (m.kind === 'request' && m.request.body.type === 'STORE' && m.request.body.more) {
    const { more: _more, ...body } = m.request.body;
    return { ...m, request: { ...m.request, body } };
  }
  if (m.kind === 'response' && m.response.body.type === 'STORED' && m.response.body.more) {
    const { more: _more, ...body } = m.response.body;
    return { ...m, response: { ...m.response, body } };
  }
  return undefined;
}

let largest = 0;
function encode(m: WireMessage): Uint8Array {
  const bytes = encodeMessage(m);
  largest = Math.max(largest, bytes.length);
  assert.ok(bytes.length <= MAX_DATAGRAM_BYTES, `${bytes.length} bytes`);
  return bytes;
}

function ipv6Contacts(n: number): Contact[] {
  return Array.from({ length: n }, (_, i) => ({
    id: seq(i * 7),
    address: `[2001:db8:ffff:ffff:ffff:ffff:ffff:${(i + 1).toString(16)}]:${40_000 + i}`,
  }));
}

function throwsMalformed(bytes: Uint8Array, why: string): void {
  assert.throws(() => decodeMessage(bytes), MalformedMessageError, why);
}

describe('codec: round trips', () => {
  for (const [name, m] of Object.entries(samples)) {
    it(name, () => {
      assert.deepStrictEqual(decodeMessage(encode(m)), m);
    });
  }

  it('decodes from a Buffer into plain, unaliased Uint8Arrays', () => {
    const bytes = Buffer.from(encode(samples['store-request']!));
    const m = decodeMessage(bytes);
    assert.equal(m.kind, 'request');
    if (m.kind !== 'request' || m.request.body.type !== 'STORE') throw new Error('wrong kind');
    assert.equal(Object.getPrototypeOf(m.request.body.value), Uint8Array.prototype);
    bytes.fill(0);
    assert.deepStrictEqual(m.request.body.value, text('hello'));
  });

  it('ignores unknown flag bits', () => {
    const bytes = encode(samples['ping-request']!);
    bytes[8] = 0xfc;
    assert.deepStrictEqual(decodeMessage(bytes), samples['ping-request']);
  });

  it('skips contacts that have no IP:port address', () => {
    const m = res(1, {
      sender: A,
      body: {
        type: 'NODES',
        contacts: [
          { id: B, address: 'n42' },
          { id: S, address: '127.0.0.1:7400' },
          { id: A, address: '[fe80::1%eth0]:7400' },
        ],
      },
    });
    const back = decodeMessage(encode(m));
    assert.ok(back.kind === 'response' && back.response.body.type === 'NODES');
    assert.deepStrictEqual(back.response.body.contacts, [{ id: S, address: '127.0.0.1:7400' }]);
  });

  it('writes addresses in one canonical form', () => {
    assert.equal(canonical('[2001:DB8:0:0:0:0:0:1]:5'), '[2001:db8::1]:5');
    assert.equal(canonical('[0:0:0:0:0:0:0:1]:5'), '[::1]:5');
    assert.equal(canonical('[1:0:0:1:0:0:0:1]:5'), '[1:0:0:1::1]:5');
    assert.equal(canonical('[::ffff:1.2.3.4]:5'), '[::ffff:1.2.3.4]:5');
    assert.equal(canonical('1.2.3.4:5'), '1.2.3.4:5');
    for (const bad of [
      'n42',
      '1.2.3.4',
      '1.2.3.4:0',
      '1.2.3.4:65536',
      '::1:5',
      '01.2.3.4:5',
      '[::1]',
    ]) {
      assert.equal(parseEndpoint(bad), undefined, bad);
    }
  });

  it('clamps TTLs to 32 bits', () => {
    const m = req(1, { sender: S, body: { type: 'STORE', key: T, value: text('v'), ttlMs: 1e12 } });
    const back = decodeMessage(encode(m));
    assert.ok(back.kind === 'request' && back.request.body.type === 'STORE');
    assert.equal(back.request.body.ttlMs, 0xffff_ffff);
    const neg = req(1, { sender: S, body: { type: 'STORE', key: T, value: text('v'), ttlMs: -5 } });
    const back2 = decodeMessage(encode(neg));
    assert.ok(back2.kind === 'request' && back2.request.body.type === 'STORE');
    assert.equal(back2.request.body.ttlMs, 0);
  });
});

function canonical(address: string): string | undefined {
  const ep = parseEndpoint(address);
  return ep && formatEndpoint(ep.ip, ep.port);
}

describe('codec: one datagram', () => {
  it('20 IPv6 contacts fit a NODES reply whole', () => {
    const contacts = ipv6Contacts(20);
    const bytes = encode(res(1, { sender: A, body: { type: 'NODES', contacts } }));
    assert.equal(bytes.length, 41 + 1 + 20 * 51);
    const back = decodeMessage(bytes);
    assert.ok(back.kind === 'response' && back.response.body.type === 'NODES');
    assert.deepStrictEqual(back.response.body.contacts, contacts);
  });

  it('a NODES list too long loses its farthest contacts', () => {
    const contacts = ipv6Contacts(40);
    const bytes = encode(res(1, { sender: A, body: { type: 'NODES', contacts } }));
    const back = decodeMessage(bytes);
    assert.ok(back.kind === 'response' && back.response.body.type === 'NODES');
    const kept = back.response.body.contacts.length;
    assert.equal(kept, Math.floor((MAX_DATAGRAM_BYTES - 42) / 51));
    assert.deepStrictEqual(back.response.body.contacts, contacts.slice(0, kept));
  });

  it('a VALUE reply with many values keeps what fits and sets truncated', () => {
    const values = Array.from({ length: 64 }, (_, i) => ({
      value: new Uint8Array(100).fill(i),
      ttlMs: 1000 + i,
    }));
    const contacts = ipv6Contacts(20);
    const bytes = encode(res(1, { sender: A, body: { type: 'VALUE', values, contacts } }));
    const back = decodeMessage(bytes);
    assert.ok(back.kind === 'response' && back.response.body.type === 'VALUE');
    const body = back.response.body;
    assert.equal(body.truncated, true);
    assert.equal(body.values.length, Math.floor((MAX_DATAGRAM_BYTES - 43) / 106));
    assert.deepStrictEqual(body.values, values.slice(0, body.values.length));
    // What room is left after the values goes to the closest contacts.
    assert.deepStrictEqual(body.contacts, contacts.slice(0, body.contacts.length));
  });

  it('a VALUE reply skips a value too big for the room left but packs smaller ones after it', () => {
    const values = [
      { value: new Uint8Array(600).fill(1), ttlMs: 1 },
      { value: new Uint8Array(600).fill(2), ttlMs: 1 },
      { value: new Uint8Array(10).fill(3), ttlMs: 1 },
    ];
    const back = decodeMessage(
      encode(res(1, { sender: A, body: { type: 'VALUE', values, contacts: [] } })),
    );
    assert.ok(back.kind === 'response' && back.response.body.type === 'VALUE');
    assert.deepStrictEqual(back.response.body.values, [values[0], values[2]]);
    assert.equal(back.response.body.truncated, true);
  });

  it('a STORE of the largest default value fits; one that cannot fit is refused', () => {
    const ok = req(1, {
      sender: S,
      body: { type: 'STORE', key: T, value: new Uint8Array(1000), ttlMs: 1 },
    });
    assert.equal(encode(ok).length, 41 + 32 + 6 + 1000);
    const max = req(1, {
      sender: S,
      body: { type: 'STORE', key: T, value: new Uint8Array(1121), ttlMs: 1 },
    });
    assert.equal(encode(max).length, MAX_DATAGRAM_BYTES);
    const tooBig = req(1, {
      sender: S,
      body: { type: 'STORE', key: T, value: new Uint8Array(1122), ttlMs: 1 },
    });
    assert.throws(
      () => encodeMessage(tooBig),
      (err: unknown) => err instanceof DhtError && err.code === 'ERR_TOO_LARGE',
    );
  });

  it('a STORE with more values fits up to the byte; one that does not is refused as too large', () => {
    const store = (first: number, second: number) =>
      req(1, {
        sender: S,
        body: {
          type: 'STORE',
          key: T,
          value: new Uint8Array(first).fill(1),
          ttlMs: 2,
          more: [{ value: new Uint8Array(second).fill(2), ttlMs: 1 }],
        },
      });
    const alone = (n: number) =>
      req(1, { sender: S, body: { type: 'STORE', key: T, value: new Uint8Array(n), ttlMs: 1 } });
    // Header, key, ttl and length, the first value, the count, ttl and length, the second.
    const full = store(557, 557);
    const bytes = encode(full);
    assert.equal(bytes.length, 41 + 32 + 6 + 557 + 1 + 6 + 557);
    assert.equal(bytes.length, MAX_DATAGRAM_BYTES);
    assert.deepStrictEqual(decodeMessage(bytes), full);
    // One byte more: each value alone still fits, the two together do not.
    encode(alone(557));
    encode(alone(558));
    for (const [a, b] of [
      [557, 558],
      [558, 557],
      [600, 600],
    ] as const) {
      assert.throws(
        () => encodeMessage(store(a, b)),
        (err: unknown) => err instanceof DhtError && err.code === 'ERR_TOO_LARGE',
        `${a} + ${b}`,
      );
    }
    // Many small values that add up past the datagram are refused the same way.
    const many = req(1, {
      sender: S,
      body: {
        type: 'STORE',
        key: T,
        value: new Uint8Array(100),
        ttlMs: 1,
        more: Array.from({ length: MAX_STORE_MORE }, () => ({
          value: new Uint8Array(100),
          ttlMs: 1,
        })),
      },
    });
    assert.throws(
      () => encodeMessage(many),
      (err: unknown) => err instanceof DhtError && err.code === 'ERR_TOO_LARGE',
    );
  });

  it(`a STORE carries at most ${MAX_STORE_MORE} more values`, () => {
    const more = (n: number) =>
      req(1, {
        sender: S,
        body: {
          type: 'STORE',
          key: T,
          value: text('v'),
          ttlMs: 1,
          more: Array.from({ length: n }, (_, i) => ({ value: text(`${i}`), ttlMs: i })),
        },
      });
    const max = more(MAX_STORE_MORE);
    assert.deepStrictEqual(decodeMessage(encode(max)), max);
    assert.throws(() => encodeMessage(more(MAX_STORE_MORE + 1)), DhtError);
  });

  it('a STORED with long details gives every result a share of the datagram', () => {
    const long = '☎'.repeat(1000); // 3000 bytes of UTF-8 each
    const rejected = (i: number) =>
      ({ ok: false, reason: 'invalid', detail: `${i} ${long}` }) as const;
    const more = [
      ...Array.from({ length: MAX_STORE_MORE - 1 }, (_, i) => rejected(i + 1)),
      { ok: true } as const,
    ];
    const bytes = encode(res(1, { sender: A, body: { type: 'STORED', ...rejected(0), more } }));
    const back = decodeMessage(bytes);
    assert.ok(back.kind === 'response' && back.response.body.type === 'STORED');
    const body = back.response.body;
    const results = [body, ...(body.more ?? [])];
    assert.equal(results.length, 1 + MAX_STORE_MORE);
    assert.deepStrictEqual(body.more?.at(-1), { ok: true }, 'the last result survives');
    results.slice(0, -1).forEach((r, i) => {
      assert.ok(!r.ok && r.reason === 'invalid', `result ${i}`);
      // Cut on a character boundary, to about a 16th of the room each.
      assert.ok(r.detail && `${i} ${long}`.startsWith(r.detail), `result ${i}: ${r.detail}`);
      assert.ok(r.detail.length >= 20, `result ${i} keeps ${r.detail.length} characters`);
    });
  });

  it('long texts are cut on a character boundary', () => {
    const message = '☎'.repeat(1000); // 3 bytes each
    const back = decodeMessage(
      encode(res(1, { sender: A, body: { type: 'ERROR', code: 1, message } })),
    );
    assert.ok(back.kind === 'response' && back.response.body.type === 'ERROR');
    const cut = back.response.body.message;
    assert.ok(cut.length > 300 && message.startsWith(cut));
  });

  it('refuses a sender that is not 32 bytes', () => {
    assert.throws(
      () => encodeMessage(req(1, { sender: new Uint8Array(31), body: { type: 'PING' } })),
      DhtError,
    );
  });

  it('reports the largest message encoded in these tests', () => {
    assert.ok(largest <= MAX_DATAGRAM_BYTES);
    assert.ok(largest >= 1150, `largest ${largest}`);
  });
});

describe('codec: malformed input', () => {
  const valid = Object.entries(samples).map(([name, m]) => [name, encodeMessage(m)] as const);

  it('empty', () => throwsMalformed(new Uint8Array(0), 'empty'));

  it('every truncation of every valid message', () => {
    let n = 0;
    let heads = 0;
    for (const [name, bytes] of valid) {
      // Cut right after its first value or result, a message with `more` is the same message
      // without it; every other cut is malformed.
      const head = withoutMore(samples[name]!);
      const headLength = head ? encodeMessage(head).length : -1;
      for (let i = 0; i < bytes.length; i++) {
        if (i === headLength) {
          assert.deepStrictEqual(decodeMessage(bytes.subarray(0, i)), head, `${name} cut at ${i}`);
          heads++;
        } else {
          throwsMalformed(bytes.subarray(0, i), `${name} cut at ${i}`);
        }
        n++;
      }
    }
    assert.ok(n > 1000);
    assert.equal(heads, 4);
  });

  it('trailing bytes after every valid message', () => {
    for (const [name, bytes] of valid) {
      const longer = new Uint8Array(bytes.length + 1);
      longer.set(bytes);
      throwsMalformed(longer, name);
    }
  });

  const ping = () => encodeMessage(samples['ping-request']!);
  const store = () => encodeMessage(samples['store-request']!);
  const nodes = () => encodeMessage(samples['nodes-response']!);
  const patch = (bytes: Uint8Array, at: number, ...values: number[]) => {
    bytes.set(values, at);
    return bytes;
  };
  const storeValueLengthAt = 41 + 32 + 4;
  const firstContactAt = 41 + 1;
  const table: [string, Uint8Array][] = [
    ['bad magic', patch(ping(), 0, 0x00)],
    ['ASCII (a SIP message on the same port)', text('REGISTER sip:example.com SIP/2.0\r\n\r\n')],
    ['unknown kind', patch(ping(), 2, 2)],
    ['unknown request type', patch(ping(), 3, 9)],
    ['unknown response type', patch(nodes(), 3, 0)],
    ['STORE value length too long', patch(store(), storeValueLengthAt, 0x00, 0x06)],
    ['STORE value length too short', patch(store(), storeValueLengthAt, 0x00, 0x04)],
    ['STORE value length 0xffff', patch(store(), storeValueLengthAt, 0xff, 0xff)],
    ['contact count too high', patch(nodes(), 41, 3)],
    ['contact count too low', patch(nodes(), 41, 1)],
    ['unknown address family', patch(nodes(), firstContactAt + 32, 5)],
    ['IPv4 family on an IPv6 contact', patch(nodes(), firstContactAt + 39 + 32, 4)],
    ['port 0', patch(nodes(), firstContactAt + 32 + 1 + 4, 0, 0)],
    ['unknown store status', patch(encodeMessage(samples['stored-ok']!), 41, 7)],
    ['STORED ok with a detail', concat(encodeMessage(samples['stored-ok']!), [0, 0])],
    ['STORE more count 0', concat(store(), [0])],
    // Sixteen well-formed entries: only the count is wrong.
    ['STORE more count 16', concat(store(), [16, ...moreEntries(16)])],
    ['STORE more count above its entries', concat(store(), [2, ...moreEntries(1)])],
    ['STORE more entry cut in its ttl', concat(store(), [1, 0, 0, 0])],
    ['STORE more entry cut in its value', concat(store(), [1, 0, 0, 0, 1, 0, 5, 0x61, 0x62])],
    ['STORE more entry value length too short', concat(store(), [1, 0, 0, 0, 1, 0, 1, 0x61, 0x62])],
    ['STORED more count 0', concat(encodeMessage(samples['stored-ok']!), [0])],
    ['STORED more count 16', concat(encodeMessage(samples['stored-ok']!), [16, ...zeros(16)])],
    ['STORED more count above its results', concat(encodeMessage(samples['stored-ok']!), [2, 0])],
    ['STORED more result of unknown status', concat(encodeMessage(samples['stored-ok']!), [1, 7])],
    [
      'STORED more rejection cut before its detail',
      concat(encodeMessage(samples['stored-ok']!), [1, 4, 0]),
    ],
    [
      'STORED more rejection cut in its detail',
      concat(encodeMessage(samples['stored-ok']!), [1, 4, 0, 3, 0x61]),
    ],
    [
      'STORED more ok result with a detail',
      concat(encodeMessage(samples['stored-ok']!), [1, 0, 0, 0]),
    ],
    [
      'STORED more after a rejection, count 0',
      concat(encodeMessage(samples['stored-rejected']!), [0]),
    ],
    ['invalid UTF-8', patch(encodeMessage(samples['error-response']!), 45, 0xff)],
    ['oversized', concat(store(), new Array(MAX_DATAGRAM_BYTES).fill(0))],
  ];
  for (const [name, bytes] of table) {
    it(name, () => throwsMalformed(bytes, name));
  }

  it('random garbage from a seeded generator', () => {
    const random = new SeededRandom(1234);
    for (let i = 0; i < 2000; i++) {
      const bytes = random.bytes(Math.floor(random.next() * 1300));
      // Half the samples get a valid magic and version, so the decoder goes deeper.
      if (i % 2 === 0 && bytes.length >= 2) patch(bytes, 0, 0xdb, 0x01);
      throwsMalformed(bytes, `sample ${i}`);
    }
  });

  it('mutated valid messages decode or throw MalformedMessageError, nothing else', () => {
    const random = new SeededRandom(99);
    let decoded = 0;
    for (let i = 0; i < 5000; i++) {
      const [, original] = valid[i % valid.length]!;
      const bytes = new Uint8Array(original);
      const flips = 1 + Math.floor(random.next() * 3);
      for (let f = 0; f < flips; f++) {
        const at = Math.floor(random.next() * bytes.length);
        bytes[at] = (bytes[at] as number) ^ (1 << Math.floor(random.next() * 8));
      }
      try {
        const m = decodeMessage(bytes);
        decoded++;
        // Whatever decodes must encode again within one datagram.
        assert.ok(encodeMessage(m).length <= MAX_DATAGRAM_BYTES);
      } catch (err) {
        assert.ok(err instanceof MalformedMessageError, String(err));
      }
    }
    assert.ok(decoded > 0);
  });

  it('an unknown version is told apart, with its transaction id', () => {
    const bytes = patch(ping(), 1, 2);
    assert.throws(
      () => decodeMessage(bytes),
      (err: unknown) =>
        err instanceof UnsupportedVersionError &&
        err instanceof MalformedMessageError &&
        err.version === 2 &&
        err.txid === 0x01020304 &&
        err.isRequest,
    );
    // A future version may change everything after byte 7, so its length is not checked.
    assert.throws(() => decodeMessage(bytes.subarray(0, 8)), UnsupportedVersionError);
    // Too short to know the txid: plain malformed.
    assert.throws(
      () => decodeMessage(bytes.subarray(0, 7)),
      (err: unknown) =>
        err instanceof MalformedMessageError && !(err instanceof UnsupportedVersionError),
    );
  });
});

/** n STORE `more` entries of ttl 1 and an empty value. */
function moreEntries(n: number): number[] {
  return Array.from({ length: n }, () => [0, 0, 0, 1, 0, 0]).flat();
}

function zeros(n: number): number[] {
  return new Array(n).fill(0);
}

function concat(a: Uint8Array, b: readonly number[]): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

describe('codec: test vectors of docs/wire-format.md', () => {
  const doc = readFileSync(new URL('../../docs/wire-format.md', import.meta.url), 'utf8');
  const published = new Map<string, string>();
  for (const m of doc.matchAll(/^#### `([a-z0-9-]+)`\n[\s\S]*?```hex\n([\s\S]*?)```/gm)) {
    published.set(m[1]!, m[2]!.replace(/\s+/g, ''));
  }

  it('publishes every vector', () => {
    assert.deepStrictEqual([...published.keys()].sort(), Object.keys(vectors).sort());
  });

  for (const [name, m] of Object.entries(vectors)) {
    it(name, () => {
      const hex = published.get(name);
      assert.ok(hex, `no vector ${name} in the doc`);
      assert.equal(Buffer.from(encode(m)).toString('hex'), hex);
      assert.deepStrictEqual(decodeMessage(Buffer.from(hex, 'hex')), m);
    });
  }
});
