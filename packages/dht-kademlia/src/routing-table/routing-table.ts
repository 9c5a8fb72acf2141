// The routing table: k-buckets that split around the own ID, as in the Kademlia paper.
//
// Bucket i < last holds contacts sharing exactly i leading bits with the own ID; the last
// bucket holds every contact sharing `last` or more, and it alone may split. A full bucket
// that cannot split keeps its old contacts (they are pinged before any is evicted) and parks
// newcomers in its replacement cache.

import { ID_BITS, MAX_CONTACT_FAILURES, REPLACEMENT_CACHE_SIZE } from '../constants.js';
import type { Contact } from '../contact.js';
import { commonPrefixLength, compareDistance, idEquals, type NodeId } from '../node-id.js';
import { type BucketEntry, KBucket } from './k-bucket.js';

export type AddResult =
  | { readonly status: 'added' | 'updated' | 'self' }
  /** Bucket full: ping `leastRecentlySeen`, then call `evictAndAdd` or `keep` with the answer. */
  | {
      readonly status: 'full';
      readonly leastRecentlySeen: Contact;
      /** When the least-recently-seen contact was last seen alive, ms. */
      readonly leastRecentlySeenAt: number;
    };

export interface RoutingTableOptions {
  /** Contacts a bucket holds: the DHT's k, or more (KademliaOptions.bucketSize). */
  bucketSize: number;
  replacementCacheSize?: number;
  maxFailures?: number;
}

export class RoutingTable {
  readonly bucketSize: number;
  private readonly buckets: KBucket[];
  private readonly replacementCacheSize: number;
  private readonly maxFailures: number;

  constructor(
    readonly ownId: NodeId,
    options: RoutingTableOptions,
    now = 0,
  ) {
    this.bucketSize = options.bucketSize;
    this.replacementCacheSize = options.replacementCacheSize ?? REPLACEMENT_CACHE_SIZE;
    this.maxFailures = options.maxFailures ?? MAX_CONTACT_FAILURES;
    this.buckets = [new KBucket(this.bucketSize, this.replacementCacheSize, now)];
  }

  get size(): number {
    let n = 0;
    for (const b of this.buckets) n += b.size;
    return n;
  }

  get bucketCount(): number {
    return this.buckets.length;
  }

  /** Index of the bucket whose range holds id. */
  bucketIndexOf(id: NodeId): number {
    return Math.min(commonPrefixLength(this.ownId, id), this.buckets.length - 1);
  }

  bucket(index: number): KBucket {
    return this.buckets[index] as KBucket;
  }

  has(id: NodeId): boolean {
    return this.bucket(this.bucketIndexOf(id)).indexOf(id) >= 0;
  }

  /** When id, if listed, began leaving requests unanswered (the first one's sending). */
  failingSince(id: NodeId): number | undefined {
    return this.entry(id)?.failingSince;
  }

  get(id: NodeId): Contact | undefined {
    return this.entry(id)?.contact;
  }

  /** id's entry, if listed. */
  private entry(id: NodeId): BucketEntry | undefined {
    const b = this.bucket(this.bucketIndexOf(id));
    const i = b.indexOf(id);
    return i >= 0 ? b.entries[i] : undefined;
  }

  /**
   * Records that a contact was seen alive: it sent us a message, or (`answered`) answered a
   * request of ours.
   */
  add(contact: Contact, now: number, answered = false): AddResult {
    if (idEquals(contact.id, this.ownId)) return { status: 'self' };
    for (;;) {
      const index = this.bucketIndexOf(contact.id);
      const bucket = this.bucket(index);
      const at = bucket.indexOf(contact.id);
      if (at >= 0) {
        bucket.touch(at, contact, now, answered);
        return { status: 'updated' };
      }
      if (!bucket.isFull) {
        bucket.append(contact, now, answered);
        bucket.removeReplacement(contact.id);
        return { status: 'added' };
      }
      if (index === this.buckets.length - 1 && this.buckets.length < ID_BITS) {
        this.split(now);
        continue;
      }
      bucket.addReplacement(contact);
      const lrs = bucket.leastRecentlySeen() as { contact: Contact; lastSeen: number };
      return { status: 'full', leastRecentlySeen: lrs.contact, leastRecentlySeenAt: lrs.lastSeen };
    }
  }

  /** The pinged least-recently-seen contact answered: it stays, marked as fresh. */
  keep(contact: Contact, now: number): void {
    const bucket = this.bucket(this.bucketIndexOf(contact.id));
    const at = bucket.indexOf(contact.id);
    if (at >= 0) bucket.touch(at, contact, now);
  }

  /**
   * A request to id (sent at `sentAt`) failed. After too many failures, or at once when a
   * replacement is waiting, the contact leaves the table and the freshest replacement takes
   * its slot.
   * Returns true when the contact was removed.
   */
  recordFailure(id: NodeId, now: number, sentAt = now): boolean {
    const bucket = this.bucket(this.bucketIndexOf(id));
    const at = bucket.indexOf(id);
    if (at < 0) {
      bucket.removeReplacement(id);
      return false;
    }
    const entry = bucket.entries[at]!;
    entry.failures++;
    entry.failingSince ??= sentAt;
    entry.answeredAt = undefined;
    if (bucket.replacements.length === 0 && entry.failures < this.maxFailures) return false;
    bucket.entries.splice(at, 1);
    const replacement = bucket.takeReplacement();
    if (replacement) bucket.append(replacement, now);
    return true;
  }

  remove(id: NodeId): boolean {
    return this.bucket(this.bucketIndexOf(id)).remove(id) !== undefined;
  }

  /** The n contacts closest to target, closest first. */
  closest(target: NodeId, n = this.bucketSize, exclude?: (c: Contact) => boolean): Contact[] {
    return this.collect(target, n, exclude ? (e) => !exclude(e.contact) : () => true);
  }

  /**
   * closest(), of the contacts that answered a request of ours and have not failed one since:
   * a contact that only ever sent us messages, or stopped answering, is left out.
   */
  closestAnswering(target: NodeId, n = this.bucketSize): Contact[] {
    return this.collect(target, n, (e) => e.failures === 0 && e.answeredAt !== undefined);
  }

  /** When id last answered a request of ours (undefined: never since its last failure). */
  answeredAt(id: NodeId): number | undefined {
    return this.entry(id)?.answeredAt;
  }

  /** When id was last heard from (a request from it, or its answer to ours), if listed. */
  seenAt(id: NodeId): number | undefined {
    return this.entry(id)?.lastSeen;
  }

  private collect(target: NodeId, n: number, keep: (e: BucketEntry) => boolean): Contact[] {
    // Distance classes, nearest first: the target's bucket; then every deeper bucket (they
    // differ from target at bit `start`); then shallower buckets, each farther than the last.
    // Whole classes are collected until n are in hand, then sorted once.
    const out: Contact[] = [];
    const start = this.bucketIndexOf(target);
    const push = (b: KBucket) => {
      for (const e of b.entries) if (keep(e)) out.push(e.contact);
    };
    push(this.bucket(start));
    for (let i = start + 1; i < this.buckets.length; i++) push(this.bucket(i));
    for (let i = start - 1; i >= 0 && out.length < n; i--) push(this.bucket(i));
    out.sort((a, b) => compareDistance(target, a.id, b.id));
    if (out.length > n) out.length = n;
    return out;
  }

  /**
   * Up to n contacts spread over the whole table, to come back through after a restart: from
   * each bucket in turn, those that answered a request of ours and failed none since first,
   * the least recently seen first (a node that keeps sending requests moves to the back, so
   * a few busy newcomers do not fill the list); then the others, in the same order.
   */
  spread(n: number): Contact[] {
    const out: Contact[] = [];
    const proven = (e: BucketEntry) => e.answeredAt !== undefined && e.failures === 0;
    for (const pass of [proven, (e: BucketEntry) => !proven(e)]) {
      const lists = this.buckets.map((b) => b.entries.filter(pass));
      for (let depth = 0; out.length < n; depth++) {
        let any = false;
        for (const list of lists) {
          const e = list[depth];
          if (!e) continue;
          any = true;
          out.push(e.contact);
          if (out.length === n) return out;
        }
        if (!any) break;
      }
    }
    return out;
  }

  /** Every contact, bucket by bucket. */
  *contacts(): IterableIterator<Contact> {
    for (const b of this.buckets) for (const e of b.entries) yield e.contact;
  }

  /** Marks the bucket covering target as just looked up (it needs no refresh for a while). */
  touchBucket(target: NodeId, now: number): void {
    this.bucket(this.bucketIndexOf(target)).lastLookup = now;
  }

  /** Indexes of buckets not looked up since `before`. */
  staleBuckets(before: number): number[] {
    const out: number[] = [];
    this.buckets.forEach((b, i) => {
      if (b.lastLookup < before) out.push(i);
    });
    return out;
  }

  private split(now: number): void {
    const depth = this.buckets.length - 1;
    const old = this.bucket(depth);
    const near = new KBucket(this.bucketSize, this.replacementCacheSize, now);
    const far = new KBucket(this.bucketSize, this.replacementCacheSize, old.lastLookup);
    for (const e of old.entries) {
      (commonPrefixLength(this.ownId, e.contact.id) === depth ? far : near).entries.push(e);
    }
    for (const c of old.replacements) {
      (commonPrefixLength(this.ownId, c.id) === depth ? far : near).addReplacement(c);
    }
    near.lastLookup = old.lastLookup;
    this.buckets[depth] = far;
    this.buckets.push(near);
  }
}
