// One PeerBX node (OverlayNode + SipNode on 127.0.0.1, free ports) as a child process of
// sip-bench.ts. Same protocol as test/fixtures/sip-node-process.ts (kept separate so the bench
// does not move when the tests do), plus the location cache counters in "stats":
//   stdout "ready <node-id-hex> <overlay-udp> <sip-port>" once serving;
//   stdin "stats" -> stdout "stats <json>"; "stats reset" answers the same plus each overlay
//   call's time since the last reset, ms, in "overlaySamples", then starts them afresh; exits
//   on SIGTERM or when stdin closes.
// Usage: node sip-bench-node.js --data-dir DIR [--bootstrap HOST:PORT ...]

import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { idToHex } from '@peerbx/dht-kademlia';
import { defaultOverlayConfig, OverlayNode } from '@peerbx/overlay-core';
import { SipNode } from '../src/node/sip-node.js';
import { FileBindingsStore } from '../src/registrar/file-bindings-store.js';
import { BENCH_OVERLAY } from './bench-overlay.js';

const { values } = parseArgs({
  options: { 'data-dir': { type: 'string' }, bootstrap: { type: 'string', multiple: true } },
});
const dataDir = values['data-dir'];
if (!dataDir) {
  process.stderr.write('--data-dir is required\n');
  process.exit(2);
}
const overlay = await OverlayNode.start({
  dataDir,
  config: defaultOverlayConfig(BENCH_OVERLAY),
  bootstrap: values.bootstrap ?? [],
});
// Timings of the overlay calls the SIP adapter makes (fetch: a location lookup on a cache miss;
// connect: a channel to the callee's node; publish: a registration write), drained by
// "stats reset".
const timings: Record<'fetch' | 'connect' | 'publish', number[]> = {
  fetch: [],
  connect: [],
  publish: [],
};
for (const name of ['fetch', 'connect', 'publish'] as const) {
  const original = overlay[name].bind(overlay) as (...a: unknown[]) => Promise<unknown>;
  Object.assign(overlay, {
    [name]: async (...a: unknown[]) => {
      const t0 = performance.now();
      try {
        return await original(...a);
      } finally {
        timings[name].push(performance.now() - t0);
      }
    },
  });
}
// Bindings persisted to the data directory, as `peerbx start` does (packages/cli runner).
const sip = await SipNode.start({
  overlay,
  sip: { host: '127.0.0.1', port: 0 },
  ws: false,
  bindingsStore: new FileBindingsStore({ dataDir }),
});

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  const hard = setTimeout(() => process.exit(1), 3000);
  hard.unref();
  try {
    await sip.close();
    await overlay.close();
  } finally {
    process.exit(0);
  }
}
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());
createInterface({ input: process.stdin })
  .on('line', (line) => {
    const command = line.trim();
    if (command === 'stats' || command === 'stats reset') {
      const stats = {
        proxy: sip.proxy.stats,
        locator: { hits: sip.locator.hits, misses: sip.locator.misses },
        flows: { in: sip.flows.messagesIn, out: sip.flows.messagesOut },
        rssMiB: Math.round(process.memoryUsage().rss / 2 ** 20),
        heapMiB: Math.round(process.memoryUsage().heapUsed / 2 ** 20),
        cpuMs: Math.round((process.cpuUsage().user + process.cpuUsage().system) / 1000),
        overlayMessages: overlay.stats().messages,
        claimChecksWaiting: overlay.stats().rejections.claimChecksWaiting,
      };
      const reset = command === 'stats reset';
      process.stdout.write(
        `stats ${JSON.stringify(reset ? { ...stats, overlaySamples: timings } : stats)}\n`,
      );
      if (reset) for (const xs of Object.values(timings)) xs.length = 0;
    }
  })
  .on('close', () => void stop());
process.stdout.write(
  `ready ${idToHex(overlay.nodeId)} ${overlay.udpAddress} ${sip.addresses.udp.port}\n`,
);
