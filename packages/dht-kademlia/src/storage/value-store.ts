// What a node stores for the overlay: values under keys, each with an expiry, within limits.
//
// A key holds up to maxValuesPerKey values in named slots. By default a key has one slot and a
// new value replaces the old (plain Kademlia); the layer above can name slots (one per writer,
// say) and decide which of two values for a slot wins.

import {
  DEFAULT_MAX_KEYS,
  DEFAULT_MAX_VALUE_BYTES,
  DEFAULT_MAX_VALUES_PER_KEY,
} from '../constants.js';
import { idFromHex, idToHex, type NodeId } from '../node-id.js';
import type { StoreRejection } from '../rpc/messages.js';

export interface StoredValue {
  readonly value: Uint8Array;
  /** Absolute expiry on this node's clock. */
  readonly expiresAt: number;
  /** When this node last received it. */
  readonly storedAt: number;
}

export type PutResult = { ok: true; changed: boolean } | { ok: false; reason: StoreRejection };

export interface ValueStoreOptions {
  maxKeys?: number;
  maxValuesPerKey?: number;
  maxValueBytes?: number;
  /** Names the slot a value occupies under its key. Default: one slot per key. */
  slotOf?: (key: NodeId, value: Uint8Array) => string;
  /** Whether `incoming` may replace `existing` in the same slot. Default: always. */
  shouldReplace?: (key: NodeId, existing: StoredValue, incoming: StoredValue) => boolean;
  /** Told of every change, after it happened: how a persistent layer keeps a copy on disk. */
  onChange?: (change: StoreChange) => void;
}

export type StoreChange =
  | {
      readonly type: 'put';
      readonly key: NodeId;
      readonly slot: string;
      readonly stored: StoredValue;
    }
  | { readonly type: 'delete'; readonly key: NodeId; readonly slot: string };

export class ValueStore {
  private readonly data = new Map<string, Map<string, StoredValue>>();
  private readonly maxKeys: number;
  private readonly maxValuesPerKey: number;
  readonly maxValueBytes: number;
  private readonly slotOf: (key: NodeId, value: Uint8Array) => string;
  private readonly shouldReplace: (key: NodeId, a: StoredValue, b: StoredValue) => boolean;
  private readonly onChange: ((change: StoreChange) => void) | undefined;

  constructor(options: ValueStoreOptions = {}) {
    this.maxKeys = options.maxKeys ?? DEFAULT_MAX_KEYS;
    this.maxValuesPerKey = options.maxValuesPerKey ?? DEFAULT_MAX_VALUES_PER_KEY;
    this.maxValueBytes = options.maxValueBytes ?? DEFAULT_MAX_VALUE_BYTES;
    this.slotOf = options.slotOf ?? (() => '');
    this.shouldReplace = options.shouldReplace ?? (() => true);
    this.onChange = options.onChange;
  }

  get keyCount(): number {
    return this.data.size;
  }

  get valueCount(): number {
    let n = 0;
    for (const slots of this.data.values()) n += slots.size;
    return n;
  }

  put(key: NodeId, value: Uint8Array, expiresAt: number, now: number): PutResult {
    if (value.length > this.maxValueBytes) return { ok: false, reason: 'too-large' };
    if (expiresAt <= now) return { ok: false, reason: 'expired' };
    const hex = idToHex(key);
    let slots = this.data.get(hex);
    if (!slots) {
      if (this.data.size >= this.maxKeys) return { ok: false, reason: 'too-many-keys' };
      slots = new Map();
      this.data.set(hex, slots);
    }
    const slot = this.slotOf(key, value);
    const incoming: StoredValue = { value, expiresAt, storedAt: now };
    const existing = slots.get(slot);
    if (existing && existing.expiresAt > now) {
      if (!this.shouldReplace(key, existing, incoming)) return { ok: true, changed: false };
      const same = Buffer.compare(existing.value, value) === 0;
      const kept =
        same && existing.expiresAt > expiresAt ? { ...existing, storedAt: now } : incoming;
      slots.set(slot, kept);
      if (!same || kept === incoming) this.onChange?.({ type: 'put', key, slot, stored: kept });
      return { ok: true, changed: !same };
    }
    if (!existing && slots.size >= this.maxValuesPerKey) {
      this.purgeKey(hex, slots, now);
      if (slots.size >= this.maxValuesPerKey) return { ok: false, reason: 'too-many-values' };
    }
    slots.set(slot, incoming);
    this.onChange?.({ type: 'put', key, slot, stored: incoming });
    return { ok: true, changed: true };
  }

  /** Live values under key with the slot each occupies. */
  entries(key: NodeId, now: number): { slot: string; stored: StoredValue }[] {
    const slots = this.data.get(idToHex(key));
    if (!slots) return [];
    const out: { slot: string; stored: StoredValue }[] = [];
    for (const [slot, stored] of slots) if (stored.expiresAt > now) out.push({ slot, stored });
    return out;
  }

  /** Live values under key. */
  get(key: NodeId, now: number): StoredValue[] {
    const slots = this.data.get(idToHex(key));
    if (!slots) return [];
    const out: StoredValue[] = [];
    for (const v of slots.values()) if (v.expiresAt > now) out.push(v);
    return out;
  }

  has(key: NodeId): boolean {
    return this.data.has(idToHex(key));
  }

  delete(key: NodeId): void {
    const hex = idToHex(key);
    const slots = this.data.get(hex);
    if (!slots) return;
    this.data.delete(hex);
    for (const slot of slots.keys()) this.onChange?.({ type: 'delete', key, slot });
  }

  /** Drops the value under key whose bytes are exactly `value`; false when none is. */
  deleteValue(key: NodeId, value: Uint8Array): boolean {
    const hex = idToHex(key);
    const slots = this.data.get(hex);
    if (!slots) return false;
    for (const [slot, v] of slots) {
      if (Buffer.compare(v.value, value) !== 0) continue;
      slots.delete(slot);
      if (slots.size === 0) this.data.delete(hex);
      this.onChange?.({ type: 'delete', key, slot });
      return true;
    }
    return false;
  }

  *keys(): IterableIterator<NodeId> {
    for (const hex of this.data.keys()) yield idFromHex(hex);
  }

  /** Drops expired values; returns how many went. */
  deleteExpired(now: number): number {
    let n = 0;
    for (const [hex, slots] of this.data) n += this.purgeKey(hex, slots, now);
    return n;
  }

  private purgeKey(hex: string, slots: Map<string, StoredValue>, now: number): number {
    const gone: string[] = [];
    for (const [slot, v] of slots) {
      if (v.expiresAt > now) continue;
      slots.delete(slot);
      gone.push(slot);
    }
    // Told once the key is gone too (as delete() and deleteValue() tell), so a listener sees
    // the store as it is after the change.
    if (slots.size === 0) this.data.delete(hex);
    for (const slot of gone) this.onChange?.({ type: 'delete', key: idFromHex(hex), slot });
    return gone.length;
  }
}
