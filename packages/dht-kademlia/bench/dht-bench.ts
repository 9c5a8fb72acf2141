// npm run bench:dht — Kademlia at 100, 1,000 and 10,000 simulated nodes.
//
// For each size and scenario it measures value lookups (FIND_VALUE for keys stored earlier,
// asked by random honest nodes): success rate, hops (median, p95), requests per lookup,
// lookup latency (median, p95, p99, mean) under a 20-80 ms per-link latency model, and heap
// per node. Scenarios: stable; churn (exponential sessions, mean 30 min, over 2 simulated
// hours); 20% silent; 20% lying with d = 1 and d = 4 disjoint paths. Aims are those of the
// issue at N = 10,000.
//
// Each (size, scenario) runs in a child process of its own, so heap figures are not muddied
// by earlier runs; --jobs of them run at once.
//
// Flags: --sizes 100,1000,10000  --lookups 1000  --scenarios stable,churn,silent,liars
//        --seed 1  --keys 200  --jobs 2  --churn-minutes 120  --json FILE

import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  hashToId,
  type KademliaNode,
  type LookupResult,
  randomInt,
  Simulator,
  Swarm,
  type SwarmNodeOptions,
} from '../src/index.js';
import { benchFlags, describeMachine, machineInfo, percentile, table } from './machine.js';

const MIN = 60_000;
const HOUR = 60 * MIN;

interface Args {
  sizes: number[];
  lookups: number;
  scenarios: string[];
  seed: number;
  json: string | undefined;
  keys: number;
  jobs: number;
  /** Simulated length of the churn scenario (the is 2 hours). */
  churnMinutes: number;
  /** Internal: run one (size, scenario) in this process and print its rows as JSON. */
  child: [number, string] | undefined;
}

function parseArgs(argv: string[]): Args {
  const flags = benchFlags(
    'dht-bench',
    {
      sizes: '100,1000,10000',
      scenarios: 'stable,churn,silent,liars',
      lookups: '1000',
      keys: '200',
      seed: '1',
      jobs: '2',
      'churn-minutes': '120',
      json: 'FILE',
    },
    argv,
    ['child', 'scenario'], // what the parent passes its child processes
  );
  const list = (name: string, d: string) => flags.string(name, d).split(',').filter(Boolean);
  const sizes = list('sizes', '100,1000,10000').map(Number);
  if (sizes.some((n) => !Number.isInteger(n) || n < 2)) {
    console.error(`dht-bench: --sizes takes whole numbers of at least 2, not ${sizes.join(',')}`);
    process.exit(2);
  }
  const scenarios = list('scenarios', 'stable,churn,silent,liars');
  const unknown = scenarios.filter((x) => !['stable', 'churn', 'silent', 'liars'].includes(x));
  if (unknown.length > 0) {
    console.error(
      `dht-bench: no scenario ${unknown.join(', ')}; they are stable, churn, silent, liars`,
    );
    process.exit(2);
  }
  const json = flags.string('json', '');
  const child = flags.string('child', '');
  return {
    sizes,
    lookups: flags.number('lookups', 1000, 1),
    scenarios,
    seed: flags.number('seed', 1),
    json: json === '' ? undefined : json,
    keys: flags.number('keys', 200, 1),
    jobs: flags.number('jobs', 2, 1),
    churnMinutes: flags.number('churn-minutes', 120, 1),
    child: child ? [Number(child), flags.string('scenario', '')] : undefined,
  };
}

interface Row {
  n: number;
  scenario: string;
  paths: number;
  lookups: number;
  successRate: number;
  hopsMedian: number;
  hopsP95: number;
  requestsMean: number;
  latencyMedianMs: number;
  latencyP95Ms: number;
  latencyP99Ms: number;
  latencyMeanMs: number;
  heapPerNodeKiB: number;
  wallSeconds: number;
  aim?: string;
  met?: boolean;
}

/** Options every bench node runs with: the paper's defaults, upkeep tuned to 30-minute sessions. */
const NODE_OPTIONS: SwarmNodeOptions = {
  k: 20,
  alpha: 3,
  requestTimeoutMs: 1_000,
  republishIntervalMs: 15 * MIN,
  replicateIntervalMs: 15 * MIN,
  refreshIntervalMs: HOUR,
};

function gc(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

async function build(n: number, seed: number, keys: number) {
  gc();
  const heapBefore = process.memoryUsage().heapUsed;
  const sim = new Simulator({ seed, minLatencyMs: 20, maxLatencyMs: 80 });
  const swarm = new Swarm(sim, NODE_OPTIONS);
  await swarm.grow(n, Math.max(1, Math.min(100, Math.floor(n / 20))));
  const stored: Uint8Array[] = [];
  for (let i = 0; i < keys; i++) {
    const key = hashToId(`bench-key-${seed}-${i}`);
    const publisher = swarm.randomAlive()!;
    await sim.settle(publisher.put(key, new TextEncoder().encode(`contact-${i}`), 6 * HOUR));
    stored.push(key);
  }
  gc();
  const heapPerNodeKiB = (process.memoryUsage().heapUsed - heapBefore) / n / 1024;
  return { sim, swarm, keys: stored, heapPerNodeKiB };
}

interface Sample {
  ok: boolean;
  hops: number;
  requests: number;
  latency: number;
}

async function measure(
  sim: Simulator,
  askers: () => KademliaNode[],
  keys: Uint8Array[],
  count: number,
  paths: number,
  parallel = 20,
): Promise<Sample[]> {
  const samples: Sample[] = [];
  for (let done = 0; done < count; done += parallel) {
    const batch: Promise<void>[] = [];
    const pool = askers();
    for (let i = 0; i < Math.min(parallel, count - done); i++) {
      const asker = pool[randomInt(sim.random, pool.length)]!;
      const key = keys[randomInt(sim.random, keys.length)]!;
      const t0 = sim.now();
      batch.push(
        asker.get(key, { paths }).then((r: LookupResult) => {
          const ok = r.values.length > 0;
          samples.push({ ok, hops: r.hops, requests: r.requests, latency: sim.now() - t0 });
        }),
      );
    }
    await sim.settle(Promise.all(batch));
  }
  return samples;
}

function summarise(
  base: Omit<
    Row,
    | 'successRate'
    | 'hopsMedian'
    | 'hopsP95'
    | 'requestsMean'
    | 'latencyMedianMs'
    | 'latencyP95Ms'
    | 'latencyP99Ms'
    | 'latencyMeanMs'
    | 'lookups'
  >,
  samples: Sample[],
): Row {
  const ok = samples.filter((s) => s.ok);
  const hops = ok.map((s) => s.hops).sort((a, b) => a - b);
  const lat = ok.map((s) => s.latency).sort((a, b) => a - b);
  return {
    ...base,
    lookups: samples.length,
    successRate: samples.length ? ok.length / samples.length : Number.NaN,
    hopsMedian: percentile(hops, 50),
    hopsP95: percentile(hops, 95),
    requestsMean: samples.reduce((a, s) => a + s.requests, 0) / Math.max(1, samples.length),
    latencyMedianMs: percentile(lat, 50),
    latencyP95Ms: percentile(lat, 95),
    latencyP99Ms: percentile(lat, 99),
    latencyMeanMs: lat.length ? lat.reduce((a, b) => a + b, 0) / lat.length : Number.NaN,
  };
}

const AIMS: Record<string, { rate: number; label: string }> = {
  stable: { rate: 0.999, label: '>=99.9%, median hops <=4' },
  churn: { rate: 0.99, label: '>=99%' },
  'silent d=4': { rate: 0.99, label: '>=99%' },
  'liars d=4': { rate: 0.99, label: '>=99%' },
};

async function scenario(name: string, n: number, args: Args): Promise<Row[]> {
  const wall = performance.now();
  const { sim, swarm, keys, heapPerNodeKiB } = await build(n, args.seed + n, args.keys);
  const honest = new Set(swarm.alive);
  const askers = () => swarm.alive.filter((x) => honest.has(x));
  const rows: Row[] = [];
  const base = { n, scenario: name, paths: 1, heapPerNodeKiB };
  const finish = (row: Row) => {
    row.wallSeconds = (performance.now() - wall) / 1000;
    const aim =
      AIMS[
        row.scenario === 'liars' || row.scenario === 'silent'
          ? `${row.scenario} d=${row.paths}`
          : row.scenario
      ];
    if (aim && n >= 10_000) {
      row.aim = aim.label;
      row.met = row.successRate >= aim.rate && (row.scenario !== 'stable' || row.hopsMedian <= 4);
    }
    rows.push(row);
  };

  if (name === 'stable') {
    finish(
      summarise({ ...base, wallSeconds: 0 }, await measure(sim, askers, keys, args.lookups, 1)),
    );
  } else if (name === 'silent') {
    const victims = swarm.alive.filter((_, i) => i % 5 === 4);
    for (const v of victims) {
      swarm.silence(v);
      honest.delete(v);
    }
    for (const paths of [1, 4]) {
      finish(
        summarise(
          { ...base, paths, wallSeconds: 0 },
          await measure(sim, askers, keys, args.lookups, paths),
        ),
      );
    }
  } else if (name === 'liars') {
    const liars = swarm.alive.filter((_, i) => i % 5 === 4);
    for (const l of liars) {
      swarm.corrupt(l);
      honest.delete(l);
    }
    for (const paths of [1, 4]) {
      finish(
        summarise(
          { ...base, paths, wallSeconds: 0 },
          await measure(sim, askers, keys, args.lookups, paths),
        ),
      );
    }
  } else if (name === 'churn') {
    // Exponential sessions, mean 30 minutes; every departure is a crash and is replaced by a
    // fresh node joining, so the size stays N. Lookups are spread over the two hours.
    const meanSession = 30 * MIN;
    const duration = args.churnMinutes * MIN;
    const end = sim.now() + duration;
    const departures: { at: number; node: KademliaNode }[] = [];
    const sessionEnd = (node: KademliaNode) => {
      departures.push({ at: sim.now() - Math.log(1 - sim.random.next()) * meanSession, node });
    };
    for (const node of swarm.alive) sessionEnd(node);
    const step = MIN;
    const perStep = Math.ceil(args.lookups / (duration / step));
    const samples: Sample[] = [];
    let left = 0;
    let joined = 0;
    while (sim.now() < end) {
      const until = sim.now() + step;
      departures.sort((a, b) => a.at - b.at);
      let gone = 0;
      while (departures.length > 0 && departures[0]!.at <= until) {
        const d = departures.shift()!;
        swarm.crash(d.node);
        honest.delete(d.node);
        gone++;
      }
      left += gone;
      const joins: Promise<KademliaNode>[] = [];
      for (let i = 0; i < gone; i++) joins.push(swarm.join());
      const newcomers = await Promise.all(joins);
      for (const node of newcomers) {
        honest.add(node);
        sessionEnd(node);
      }
      joined += newcomers.length;
      await sim.runUntil(until);
      samples.push(...(await measure(sim, askers, keys, perStep, 1, perStep)));
    }
    const row = summarise({ ...base, wallSeconds: 0 }, samples);
    finish(row);
    process.stderr.write(
      `  churn at N=${n}: ${left} departures, ${joined} joins in ${args.churnMinutes} simulated minutes\n`,
    );
  }
  return rows;
}

/** Runs one (size, scenario) in a fresh node process and returns its rows. */
function runChild(n: number, name: string, argv: string[]): Promise<Row[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        '--expose-gc',
        '--max-old-space-size=10240',
        fileURLToPath(import.meta.url),
        ...argv,
        '--child',
        String(n),
        '--scenario',
        name,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) reject(new Error(`${name} at N=${n} exited with ${code}`));
      else resolve(JSON.parse(out.trim().split('\n').pop() ?? '[]') as Row[]);
    });
  });
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args.child) {
    const [n, name] = args.child;
    console.log(JSON.stringify(await scenario(name, n, args)));
    return;
  }
  const machine = machineInfo();
  console.log(describeMachine(machine));
  const jobs = args.sizes.flatMap((n) => args.scenarios.map((s) => [n, s] as const));
  const results: Row[][] = new Array(jobs.length);
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const i = next++;
      const [n, s] = jobs[i]!;
      process.stderr.write(`running ${s} at N=${n}...\n`);
      results[i] = await runChild(n, s, process.argv.slice(2));
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, args.jobs) }, worker));
  const rows = results.flat();
  const fmt = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '-');
  console.log(
    table(
      [
        'N',
        'scenario',
        'd',
        'lookups',
        'success',
        'hops p50',
        'hops p95',
        'req/lookup',
        'lat p50 ms',
        'lat p95 ms',
        'lat p99 ms',
        'lat mean ms',
        'heap/node KiB',
        'wall s',
        'aim',
        'met',
      ],
      rows.map((r) => [
        r.n,
        r.scenario,
        r.paths,
        r.lookups,
        `${(r.successRate * 100).toFixed(2)}%`,
        r.hopsMedian,
        r.hopsP95,
        fmt(r.requestsMean),
        fmt(r.latencyMedianMs, 0),
        fmt(r.latencyP95Ms, 0),
        fmt(r.latencyP99Ms, 0),
        fmt(r.latencyMeanMs, 0),
        fmt(r.heapPerNodeKiB),
        fmt(r.wallSeconds),
        r.aim ?? '',
        r.met === undefined ? '' : r.met ? 'yes' : 'NO',
      ]),
    ),
  );
  if (args.json) {
    writeFileSync(args.json, `${JSON.stringify({ machine, args, rows }, null, 2)}\n`);
    console.log(`wrote ${args.json}`);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
