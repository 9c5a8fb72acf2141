// Access control for stored records (RELOAD §7.3 access control policies): what a storing peer
// checks before it keeps a record and a fetcher checks again before it believes one. Every
// refusal is a StoreRejection for the DHT reply plus one line a person can act on.

import { idEquals, idToHex, type NodeId, type StoreRejection } from '@peerbx/dht-kademlia';
import { type KindDefinition, kindById, type OverlayConfig } from '../config/overlay-config.js';
import { KIND_NAME_CLAIM } from '../constants.js';
import {
  decodeCertificate,
  type UserCertificate,
  verifyCertificate,
} from '../identity/certificate.js';
import { nodeIdOf } from '../identity/keys.js';
import {
  nodeSignatureValid,
  resourceId,
  type StoredRecord,
  userPartOf,
  userSignatureValid,
} from './record.js';

/** A writer's clock may run this far ahead of ours before its records count as forged. */
export const MAX_FUTURE_SKEW_MS = 5 * 60_000;

export interface AccessRejection {
  readonly reason: StoreRejection;
  readonly detail: string;
  /** A signature does not verify: nobody honest wrote this. */
  readonly forged?: boolean;
  /** Open mode: refused as the name's claim held here is another key's. */
  readonly ownedByAnother?: boolean;
}

export interface AccessContext {
  /** This node's clock, ms since the epoch. */
  readonly now: number;
  /**
   * Open mode: the user key of the current, unexpired NAME-CLAIM under a resource's key, if
   * any. Absent or returning undefined means the name is unclaimed.
   */
  readonly existingClaim?: (resourceId: NodeId) => Uint8Array | undefined;
  /** The signatures were verified before (records read back from this node's own store). */
  readonly signaturesChecked?: boolean;
}

/**
 * Every check a record must pass to be stored under `key`: undefined accepts, otherwise the
 * first failure. Never throws.
 */
export function checkRecord(
  record: StoredRecord,
  key: NodeId,
  config: OverlayConfig,
  context: AccessContext,
): AccessRejection | undefined {
  const invalid = (detail: string): AccessRejection => ({ reason: 'invalid', detail });
  const kind = kindById(config, record.kind);
  if (!kind) return invalid(`kind ${record.kind} is not defined in this overlay's configuration`);
  const label = `${kind.name} record for ${record.resource}`;

  const model = checkModel(record, kind);
  if (model) return invalid(`${label}: ${model}`);
  if (!idEquals(key, resourceId(record.resource))) {
    return invalid(`${label} is stored under key ${idToHex(key)}, not under the hash of its name`);
  }
  if (record.value.length > kind.maxValueBytes) {
    return {
      reason: 'too-large',
      detail: `${label}: value is ${record.value.length} bytes, ${kind.name} allows at most ${kind.maxValueBytes}`,
    };
  }
  if (record.lifetimeMs <= 0 || record.lifetimeMs > kind.maxLifetimeMs) {
    return invalid(
      `${label}: lifetime ${record.lifetimeMs} ms is outside 1..${kind.maxLifetimeMs} ms allowed for ${kind.name}`,
    );
  }
  if (record.storedAt > context.now + MAX_FUTURE_SKEW_MS) {
    return invalid(
      `${label} is dated ${iso(record.storedAt)}, more than ${MAX_FUTURE_SKEW_MS / 60_000} minutes ahead of this node's clock (${iso(context.now)})`,
    );
  }
  if (record.storedAt + record.lifetimeMs <= context.now) {
    return {
      reason: 'expired',
      detail: `${label} expired ${iso(record.storedAt + record.lifetimeMs)}`,
    };
  }

  // Signatures last: each costs an Ed25519 verification, the checks above almost nothing.
  if (!context.signaturesChecked && !nodeSignatureValid(record)) {
    return { ...invalid(`${label}: the writing node's signature does not verify`), forged: true };
  }
  if (
    !context.signaturesChecked &&
    record.userSignature !== undefined &&
    !userSignatureValid(record)
  ) {
    return { ...invalid(`${label}: the user signature does not verify`), forged: true };
  }

  switch (kind.policy) {
    case 'NODE-MATCH': {
      const writer = idToHex(nodeIdOf(record.nodeKey));
      if (record.resource !== writer) {
        return invalid(`${label}: NODE-MATCH allows only node ${writer} to write under its own ID`);
      }
      return undefined;
    }
    case 'USER-MATCH':
      return checkUser(record, key, config, context, label);
    case 'USER-NODE-MATCH': {
      const user = checkUser(record, key, config, context, label);
      if (user) return user;
      const writer = nodeIdOf(record.nodeKey);
      if (!record.dictionaryKey || !bytesEqual(record.dictionaryKey, writer)) {
        return invalid(
          `${label}: USER-NODE-MATCH entries must be keyed by the writing node's ID ${idToHex(writer)}`,
        );
      }
      return undefined;
    }
  }
}

/**
 * The user part of the checks: name, certificate or first-come claim. The user signature,
 * present here, was verified by checkRecord() before.
 */
function checkUser(
  record: StoredRecord,
  key: NodeId,
  config: OverlayConfig,
  context: AccessContext,
  label: string,
): AccessRejection | undefined {
  const invalid = (detail: string): AccessRejection => ({ reason: 'invalid', detail });
  const user = record.user;
  if (!user || !record.userSignature) {
    return invalid(`${label}: no user key and user signature; only the user may write it`);
  }
  // checkRecord() verified the user signature already (one Ed25519 verification per record).
  if (!nameMatches(user.name, record.resource)) {
    return invalid(`${label}: written by user "${user.name}", who does not own ${record.resource}`);
  }

  if (config.enrollment === 'enrolled') {
    if (!user.certificate) {
      return invalid(
        `${label}: this overlay is enrolled and the record carries no user certificate`,
      );
    }
    let cert: UserCertificate;
    try {
      cert = decodeCertificate(user.certificate);
    } catch (err) {
      return invalid(`${label}: user certificate is malformed (${(err as Error).message})`);
    }
    const verdict = verifyCertificate(cert, config.authorityKey ?? '', context.now);
    if (!verdict.ok) return invalid(`${label}: ${verdict.reason}`);
    if (cert.user !== user.name) {
      return invalid(
        `${label}: certificate is for "${cert.user}", the record claims "${user.name}"`,
      );
    }
    if (!bytesEqual(cert.publicKey, user.publicKey)) {
      return invalid(`${label}: certificate for ${cert.user} names a different user key`);
    }
    return undefined;
  }

  // Open mode: first come, first served. The first key to claim a name owns it until its
  // claim lapses; a NAME-CLAIM's value is the claiming key itself.
  if (
    record.kind === KIND_NAME_CLAIM &&
    record.value.length > 0 &&
    !bytesEqual(record.value, user.publicKey)
  ) {
    return invalid(`${label}: a name claim's value must be the claiming user's key`);
  }
  const owner = context.existingClaim?.(key);
  if (owner && !bytesEqual(owner, user.publicKey)) {
    return { ...invalid(`name ${record.resource} is owned by another key`), ownedByAnother: true };
  }
  return undefined;
}

/** Whether user `name` may write `resource`: its user part, or the whole name. */
export function nameMatches(name: string, resource: string): boolean {
  return name === resource || (!name.includes('@') && name === userPartOf(resource));
}

/** Model and entry: a dictionary key only for dictionaries, an index only for arrays. */
function checkModel(record: StoredRecord, kind: KindDefinition): string | undefined {
  const hasKey = record.dictionaryKey !== undefined;
  const hasIndex = record.index !== undefined;
  switch (kind.model) {
    case 'single':
      if (hasKey || hasIndex)
        return `${kind.name} holds a single value, without dictionary key or index`;
      return undefined;
    case 'array':
      if (hasKey || !hasIndex)
        return `${kind.name} is an array: entries need an index and no dictionary key`;
      if ((record.index as number) >= kind.maxCount) {
        return `index ${record.index} is beyond the ${kind.maxCount} entries ${kind.name} allows`;
      }
      return undefined;
    case 'dictionary':
      if (!hasKey || hasIndex)
        return `${kind.name} is a dictionary: entries need a dictionary key and no index`;
      return undefined;
  }
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

function iso(ms: number): string {
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? `${ms} ms` : d.toISOString();
}
