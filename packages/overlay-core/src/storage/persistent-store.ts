// The node's disk: a LevelDB directory (via `level`) holding what this node stores for the
// overlay, the records it publishes itself, and small metadata. The DHT's in-memory store stays
// the source of truth while running; this copies every change to disk and replays it at start.
// LevelDB's write-ahead log keeps the database consistent across a SIGKILL, so nothing is
// written outside it.

import {
  type Contact,
  idFromHex,
  idToHex,
  type NodeId,
  type StoreChange,
  type ValueStore,
} from '@peerbx/dht-kademlia';
import { Level } from 'level';
import { OverlayError } from '../errors.js';
import { decode, encode, isBytes, isUint } from '../wire/codec.js';

// Key layout: one prefix per kind of data, so each can be scanned on its own.
const DATA_PREFIX = 'd/';
const PUBLISHED_PREFIX = 'p/';
const META_PREFIX = 'm/';
/** Meta entry: contacts to rejoin the overlay through after a restart. */
const CONTACTS_META = 'contacts';
/** Upper bound of a prefix scan: "/" + 1 is "0". */
const rangeOf = (prefix: string) => ({ gte: prefix, lt: `${prefix.slice(0, -1)}0` });

type BatchOp = { type: 'put'; key: string; value: Uint8Array } | { type: 'del'; key: string };

export interface PersistentStoreOptions {
  /** Told of every failed disk write (the node logs it); flush() also rejects afterwards. */
  onError?: (err: Error) => void;
}

export interface LoadOptions {
  /** Second opinion on each persisted value (say, the record validator under a new config). */
  accept?: (key: NodeId, value: Uint8Array) => boolean;
}

export interface LoadResult {
  /** Entries put back into the value store. */
  loaded: number;
  /** Entries deleted from disk: expired, unreadable, refused by the store or by `accept`. */
  purged: number;
}

export interface PublishedEntry {
  readonly id: string;
  readonly record: Uint8Array;
  readonly expiresAt: number;
}

export class PersistentStore {
  private readonly db: Level<string, Uint8Array>;
  private readonly onError: ((err: Error) => void) | undefined;
  private queue: BatchOp[] = [];
  private scheduled = false;
  private chain: Promise<void> = Promise.resolve();
  private failure: Error | undefined;
  private loading = false;
  private closed = false;

  constructor(
    readonly directory: string,
    options: PersistentStoreOptions = {},
  ) {
    this.db = new Level<string, Uint8Array>(directory, {
      keyEncoding: 'utf8',
      valueEncoding: 'view',
    });
    this.onError = options.onError;
  }

  async open(): Promise<void> {
    try {
      await this.db.open();
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      if (cause?.code === 'LEVEL_LOCKED' || /lock/i.test(cause?.message ?? '')) {
        throw new OverlayError(
          'ERR_DATA_DIR_LOCKED',
          `data directory ${this.directory} is in use by another PeerBX process; stop that node or choose another data directory`,
          { cause: err },
        );
      }
      throw this.damaged('open', cause?.message ?? (err as Error).message, err);
    }
  }

  /** The database cannot be opened or read (its files damaged): what to do about it. */
  private damaged(doing: 'open' | 'read', message: string, cause: unknown): OverlayError {
    return new OverlayError(
      'ERR_CONFIG',
      `cannot ${doing} the database in ${this.directory}: ${message}; it holds copies only: move it away and start again, and the overlay gives this node its records back`,
      { cause },
    );
  }

  /** Writes what is queued, then closes the database. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.chain;
    await this.db.close();
  }

  /**
   * Pass as the ValueStore's onChange: every put and delete is queued and written in order,
   * batched while a write is in flight.
   */
  readonly onChange = (change: StoreChange): void => {
    // A store still expiring values while the node shuts down has nothing more to persist.
    if (this.loading || this.closed) return;
    const key = dataKey(change.key, change.slot);
    if (change.type === 'put') {
      const { value, expiresAt, storedAt } = change.stored;
      void this.enqueue({ type: 'put', key, value: encode([expiresAt, storedAt, value]) });
    } else {
      void this.enqueue({ type: 'del', key });
    }
  };

  /** Resolves when every change passed so far is on disk; rejects if any write failed. */
  async flush(): Promise<void> {
    await this.chain;
    if (this.failure) throw this.failure;
  }

  /**
   * Puts every persisted, unexpired value back into `store` (without writing it again) and
   * deletes the expired and unreadable ones from disk.
   */
  async loadInto(store: ValueStore, now: number, options: LoadOptions = {}): Promise<LoadResult> {
    this.assertOpen();
    const live: { dbKey: string; key: NodeId; value: Uint8Array; expiresAt: number }[] = [];
    const dead: string[] = [];
    try {
      for await (const [dbKey, bytes] of this.db.iterator(rangeOf(DATA_PREFIX))) {
        const entry = parseDataEntry(dbKey, bytes);
        if (!entry || entry.expiresAt <= now) dead.push(dbKey);
        else live.push({ dbKey, ...entry });
      }
    } catch (err) {
      // LevelDB's own checks (a damaged block: "Corruption: ..."), found while reading.
      const message = (err as Error).message;
      if (/corrupt/i.test(message)) throw this.damaged('read', message, err);
      throw err;
    }
    // The puts happen in one synchronous stretch, so no change from elsewhere is ignored.
    this.loading = true;
    let loaded = 0;
    try {
      for (const e of live) {
        const ok =
          (options.accept?.(e.key, e.value) ?? true) &&
          store.put(e.key, e.value, e.expiresAt, now).ok;
        if (ok) loaded++;
        else dead.push(e.dbKey);
      }
    } finally {
      this.loading = false;
    }
    for (const key of dead) void this.enqueue({ type: 'del', key });
    await this.flush();
    return { loaded, purged: dead.length };
  }

  /** Keeps one of this node's own records, so it is republished after a restart. */
  async savePublished(id: string, record: Uint8Array, expiresAt: number): Promise<void> {
    this.assertOpen();
    await this.enqueue({
      type: 'put',
      key: PUBLISHED_PREFIX + id,
      value: encode([expiresAt, record]),
    });
    if (this.failure) throw this.failure;
  }

  async deletePublished(id: string): Promise<void> {
    this.assertOpen();
    await this.enqueue({ type: 'del', key: PUBLISHED_PREFIX + id });
    if (this.failure) throw this.failure;
  }

  /** This node's own records; with `now`, expired ones are left out and deleted. */
  async loadPublished(now?: number): Promise<PublishedEntry[]> {
    this.assertOpen();
    await this.flush();
    const out: PublishedEntry[] = [];
    for await (const [dbKey, bytes] of this.db.iterator(rangeOf(PUBLISHED_PREFIX))) {
      const entry = parsePublished(bytes);
      if (!entry || (now !== undefined && entry.expiresAt <= now)) {
        void this.enqueue({ type: 'del', key: dbKey });
        continue;
      }
      out.push({ id: dbKey.slice(PUBLISHED_PREFIX.length), ...entry });
    }
    await this.flush();
    return out;
  }

  /** Keeps the contacts to rejoin the overlay through after a restart. */
  async saveContacts(contacts: readonly Contact[]): Promise<void> {
    await this.putMeta(CONTACTS_META, encode(contacts.map((c) => [c.id, c.address])));
  }

  /** The contacts saveContacts kept last; an unreadable entry counts as none. */
  async loadContacts(): Promise<Contact[]> {
    const bytes = await this.getMeta(CONTACTS_META);
    if (!bytes) return [];
    let entries: unknown;
    try {
      entries = decode(bytes, 'saved contacts');
    } catch {
      return [];
    }
    if (!Array.isArray(entries)) return [];
    const out: Contact[] = [];
    for (const e of entries) {
      if (!Array.isArray(e)) continue;
      const [id, address] = e as unknown[];
      if (isBytes(id) && id.length === 32 && typeof address === 'string')
        out.push({ id: new Uint8Array(id), address });
    }
    return out;
  }

  async getMeta(name: string): Promise<Uint8Array | undefined> {
    this.assertOpen();
    await this.flush();
    const value = await this.db.get(META_PREFIX + name);
    // classic-level hands out Buffers; callers get the plain Uint8Array they put.
    return value && new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  }

  async putMeta(name: string, value: Uint8Array): Promise<void> {
    this.assertOpen();
    await this.enqueue({ type: 'put', key: META_PREFIX + name, value: new Uint8Array(value) });
    if (this.failure) throw this.failure;
  }

  private assertOpen(): void {
    if (this.closed) {
      throw new OverlayError('ERR_STOPPED', `the database in ${this.directory} is closed`);
    }
  }

  /** Queues a write; the returned promise never rejects (failures land in `failure`). */
  private enqueue(op: BatchOp): Promise<void> {
    this.queue.push(op);
    if (!this.scheduled) {
      this.scheduled = true;
      this.chain = this.chain.then(() => this.writeQueued());
    }
    return this.chain;
  }

  private async writeQueued(): Promise<void> {
    this.scheduled = false;
    const ops = this.queue;
    this.queue = [];
    if (ops.length === 0) return;
    try {
      await this.db.batch(ops);
    } catch (err) {
      const e = new OverlayError(
        'ERR_STOPPED',
        `cannot write to the database in ${this.directory}: ${(err as Error).message}`,
        { cause: err },
      );
      this.failure ??= e;
      this.onError?.(e);
    }
  }
}

function dataKey(key: NodeId, slot: string): string {
  return `${DATA_PREFIX}${idToHex(key)}/${slot}`;
}

function parseDataEntry(
  dbKey: string,
  bytes: Uint8Array,
): { key: NodeId; value: Uint8Array; expiresAt: number } | undefined {
  const hex = dbKey.slice(DATA_PREFIX.length, DATA_PREFIX.length + 64);
  if (!/^[0-9a-f]{64}$/.test(hex) || dbKey[DATA_PREFIX.length + 64] !== '/') return undefined;
  try {
    const entry = decode(bytes, 'stored entry');
    if (!Array.isArray(entry) || entry.length !== 3) return undefined;
    const [expiresAt, , value] = entry as unknown[];
    if (typeof expiresAt !== 'number' || !isBytes(value)) return undefined;
    return { key: idFromHex(hex), value: new Uint8Array(value), expiresAt };
  } catch {
    return undefined;
  }
}

function parsePublished(bytes: Uint8Array): { record: Uint8Array; expiresAt: number } | undefined {
  try {
    const entry = decode(bytes, 'published entry');
    if (!Array.isArray(entry) || entry.length !== 2) return undefined;
    const [expiresAt, record] = entry as unknown[];
    if (!isUint(expiresAt) || !isBytes(record)) return undefined;
    return { record: new Uint8Array(record), expiresAt };
  } catch {
    return undefined;
  }
}
