// Finds the nodes where a user is registered: the live entries of the AOR's SIP-REGISTRATION
// records in the overlay, cached briefly. A cached answer is dropped when a call through it
// fails, and never outlives the entries it came from. The proxy asks for a recent answer
// (`maxAgeMs`) when a request to a cached location is still unanswered after a while or was
// refused by every node, so that a device registered at another node since is reached within
// that request (proxy.ts, recheckLocation). Lookups are admitted like the
// registrar's writes: a few under way, others queued briefly, the rest refused (503), so that
// a burst of calls to new callees gets answers at the rate the overlay gives them instead of
// slowing every lookup until most time out. Calls to one resource share one lookup.

import { type Clock, idToHex, type NodeId } from '@peerbx/dht-kademlia';
import { KIND_NAME_CLAIM, KIND_SIP_REGISTRATION, setBounded } from '@peerbx/overlay-core';
import { LocatorBusyError } from '../errors.js';
import { Admission } from './admission.js';
import type { OverlayAccess } from './overlay-access.js';
import { decodeRegistrationValue } from './registration-value.js';

/** How long a fetched registration is reused without asking the overlay again. */
export const LOCATION_CACHE_MS = 30_000;
/**
 * Callees whose locations are cached at most; the oldest go first (fetched again if called).
 * An answer that lapsed goes when it is next read: a node that calls many users once each
 * keeps no more than this.
 */
export const LOCATION_CACHE_MAX = 10_000;
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

/**
 * Told of each node a lookup found a live registration of, with when that node wrote it (its
 * clock): a node that wrote one lately is up, whatever an earlier dial to it met.
 */
export type OnLocated = (nodeId: NodeId, storedAt: number) => void;

export interface Location {
  nodeId: NodeId;
  devices: number;
  expiresAt: number;
}

interface CacheEntry {
  locations: Location[];
  until: number;
  /** When the lookup that found them began. */
  fetchedAt: number;
}

interface RunningLookup {
  promise: Promise<Location[]>;
  /** When it was asked for (it may have waited for a place since). */
  startedAt: number;
  /** Waiting behind the lookups callers wait for: a caller does not share it. */
  background: boolean;
}

export interface LocateOptions {
  /** Only an answer whose lookup began at most this long ago will do (default: any cached). */
  maxAgeMs?: number;
  /** Wait behind the lookups callers wait for (Admission's background; refused past its cap). */
  background?: boolean;
  /** This node's own copy of the record does not count toward the quorum (a recheck). */
  othersOnly?: boolean;
}

export class Locator {
  private readonly cache = new Map<string, CacheEntry>();
  /** Lookups under way or waiting, by resource: a second call to it shares the first's. */
  private readonly running = new Map<string, RunningLookup>();
  /** The newest fetch of each resource not invalidated since it began: only it caches. */
  private readonly latest = new Map<string, object>();
  /**
   * Users the overlay knows with no live registration, as the last lookup of each found: a
   * live name claim, or a registration record that names no device. Called, they are not
   * logged in (480), where a user nobody ever registered does not exist (404).
   */
  private readonly unregistered = new Map<string, true>();
  private readonly admission: Admission;
  hits = 0;
  misses = 0;
  /** Calls to `locate` that found a live cached answer older than their `maxAgeMs`. */
  staleHits = 0;

  constructor(
    private readonly overlay: OverlayAccess,
    private readonly clock: Clock,
    private readonly cacheMs = LOCATION_CACHE_MS,
    limits: LocatorLimits = {},
    private readonly onLocated?: OnLocated,
  ) {
    this.admission = new Admission(
      clock,
      {
        maxInFlight: limits.maxInFlight ?? MAX_LOOKUPS_IN_FLIGHT,
        maxWaiting: limits.maxWaiting ?? MAX_LOOKUPS_WAITING,
        maxWaitMs: limits.maxWaitMs ?? MAX_LOOKUP_WAIT_MS,
        // Rechecks nobody waits for long (the proxy gives up after 2 s): as many as callers.
        maxBackground: limits.maxWaiting ?? MAX_LOOKUPS_WAITING,
      },
      (waiting) => new LocatorBusyError(waiting),
    );
  }

  /** Callees whose answers are cached now, lapsed ones not yet read again included. */
  get cached(): number {
    return this.cache.size;
  }

  /** Lookups under way and waiting (diagnostics and tests). */
  get pending(): { inFlight: number; waiting: number } {
    const { inFlight, waiting } = this.admission.pending;
    return { inFlight, waiting };
  }

  /** Lookups refused because too many waited, or theirs waited too long. */
  get busyRefusals(): number {
    return this.admission.refusals;
  }

  /**
   * Whether the last lookup of the resource that found no live registration found the user
   * known to the overlay all the same (its name claimed, or a registration record left that
   * names no device): a user not logged in now, rather than no such user.
   */
  isKnownUser(resource: string): boolean {
    return this.unregistered.has(resource);
  }

  /** True when `locate` would answer from the cache now. */
  isCached(resource: string): boolean {
    return this.cachedLocations(resource, this.clock.now()) !== undefined;
  }

  /**
   * The cached answer `locate` would give now (counted as its hit), else undefined: the proxy
   * forwards a call to a cached callee in the turn its INVITE arrived, not a promise later.
   */
  fromCache(resource: string): Location[] | undefined {
    const live = this.cachedLocations(resource, this.clock.now());
    if (live) this.hits++;
    return live?.locations;
  }

  /**
   * Nodes with live registrations for the resource ("bob@peerbx.local"); [] when none. A
   * cached answer, or a lookup already asked for, serves when it was asked for at most
   * `maxAgeMs` ago (and a background one only another background caller); otherwise the
   * overlay is asked (and its answer replaces the cached one).
   * Rejects with LocatorBusyError when the lookup would wait behind too many others, or
   * waited too long; with the overlay's error when the overlay cannot say.
   */
  async locate(resource: string, options: LocateOptions = {}): Promise<Location[]> {
    const now = this.clock.now();
    const maxAge = options.maxAgeMs ?? Number.POSITIVE_INFINITY;
    const live = this.cachedLocations(resource, now);
    if (live && now - live.fetchedAt <= maxAge) {
      this.hits++;
      return live.locations;
    }
    if (live) this.staleHits++;
    else this.misses++;
    const background = options.background ?? false;
    const running = this.running.get(resource);
    if (running && now - running.startedAt <= maxAge && (!running.background || background)) {
      return running.promise;
    }
    const promise = this.admission
      .run(() => this.fetchLocations(resource, options.othersOnly === true), background)
      .finally(() => {
        if (this.running.get(resource)?.promise === promise) this.running.delete(resource);
      });
    this.running.set(resource, { promise, startedAt: now, background });
    return promise;
  }

  private cachedLocations(
    resource: string,
    now: number,
  ): { locations: Location[]; fetchedAt: number } | undefined {
    const hit = this.cache.get(resource);
    if (!hit) return undefined;
    if (hit.until <= now) {
      this.cache.delete(resource);
      return undefined;
    }
    const locations = hit.locations.filter((l) => l.expiresAt > now);
    return locations.length > 0 ? { locations, fetchedAt: hit.fetchedAt } : undefined;
  }

  private async fetchLocations(resource: string, othersOnly: boolean): Promise<Location[]> {
    const fetchedAt = this.clock.now();
    const token = {};
    this.latest.set(resource, token);
    let records: Awaited<ReturnType<OverlayAccess['fetch']>>;
    let current = false;
    try {
      // Every kind: the name claim says a user with no registration exists (isKnownUser).
      records = await this.overlay.fetch(
        resource,
        undefined,
        othersOnly ? { othersOnly } : undefined,
      );
    } finally {
      // Not the latest any more: invalidated while it ran (a call through what it will find
      // failed), or a newer fetch began. It answers its callers but caches nothing.
      current = this.latest.get(resource) === token;
      if (current) this.latest.delete(resource);
    }
    const now = this.clock.now();
    const locations: Location[] = [];
    let known = false;
    for (const r of records) {
      // Tombstones never come back from a fetch.
      if (r.kind === KIND_NAME_CLAIM) known = true;
      if (r.kind !== KIND_SIP_REGISTRATION || !r.dictionaryKey) continue;
      known = true;
      try {
        const v = decodeRegistrationValue(r.value);
        if (v.expiresAt > now && v.devices > 0) {
          locations.push({ nodeId: r.dictionaryKey, devices: v.devices, expiresAt: v.expiresAt });
          this.onLocated?.(r.dictionaryKey, r.storedAt);
        }
      } catch {
        // A record that verifies but whose value we cannot read: skip it.
      }
    }
    if (known && locations.length === 0) {
      setBounded(this.unregistered, resource, true, LOCATION_CACHE_MAX);
    } else this.unregistered.delete(resource);
    if (!current) return locations;
    if (locations.length > 0) {
      const until = Math.min(now + this.cacheMs, ...locations.map((l) => l.expiresAt));
      setBounded(this.cache, resource, { locations, until, fetchedAt }, LOCATION_CACHE_MAX);
    } else {
      this.cache.delete(resource);
    }
    return locations;
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
