// A seeded, discrete-event network simulator: virtual time, per-link latency, packet loss,
// and nodes that crash, stay silent or lie. Thousands of Kademlia nodes run in one process
// over it, with exactly the code that runs over UDP.

import type { Clock, TimerHandle } from '../clock.js';
import type { Contact } from '../contact.js';
import { TimeoutError } from '../errors.js';
import type { RequestHandler, Transport } from '../network.js';
import { SeededRandom } from '../random.js';
import type { Request, Response } from '../rpc/messages.js';
import { EventQueue, type SimEvent } from './event-queue.js';

/** How a simulated node behaves toward requests. */
export type Behaviour = 'honest' | 'silent' | 'liar';

/** Answers requests on behalf of a lying node; undefined means answer honestly. */
export type LiarResponder = (
  self: SimTransport,
  request: Request,
  honest: RequestHandler,
  from: string,
) => Response | undefined;

export interface SimulatorOptions {
  seed?: number;
  /** One-way latency of a link is fixed per pair of nodes, uniform in [min, max]. */
  minLatencyMs?: number;
  maxLatencyMs?: number;
  /** Probability that one datagram is lost. */
  lossRate?: number;
}

export interface SimulatorStats {
  delivered: number;
  lost: number;
  /** Datagrams sent to a crashed, closed or silent node. */
  unanswered: number;
}

export class Simulator implements Clock {
  readonly random: SeededRandom;
  readonly stats: SimulatorStats = { delivered: 0, lost: 0, unanswered: 0 };
  liarResponder: LiarResponder | undefined;
  private readonly queue = new EventQueue();
  private readonly endpoints = new Map<string, SimTransport>();
  private time = 0;
  private nextAddress = 0;
  private readonly minLatency: number;
  private readonly latencySpan: number;
  private readonly lossRate: number;
  private readonly seed: number;

  constructor(options: SimulatorOptions = {}) {
    this.seed = options.seed ?? 1;
    this.random = new SeededRandom(this.seed);
    this.minLatency = options.minLatencyMs ?? 20;
    this.latencySpan = (options.maxLatencyMs ?? 80) - this.minLatency;
    this.lossRate = options.lossRate ?? 0;
  }

  // --- Clock ---------------------------------------------------------------------------------

  now(): number {
    return this.time;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    return this.queue.push(this.time + Math.max(0, ms), fn);
  }

  clearTimeout(handle: TimerHandle): void {
    (handle as SimEvent).cancelled = true;
  }

  // --- Network -------------------------------------------------------------------------------

  /** A new endpoint with a fresh address ("n0", "n1", ...). */
  createTransport(): SimTransport {
    const t = new SimTransport(this, `n${this.nextAddress++}`);
    this.endpoints.set(t.address, t);
    return t;
  }

  endpoint(address: string): SimTransport | undefined {
    return this.endpoints.get(address);
  }

  /** The node vanishes without a word: nothing reaches it, nothing leaves it. */
  crash(address: string): void {
    const t = this.endpoints.get(address);
    if (t) t.up = false;
  }

  /** Drops a crashed endpoint entirely; datagrams to its address are then simply lost. */
  forget(address: string): void {
    const t = this.endpoints.get(address);
    if (t) t.up = false;
    this.endpoints.delete(address);
  }

  setBehaviour(address: string, behaviour: Behaviour): void {
    const t = this.endpoints.get(address);
    if (t) t.behaviour = behaviour;
  }

  /** One-way latency of the link between two addresses: fixed per pair, symmetric. */
  latency(a: string, b: string): number {
    const key = a < b ? `${a}|${b}` : `${b}|${a}`;
    let h = this.seed ^ 0x811c9dc5;
    for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
    h ^= h >>> 15;
    h = Math.imul(h, 0x2c1b3c6d);
    h ^= h >>> 12;
    return this.minLatency + ((h >>> 0) / 4294967296) * this.latencySpan;
  }

  /** Schedules a datagram's arrival, or loses it. */
  send(from: string, to: string, arrive: () => void): void {
    if (this.lossRate > 0 && this.random.next() < this.lossRate) {
      this.stats.lost++;
      return;
    }
    this.queue.push(this.time + this.latency(from, to), arrive);
  }

  // --- Running -------------------------------------------------------------------------------

  /** Runs every event up to `ms` of virtual time from now. */
  runFor(ms: number): Promise<void> {
    return this.runUntil(this.time + ms);
  }

  async runUntil(until: number): Promise<void> {
    for (;;) {
      const ev = this.queue.peek();
      if (!ev || ev.time > until) break;
      await this.step();
    }
    if (until > this.time) this.time = until;
  }

  /** Runs events until the promise settles; throws if the simulation runs dry first. */
  async settle<T>(promise: Promise<T>): Promise<T> {
    let done = false;
    const watched = promise.finally(() => {
      done = true;
    });
    watched.catch(() => undefined);
    await drain();
    while (!done) {
      if (this.queue.size === 0) throw new Error('simulation ran out of events before settling');
      await this.step();
    }
    return watched;
  }

  private async step(): Promise<void> {
    const ev = this.queue.pop()!;
    if (ev.cancelled) return;
    this.time = ev.time;
    ev.fn();
    // Let every promise continuation triggered by this event run at this instant.
    await drain();
  }
}

function drain(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

export class SimTransport implements Transport {
  up = true;
  behaviour: Behaviour = 'honest';
  handler: RequestHandler | undefined;

  constructor(
    private readonly sim: Simulator,
    readonly address: string,
  ) {}

  listen(handler: RequestHandler): void {
    this.handler = handler;
  }

  request(to: Contact, request: Request, timeoutMs: number): Promise<Response> {
    return new Promise<Response>((resolve, reject) => {
      if (!this.up) {
        reject(new TimeoutError('endpoint is down'));
        return;
      }
      let settled = false;
      const timer = this.sim.setTimeout(() => {
        if (settled) return;
        settled = true;
        reject(new TimeoutError(`no reply from ${to.address}`));
      }, timeoutMs);
      this.sim.send(this.address, to.address, () => {
        const target = this.sim.endpoint(to.address);
        if (!target?.up || !target.handler || target.behaviour === 'silent') {
          this.sim.stats.unanswered++;
          return;
        }
        this.sim.stats.delivered++;
        const answer = (res: Response) => {
          if (!target.up) return;
          this.sim.send(to.address, this.address, () => {
            if (settled || !this.up) return;
            this.sim.stats.delivered++;
            settled = true;
            this.sim.clearTimeout(timer);
            resolve(res);
          });
        };
        const lie =
          target.behaviour === 'liar' && this.sim.liarResponder
            ? this.sim.liarResponder(target, request, target.handler, this.address)
            : undefined;
        const res = lie ?? target.handler(request, this.address);
        if (res instanceof Promise) res.then(answer, () => undefined);
        else answer(res);
      });
    });
  }

  async close(): Promise<void> {
    this.up = false;
    this.handler = undefined;
  }
}
