// One PeerBX node (OverlayNode + SipNode on 127.0.0.1, free ports) as a child process of
// sip-bench.ts. Same protocol as test/fixtures/sip-node-process.ts (kept separate so the bench
// does not move when the tests do), plus the location cache counters in "stats":
//   stdout "ready <node-id-hex> <overlay-udp> <sip-port>" once serving;
//   stdin "stats" -> stdout "stats <json>"; exits on SIGTERM or when stdin closes.
// Usage: node sip-bench-node.js --data-dir DIR [--bootstrap HOST:PORT ...]

import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { idToHex } from '@peerbx/dht-kademlia';
import { defaultOverlayConfig, OverlayNode } from '@peerbx/overlay-core';
import { SipNode } from '../src/node/sip-node.js';

const { values } = parseArgs({
  options: { 'data-dir': { type: 'string' }, bootstrap: { type: 'string', multiple: true } },
});
const dataDir = values['data-dir'];
if (!dataDir) {
  process.stderr.write('--data-dir is required\n');
  process.exit(2);
}
// The same overlay parameters as the SIPp tests (test/fixtures/sipp.ts overlayConfig).
const overlay = await OverlayNode.start({
  dataDir,
  config: defaultOverlayConfig({
    puzzleBits: 4,
    dht: { k: 3, alpha: 3, disjointPaths: 1, maintenanceIntervalMs: 60_000 },
  }),
  bootstrap: values.bootstrap ?? [],
});
const sip = await SipNode.start({ overlay, sip: { host: '127.0.0.1', port: 0 }, ws: false });

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
    if (line.trim() === 'stats') {
      const stats = {
        proxy: sip.proxy.stats,
        locator: { hits: sip.locator.hits, misses: sip.locator.misses },
        flows: { in: sip.flows.messagesIn, out: sip.flows.messagesOut },
        rssMiB: Math.round(process.memoryUsage().rss / 2 ** 20),
      };
      process.stdout.write(`stats ${JSON.stringify(stats)}\n`);
    }
  })
  .on('close', () => void stop());
process.stdout.write(
  `ready ${idToHex(overlay.nodeId)} ${overlay.udpAddress} ${sip.addresses.udp.port}\n`,
);
