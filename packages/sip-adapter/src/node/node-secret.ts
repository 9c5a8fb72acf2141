// The key of the tokens in a node's Record-Routes, kept in its data directory, so that a
// restart does not invalidate the routes of calls in progress (a BYE after a restart would be
// challenged, and an outside party, which has no password, could never end its call). Digest
// nonces are not kept: after a restart a phone's old nonce gets stale=TRUE and a fresh one,
// and no nonce-count seen before the restart can be replayed.

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileDurably } from '@peerbx/overlay-core';

const SECRET_FILE = 'sip-route-key';
const SECRET_BYTES = 32;

/**
 * The route key of a node whose data directory is `dataDir` (SipNodeOptions.routeSecret): read
 * from `sip-route-key`, or made and written there durably (a crash leaves the old file or the
 * new one). A file of the wrong size is replaced.
 */
export function loadRouteSecret(dataDir: string): Uint8Array {
  const path = join(dataDir, SECRET_FILE);
  try {
    const read = readFileSync(path);
    if (read.length === SECRET_BYTES) return new Uint8Array(read);
  } catch {
    // Not there yet: made below.
  }
  const secret = randomBytes(SECRET_BYTES);
  writeFileDurably(path, secret, 0o600);
  return new Uint8Array(secret);
}
