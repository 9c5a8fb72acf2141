// Six DHT nodes in six OS processes on the loopback, over UDP: join, put through one, get
// through another, then SIGKILL two (the closest to a key among them) and find every value
// from the survivors.

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { after, describe, it } from 'node:test';
import { compareDistance, hashToId, idToHex } from '../src/index.js';

const FIXTURE = new URL('./fixtures/udp-node.js', import.meta.url).pathname;
const K = 4;
const TIMEOUT_MS = 500;

type Reply = { id: number; ok: boolean; error?: string; [field: string]: unknown };

class NodeProcess {
  readonly child: ChildProcess;
  readonly ready: Promise<{ id: string; address: string }>;
  private stderr = '';
  private nextId = 1;
  private readonly waiting = new Map<number, (reply: Reply) => void>();

  constructor(
    readonly name: string,
    seeds: string[],
  ) {
    this.child = spawn(
      process.execPath,
      [FIXTURE, '--name', name, '--k', String(K), '--timeout-ms', String(TIMEOUT_MS), ...seeds],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    this.child.stderr!.on('data', (d: Buffer) => {
      this.stderr += d.toString();
    });
    const lines = createInterface({ input: this.child.stdout! });
    this.ready = withTimeout(
      new Promise((resolve, reject) => {
        this.child.once('exit', (code, signal) =>
          reject(new Error(`${name} exited (${code ?? signal}) before ready: ${this.stderr}`)),
        );
        lines.on('line', (line) => {
          const ready = /^ready ([0-9a-f]{64}) (\S+)$/.exec(line);
          if (ready) {
            resolve({ id: ready[1]!, address: ready[2]! });
            return;
          }
          const reply = JSON.parse(line) as Reply;
          this.waiting.get(reply.id)?.(reply);
          this.waiting.delete(reply.id);
        });
      }),
      10_000,
      `${name} to be ready`,
    );
  }

  /** Sends one command and waits (bounded) for its reply; fails on an error reply. */
  async call(cmd: Record<string, unknown>, timeoutMs = 8_000): Promise<Reply> {
    const id = this.nextId++;
    const reply = await withTimeout(
      new Promise<Reply>((resolve) => {
        this.waiting.set(id, resolve);
        this.child.stdin!.write(`${JSON.stringify({ id, ...cmd })}\n`);
      }),
      timeoutMs,
      `${this.name} to answer ${JSON.stringify(cmd)}`,
    );
    assert.ok(reply.ok, `${this.name}: ${reply.error} ${this.stderr}`);
    return reply;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** SIGKILL, and wait until the process is gone. */
  async kill(): Promise<void> {
    if (!this.alive) return;
    const gone = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.kill('SIGKILL');
    await withTimeout(gone, 5_000, `${this.name} to die`);
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

describe('six UDP node processes', { timeout: 30_000 }, () => {
  const procs: NodeProcess[] = [];
  const keys = Array.from({ length: 5 }, (_, i) => hashToId(`mp-key-${i}`));
  const valueText = (i: number) =>
    Buffer.from(`sip:user${i}@192.0.2.${i + 1}:5060`).toString('base64');

  after(async () => {
    // Whatever happened, nothing is left running.
    await Promise.all(procs.map((p) => p.kill().catch(() => p.child.kill('SIGKILL'))));
  });

  it('join, store, lose two nodes, still find every value', async () => {
    const first = new NodeProcess('mp-node-0', []);
    procs.push(first);
    const seed = (await first.ready).address;
    for (let i = 1; i < 6; i++) procs.push(new NodeProcess(`mp-node-${i}`, [seed]));
    const ready = await Promise.all(procs.map((p) => p.ready));
    assert.equal(new Set(ready.map((r) => r.address)).size, 6);
    for (const [i, r] of ready.entries()) assert.equal(r.id, idToHex(hashToId(`mp-node-${i}`)));

    // Put through one process, get each value through another.
    const puts = await Promise.all(
      keys.map((key, i) =>
        procs[0]!.call({ cmd: 'put', key: idToHex(key), value: valueText(i), ttlMs: 600_000 }),
      ),
    );
    for (const put of puts) assert.ok((put.stored as number) >= K - 1, `stored on ${put.stored}`);
    for (const [i, key] of keys.entries()) {
      const got = await procs[5]!.call({ cmd: 'get', key: idToHex(key) });
      assert.ok((got.values as string[]).includes(valueText(i)));
    }

    // Kill the two nodes closest to the first key: its nearest replicas go with them.
    const byDistance = [...procs].sort((a, b) =>
      compareDistance(keys[0]!, hashToId(a.name), hashToId(b.name)),
    );
    const victims = byDistance.slice(0, 2);
    const storedOn = puts[0]!.storedOn as string[];
    for (const v of victims) assert.ok(storedOn.includes(idToHex(hashToId(v.name))));
    await Promise.all(victims.map((v) => v.kill()));
    const survivors = procs.filter((p) => p.alive);
    assert.equal(survivors.length, 4);

    const gets = await Promise.all(
      survivors.flatMap((p) =>
        keys.map(async (key, i) => {
          const got = await p.call({ cmd: 'get', key: idToHex(key) });
          assert.ok(
            (got.values as string[]).includes(valueText(i)),
            `${p.name} did not find value ${i}: ${JSON.stringify(got)}`,
          );
          return got;
        }),
      ),
    );
    assert.ok(
      gets.some((g) => (g.requests as number) > 0),
      'some get went over the network',
    );

    // A node lookup waits for every close contact, so it meets the dead and leaves them out.
    const found = await survivors[0]!.call({ cmd: 'findNode', target: idToHex(keys[0]!) });
    const closest = (found.closest as { id: string }[]).map((c) => c.id);
    assert.ok(closest.length >= 2);
    for (const v of victims) assert.ok(!closest.includes(idToHex(hashToId(v.name))));

    const stats = await Promise.all(survivors.map((p) => p.call({ cmd: 'stats' })));
    for (const s of stats) {
      const udp = s.udp as { malformed: number; datagramsIn: number };
      assert.equal(udp.malformed, 0);
      assert.ok(udp.datagramsIn > 0);
    }
    const timeouts = (stats[0]!.udp as { timeouts: number }).timeouts;
    assert.ok(timeouts > 0, 'requests to the dead timed out');
  });
});
