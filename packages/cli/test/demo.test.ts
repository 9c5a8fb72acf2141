// `peerbx demo` passes on a bare machine: nodes, phones, calls and a MESSAGE through the overlay.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { peerbx } from './helpers.js';

test('peerbx demo places calls and a MESSAGE and exits 0', async () => {
  const r = await peerbx(['demo'], {}, 60_000);
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  for (const call of ['alice → bob', 'bob → carol', 'carol → alice'])
    assert.match(
      r.stdout,
      new RegExp(`${call}\\s+\\d+ ms\\s+(\\d+ ms|-)\\s+node-\\d → node-\\d\\s+ok`),
    );
  assert.match(r.stdout, /alice ⇢ carol \(MESSAGE\).*delivered/);
  assert.match(r.stdout, /3 calls and 1 message over 3 nodes/);
});
