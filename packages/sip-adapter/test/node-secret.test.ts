// The Record-Route key kept in the data directory: the same after a restart, made when absent
// or damaged, readable by the node's user only.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { loadRouteSecret } from '../src/node/node-secret.js';

describe('the route key in the data directory', () => {
  const dir = mkdtempSync(join(tmpdir(), 'peerbx-secret-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('is made once and read back the same after a restart', () => {
    const first = loadRouteSecret(dir);
    assert.equal(first.length, 32);
    assert.deepEqual(loadRouteSecret(dir), first);
    assert.equal(statSync(join(dir, 'sip-route-key')).mode & 0o777, 0o600);
  });

  it('replaces a damaged file', () => {
    writeFileSync(join(dir, 'sip-route-key'), 'short');
    const made = loadRouteSecret(dir);
    assert.equal(made.length, 32);
    assert.deepEqual(new Uint8Array(readFileSync(join(dir, 'sip-route-key'))), made);
  });
});
