// RFC 3261 §17 timer values (Table 4) derived from T1, T2 and T4, and the named one-shot
// timers a transaction runs on an injected clock (so tests and the simulator control time).

import type { Clock, TimerHandle } from '@peerbx/dht-kademlia';

/** RFC 3261 §17.1.1.1: RTT estimate. */
export const DEFAULT_T1_MS = 500;
/** RFC 3261 §17.1.2.2: the maximum retransmit interval for non-INVITE requests and INVITE responses. */
export const DEFAULT_T2_MS = 4_000;
/** RFC 3261 §17.1.2.2: the maximum duration a message remains in the network. */
export const DEFAULT_T4_MS = 5_000;
/** RFC 3261 §17.1.1.2: Timer D is "at least 32 seconds" on unreliable transports. */
export const DEFAULT_TIMER_D_MS = 32_000;
/** RFC 3261 §17.2.1: an INVITE server transaction answers 100 Trying if the TU is silent this long. */
export const DEFAULT_TRYING_DELAY_MS = 200;

/** What may be configured: the base values, and any single timer (tests use small values). */
export interface TimerOptions {
  T1?: number;
  T2?: number;
  T4?: number;
  A?: number;
  B?: number;
  D?: number;
  E?: number;
  F?: number;
  G?: number;
  H?: number;
  I?: number;
  J?: number;
  K?: number;
  /** RFC 6026 §7.1: how long an INVITE server transaction stays Accepted. */
  L?: number;
  /** RFC 6026 §7.2: how long an INVITE client transaction stays Accepted. */
  M?: number;
  /** The 100 Trying delay of an INVITE server transaction. */
  trying?: number;
}

/**
 * Resolved timer durations in ms. A, E and G are initial intervals (they double); D, I, J
 * and K are the unreliable-transport values, zero on reliable ones (see `forTransport`).
 */
export type TransactionTimers = Readonly<Required<TimerOptions>>;

/** RFC 3261 Table 4 (and RFC 6026 Timers L, M) from T1/T2/T4, then the explicit overrides. */
export function resolveTimers(options: TimerOptions = {}): TransactionTimers {
  const T1 = options.T1 ?? DEFAULT_T1_MS;
  const T2 = options.T2 ?? DEFAULT_T2_MS;
  const T4 = options.T4 ?? DEFAULT_T4_MS;
  const timers: Required<TimerOptions> = {
    T1,
    T2,
    T4,
    A: T1,
    B: 64 * T1,
    D: Math.max(DEFAULT_TIMER_D_MS, 64 * T1),
    E: T1,
    F: 64 * T1,
    G: T1,
    H: 64 * T1,
    I: T4,
    J: 64 * T1,
    K: T4,
    L: 64 * T1,
    M: 64 * T1,
    trying: DEFAULT_TRYING_DELAY_MS,
  };
  for (const [name, value] of Object.entries(options) as [
    keyof TimerOptions,
    number | undefined,
  ][]) {
    if (value === undefined) continue;
    if (!Number.isFinite(value) || value < 0) {
      throw new RangeError(`timer ${name} must be a non-negative number of ms, got ${value}`);
    }
    timers[name] = value;
  }
  return Object.freeze(timers);
}

/** Timers D, I, J and K wait for stray retransmissions, which reliable transports never deliver. */
export function forTransport(ms: number, reliable: boolean): number {
  return reliable ? 0 : ms;
}

/** The one-shot timers of one transaction, by RFC name; starting a running timer restarts it. */
export class TimerSet<Name extends string> {
  /** Made on the first start: most transactions run one timer or none at a time. */
  private running: Map<Name, TimerHandle> | undefined;

  constructor(private readonly clock: Clock) {}

  start(name: Name, ms: number, fire: () => void): void {
    this.stop(name);
    const handle = this.clock.setTimeout(() => {
      this.running?.delete(name);
      fire();
    }, ms);
    this.running ??= new Map();
    this.running.set(name, handle);
  }

  stop(name: Name): void {
    const handle = this.running?.get(name);
    if (handle === undefined) return;
    this.clock.clearTimeout(handle);
    this.running?.delete(name);
  }

  isRunning(name: Name): boolean {
    return this.running?.has(name) ?? false;
  }

  stopAll(): void {
    if (!this.running) return;
    for (const handle of this.running.values()) this.clock.clearTimeout(handle);
    this.running.clear();
  }
}
