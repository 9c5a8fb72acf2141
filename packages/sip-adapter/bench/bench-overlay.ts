// The overlay parameters of the benchmark's nodes, shared by the node script and the report
// (the same as the SIPp tests' overlay, test/fixtures/sipp.ts overlayConfig).

/** k = 3: each record is stored on, and verified by, 3 peers. */
export const BENCH_OVERLAY = {
  puzzleBits: 4,
  dht: { k: 3, alpha: 3, disjointPaths: 1, maintenanceIntervalMs: 60_000 },
} as const;
