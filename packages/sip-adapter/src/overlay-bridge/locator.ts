// Finds the nodes where a user is registered: the live entries of the AOR's SIP-REGISTRATION
// records in the overlay, cached briefly. A cached answer is dropped when a call through it
// fails, and never outlives the entries it came from. Lookups are admitted like the
// registrar's writes: a few under way, others queued briefly, the rest refused (503), so that
// a burst of calls to new callees gets answers at the rate the overlay gives them instead of
// slowing every lookup until most time out. Calls to one resource share one lookup.

import { type Clock, idToHex, type NodeId } from '@peerbx/dht-kademlia';
import { isTombstone, KIND_SIP_REGISTRATION } from '@peerbx/overlay-core';
import { LocatorBusyError } from '../errors.js';
import type { OverlayAccess } from './overlay-access.js';
import { decodeRegistrationValue } from './registration-value.js';

/** How long a fetched registration is reused without asking the overlay again. */
export const LOCATION_CACHE_MS = 30_000;
/** Location lookups under way at once (each a DHT lookup of a few signed requests). */
export const MAX_LOOKUPS_IN_FLIGHT = 16;
/** Lookups that may wait for a place; beyond, a call is refused at once (503). */
export const MAX_LOOKUPS_WAITING = 1000;
/** A lookup that waited this long is refused (503): the caller hears that rather than silence. */
export const MAX_LOOKUP_WAIT_MS = 5_000;

export interface LocatorLimits {
  maxInFlight?: number;
  maxWaiting?: number;
  maxWaitMs?: number;
}

interface Waiter {
  since: number;
  go: (started: boolean) => void;
}

export interface Location {
  nodeId: NodeId;
  devices: number;
  expiresAt: number;
}

interface CacheEntry {
  locations: Location[];
  until: number;
}

export class Locator {
  private readonly cache = new Map<string, CacheEntry>();
  /** Lookups under way or waiting, by resource: a second call to it shares the first's. */
  private readonly running = new Map<string, Promise<Location[]>>();
  /** The newest fetch of each resource not invalidated since it began: only it caches. */
  private readonly latest = new Map<string, object>();
  private readonly queue: Waiter[] = [];
  private inFlight = 0;
  private readonly maxInFlight: number;
  private readonly maxWaiting: number;
  private readonly maxWaitMs: number;
  hits = 0;
  misses = 0;
  /** Lookups refused because too many waited, or theirs waited too long. */
  busyRefusals = 0;

  constructor(
    private readonly overlay: OverlayAccess,
    private readonly clock: Clock,
    private readonly cacheMs = LOCATION_CACHE_MS,
    limits: LocatorLimits = {},
  ) {
    this.maxInFlight = limits.maxInFlight ?? MAX_LOOKUPS_IN_FLIGHT;
    this.maxWaiting = limits.maxWaiting ?? MAX_LOOKUPS_WAITING;
    this.maxWaitMs = limits.maxWaitMs ?? MAX_LOOKUP_WAIT_MS;
  }

  /** Lookups under way and waiting. */
  get pending(): { inFlight: number; waiting: number } {
    return { inFlight: this.inFlight, waiting: this.queue.length };
  }

  /**
   * Nodes with live registrations for the resource ("bob@peerbx.local"); [] when none.
   * Rejects with LocatorBusyError when the lookup would wait behind too many others, or
   * waited too long; with the overlay's error when the overlay cannot say.
   */
  async locate(resource: string): Promise<Location[]> {
    const now = this.clock.now();
    const hit = this.cache.get(resource);
    if (hit && hit.until > now) {
      const live = hit.locations.filter((l) => l.expiresAt > now);
      if (live.length > 0) {
        this.hits++;
        return live;
      }
    }
    this.misses++;
    const running = this.running.get(resource);
    if (running) return running;
    const lookup = this.admitted(() => this.fetchLocations(resource)).finally(() => {
      if (this.running.get(resource) === lookup) this.running.delete(resource);
    });
    this.running.set(resource, lookup);
    return lookup;
  }

  private async fetchLocations(resource: string): Promise<Location[]> {
    const token = {};
    this.latest.set(resource, token);
    let records: Awaited<ReturnType<OverlayAccess['fetch']>>;
    let current = false;
    try {
      records = await this.overlay.fetch(resource, KIND_SIP_REGISTRATION);
    } finally {
      // Not the latest any more: invalidated while it ran (a call through what it will find
      // failed), or a newer fetch began. It answers its callers but caches nothing.
      current = this.latest.get(resource) === token;
      if (current) this.latest.delete(resource);
    }
    const now = this.clock.now();
    const locations: Location[] = [];
    for (const r of records) {
      if (isTombstone(r) || !r.dictionaryKey) continue;
      try {
        const v = decodeRegistrationValue(r.value);
        if (v.expiresAt > now && v.devices > 0)
          locations.push({ nodeId: r.dictionaryKey, devices: v.devices, expiresAt: v.expiresAt });
      } catch {
        // A record that verifies but whose value we cannot read: skip it.
      }
    }
    if (!current) return locations;
    if (locations.length > 0) {
      const until = Math.min(now + this.cacheMs, ...locations.map((l) => l.expiresAt));
      this.cache.set(resource, { locations, until });
    } else {
      this.cache.delete(resource);
    }
    return locations;
  }

  /** Runs `lookup` once fewer than maxInFlight are under way, in arrival order. */
  private async admitted<T>(lookup: () => Promise<T>): Promise<T> {
    if (this.inFlight < this.maxInFlight) {
      this.inFlight++;
    } else {
      this.dropExpired();
      if (this.queue.length >= this.maxWaiting) {
        this.busyRefusals++;
        throw new LocatorBusyError(this.queue.length);
      }
      // The finishing lookup hands its place over: inFlight stays as it is.
      const started = await new Promise<boolean>((go) => {
        this.queue.push({ since: this.clock.now(), go });
      });
      if (!started) {
        this.busyRefusals++;
        throw new LocatorBusyError(this.queue.length);
      }
    }
    try {
      return await lookup();
    } finally {
      this.dropExpired();
      const next = this.queue.shift();
      if (next) next.go(true);
      else this.inFlight--;
    }
  }

  /** Lookups that waited over maxWaitMs are refused (the oldest wait at the head). */
  private dropExpired(): void {
    const now = this.clock.now();
    while (this.queue.length > 0 && now - (this.queue[0] as Waiter).since > this.maxWaitMs) {
      this.queue.shift()?.go(false);
    }
  }

  /** Forgets what is known of a resource (all of it, or one node that failed). */
  invalidate(resource: string, nodeId?: NodeId): void {
    // A lookup under way may have seen the node that failed: later calls start a new one,
    // and it caches nothing.
    this.running.delete(resource);
    this.latest.delete(resource);
    if (!nodeId) {
      this.cache.delete(resource);
      return;
    }
    const hit = this.cache.get(resource);
    if (!hit) return;
    const hex = idToHex(nodeId);
    const rest = hit.locations.filter((l) => idToHex(l.nodeId) !== hex);
    if (rest.length === 0) this.cache.delete(resource);
    else hit.locations = rest;
  }
}
