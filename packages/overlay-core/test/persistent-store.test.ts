import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readdirSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, describe, it } from 'node:test';
import { type NodeId, ValueStore } from '@peerbx/dht-kademlia';
import { checkRecord } from '../src/storage/access.js';
import { PersistentStore } from '../src/storage/persistent-store.js';
import { decodeRecord, encodeRecord, resourceId } from '../src/storage/record.js';
import { createOverlayStoreOptions, createRecordValidator } from '../src/storage/record-store.js';
import { encode } from '../src/wire/codec.js';
import {
  ALICE,
  generateKeyPair,
  HOUR,
  nameClaim,
  nodeInfo,
  openConfig,
  registration,
  storeValue,
  TestClock,
} from './fixtures/records.js';

const FIXTURE = new URL('./fixtures/persist-writer.js', import.meta.url).pathname;
const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'peerbx-persist-'));
  dirs.push(d);
  return d;
};
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const config = openConfig();

/** Every live value of a store, as sorted "keyhex value-hex" lines, for comparing stores. */
function snapshot(store: ValueStore, now: number): string[] {
  const out: string[] = [];
  for (const key of store.keys()) {
    for (const v of store.get(key, now)) {
      out.push(`${Buffer.from(key).toString('hex')} ${Buffer.from(v.value).toString('hex')}`);
    }
  }
  return out.sort();
}

function overlayStore(clock: TestClock, disk?: PersistentStore): ValueStore {
  return new ValueStore({
    ...createOverlayStoreOptions(config, clock),
    ...(disk ? { onChange: disk.onChange } : {}),
  });
}

describe('persistent store', () => {
  it('keeps records across close and reopen, and purges expired ones', async () => {
    const dir = tempDir();
    const now = Date.now();
    const clock = new TestClock(now);
    const disk = new PersistentStore(dir);
    await disk.open();
    const store = overlayStore(clock, disk);
    const validate = createRecordValidator(config, store, clock);
    const node = generateKeyPair();
    const node2 = generateKeyPair();
    const alice = generateKeyPair();
    const put = (bytes: Uint8Array, key: NodeId, ttl = HOUR) => {
      const out = storeValue(store, validate, key, bytes, now, ttl);
      assert.ok(out.ok, JSON.stringify(out));
    };
    put(encodeRecord(nameClaim(node, alice, now)), resourceId(ALICE));
    put(encodeRecord(registration(node, alice, now - 10)), resourceId(ALICE));
    put(encodeRecord(registration(node, alice, now)), resourceId(ALICE)); // replaces the first
    put(encodeRecord(registration(node2, alice, now)), resourceId(ALICE), 1_000); // expires soon
    const info = nodeInfo(node, now);
    put(encodeRecord(info), resourceId(info.resource));
    const other = nodeInfo(node2, now);
    put(encodeRecord(other), resourceId(other.resource));
    store.delete(resourceId(other.resource)); // deletes reach the disk too
    await disk.savePublished('node-info', encodeRecord(info), now + HOUR);
    await disk.savePublished('old', new Uint8Array([1]), now - 1);
    await disk.savePublished('gone', new Uint8Array([2]), now + HOUR);
    await disk.deletePublished('gone');
    await disk.putMeta('version', new Uint8Array([1, 2, 3]));
    const before = snapshot(store, now + 5_000);
    assert.equal(before.length, 3);
    await disk.close();

    const reopened = new PersistentStore(dir);
    await reopened.open();
    const fresh = overlayStore(clock, reopened);
    const later = now + 5_000;
    assert.deepEqual(await reopened.loadInto(fresh, later), { loaded: 3, purged: 1 });
    assert.deepEqual(snapshot(fresh, later), before);
    const published = await reopened.loadPublished(later);
    assert.deepEqual(
      published.map((p) => p.id),
      ['node-info'],
    );
    assert.deepEqual(Buffer.from(published[0]!.record), Buffer.from(encodeRecord(info)));
    assert.deepEqual(await reopened.getMeta('version'), new Uint8Array([1, 2, 3]));
    assert.equal(await reopened.getMeta('missing'), undefined);
    await reopened.close();

    // Loading wrote nothing back, and the expired entries are gone from disk.
    const third = new PersistentStore(dir);
    await third.open();
    assert.deepEqual(await third.loadInto(overlayStore(clock), later), { loaded: 3, purged: 0 });
    assert.deepEqual(
      (await third.loadPublished()).map((p) => p.id),
      ['node-info'],
    );
    await third.close();
  });

  it('keeps the contacts to rejoin through, and reads an unreadable entry as none', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'peerbx-contacts-'));
    try {
      const store = new PersistentStore(dir);
      await store.open();
      assert.deepEqual(await store.loadContacts(), []);
      const one = { id: new Uint8Array(32).fill(1), address: '127.0.0.1:7400' };
      await store.saveContacts([one, { id: new Uint8Array(32).fill(2), address: '[::1]:7401' }]);
      await store.close();
      const reopened = new PersistentStore(dir);
      await reopened.open();
      assert.deepEqual(
        (await reopened.loadContacts()).map((c) => c.address),
        ['127.0.0.1:7400', '[::1]:7401'],
      );
      // Garbage, and entries of the wrong shape among good ones.
      await reopened.putMeta('contacts', new Uint8Array([0xc1, 0xff, 0x00]));
      assert.deepEqual(await reopened.loadContacts(), []);
      await reopened.putMeta(
        'contacts',
        encode([[one.id, one.address], [new Uint8Array(5), 'x:1'], 'junk', [one.id, 7]]),
      );
      assert.deepEqual(await reopened.loadContacts(), [one]);
      await reopened.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a data directory another process holds', async () => {
    const dir = tempDir();
    const a = new PersistentStore(dir);
    await a.open();
    const b = new PersistentStore(dir);
    await assert.rejects(b.open(), { code: 'ERR_DATA_DIR_LOCKED' });
    await a.close();
    // Closed: the store's late changes are ignored, explicit writes refused.
    a.onChange({ type: 'delete', key: new Uint8Array(32), slot: '' });
    await assert.rejects(a.putMeta('x', new Uint8Array(1)), { code: 'ERR_STOPPED' });
    await a.close();
  });

  it('says what to do with a database whose files were damaged, found as it is read', async () => {
    const dir = tempDir();
    let p = new PersistentStore(dir);
    await p.open();
    const store = new ValueStore({ onChange: p.onChange });
    const now = Date.now();
    for (let i = 0; i < 300; i++) {
      store.put(new Uint8Array(32).fill(i % 251), new Uint8Array(100).fill(i), now + HOUR, now);
    }
    await p.close();
    // Opened again, LevelDB turns its log into a table; then 64 bytes of that go bad.
    p = new PersistentStore(dir);
    await p.open();
    await p.close();
    for (const f of readdirSync(dir).filter((name) => name.endsWith('.ldb'))) {
      const fd = openSync(join(dir, f), 'r+');
      writeSync(fd, Buffer.alloc(64, 0xa5), 0, 64, 20);
      closeSync(fd);
    }
    p = new PersistentStore(dir);
    await p.open();
    await assert.rejects(p.loadInto(new ValueStore(), now), (err: Error) => {
      assert.match(
        err.message,
        /^cannot read the database in .*: Corruption: .*; it holds copies only: move it away and start again/,
      );
      return true;
    });
    await p.close();
  });

  it('survives SIGKILL mid-write: the database opens and every record verifies', {
    timeout: 30_000,
  }, async () => {
    const dir = tempDir();
    const child = spawn(process.execPath, [FIXTURE, dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const exited = new Promise<NodeJS.Signals | number | null>((resolve) =>
      child.once('exit', (code, signal) => resolve(signal ?? code)),
    );
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`writer made no progress: ${stderr}`)),
          20_000,
        );
        child.once('exit', (code) => {
          clearTimeout(timer);
          reject(new Error(`writer exited (${code}): ${stderr}`));
        });
        createInterface({ input: child.stdout }).on('line', (line) => {
          const m = /^wrote (\d+)$/.exec(line);
          if (m && Number(m[1]) >= 800) {
            clearTimeout(timer);
            resolve();
          }
        });
      });
    } finally {
      child.kill('SIGKILL');
    }
    assert.equal(await exited, 'SIGKILL');

    const now = Date.now();
    const disk = new PersistentStore(dir);
    await disk.open();
    const store = overlayStore(new TestClock(now));
    const { loaded, purged } = await disk.loadInto(store, now);
    assert.equal(purged, 0, 'no entry on disk is unreadable');
    assert.ok(loaded >= 40, `only ${loaded} entries survived`);
    let checked = 0;
    for (const key of store.keys()) {
      for (const v of store.get(key, now)) {
        const record = decodeRecord(v.value);
        assert.equal(checkRecord(record, key, config, { now }), undefined);
        checked++;
      }
    }
    assert.equal(checked, loaded);
    await disk.close();
  });
});
