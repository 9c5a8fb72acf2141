// Signs a node's own records: with the node key always, with the local user's key for user
// kinds, carrying the user's certificate in enrolled mode. In open mode a user record needs
// the user's name claim stored first; the signer says when one is due.

import { existsSync, readFileSync, type Stats, statSync } from 'node:fs';
import type { Clock } from '@peerbx/dht-kademlia';
import { setBounded } from '../bounded-map.js';
import { kindById, type OverlayConfig } from '../config/overlay-config.js';
import { KIND_NAME_CLAIM, NAME_CLAIM_LIFETIME_MS } from '../constants.js';
import { OverlayError } from '../errors.js';
import { type DataDirPaths, userCertificatePath, userKeyPath } from '../identity/data-dir.js';
import { readKeyFile } from '../identity/key-file.js';
import { derivedUserKeys, type KeyPair } from '../identity/keys.js';
import { createRecord, recordExpiresAt, type StoredRecord } from './record.js';

export interface PublishParams {
  kind: number;
  resource: string;
  dictionaryKey?: Uint8Array;
  index?: number;
  /** Empty: a deletion tombstone. */
  value: Uint8Array;
  lifetimeMs: number;
  /** Local user whose key signs user-kind records (default: the resource's user part). */
  user?: string;
}

export interface SignedRecords {
  /** The user's name claim, when one must be stored (first, or refreshed) before `record`. */
  claim?: StoredRecord;
  record: StoredRecord;
  /** The user's key file that signed them, when the key came from one (not derived). */
  keyFile?: string;
}

/** Local users' keys kept in memory (a node serves its users, not the world's). */
const USER_KEYS_CACHED = 10_000;

interface CachedKey {
  readonly keys: KeyPair;
  /** The key file as it was read: a file replaced since (a user's key copied in) is read again. */
  readonly file: Pick<Stats, 'ino' | 'mtimeMs' | 'size'>;
}

export class RecordSigner {
  /** When each name claim this signer made lapses. */
  private readonly claims = new Map<string, number>();
  /** Users' keys by key file path. */
  private readonly userKeyCache = new Map<string, CachedKey>();
  /** Users' keys derived from the node key, by user name. */
  private readonly derivedKeys = new Map<string, KeyPair>();

  constructor(
    private readonly paths: DataDirPaths,
    private readonly config: OverlayConfig,
    private readonly nodeKeys: KeyPair,
    private readonly clock: Clock,
  ) {}

  async sign(params: PublishParams): Promise<SignedRecords> {
    const kind = kindById(this.config, params.kind);
    if (!kind) {
      throw new OverlayError(
        'ERR_CONFIG',
        `kind ${params.kind} is not in this overlay's configuration`,
      );
    }
    const now = this.clock.now();
    if (kind.policy === 'NODE-MATCH') {
      return { record: createRecord({ ...this.base(params, now) }, this.nodeKeys) };
    }
    const user = params.user ?? params.resource.split('@')[0] ?? '';
    let certificate: Uint8Array | undefined;
    if (this.config.enrollment === 'enrolled') {
      // Checked before the user's key is read: a name the admin never certified leaves no key
      // file behind.
      const certPath = userCertificatePath(this.paths, user);
      if (!existsSync(certPath)) {
        throw new OverlayError(
          'ERR_CERTIFICATE',
          `no certificate for user ${user} at ${certPath}; ask the overlay admin (peerbx ca issue ${user})`,
        );
      }
      certificate = new Uint8Array(readFileSync(certPath));
    }
    const { keys: userKeys, file: keyFile } = this.userKeys(user);
    let claim: StoredRecord | undefined;
    if (
      this.config.enrollment !== 'enrolled' &&
      params.kind !== KIND_NAME_CLAIM &&
      (this.claims.get(params.resource) ?? 0) - now < NAME_CLAIM_LIFETIME_MS / 2
    ) {
      claim = createRecord(
        {
          kind: KIND_NAME_CLAIM,
          resource: params.resource,
          value: userKeys.publicKey,
          storedAt: now,
          lifetimeMs: NAME_CLAIM_LIFETIME_MS,
          userName: user,
        },
        this.nodeKeys,
        userKeys,
      );
    }
    const record = createRecord(
      { ...this.base(params, now), userName: user, ...(certificate ? { certificate } : {}) },
      this.nodeKeys,
      userKeys,
    );
    return { ...(claim ? { claim } : {}), record, ...(keyFile ? { keyFile } : {}) };
  }

  /**
   * A local user's key: the key file in users/ when there is one (copied in from the node
   * where the name was first claimed, made by `peerbx ca issue`, or by an earlier version),
   * from memory while the file is unchanged; else derived from the node key
   * (derivedUserKeys), which needs no file and cannot be lost in a crash.
   */
  private userKeys(user: string): { keys: KeyPair; file?: string } {
    const path = userKeyPath(this.paths, user);
    const file = statIfThere(path);
    if (!file) {
      let keys = this.derivedKeys.get(user);
      if (!keys) {
        keys = derivedUserKeys(this.nodeKeys, user);
        setBounded(this.derivedKeys, user, keys, USER_KEYS_CACHED);
      }
      return { keys };
    }
    const cached = this.userKeyCache.get(path);
    if (
      cached &&
      cached.file.ino === file.ino &&
      cached.file.mtimeMs === file.mtimeMs &&
      cached.file.size === file.size
    ) {
      return { keys: cached.keys, file: path };
    }
    const keys = readKeyFile(path);
    const seen = { ino: file.ino, mtimeMs: file.mtimeMs, size: file.size };
    setBounded(this.userKeyCache, path, { keys, file: seen }, USER_KEYS_CACHED);
    return { keys, file: path };
  }

  /** The claim was stored: no new one is due until half its lifetime has passed. */
  claimStored(claim: StoredRecord): void {
    this.claims.set(claim.resource, recordExpiresAt(claim));
  }

  /** Forgets the claims that lapsed (of users long gone): a new one is due for them anyway. */
  forgetLapsedClaims(now: number): void {
    for (const [resource, expiresAt] of this.claims) {
      if (expiresAt <= now) this.claims.delete(resource);
    }
  }

  private base(params: PublishParams, now: number) {
    return {
      kind: params.kind,
      resource: params.resource,
      ...(params.dictionaryKey ? { dictionaryKey: params.dictionaryKey } : {}),
      ...(params.index !== undefined ? { index: params.index } : {}),
      value: params.value,
      storedAt: now,
      lifetimeMs: params.lifetimeMs,
    };
  }
}

/**
 * The file's stat, undefined when there is none. Called at each signing of a user record; a
 * missing file, the usual case (derived keys), is answered without an exception thrown and
 * caught (a stack trace captured each time).
 */
function statIfThere(path: string): Stats | undefined {
  return statSync(path, { throwIfNoEntry: false });
}
