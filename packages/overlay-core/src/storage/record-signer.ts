// Signs a node's own records: with the node key always, with the local user's key for user
// kinds, carrying the user's certificate in enrolled mode. In open mode a user record needs
// the user's name claim stored first; the signer says when one is due.

import { existsSync, readFileSync } from 'node:fs';
import type { Clock } from '@peerbx/dht-kademlia';
import { kindById, type OverlayConfig } from '../config/overlay-config.js';
import { KIND_NAME_CLAIM, NAME_CLAIM_LIFETIME_MS } from '../constants.js';
import { OverlayError } from '../errors.js';
import { type DataDirPaths, loadUserKey, userCertificatePath } from '../identity/data-dir.js';
import type { KeyPair } from '../identity/keys.js';
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
}

export class RecordSigner {
  /** When each name claim this signer made lapses. */
  private readonly claims = new Map<string, number>();

  constructor(
    private readonly paths: DataDirPaths,
    private readonly config: OverlayConfig,
    private readonly nodeKeys: KeyPair,
    private readonly clock: Clock,
  ) {}

  sign(params: PublishParams): SignedRecords {
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
    const userKeys = loadUserKey(this.paths, user);
    let certificate: Uint8Array | undefined;
    let claim: StoredRecord | undefined;
    if (this.config.enrollment === 'enrolled') {
      const certPath = userCertificatePath(this.paths, user);
      if (!existsSync(certPath)) {
        throw new OverlayError(
          'ERR_CERTIFICATE',
          `no certificate for user ${user} at ${certPath}; ask the overlay admin (peerbx ca issue ${user})`,
        );
      }
      certificate = new Uint8Array(readFileSync(certPath));
    } else if (
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
    return claim ? { claim, record } : { record };
  }

  /** The claim was stored: no new one is due until half its lifetime has passed. */
  claimStored(claim: StoredRecord): void {
    this.claims.set(claim.resource, recordExpiresAt(claim));
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
