// Bindings persisted as one JSON file (`bindings.json` in the node's data directory), replaced
// atomically (write to a temporary file, fsync, rename) so a crash leaves the old or the new
// file, never half of one. Writes are coalesced: however many REGISTERs arrive while one
// write runs, one more write follows it with the latest state.
//
// Bindings on a TCP/WebSocket flow are not kept: the connection dies with the process, and
// the phone registers again over a new one (RFC 5626). UDP bindings are kept.

import { mkdir, open, readFile, rename } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { type Logger, silentLogger } from '@peerbx/overlay-core';
import type { Binding, Flow } from './binding-store.js';
import type { BindingsPersistence } from './bindings-persistence.js';
import { BINDINGS_FILE } from './constants.js';

const FORMAT_VERSION = 1;
/** Changes saved 'soon' (expiry-only refreshes) reach the file within this long. */
export const LAZY_WRITE_MS = 1000;

export interface FileBindingsStoreOptions {
  /** The node's data directory; the file is `bindings.json` in it. */
  dataDir?: string;
  /** Or the file's full path. */
  path?: string;
  /** Current time, ms: bindings expired by then are left out of the file. */
  now?: () => number;
  logger?: Logger;
}

export class FileBindingsStore implements BindingsPersistence {
  readonly path: string;
  private readonly byAor = new Map<string, Binding[]>();
  private readonly now: () => number;
  private readonly log: Logger;
  /** A write queued behind the running one; saves join it until it starts. */
  private queued: Promise<void> | undefined;
  private chain: Promise<void> = Promise.resolve();
  /** A write due for changes saved 'soon'. */
  private lazyTimer: NodeJS.Timeout | undefined;
  /** Writes made, for tests. */
  writes = 0;

  constructor(options: FileBindingsStoreOptions) {
    const path = options.path ?? (options.dataDir ? join(options.dataDir, BINDINGS_FILE) : '');
    if (path === '') throw new TypeError('FileBindingsStore needs a dataDir or a path');
    this.path = path;
    this.now = options.now ?? Date.now;
    this.log = (options.logger ?? silentLogger).child({ component: 'bindings-file' });
  }

  async load(): Promise<Binding[]> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    let list: Binding[];
    try {
      const doc = JSON.parse(text) as { version?: unknown; bindings?: unknown };
      if (doc.version !== FORMAT_VERSION || !Array.isArray(doc.bindings)) {
        throw new Error(`unknown format (version ${String(doc.version)})`);
      }
      list = doc.bindings.filter(isBinding);
    } catch (err) {
      // A damaged file costs the phones one re-registration, not the node its start.
      this.log.warn(
        { path: this.path, err: (err as Error).message },
        'saved bindings unreadable; starting without them',
      );
      return [];
    }
    this.byAor.clear();
    for (const b of list) {
      const l = this.byAor.get(b.aor) ?? [];
      l.push(b);
      this.byAor.set(b.aor, l);
    }
    return list.map((b) => ({ ...b }));
  }

  save(aor: string, bindings: readonly Binding[], when: 'now' | 'soon' = 'now'): Promise<void> {
    const kept = bindings.filter((b) => b.flow?.connectionId === undefined).map((b) => ({ ...b }));
    if (kept.length === 0) this.byAor.delete(aor);
    else this.byAor.set(aor, kept);
    if (when === 'soon') {
      // Under a refresh load the file is rewritten once per LAZY_WRITE_MS, not per REGISTER.
      if (!this.queued && !this.lazyTimer) {
        this.lazyTimer = setTimeout(() => {
          this.lazyTimer = undefined;
          this.writeSoon().catch((err: unknown) =>
            this.log.warn({ path: this.path, err: (err as Error).message }, 'bindings not saved'),
          );
        }, LAZY_WRITE_MS);
        this.lazyTimer.unref();
      }
      return Promise.resolve();
    }
    return this.writeSoon();
  }

  /** Joins the queued write, or queues one behind the running write. */
  private writeSoon(): Promise<void> {
    if (this.lazyTimer) {
      clearTimeout(this.lazyTimer);
      this.lazyTimer = undefined;
    }
    if (this.queued) return this.queued;
    const write = this.chain.then(() => {
      this.queued = undefined;
      return this.write();
    });
    this.queued = write;
    this.chain = write.catch(() => undefined);
    return write;
  }

  /** Writes what was saved 'soon' now, and waits for every write. */
  flush(): Promise<void> {
    if (this.lazyTimer) return this.writeSoon();
    return this.chain;
  }

  private async write(): Promise<void> {
    const now = this.now();
    const bindings = [...this.byAor.values()].flat().filter((b) => b.expiresAt > now);
    const text = `${JSON.stringify({ version: FORMAT_VERSION, bindings }, null, 1)}\n`;
    await mkdir(dirname(this.path), { recursive: true });
    const tmp = `${this.path}.${process.pid}.tmp`;
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(text, 'utf8');
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, this.path);
    this.writes++;
  }
}

function isFlow(f: unknown): f is Flow {
  if (typeof f !== 'object' || f === null) return false;
  const x = f as Record<string, unknown>;
  return (
    (x.transport === 'udp' || x.transport === 'tcp' || x.transport === 'ws') &&
    typeof x.address === 'string' &&
    typeof x.port === 'number'
  );
}

function isBinding(b: unknown): b is Binding {
  if (typeof b !== 'object' || b === null) return false;
  const x = b as Record<string, unknown>;
  return (
    typeof x.aor === 'string' &&
    typeof x.uri === 'string' &&
    typeof x.q === 'number' &&
    typeof x.expiresAt === 'number' &&
    typeof x.callId === 'string' &&
    typeof x.cseq === 'number' &&
    (x.instance === undefined || typeof x.instance === 'string') &&
    (x.flow === undefined || (isFlow(x.flow) && x.flow.connectionId === undefined))
  );
}
