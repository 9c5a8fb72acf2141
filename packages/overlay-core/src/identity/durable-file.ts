// Files a crash or a power cut must not tear or lose: keys, the saved overlay configuration,
// snapshots. Written to a temporary file beside the target, flushed to the disk, renamed over
// the target, and the directory flushed too, so that after a crash the path holds the old
// contents or the new ones, and once the call returned, the new ones. Without the flushes a
// file system may keep the rename but not the data: a node restarted after a power cut would
// find an empty key file, and a user's name would stay claimed by a key nobody has.

import {
  closeSync,
  fchmodSync,
  fsyncSync,
  openSync,
  renameSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';

let written = 0;

/** Beside the target, unlike any other writer's (another process's, or this one's at once). */
function temporaryPath(path: string): string {
  return `${path}.tmp-${process.pid}-${++written}`;
}

/** Writes `data` to `path` durably (see above), the file created with `mode`. */
export function writeFileDurably(path: string, data: string | Uint8Array, mode = 0o600): void {
  const tmp = temporaryPath(path);
  const fd = openSync(tmp, 'w', mode);
  try {
    // A temporary file left by a crash keeps its old mode: set it, since keys live here.
    fchmodSync(fd, mode);
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    for (let at = 0; at < bytes.length; ) at += writeSync(fd, bytes, at, bytes.length - at);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    removeQuietly(tmp);
    throw err;
  }
  closeSync(fd);
  try {
    renameSync(tmp, path);
  } catch (err) {
    removeQuietly(tmp);
    throw err;
  }
  syncDirectory(dirname(path));
}

/** writeFileDurably() off the event loop's thread. */
export async function writeFileDurablyAsync(
  path: string,
  data: string | Uint8Array,
  mode = 0o600,
): Promise<void> {
  const tmp = temporaryPath(path);
  const fh = await open(tmp, 'w', mode);
  try {
    await fh.chmod(mode);
    await fh.writeFile(data);
    await fh.sync();
  } catch (err) {
    await fh.close();
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fh.close();
  await rename(tmp, path).catch(async (err: unknown) => {
    await unlink(tmp).catch(() => undefined);
    throw err;
  });
  const dir = await open(dirname(path), 'r').catch(() => undefined);
  if (!dir) return;
  // Some file systems refuse to flush a directory (EINVAL): the rename is as safe as they allow.
  await dir.sync().catch(() => undefined);
  await dir.close();
}

function syncDirectory(dir: string): void {
  let fd: number;
  try {
    fd = openSync(dir, 'r');
  } catch {
    return;
  }
  try {
    fsyncSync(fd);
  } catch {
    // As above: not every file system flushes directories.
  } finally {
    closeSync(fd);
  }
}

function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Never created, or gone.
  }
}
