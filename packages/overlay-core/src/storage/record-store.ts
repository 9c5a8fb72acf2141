// Glue between signed records and the DHT's value store: which slot a record takes, which of
// two records wins, what a storing peer accepts (signatures, policy, per-kind counts), and what
// a fetcher believes of the values peers hand back.

import {
  type Clock,
  idEquals,
  idToHex,
  type NodeId,
  type StoredValue,
  type ValueStore,
  type ValueStoreOptions,
  type ValueValidator,
} from '@peerbx/dht-kademlia';
import { kindById, type OverlayConfig } from '../config/overlay-config.js';
import { KIND_NAME_CLAIM } from '../constants.js';
import { nodeIdOf } from '../identity/keys.js';
import { type AccessRejection, bytesEqual, checkRecord } from './access.js';
import {
  decodeRecord,
  isTombstone,
  RECORD_OVERHEAD_BYTES,
  recordExpiresAt,
  recordSlot,
  resourceId,
  type StoredRecord,
} from './record.js';
import type { StorerShares } from './storer-shares.js';

/** The slot of a resource's name claim (a single value, no dictionary key). */
export const NAME_CLAIM_SLOT = `${KIND_NAME_CLAIM}:`;

/** What the store's own checks read of a stored record: its slot, kind, dates and signer. */
interface RecordFacts {
  readonly slot: string;
  readonly kind: number;
  readonly storedAt: number;
  readonly expiresAt: number;
  readonly tombstone: boolean;
  /** The user key that signed it, when a user did (a view into the stored bytes). */
  readonly userKey?: Uint8Array;
  /** The key of the node that wrote it (a view into the stored bytes). */
  readonly nodeKey: Uint8Array;
}

// Values in the store are read again on every STORE under the same key (claims, counts); the
// bytes never change once stored, so what is read of them is remembered per byte array, for as
// long as they are held. Only the facts: a whole decoded record, with its byte views and
// strings, took about 1 KB more for each record a node holds.
const facts = new WeakMap<Uint8Array, RecordFacts | null>();

function factsOf(record: StoredRecord): RecordFacts {
  return {
    slot: recordSlot(record),
    kind: record.kind,
    storedAt: record.storedAt,
    expiresAt: recordExpiresAt(record),
    tombstone: isTombstone(record),
    ...(record.user ? { userKey: record.user.publicKey } : {}),
    nodeKey: record.nodeKey,
  };
}

/** The user key that signed the record in `bytes`, when a user did (remembered, not decoded). */
export function userKeyOf(bytes: Uint8Array): Uint8Array | undefined {
  return factsIn(bytes)?.userKey;
}

/**
 * The node-ID (hex) of the node that wrote the record in `bytes`, if they are a record: hashed
 * only when asked (a key new to the store), not for every record decoded.
 */
export function writerOf(bytes: Uint8Array): string | undefined {
  const nodeKey = factsIn(bytes)?.nodeKey;
  return nodeKey && idToHex(nodeIdOf(nodeKey));
}

/** The facts of the record in `bytes`, or undefined when they are none. Cached per array. */
function factsIn(bytes: Uint8Array): RecordFacts | undefined {
  const hit = facts.get(bytes);
  if (hit !== undefined) return hit ?? undefined;
  let found: RecordFacts | null;
  try {
    found = factsOf(decodeRecord(bytes));
  } catch {
    found = null;
  }
  facts.set(bytes, found);
  return found ?? undefined;
}

/** Value-store options for overlay records: slots per kind and entry, newest record wins. */
export function createOverlayStoreOptions(config: OverlayConfig, clock: Clock): ValueStoreOptions {
  const largest = Math.max(...config.kinds.map((k) => k.maxValueBytes));
  const entries = config.kinds.reduce((n, k) => n + k.maxCount, 0);
  return {
    maxValueBytes: largest + RECORD_OVERHEAD_BYTES,
    maxValuesPerKey: entries,
    // Undecodable values never pass the validator; the fallback slot only keeps this total.
    slotOf: (_key, value) => factsIn(value)?.slot ?? 'invalid',
    shouldReplace: (_key, existing, incoming) => {
      // The same record again (a republish): let the store keep the longer expiry.
      if (bytesEqual(existing.value, incoming.value)) return true;
      const a = factsIn(existing.value);
      const b = factsIn(incoming.value);
      if (!b) return false;
      if (!a) return true;
      // A record past its own lifetime gives way even to an older one.
      if (a.expiresAt <= clock.now()) return true;
      return b.storedAt > a.storedAt;
    },
  };
}

/**
 * Open mode: whether a STORE under key belongs at this node (KademliaNode.isResponsibleFor),
 * given the node that sent it.
 */
export type Responsibility = (key: NodeId, sender: NodeId) => boolean;

/**
 * What the checks of every record add: for STOREs from other nodes and clients' records,
 * responsibility, shares and settling claims; for values read back from this node's own
 * store, no signature checks.
 */
export interface ValidatorOptions {
  /** Open mode: user records only where they belong (see createRecordValidator). */
  responsible?: Responsibility;
  /** Told of each record refused as another key's claim to its name is held here. */
  onOwnedByAnother?: (resource: string, sender: NodeId) => void;
  /**
   * Told of each name claim to be taken where no claim to its name was held, and whether its
   * sender wrote it (the claim's node signature is the sender's); a text returned refuses it
   * for now (too-many-keys), saying why.
   */
  onNewClaim?: (resource: string, byWriter: boolean) => string | undefined;
  /** Keys held per writing node: a new key only within its writer's share. */
  shares?: StorerShares;
  /**
   * The values were checked when first stored: read back from this node's own store at start,
   * where 200,000 signature checks (100,000 keys) took 20 s. A fetcher checks them anyway.
   */
  signaturesChecked?: boolean;
}

/**
 * The storing peer's check of a STORE: decodes the value as a record, runs every access check
 * (the name claim read from this store) and enforces the kind's entry count per resource.
 *
 * With `responsible` (the check of STOREs from other nodes), an open overlay's user records
 * (name claims, registrations) are refused with `not-responsible` where the key's values do
 * not belong. A first-come name is safe only where its claim is held: the k closest nodes keep
 * the owner's claim and refuse every other key's, and a lookup ends there. Any other node,
 * holding no claim, would take a thief's claim and records for the name, and a lookup that
 * met it first could count it as a holder.
 */
export function createRecordValidator(
  config: OverlayConfig,
  store: ValueStore,
  clock: Clock,
  options: ValidatorOptions = {},
): ValueValidator {
  const { responsible, onOwnedByAnother, onNewClaim, shares, signaturesChecked } = options;
  return (key, value, sender) => {
    const now = clock.now();
    // A republished or replicated copy of bytes this store already holds was checked when it
    // first arrived: two signature checks per refresh would be pure waste.
    if (store.get(key, now).some((v) => bytesEqual(v.value, value))) return undefined;
    let record: StoredRecord;
    try {
      record = decodeRecord(value);
    } catch (err) {
      return {
        reason: 'invalid',
        detail: `value is not a PeerBX record: ${(err as Error).message}`,
        forged: true,
      };
    }
    facts.set(value, factsOf(record)); // the store's slotOf needs them next
    // The writer's node-ID, hashed once and only when asked (a key or a claim new here).
    let writerId: NodeId | undefined;
    const writer = () => (writerId ??= nodeIdOf(record.nodeKey));
    // A key this node holds nothing under: within the share of the node that wrote the record.
    const charged = shares && !store.has(key) ? idToHex(writer()) : undefined;
    if (shares && charged !== undefined && !shares.admits(charged)) {
      return {
        reason: 'too-many-keys',
        detail: `this node holds ${shares.held(charged)} keys of records node ${charged.slice(0, 16)} wrote, the most one node may`,
      };
    }
    if (
      responsible &&
      config.enrollment === 'open' &&
      kindById(config, record.kind)?.policy.startsWith('USER') &&
      idEquals(resourceId(record.resource), key) && // else checkRecord says what is wrong
      !responsible(key, sender)
    ) {
      return {
        reason: 'not-responsible',
        detail: `${record.resource} is held by the nodes closest to it, and this node knows ${config.dht.k} closer ones`,
      };
    }
    const live = liveRecords(store, key, now);
    const verdict = checkRecord(record, key, config, {
      now,
      existingClaim: () => currentClaim(live, now),
      ...(signaturesChecked ? { signaturesChecked } : {}),
    });
    if (verdict) {
      if (verdict.ownedByAnother) onOwnedByAnother?.(record.resource, sender);
      return verdict;
    }
    const kind = kindById(config, record.kind)!;
    const slot = recordSlot(record);
    if (!live.some((r) => r.slot === slot)) {
      const count = live.filter((r) => r.facts.kind === record.kind).length;
      if (count >= kind.maxCount) {
        return {
          reason: 'too-many-values',
          detail: `${kind.name} for ${record.resource} already has ${count} entries, the most this overlay allows`,
        };
      }
    }
    const newClaim = record.kind === KIND_NAME_CLAIM && !isTombstone(record);
    if (onNewClaim && newClaim && !currentClaim(live, now)) {
      const busy = onNewClaim(record.resource, idEquals(writer(), sender));
      if (busy !== undefined) return { reason: 'too-many-keys', detail: busy };
    }
    return undefined;
  };
}

export interface VerifyFetchedOptions {
  /** The fetcher's clock; defaults to Date.now(). */
  now?: number;
  /** Told why each dropped value was dropped (diagnostics, logging). */
  onDrop?: (detail: string) => void;
  /**
   * Told when live name claims of different keys came back and no key was returned by more
   * holders than every other: the name's user records were all left out. Asking more of the
   * nodes that hold the name can settle it (OverlayNode.fetch does).
   */
  onContested?: () => void;
  /**
   * Told, per slot, of the newest record (tombstones too) and the holders (node-ID hex) that
   * returned an older one for it and not it: they missed an update, and can be sent the newest
   * (read repair). Name claims of open mode are left out.
   */
  onStale?: (
    newest: { record: StoredRecord; value: Uint8Array },
    holders: ReadonlySet<string>,
  ) => void;
}

const NO_HOLDERS: ReadonlySet<string> = new Set();

/** A value as a lookup found it, with the holders (node-ID hex) that returned it if known. */
export interface FetchedValue {
  readonly value: Uint8Array;
  readonly holders?: ReadonlySet<string>;
}

/**
 * A fetcher's check of the values peers returned for one resource: every access check again
 * (a storing peer may lie), then the newest record per slot, without tombstones or expired
 * ones; in open mode, user records only from the key that holds the name claim. `kind`
 * filters the result (undefined: all kinds); fetch all kinds at once so the claim is seen.
 *
 * Honest storing peers keep one claim per name (the first key's; storeRecord refuses others),
 * so claims of two keys mean a peer lies: it can sign a claim and records with a key of its
 * own, date them later than the owner's, and leave the owner's out. The claim is then the key
 * more holders returned; with no such key (one honest holder against one liar, or holders
 * unknown), no key is trusted and the name's user records are all left out (onContested).
 */
export function verifyFetched(
  values: readonly (Uint8Array | FetchedValue)[],
  resourceName: string,
  kind: number | undefined,
  config: OverlayConfig,
  options: VerifyFetchedOptions = {},
): StoredRecord[] {
  const now = options.now ?? Date.now();
  const drop = (detail: string) => options.onDrop?.(detail);
  const key = resourceId(resourceName);
  const open = config.enrollment === 'open';
  /**
   * Per slot: the newest record, its bytes, the holders that returned it, and those that
   * returned an older one (for onStale).
   */
  const newest = new Map<
    string,
    { record: StoredRecord; value: Uint8Array; holders: ReadonlySet<string>; older: Set<string> }
  >();
  /** Name claims by user key (hex): each key's newest, and the holders that returned any. */
  const claims = new Map<
    string,
    { record: StoredRecord; value: Uint8Array; holders: Set<string> }
  >();
  for (const item of values) {
    const bytes = item instanceof Uint8Array ? item : item.value;
    const checked = checkFetched(bytes, resourceName, key, { config, now });
    if ('problem' in checked) {
      drop(checked.problem);
      continue;
    }
    const { record } = checked;
    const slot = recordSlot(record);
    if (open && slot === NAME_CLAIM_SLOT && record.user) {
      const id = Buffer.from(record.user.publicKey).toString('hex');
      const holders = item instanceof Uint8Array ? undefined : item.holders;
      const claim = claims.get(id) ?? { record, value: bytes, holders: new Set<string>() };
      if (newer(record, claim.record)) Object.assign(claim, { record, value: bytes });
      for (const h of holders ?? []) claim.holders.add(h);
      claims.set(id, claim);
      continue;
    }
    const holders = item instanceof Uint8Array ? NO_HOLDERS : (item.holders ?? NO_HOLDERS);
    // Older for repair means an earlier storedAt: two records of one date are told apart by
    // their bytes here, but a holder takes only a later date, so it is never sent a tie.
    const held = newest.get(slot);
    if (!held) newest.set(slot, { record, value: bytes, holders, older: new Set() });
    else if (newer(record, held.record)) {
      if (held.record.storedAt < record.storedAt) for (const h of held.holders) held.older.add(h);
      Object.assign(held, { record, value: bytes, holders });
    } else if (record.storedAt < held.record.storedAt) for (const h of holders) held.older.add(h);
  }

  // Open mode: the claim that counts is the only live key's, or the key more holders returned
  // than any other (claims is empty in enrolled mode). Tombstoned claims name no owner.
  const live = [...claims.values()].filter((c) => !isTombstone(c.record));
  live.sort((a, b) => b.holders.size - a.holders.size);
  const [first, second] = live;
  const contested =
    first !== undefined && second !== undefined && first.holders.size <= second.holders.size;
  if (contested) {
    drop(`name ${resourceName} is claimed by ${live.length} keys and no key by most holders`);
    options.onContested?.();
  } else if (first) {
    newest.set(NAME_CLAIM_SLOT, { ...first, older: new Set() });
  }
  const owner = contested ? undefined : first?.record.user?.publicKey;
  const out: StoredRecord[] = [];
  for (const held of newest.values()) {
    const { record } = held;
    if (record.user && (contested || (owner && !bytesEqual(record.user.publicKey, owner)))) {
      const policy = kindById(config, record.kind)?.policy ?? '';
      if (policy.startsWith('USER')) {
        if (!contested && !isTombstone(record)) {
          drop(`name ${resourceName} is owned by another key`);
        }
        continue;
      }
    }
    // What counts (a removal too) goes to the holders that returned an older one.
    for (const h of held.holders) held.older.delete(h);
    if (held.older.size > 0) options.onStale?.(held, held.older);
    if (isTombstone(record)) continue;
    if (kind === undefined || record.kind === kind) out.push(record);
  }
  return out;
}

/**
 * One fetched value on its own: its record when it decodes, belongs to the resource asked for
 * and passes every access check; otherwise why not, and whether that is `lasting` (the bytes
 * can never pass: undecodable, another resource's, a signature that does not verify) or may
 * depend on the time. verifyFetched weighs the records together.
 */
export function checkFetched(
  bytes: Uint8Array,
  resourceName: string,
  key: NodeId,
  context: { config: OverlayConfig; now: number },
): { record: StoredRecord } | { problem: string; lasting: boolean } {
  let record: StoredRecord;
  try {
    record = decodeRecord(bytes);
  } catch (err) {
    return { problem: `value is not a PeerBX record: ${(err as Error).message}`, lasting: true };
  }
  if (record.resource !== resourceName) {
    return {
      problem: `record for ${record.resource} returned for ${resourceName}`,
      lasting: true,
    };
  }
  const verdict: AccessRejection | undefined = checkRecord(record, key, context.config, {
    now: context.now,
  });
  return verdict ? { problem: verdict.detail, lasting: verdict.forged === true } : { record };
}

/** Newer storedAt wins; equal dates are settled by the signed bytes so all fetchers agree. */
function newer(a: StoredRecord, b: StoredRecord): boolean {
  if (a.storedAt !== b.storedAt) return a.storedAt > b.storedAt;
  return Buffer.compare(a.tbs, b.tbs) > 0;
}

interface LiveRecord {
  readonly slot: string;
  readonly facts: RecordFacts;
  readonly stored: StoredValue;
}

function liveRecords(store: ValueStore, key: NodeId, now: number): LiveRecord[] {
  const out: LiveRecord[] = [];
  for (const stored of store.get(key, now)) {
    const found = factsIn(stored.value);
    if (found) out.push({ slot: found.slot, facts: found, stored });
  }
  return out;
}

/** The user key of the live, unexpired, non-deleted NAME-CLAIM among a key's records. */
function currentClaim(live: readonly LiveRecord[], now: number): Uint8Array | undefined {
  const claim = live.find((r) => r.slot === NAME_CLAIM_SLOT)?.facts;
  if (!claim || claim.tombstone || claim.expiresAt <= now) return undefined;
  return claim.userKey;
}
