// npm run bench:overlay — a 20-node overlay on the loopback (real UDP and TCP sockets, one
// process): store and fetch latency (median, p95) and throughput, and the signature rates
// every message and record depends on, against DESIGN.md's measured node:crypto baseline.
// Then the heap each held record costs: --users more users published (a name claim and a
// registration each), the heap after a full GC before and after, over the copies the nodes
// hold (the publishers' own bookkeeping counted in; needs --expose-gc, as npm run gives).
//
// Flags: --nodes 20  --ops 300  --concurrency 20  --users 1000  --json FILE

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  benchFlags,
  describeMachine,
  machineInfo,
  percentile,
  table,
} from '@peerbx/dht-kademlia/bench';
import { defaultOverlayConfig } from '../src/config/overlay-config.js';
import { DEFAULT_PUZZLE_BITS, KIND_SIP_REGISTRATION } from '../src/constants.js';
import { generateNodeKeyPair, sign, verify } from '../src/identity/keys.js';
import { OverlayNode } from '../src/overlay.js';
import { encodeRecord } from '../src/storage/record.js';
import { verifyFetched } from '../src/storage/record-store.js';

const BASELINE_VERIFY_PER_S = 13_700; // DESIGN.md: node:crypto Ed25519 verify, 300-byte message

const flags = benchFlags('overlay-bench', {
  nodes: '20',
  ops: '300',
  concurrency: '20',
  users: '1000',
  json: 'FILE',
});

function rate(fn: () => void, ms = 1000): number {
  let n = 0;
  const end = performance.now() + ms;
  while (performance.now() < end) {
    for (let i = 0; i < 100; i++) fn();
    n += 100;
  }
  return n / (ms / 1000);
}

async function timed(count: number, concurrency: number, op: (i: number) => Promise<unknown>) {
  const lat: number[] = [];
  let next = 0;
  let failed = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        const i = next++;
        const s = performance.now();
        try {
          await op(i);
          lat.push(performance.now() - s);
        } catch {
          failed++;
        }
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  return {
    p50: percentile(lat, 50),
    p95: percentile(lat, 95),
    perSecond: lat.length / seconds,
    failed,
  };
}

async function main(): Promise<void> {
  const nodesN = flags.number('nodes', 20, 2);
  const ops = flags.number('ops', 300, 1);
  const concurrency = flags.number('concurrency', 20, 1);
  const users = flags.number('users', 1000, 1);
  const json = flags.string('json', '');
  const machine = machineInfo();
  console.log(describeMachine(machine));

  // Signature rates on a typical 300-byte message.
  const keys = generateNodeKeyPair(0);
  const msg = new Uint8Array(300).fill(7);
  const sig = sign(keys, msg);
  const verifyPerS = rate(() => verify(keys.publicKey, msg, sig));
  // Node keys that meet the default crypto puzzle: the cost a new node pays once.
  const keygenMs: number[] = [];
  for (let i = 0; i < 20; i++) {
    const t = performance.now();
    generateNodeKeyPair(DEFAULT_PUZZLE_BITS);
    keygenMs.push(performance.now() - t);
  }
  keygenMs.sort((a, b) => a - b);
  const signPerS = rate(() => sign(keys, msg));

  const root = mkdtempSync(join(tmpdir(), 'peerbx-bench-'));
  const config = defaultOverlayConfig({ puzzleBits: 8 });
  const nodes: OverlayNode[] = [];
  try {
    nodes.push(await OverlayNode.start({ dataDir: join(root, 'n0'), config }));
    for (let i = 1; i < nodesN; i++) {
      nodes.push(
        await OverlayNode.start({
          dataDir: join(root, `n${i}`),
          config,
          bootstrap: [nodes[0]!.udpAddress],
        }),
      );
    }
    const resource = (i: number) => `bench${i}@peerbx.local`;
    const value = new TextEncoder().encode('sip:bench@127.0.0.1:5060;transport=udp');
    /** User `user`'s registration, published by the i-th node (round robin). */
    const publishUser = (i: number, user: number) =>
      nodes[i % nodesN]!.publish({
        kind: KIND_SIP_REGISTRATION,
        resource: resource(user),
        dictionaryKey: nodes[i % nodesN]!.nodeId,
        value,
        lifetimeMs: 600_000,
      });
    // A fetcher checks every record again (decode, two signatures, policy): its rate.
    const sample = await publishUser(0, -1);
    const sampleBytes = encodeRecord(sample.record);
    const recordChecksPerS = rate(() =>
      verifyFetched([sampleBytes], resource(-1), KIND_SIP_REGISTRATION, config),
    );

    const storeSeq = await timed(Math.min(ops, 100), 1, (i) => publishUser(i, i));
    const storePar = await timed(ops, concurrency, (i) => publishUser(i, 1000 + i));
    const fetchSeq = await timed(Math.min(ops, 100), 1, async (i) => {
      const r = await nodes[(i + 7) % nodesN]!.fetch(resource(i), KIND_SIP_REGISTRATION);
      if (r.length !== 1) throw new Error('not found');
    });
    const fetchPar = await timed(ops, concurrency, async (i) => {
      const r = await nodes[(i + 3) % nodesN]!.fetch(resource(1000 + i), KIND_SIP_REGISTRATION);
      if (r.length !== 1) throw new Error('not found');
    });
    const fmt = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : '-');
    console.log(
      `\n${nodesN}-node overlay on 127.0.0.1 (one process, real UDP+TCP), k=${config.dht.k}`,
    );
    console.log(
      table(
        ['operation', 'concurrency', 'ops', 'failed', 'p50 ms', 'p95 ms', 'ops/s'],
        [
          [
            'store',
            1,
            Math.min(ops, 100),
            storeSeq.failed,
            fmt(storeSeq.p50),
            fmt(storeSeq.p95),
            fmt(storeSeq.perSecond),
          ],
          [
            'store',
            concurrency,
            ops,
            storePar.failed,
            fmt(storePar.p50),
            fmt(storePar.p95),
            fmt(storePar.perSecond),
          ],
          [
            'fetch',
            1,
            Math.min(ops, 100),
            fetchSeq.failed,
            fmt(fetchSeq.p50),
            fmt(fetchSeq.p95),
            fmt(fetchSeq.perSecond),
          ],
          [
            'fetch',
            concurrency,
            ops,
            fetchPar.failed,
            fmt(fetchPar.p50),
            fmt(fetchPar.p95),
            fmt(fetchPar.perSecond),
          ],
        ],
      ),
    );
    console.log(
      `\nEd25519 (node:crypto, 300-byte message): verify ${verifyPerS.toFixed(0)}/s (baseline ${BASELINE_VERIFY_PER_S}/s, ratio ${(verifyPerS / BASELINE_VERIFY_PER_S).toFixed(2)}), sign ${signPerS.toFixed(0)}/s`,
    );
    console.log(
      `record checks by a fetcher (decode + 2 signatures + policy): ${recordChecksPerS.toFixed(0)}/s, ${sampleBytes.length}-byte record`,
    );
    console.log(
      `node key meeting the ${DEFAULT_PUZZLE_BITS}-bit puzzle: median ${percentile(keygenMs, 50).toFixed(0)} ms, max ${keygenMs[keygenMs.length - 1]!.toFixed(0)} ms (20 keys)`,
    );
    // Heap per held record.
    const gc = (globalThis as { gc?: () => void }).gc;
    let heapPerRecordBytes: number | undefined;
    if (gc) {
      const held = () => nodes.reduce((sum, n) => sum + n.stats().records.total, 0);
      gc();
      const [heap0, held0] = [process.memoryUsage().heapUsed, held()];
      await timed(users, concurrency, (i) => publishUser(i, 100_000 + i));
      await new Promise((r) => setTimeout(r, 1000));
      gc();
      const copies = held() - held0;
      heapPerRecordBytes = (process.memoryUsage().heapUsed - heap0) / Math.max(1, copies);
      console.log(
        `heap per held record: ${(heapPerRecordBytes / 1024).toFixed(2)} KiB (${users} more users, ${copies} record copies held across the ${nodesN} nodes)`,
      );
    } else {
      console.log('heap per held record: not measured (run node with --expose-gc)');
    }
    const totals = nodes.map((n) => n.stats());
    const rejected = totals.reduce(
      (a, s) => a + Object.values(s.rejections.byReason).reduce((x, y) => x + y, 0),
      0,
    );
    console.log(`messages rejected across the overlay during the run: ${rejected}`);
    if (json) {
      writeFileSync(
        json,
        `${JSON.stringify({ machine, nodes: nodesN, ops, concurrency, storeSeq, storePar, fetchSeq, fetchPar, verifyPerS, signPerS, recordChecksPerS, keygenMs, baselineVerifyPerS: BASELINE_VERIFY_PER_S, users, heapPerRecordBytes }, null, 2)}\n`,
      );
      console.log(`wrote ${json}`);
    }
  } finally {
    for (const n of nodes) await n.close();
    rmSync(root, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
