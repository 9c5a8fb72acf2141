// Who filled this node's store: each key held counts against the node that wrote the record
// which brought it (the record's node signature), and no node may have written more than a
// share of all the keys a node holds. Without it one member could fill every node's store
// with claims of made-up names (a throwaway user key each, seven days' lifetime) until no new
// user could register anywhere (QA). By writer, not by the node that sent the STORE: a holder
// handing records over or replicating them is charged nothing (a review: charged by sender, a
// member's junk stored on one node used up that node's share everywhere once replicated), a
// client's records count against the client, not the peer that stores them for it, and the
// shares are rebuilt from the records a node loads at start. Keys count until they are gone.

import { idToHex, type StoreChange, type ValueStore } from '@peerbx/dht-kademlia';
import { writerOf } from './record-store.js';

/** One writer's keys held; `id` is the one copy of its node-ID hex that the keys point to. */
interface Share {
  readonly id: string;
  keys: number;
}

export class StorerShares {
  /** The share each key held (hex) counts against. */
  private readonly shareOf = new Map<string, Share>();
  private readonly shares = new Map<string, Share>();

  constructor(
    /** The most keys records of one writer may have brought to the store. */
    readonly maxPerWriter: number,
    /** This node (hex): what it writes counts against no share. */
    private readonly self: string,
  ) {}

  /** Keys held that records of `writer` (node-ID hex) brought. */
  held(writer: string): number {
    return this.shares.get(writer)?.keys ?? 0;
  }

  /** Whether a record of `writer` may bring a key the store does not hold yet. */
  admits(writer: string): boolean {
    return writer === this.self || this.held(writer) < this.maxPerWriter;
  }

  /**
   * The store's change listener (after it changed): a put that made a key, its only value,
   * charges the key to the record's writer; a deletion that left the key empty gives it back.
   */
  changed(change: StoreChange, store: ValueStore): void {
    const key = idToHex(change.key);
    if (change.type === 'delete') {
      if (!store.has(change.key)) this.gone(key);
      return;
    }
    if (this.shareOf.has(key) || store.entries(change.key, change.stored.storedAt).length !== 1) {
      return;
    }
    const writer = writerOf(change.stored.value);
    if (writer === undefined || writer === this.self) return;
    let share = this.shares.get(writer);
    if (!share) {
      share = { id: writer, keys: 0 };
      this.shares.set(writer, share);
    }
    share.keys++;
    this.shareOf.set(key, share);
  }

  /** The key is no longer held: it no longer counts against its writer. */
  private gone(key: string): void {
    const share = this.shareOf.get(key);
    if (!share) return;
    this.shareOf.delete(key);
    if (--share.keys === 0) this.shares.delete(share.id);
  }
}
