import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cryptoRandom, pooledRandomBytes } from '../src/index.js';

describe('pooled cryptographic randomness', () => {
  it('hands out fresh bytes of their own, across refills of the pool', () => {
    const seen = new Set<string>();
    const first = pooledRandomBytes(16);
    const copy = Buffer.from(first);
    // 4 KiB a block: 2,000 draws of 16 bytes refill it several times.
    for (let i = 0; i < 2000; i++) {
      const b = pooledRandomBytes(16);
      assert.equal(b.length, 16);
      seen.add(Buffer.from(b).toString('hex'));
      b.fill(0); // a caller writing its bytes touches no one else's
    }
    assert.equal(seen.size, 2000);
    assert.deepEqual(Buffer.from(first), copy);
    assert.equal(pooledRandomBytes(10_000).length, 10_000);
  });

  it('draws uniform numbers in [0, 1)', () => {
    const xs = Array.from({ length: 4000 }, () => cryptoRandom.next());
    assert.ok(xs.every((x) => x >= 0 && x < 1));
    const mean = xs.reduce((a, x) => a + x, 0) / xs.length;
    // The mean of 4,000 uniform draws has a standard deviation of 0.0046: 0.45..0.55 is 10σ.
    assert.ok(mean > 0.45 && mean < 0.55, `mean ${mean}`);
  });
});
