// Private keys on disk: PEM files readable by the owner only (0600), written atomically.

import { chmodSync, existsSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { OverlayError } from '../errors.js';
import { exportPrivateKey, importPrivateKey, type KeyPair } from './keys.js';

export function writeKeyFile(path: string, keys: KeyPair): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, exportPrivateKey(keys), { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, path);
}

export function readKeyFile(path: string): KeyPair {
  const mode = statSync(path).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new OverlayError(
      'ERR_KEY_FILE',
      `${path} is readable by others (mode ${mode.toString(8)}); run: chmod 600 ${path}`,
    );
  }
  return importPrivateKey(readFileSync(path, 'utf8'), path);
}

/** Loads the key at path, or creates it with `create` on first use. */
export function loadOrCreateKeyFile(path: string, create: () => KeyPair): KeyPair {
  if (existsSync(path)) return readKeyFile(path);
  const keys = create();
  writeKeyFile(path, keys);
  return keys;
}
