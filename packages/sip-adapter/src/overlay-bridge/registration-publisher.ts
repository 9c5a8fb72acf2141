// Publishes a user's local bindings to the overlay as this node's SIP-REGISTRATION entry, and
// only when it matters: a new or gone device, or bindings that will outlive the published
// record by more than half its lifetime. A phone refreshing every few minutes costs no
// overlay write; the last device leaving publishes a short tombstone.

import type { Clock } from '@peerbx/dht-kademlia';
import { KIND_SIP_REGISTRATION } from '@peerbx/overlay-core';
import { RegistrarBusyError } from '../errors.js';
import type { Binding } from '../registrar/binding-store.js';
import type { OverlayAccess } from './overlay-access.js';
import { encodeRegistrationValue } from './registration-value.js';

/** A removed registration stays visible as a tombstone this long, so caches learn of it. */
export const TOMBSTONE_LIFETIME_MS = 120_000;

/**
 * Overlay writes under way at once. More wait their turn: started together, every write would
 * slow the others down until their DHT requests time out and are sent again, and the node would
 * take fewer registrations the more it is offered.
 */
export const MAX_WRITES_IN_FLIGHT = 16;
/**
 * Writes that may wait (a burst of phones after a power cut, 10 s of new users at the rate a
 * 2-core node writes). Beyond, a REGISTER that needs a write is refused at once (503).
 */
export const MAX_WRITES_WAITING = 2000;

export interface PublisherLimits {
  maxInFlight?: number;
  maxWaiting?: number;
}

interface Published {
  devices: number;
  expiresAt: number;
  lifetimeMs: number;
}

export interface PublishDecision {
  write: boolean;
  reason: 'new' | 'devices-changed' | 'extends' | 'removed' | 'unchanged';
}

export class RegistrationPublisher {
  private readonly published = new Map<string, Published>();
  /** Overlay writes made, for statistics and tests. */
  writes = 0;
  /** REGISTERs refused because too many writes were waiting. */
  busyRefusals = 0;
  private inFlight = 0;
  private readonly queue: (() => void)[] = [];
  private readonly maxInFlight: number;
  private readonly maxWaiting: number;

  constructor(
    private readonly overlay: OverlayAccess,
    private readonly clock: Clock,
    limits: PublisherLimits = {},
  ) {
    this.maxInFlight = limits.maxInFlight ?? MAX_WRITES_IN_FLIGHT;
    this.maxWaiting = limits.maxWaiting ?? MAX_WRITES_WAITING;
  }

  /** Overlay writes under way and waiting. */
  get pending(): { inFlight: number; waiting: number } {
    return { inFlight: this.inFlight, waiting: this.queue.length };
  }

  /** What publishing these bindings would do, without doing it. */
  decide(aor: string, bindings: readonly Binding[]): PublishDecision {
    const prev = this.published.get(aor);
    if (bindings.length === 0)
      return prev && prev.devices > 0
        ? { write: true, reason: 'removed' }
        : { write: false, reason: 'unchanged' };
    if (!prev || prev.devices === 0) return { write: true, reason: 'new' };
    if (prev.devices !== bindings.length) return { write: true, reason: 'devices-changed' };
    const until = Math.max(...bindings.map((b) => b.expiresAt));
    if (until - prev.expiresAt > prev.lifetimeMs / 2) return { write: true, reason: 'extends' };
    return { write: false, reason: 'unchanged' };
  }

  /**
   * Brings the overlay up to date with an AOR's bindings. Throws the overlay's error (say
   * ERR_FORBIDDEN: the name belongs to another key), which the registrar turns into a 403, or
   * RegistrarBusyError when the write would have to wait behind too many others.
   */
  async sync(
    aor: string,
    resource: string,
    bindings: readonly Binding[],
    /** Waits however many writes are queued (bindings restored at start, nobody waiting). */
    options: { queueAlways?: boolean } = {},
  ): Promise<PublishDecision> {
    const decision = this.decide(aor, bindings);
    if (!decision.write) return decision;
    const now = this.clock.now();
    const devices = bindings.length;
    const expiresAt =
      devices > 0 ? Math.max(...bindings.map((b) => b.expiresAt)) : now + TOMBSTONE_LIFETIME_MS;
    // The lifetime counts from when the write starts, not from when it was asked for.
    const lifetimeMs = await this.admitted(options.queueAlways ?? false, async () => {
      const lifetimeMs = Math.max(1000, expiresAt - this.clock.now());
      await this.overlay.publish({
        kind: KIND_SIP_REGISTRATION,
        resource,
        dictionaryKey: this.overlay.nodeId,
        value: devices > 0 ? encodeRegistrationValue({ devices, expiresAt }) : new Uint8Array(0),
        lifetimeMs,
      });
      return lifetimeMs;
    });
    this.writes++;
    this.published.set(aor, { devices, expiresAt, lifetimeMs });
    return decision;
  }

  /**
   * Runs `write` once fewer than maxInFlight are under way, in arrival order; refuses with
   * RegistrarBusyError when maxWaiting wait already, unless `queueAlways`.
   */
  private async admitted<T>(queueAlways: boolean, write: () => Promise<T>): Promise<T> {
    if (this.inFlight < this.maxInFlight) {
      this.inFlight++;
    } else {
      if (!queueAlways && this.queue.length >= this.maxWaiting) {
        this.busyRefusals++;
        throw new RegistrarBusyError(this.queue.length);
      }
      // The finishing write hands its place over: inFlight stays as it is.
      await new Promise<void>((resolve) => this.queue.push(resolve));
    }
    try {
      return await write();
    } finally {
      const next = this.queue.shift();
      if (next) next();
      else this.inFlight--;
    }
  }
}
