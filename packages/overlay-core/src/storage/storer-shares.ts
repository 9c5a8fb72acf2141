// Who filled this node's store: each key held is put down to the node whose STORE brought it
// first, and no node may bring more than a share of all the keys a node holds. Without it one
// member could fill every node's store with claims of made-up names (a throwaway user key
// each, seven days' lifetime) until no new user could register anywhere (QA). Keys count
// against their storer until they are gone from the store (expired, withdrawn, replaced).

/** One storer's keys held; `id` is the one copy of its node-ID hex that the keys point to. */
interface Share {
  readonly id: string;
  keys: number;
}

export class StorerShares {
  /** The share each key held (hex) counts against, for keys other nodes brought. */
  private readonly shareOf = new Map<string, Share>();
  private readonly shares = new Map<string, Share>();

  /** The key a STORE accepted is about to add, and its storer (bringing). */
  private next: { key: string; storer: string } | undefined;

  constructor(
    /** The most keys one storer's STOREs may have brought to the store. */
    readonly maxPerStorer: number,
  ) {}

  /** A STORE of `storer`'s of a key not held passed its checks: it counts once it is put. */
  bringing(key: string, storer: string): void {
    this.next = { key, storer };
  }

  /** The store's change listener: `held` is whether the key is still held after it. */
  changed(type: 'put' | 'delete', key: string, held: boolean): void {
    if (type === 'put') {
      if (this.next?.key === key) this.took(key, this.next.storer);
      this.next = undefined;
    } else if (!held) this.gone(key);
  }

  /** Keys held that `storer` (node-ID hex) brought. */
  held(storer: string): number {
    return this.shares.get(storer)?.keys ?? 0;
  }

  /** Whether `storer` may bring a key the store does not hold yet. */
  admits(storer: string): boolean {
    return this.held(storer) < this.maxPerStorer;
  }

  /** A new key, brought by `storer`, is now held. */
  private took(key: string, storer: string): void {
    if (this.shareOf.has(key)) return;
    let share = this.shares.get(storer);
    if (!share) {
      share = { id: storer, keys: 0 };
      this.shares.set(storer, share);
    }
    share.keys++;
    this.shareOf.set(key, share);
  }

  /** The key is no longer held: it no longer counts against its storer. */
  private gone(key: string): void {
    const share = this.shareOf.get(key);
    if (!share) return;
    this.shareOf.delete(key);
    if (--share.keys === 0) this.shares.delete(share.id);
  }
}
