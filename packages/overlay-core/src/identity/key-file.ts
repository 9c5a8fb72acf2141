// Private keys on disk: PEM files readable by the owner only (0600), written atomically.

import { existsSync, readFileSync, statSync } from 'node:fs';
import { OverlayError } from '../errors.js';
import { writeFileDurably } from './durable-file.js';
import { exportPrivateKey, importPrivateKey, type KeyPair } from './keys.js';

/** Writes the key durably (durable-file.ts): after a crash the file holds the key or is absent. */
export function writeKeyFile(path: string, keys: KeyPair): void {
  writeFileDurably(path, exportPrivateKey(keys), 0o600);
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
