import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SeededRandom, ValueStore } from '../src/index.js';

const rnd = new SeededRandom(3);
const bytes = (s: string) => new TextEncoder().encode(s);

describe('value store', () => {
  it('keeps one value per key by default and replaces it', () => {
    const s = new ValueStore();
    const key = rnd.bytes(32);
    assert.deepEqual(s.put(key, bytes('a'), 100, 0), { ok: true, changed: true });
    assert.deepEqual(s.put(key, bytes('b'), 100, 1), { ok: true, changed: true });
    assert.deepEqual(
      s.get(key, 2).map((v) => Buffer.from(v.value).toString()),
      ['b'],
    );
  });

  it('expires values and purges them', () => {
    const s = new ValueStore();
    const key = rnd.bytes(32);
    s.put(key, bytes('a'), 100, 0);
    assert.equal(s.get(key, 99).length, 1);
    assert.equal(s.get(key, 100).length, 0);
    assert.equal(s.deleteExpired(100), 1);
    assert.equal(s.keyCount, 0);
    assert.deepEqual(s.put(key, bytes('a'), 5, 10), { ok: false, reason: 'expired' });
  });

  it('enforces value size, values per key and key count', () => {
    const s = new ValueStore({
      maxValueBytes: 4,
      maxValuesPerKey: 2,
      maxKeys: 2,
      slotOf: (_k, v) => Buffer.from(v).toString(),
    });
    const k1 = rnd.bytes(32);
    assert.deepEqual(s.put(k1, bytes('12345'), 100, 0), { ok: false, reason: 'too-large' });
    s.put(k1, bytes('a'), 100, 0);
    s.put(k1, bytes('b'), 100, 0);
    assert.deepEqual(s.put(k1, bytes('c'), 100, 0), { ok: false, reason: 'too-many-values' });
    s.put(rnd.bytes(32), bytes('a'), 100, 0);
    assert.deepEqual(s.put(rnd.bytes(32), bytes('a'), 100, 0), {
      ok: false,
      reason: 'too-many-keys',
    });
    // An expired slot frees room for a new value.
    assert.deepEqual(s.put(k1, bytes('c'), 300, 150), { ok: true, changed: true });
  });

  it('lets the layer above refuse a replacement', () => {
    const s = new ValueStore({ shouldReplace: (_k, old, neu) => neu.expiresAt > old.expiresAt });
    const key = rnd.bytes(32);
    s.put(key, bytes('new'), 200, 0);
    assert.deepEqual(s.put(key, bytes('old'), 100, 0), { ok: true, changed: false });
    assert.equal(Buffer.from(s.get(key, 1)[0]!.value).toString(), 'new');
  });
});

describe('value store change feed', () => {
  it('reports puts, replacements, expiries and deletions, and lists slots', () => {
    const changes: string[] = [];
    const s = new ValueStore({
      slotOf: (_k, v) => String(v[0]),
      onChange: (c) => changes.push(`${c.type}:${c.slot}`),
    });
    const key = rnd.bytes(32);
    s.put(key, Uint8Array.of(1, 0), 100, 0);
    s.put(key, Uint8Array.of(2, 0), 50, 0);
    s.put(key, Uint8Array.of(1, 9), 100, 1);
    assert.deepEqual(
      s
        .entries(key, 10)
        .map((e) => e.slot)
        .sort(),
      ['1', '2'],
    );
    s.deleteExpired(60);
    s.delete(key);
    assert.deepEqual(changes, ['put:1', 'put:2', 'put:1', 'delete:2', 'delete:1']);
  });
});
