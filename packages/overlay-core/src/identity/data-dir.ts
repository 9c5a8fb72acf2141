// A node's data directory: its keys, its copy of the overlay configuration, its store, and a
// lock that keeps two running nodes from sharing it.
//
//   <dir>/node.key            node Ed25519 key (0600), its ID meets the crypto puzzle
//   <dir>/users/<name>.key    user keys (0600), where a user's key is not derived from the
//                             node key (copied in, made by `peerbx ca issue`, exported)
//   <dir>/users/<name>.cert   user certificates (enrolled mode)
//   <dir>/overlay.json        the overlay configuration this node belongs to
//   <dir>/store/              LevelDB: overlay data, own published records
//   <dir>/node.lock           pid of the running node

import {
  chmodSync,
  closeSync,
  existsSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  type Stats,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { OverlayError } from '../errors.js';
import { writeFileDurably } from './durable-file.js';
import { loadOrCreateKeyFile, readKeyFile, writeKeyFile } from './key-file.js';
import {
  derivedUserKeys,
  generateKeyPair,
  generateNodeKeyPair,
  type KeyPair,
  meetsPuzzle,
  nodeIdOf,
} from './keys.js';

export interface DataDirPaths {
  root: string;
  nodeKey: string;
  users: string;
  config: string;
  store: string;
  lock: string;
}

export function dataDirPaths(root: string): DataDirPaths {
  return {
    root,
    nodeKey: join(root, 'node.key'),
    users: join(root, 'users'),
    config: join(root, 'overlay.json'),
    store: join(root, 'store'),
    lock: join(root, 'node.lock'),
  };
}

/** Creates the directory tree (0700) if missing. */
export function ensureDataDir(root: string): DataDirPaths {
  const p = dataDirPaths(root);
  try {
    mkdirSync(p.users, { recursive: true, mode: 0o700 });
    // LevelDB would make it with the umask's mode (0755): it is the node's alone, also when an
    // earlier version made it.
    mkdirSync(p.store, { recursive: true, mode: 0o700 });
    chmodSync(p.store, 0o700);
  } catch (err) {
    throw new OverlayError(
      'ERR_CONFIG',
      `cannot create data directory ${root}: ${(err as Error).message}`,
    );
  }
  return p;
}

/**
 * Loads the node key, creating one that meets the puzzle on first start. A key that no longer
 * meets the overlay's puzzle (the difficulty was raised) is an error the user must act on.
 */
export function loadNodeKey(p: DataDirPaths, puzzleBits: number): KeyPair {
  const keys = loadOrCreateKeyFile(p.nodeKey, () => generateNodeKeyPair(puzzleBits));
  if (!meetsPuzzle(nodeIdOf(keys.publicKey), puzzleBits)) {
    throw new OverlayError(
      'ERR_PUZZLE',
      `the node key in ${p.nodeKey} does not meet this overlay's ${puzzleBits}-bit puzzle; move it away to generate a new one`,
    );
  }
  return keys;
}

// Not a leading dot: `peerbx user-key ..` wrote users/...key, a file `ls` does not show (QA).
const USER_RE = /^[a-zA-Z0-9_~+-][a-zA-Z0-9._~+-]{0,63}$/;

/** What a local user's name may be: it names the user's key file. */
export const USER_NAME_RULE = '1-64 letters, digits or . _ ~ + -, not starting with a dot';

export function isUserName(user: string): boolean {
  return USER_RE.test(user);
}

export function assertUserName(user: string): void {
  if (!isUserName(user)) {
    throw new OverlayError('ERR_CONFIG', `user name "${user}" must be ${USER_NAME_RULE}`);
  }
}

/** Where a local user's key is kept (the name checked first). */
export function userKeyPath(p: DataDirPaths, user: string): string {
  assertUserName(user);
  return join(p.users, `${user}.key`);
}

/** Loads (or creates) the key of a local user. */
export function loadUserKey(p: DataDirPaths, user: string): KeyPair {
  return loadOrCreateKeyFile(userKeyPath(p, user), generateKeyPair);
}

/**
 * The key that owns a user's name at this node: the user's key file when there is one (copied
 * in from the node where the name was first claimed), else the key this node derives from its
 * node key (derivedUserKeys).
 */
export function userKeyOf(p: DataDirPaths, user: string): KeyPair {
  const path = userKeyPath(p, user);
  if (existsSync(path)) return readKeyFile(path);
  if (!existsSync(p.nodeKey)) {
    throw new OverlayError(
      'ERR_CONFIG',
      `no node key in ${p.root}: give the data directory of the node where ${user} registers (--data-dir)`,
    );
  }
  return derivedUserKeys(readKeyFile(p.nodeKey), user);
}

/**
 * Writes userKeyOf(user) to `out` (default users/<user>.key, mode 0600), to be copied into
 * another node's users/ directory so that the user's phones can register there too. Returns
 * where it went and the public key.
 */
export function exportUserKey(
  p: DataDirPaths,
  user: string,
  out?: string,
): { file: string; publicKey: Uint8Array } {
  const path = userKeyPath(p, user);
  const file = out ?? path;
  const keys = userKeyOf(p, user);
  if (file !== path || !existsSync(path)) writeExported(file, keys);
  return { file, publicKey: keys.publicKey };
}

/**
 * A key written where the user asked: a new file or one replacing a regular file (the write
 * renames a whole file over it, which would put a private key in place of /dev/null, say),
 * with an error that names that file, not the temporary one beside it.
 */
function writeExported(file: string, keys: KeyPair): void {
  const there = lstatIfThere(file);
  if (there && !there.isFile()) {
    throw new OverlayError('ERR_CONFIG', `${file} is not a regular file: give a file name`);
  }
  try {
    writeKeyFile(file, keys);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT'
        ? 'its directory does not exist'
        : code === 'EACCES' || code === 'EPERM'
          ? 'permission denied'
          : (err as Error).message;
    throw new OverlayError('ERR_CONFIG', `cannot write ${file}: ${why}`);
  }
}

function lstatIfThere(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

export function userCertificatePath(p: DataDirPaths, user: string): string {
  assertUserName(user);
  return join(p.users, `${user}.cert`);
}

/**
 * Takes the directory's lock for this process. A lock left by a dead process is taken over;
 * one held by a live process is ERR_DATA_DIR_LOCKED. Returns the release function.
 */
export function lockDataDir(p: DataDirPaths): () => void {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(p.lock, 'wx', 0o600);
      const mine = `${process.pid} ${startTimeOf(process.pid) ?? ''}`.trim();
      writeFileSync(fd, `${mine}\n`);
      closeSync(fd);
      return () => {
        try {
          if (readFileSync(p.lock, 'utf8').trim() === mine) unlinkSync(p.lock);
        } catch {
          // Already gone.
        }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const [pidText = '', started] = readFileSync(p.lock, 'utf8').trim().split(' ');
      const pid = Number.parseInt(pidText, 10);
      if (Number.isInteger(pid) && pid !== process.pid && isAlive(pid, started)) {
        throw new OverlayError(
          'ERR_DATA_DIR_LOCKED',
          `data directory ${p.root} is in use by a running node (pid ${pid}); stop it or use another --data-dir`,
        );
      }
      // Stale lock from a killed node.
      unlinkSync(p.lock);
    }
  }
  throw new OverlayError('ERR_DATA_DIR_LOCKED', `cannot lock data directory ${p.root}`);
}

/**
 * Whether the node that wrote a lock still runs: its PID is alive and, where /proc tells, not
 * a zombie and started when the lock says (after a reboot, a PID is soon some other process's).
 */
function isAlive(pid: number, started: string | undefined): boolean {
  const stat = procStat(pid);
  if (stat) return stat.state !== 'Z' && (started === undefined || stat.started === started);
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A process's start time in clock ticks since boot (Linux /proc), or undefined. */
function startTimeOf(pid: number): string | undefined {
  return procStat(pid)?.started;
}

function procStat(pid: number): { state: string; started: string } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // "pid (comm) state ppid ..."; comm may hold spaces and parentheses. Field 22 is starttime.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const state = fields[0];
  const started = fields[19];
  return state && started ? { state, started } : undefined;
}

export function readSavedConfig(p: DataDirPaths): unknown {
  if (!existsSync(p.config)) return undefined;
  try {
    return JSON.parse(readFileSync(p.config, 'utf8'));
  } catch (err) {
    throw new OverlayError(
      'ERR_CONFIG',
      `${p.config} is not valid JSON: ${(err as Error).message}`,
    );
  }
}

export function writeSavedConfig(p: DataDirPaths, config: unknown): void {
  writeFileDurably(p.config, `${JSON.stringify(config, null, 2)}\n`, 0o600);
}

/**
 * What a data directory that held a store has lost (a file deleted by hand, a bad disk), said
 * before the node starts over without it: each one is survivable, none should go unsaid.
 */
export function dataDirDamage(paths: DataDirPaths): string[] {
  let stored: string[];
  try {
    stored = readdirSync(paths.store);
  } catch {
    return []; // a new data directory
  }
  const tables = stored.some((f) => /\.(ldb|sst|log)$/.test(f));
  const out: string[] = [];
  if (tables && !existsSync(paths.nodeKey)) {
    out.push(
      `the node key ${paths.nodeKey} is gone: this node starts with a new node-ID, and publishes its users' registrations again under it`,
    );
  }
  if (tables && !stored.includes('CURRENT')) {
    out.push(
      `the store in ${paths.store} lost its CURRENT file: it starts empty, and other nodes give it their records again`,
    );
  }
  return out;
}
