// One k-bucket: up to k contacts ordered least-recently-seen first, plus a replacement cache.

import type { Contact } from '../contact.js';
import { idEquals, type NodeId } from '../node-id.js';

export interface BucketEntry {
  contact: Contact;
  lastSeen: number;
  failures: number;
  /** When it last answered a request of ours, if it has since its last failure. */
  answeredAt?: number;
  /** When the first request it left unanswered since it was last heard from was sent. */
  failingSince?: number;
}

export class KBucket {
  /** Least-recently-seen first, most-recently-seen last. */
  readonly entries: BucketEntry[] = [];
  /** Candidates for a slot, most recent last; they fill in when an entry fails. */
  readonly replacements: Contact[] = [];
  /** Last time a lookup touched this bucket's range (for refresh). */
  lastLookup: number;

  constructor(
    readonly capacity: number,
    private readonly replacementCapacity: number,
    now: number,
  ) {
    this.lastLookup = now;
  }

  get size(): number {
    return this.entries.length;
  }

  get isFull(): boolean {
    return this.entries.length >= this.capacity;
  }

  indexOf(id: NodeId): number {
    for (let i = 0; i < this.entries.length; i++) {
      if (idEquals((this.entries[i] as BucketEntry).contact.id, id)) return i;
    }
    return -1;
  }

  /** Moves a known contact to the most-recently-seen end; the address may have changed. */
  touch(index: number, contact: Contact, now: number, answered = false): void {
    const [entry] = this.entries.splice(index, 1) as [BucketEntry];
    entry.contact = contact;
    entry.lastSeen = now;
    entry.failures = 0;
    entry.failingSince = undefined;
    if (answered) entry.answeredAt = now;
    this.entries.push(entry);
  }

  append(contact: Contact, now: number, answered = false): void {
    this.entries.push({
      contact,
      lastSeen: now,
      failures: 0,
      ...(answered && { answeredAt: now }),
    });
  }

  leastRecentlySeen(): BucketEntry | undefined {
    return this.entries[0];
  }

  remove(id: NodeId): BucketEntry | undefined {
    const i = this.indexOf(id);
    if (i < 0) return undefined;
    return this.entries.splice(i, 1)[0];
  }

  addReplacement(contact: Contact): void {
    const i = this.replacements.findIndex((c) => idEquals(c.id, contact.id));
    if (i >= 0) this.replacements.splice(i, 1);
    this.replacements.push(contact);
    if (this.replacements.length > this.replacementCapacity) this.replacements.shift();
  }

  removeReplacement(id: NodeId): void {
    const i = this.replacements.findIndex((c) => idEquals(c.id, id));
    if (i >= 0) this.replacements.splice(i, 1);
  }

  /** The most recently seen replacement, taken out of the cache. */
  takeReplacement(): Contact | undefined {
    return this.replacements.pop();
  }
}
