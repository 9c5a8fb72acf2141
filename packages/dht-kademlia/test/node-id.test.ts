import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  commonPrefixLength,
  compareDistance,
  DhtError,
  idEquals,
  idFromHex,
  idToHex,
  leadingZeroBits,
  randomIdAtPrefix,
  SeededRandom,
  xorDistance,
} from '../src/index.js';

const rnd = new SeededRandom(42);

describe('node ids and the XOR metric', () => {
  it('round-trips hex and rejects anything but 64 hex digits', () => {
    const id = rnd.bytes(32);
    assert.ok(idEquals(idFromHex(idToHex(id)), id));
    assert.throws(() => idFromHex('abc'), DhtError);
    assert.throws(() => idFromHex('zz'.repeat(32)), DhtError);
  });

  it('counts shared prefix bits', () => {
    const a = new Uint8Array(32);
    const b = new Uint8Array(32);
    assert.equal(commonPrefixLength(a, b), 256);
    b[0] = 0x80;
    assert.equal(commonPrefixLength(a, b), 0);
    b[0] = 0;
    b[3] = 0x01;
    assert.equal(commonPrefixLength(a, b), 31);
  });

  it('orders by XOR distance exactly as comparing xorDistance bytes does', () => {
    for (let i = 0; i < 500; i++) {
      const t = rnd.bytes(32);
      const a = rnd.bytes(32);
      const b = rnd.bytes(32);
      const expected = Buffer.compare(xorDistance(t, a), xorDistance(t, b));
      assert.equal(Math.sign(compareDistance(t, a, b)), expected);
    }
  });

  it('draws random ids that land in the bucket at each depth', () => {
    const own = rnd.bytes(32);
    for (let p = 0; p < 256; p++) {
      assert.equal(commonPrefixLength(own, randomIdAtPrefix(own, p, rnd)), p);
    }
  });

  it('counts leading zero bits for the crypto puzzle', () => {
    const id = new Uint8Array(32);
    assert.equal(leadingZeroBits(id), 256);
    id[1] = 0x10;
    assert.equal(leadingZeroBits(id), 11);
  });
});
