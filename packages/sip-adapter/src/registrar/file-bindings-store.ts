// Bindings persisted in the node's data directory: a snapshot (`bindings.json`, replaced
// atomically: temporary file, fsync, rename, so a crash leaves the old or the new one) and a
// journal beside it (`bindings.json.journal`, one JSON line per changed AOR, appended and
// fsynced). A save costs one line, not a rewrite of every binding; the snapshot is rewritten
// when the journal has grown past it. At start the journal is replayed over the snapshot; a
// line torn by a crash, or damaged on disk, is skipped (each line is an AOR's whole state, so
// the lines after it still hold). Writes are coalesced: however many REGISTERs arrive
// while one write runs, one more write follows it with every change since.
//
// UDP bindings are kept. A TCP phone's connection dies with the process: its binding is kept
// without it, and after a restart the phone is called over a new connection to its Contact
// (RFC 3261 §18.1.1), unless it is behind NAT. Bindings nothing but their connection reaches
// (WebSocket, TCP behind NAT) are not kept: the phone registers again over a new connection.

import { type FileHandle, mkdir, open, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { type Logger, silentLogger, writeFileDurablyAsync } from '@peerbx/overlay-core';
import type { Binding, Flow } from './binding-store.js';
import type { BindingsPersistence } from './bindings-persistence.js';
import { BINDINGS_FILE } from './constants.js';

const FORMAT_VERSION = 1;
/** Changes saved 'soon' (expiry-only refreshes) reach the disk within this long. */
export const LAZY_WRITE_MS = 1000;
/** The journal is folded into a new snapshot once it is this large and larger than the snapshot. */
export const JOURNAL_COMPACT_BYTES = 256 * 1024;

export interface FileBindingsStoreOptions {
  /** The node's data directory; the file is `bindings.json` in it. */
  dataDir?: string;
  /** Or the snapshot file's full path (the journal is that path + ".journal"). */
  path?: string;
  /** Current time, ms: bindings expired by then are left out of snapshots. */
  now?: () => number;
  logger?: Logger;
}

export class FileBindingsStore implements BindingsPersistence {
  readonly path: string;
  readonly journalPath: string;
  private readonly byAor = new Map<string, Binding[]>();
  /** AORs changed since the last write, with their bindings then. */
  private readonly pending = new Map<string, Binding[]>();
  private readonly now: () => number;
  private readonly log: Logger;
  /** A write queued behind the running one; saves join it until it starts. */
  private queued: Promise<void> | undefined;
  private chain: Promise<void> = Promise.resolve();
  /** A write due for changes saved 'soon'. */
  private lazyTimer: NodeJS.Timeout | undefined;
  private journal: FileHandle | undefined;
  private journalBytes = 0;
  private snapshotBytes = 0;
  /** The journal ends in a torn line: the next write folds everything into a snapshot. */
  private compactNext = false;
  /** Snapshots written, for tests. */
  snapshots = 0;
  /** Writes made (journal appends and snapshots), for tests. */
  writes = 0;

  constructor(options: FileBindingsStoreOptions) {
    const path = options.path ?? (options.dataDir ? join(options.dataDir, BINDINGS_FILE) : '');
    if (path === '') throw new TypeError('FileBindingsStore needs a dataDir or a path');
    this.path = path;
    this.journalPath = `${path}.journal`;
    this.now = options.now ?? Date.now;
    this.log = (options.logger ?? silentLogger).child({ component: 'bindings-file' });
  }

  async load(): Promise<Binding[]> {
    this.byAor.clear();
    const snapshot = await readIfThere(this.path);
    this.snapshotBytes = snapshot?.length ?? 0;
    if (snapshot !== undefined) {
      try {
        const doc = JSON.parse(snapshot) as { version?: unknown; bindings?: unknown };
        if (doc.version !== FORMAT_VERSION || !Array.isArray(doc.bindings)) {
          throw new Error(`unknown format (version ${String(doc.version)})`);
        }
        for (const b of doc.bindings.filter(isBinding)) {
          const l = this.byAor.get(b.aor) ?? [];
          l.push(b);
          this.byAor.set(b.aor, l);
        }
      } catch (err) {
        // A damaged file costs the phones one re-registration, not the node its start.
        this.log.warn(
          { path: this.path, err: (err as Error).message },
          'saved bindings unreadable; starting without them',
        );
        this.byAor.clear();
      }
    }
    const journal = await readIfThere(this.journalPath);
    this.journalBytes = journal?.length ?? 0;
    if (journal) this.replay(journal);
    const now = this.now();
    return [...this.byAor.values()]
      .flat()
      .filter((b) => b.expiresAt > now)
      .map((b) => ({ ...b }));
  }

  save(aor: string, bindings: readonly Binding[], when: 'now' | 'soon' = 'now'): Promise<void> {
    const kept = bindings.flatMap(keepable);
    if (kept.length === 0) this.byAor.delete(aor);
    else this.byAor.set(aor, kept);
    this.pending.set(aor, kept);
    if (when === 'soon') {
      // Under a refresh load the journal gets one write per LAZY_WRITE_MS, not one per REGISTER.
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

  /** Writes what was saved 'soon' now, and waits for every write. */
  flush(): Promise<void> {
    if (this.lazyTimer) return this.writeSoon();
    return this.chain;
  }

  /** Writes pending changes and closes the journal; the store may be loaded again after. */
  async close(): Promise<void> {
    await this.flush();
    const fh = this.journal;
    this.journal = undefined;
    await fh?.close();
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

  private async write(): Promise<void> {
    if (this.pending.size === 0) return;
    if (
      this.compactNext ||
      this.journalBytes >= Math.max(JOURNAL_COMPACT_BYTES, this.snapshotBytes)
    ) {
      await this.writeSnapshot();
      return;
    }
    let text = '';
    for (const [aor, bindings] of this.pending) text += `${JSON.stringify({ aor, bindings })}\n`;
    this.pending.clear();
    const fh = await this.openJournal();
    const data = Buffer.from(text, 'utf8');
    await fh.write(data, 0, data.length, null);
    await fh.sync();
    this.journalBytes += data.length;
    this.writes++;
  }

  /** Every live binding in a new snapshot, then an empty journal. */
  private async writeSnapshot(): Promise<void> {
    this.pending.clear();
    const now = this.now();
    const bindings = [...this.byAor.values()].flat().filter((b) => b.expiresAt > now);
    const text = `${JSON.stringify({ version: FORMAT_VERSION, bindings }, null, 1)}\n`;
    await mkdir(dirname(this.path), { recursive: true });
    await writeFileDurablyAsync(this.path, text, 0o600);
    // A crash here replays the old journal over the new snapshot: the same bindings again.
    const journal = await this.openJournal();
    await journal.truncate(0);
    await journal.sync();
    this.snapshotBytes = Buffer.byteLength(text);
    this.journalBytes = 0;
    this.compactNext = false;
    this.snapshots++;
    this.writes++;
  }

  private async openJournal(): Promise<FileHandle> {
    if (!this.journal) {
      await mkdir(dirname(this.journalPath), { recursive: true });
      this.journal = await open(this.journalPath, 'a', 0o600);
    }
    return this.journal;
  }

  /**
   * Applies journal lines in order. An unreadable line (damaged on disk) is skipped: the AORs
   * of the lines after it are still right, and the damaged one's keeps its state before.
   */
  private replay(text: string): void {
    let start = 0;
    let applied = 0;
    let skipped = 0;
    for (;;) {
      const end = text.indexOf('\n', start);
      if (end < 0) break;
      const line = text.slice(start, end);
      start = end + 1;
      let entry: { aor?: unknown; bindings?: unknown } | undefined;
      try {
        entry = JSON.parse(line) as { aor?: unknown; bindings?: unknown };
      } catch {
        entry = undefined;
      }
      if (typeof entry?.aor !== 'string' || !Array.isArray(entry.bindings)) {
        skipped++;
        continue;
      }
      const list = entry.bindings.filter(isBinding).filter((b) => b.aor === entry.aor);
      if (list.length === 0) this.byAor.delete(entry.aor);
      else this.byAor.set(entry.aor, list);
      applied++;
    }
    const torn = text.length - start;
    if (skipped > 0 || torn > 0) {
      // A line appended after a torn end would join it and be lost: rewrite before appending.
      this.compactNext = true;
      this.log.warn(
        { path: this.journalPath, applied, skippedLines: skipped, tornEndBytes: torn },
        skipped > 0
          ? 'bindings journal has damaged lines; skipped them, applied the rest'
          : 'bindings journal ends in a torn line (a crash while writing); ignored it',
      );
    }
  }
}

async function readIfThere(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** What of a binding outlives the process (see the top of the file); [] for nothing. */
function keepable(b: Binding): Binding[] {
  const flow = b.flow;
  if (flow?.connectionId === undefined) return [{ ...b }];
  if (flow.transport !== 'tcp' || flow.nat) return [];
  const { connectionId: _gone, ...rest } = flow;
  return [{ ...b, flow: rest }];
}

function isFlow(f: unknown): f is Flow {
  if (typeof f !== 'object' || f === null) return false;
  const x = f as Record<string, unknown>;
  return (
    (x.transport === 'udp' || x.transport === 'tcp' || x.transport === 'ws') &&
    typeof x.address === 'string' &&
    typeof x.port === 'number' &&
    (x.nat === undefined || x.nat === true)
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
    (x.registeredAt === undefined || typeof x.registeredAt === 'number') &&
    typeof x.callId === 'string' &&
    typeof x.cseq === 'number' &&
    (x.instance === undefined || typeof x.instance === 'string') &&
    (x.flow === undefined || (isFlow(x.flow) && x.flow.connectionId === undefined))
  );
}
