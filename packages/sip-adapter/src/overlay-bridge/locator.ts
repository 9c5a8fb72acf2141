// Finds the nodes where a user is registered: the live entries of the AOR's SIP-REGISTRATION
// records in the overlay, cached briefly. A cached answer is dropped when a call through it
// fails, and never outlives the entries it came from.

import { type Clock, idToHex, type NodeId } from '@peerbx/dht-kademlia';
import { isTombstone, KIND_SIP_REGISTRATION } from '@peerbx/overlay-core';
import type { OverlayAccess } from './overlay-access.js';
import { decodeRegistrationValue } from './registration-value.js';

/** How long a fetched registration is reused without asking the overlay again. */
export const LOCATION_CACHE_MS = 30_000;

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
  hits = 0;
  misses = 0;

  constructor(
    private readonly overlay: OverlayAccess,
    private readonly clock: Clock,
    private readonly cacheMs = LOCATION_CACHE_MS,
  ) {}

  /** Nodes with live registrations for the resource ("bob@peerbx.local"); [] when none. */
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
    const records = await this.overlay.fetch(resource, KIND_SIP_REGISTRATION);
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
    if (locations.length > 0) {
      const until = Math.min(now + this.cacheMs, ...locations.map((l) => l.expiresAt));
      this.cache.set(resource, { locations, until });
    } else {
      this.cache.delete(resource);
    }
    return locations;
  }

  /** Forgets what is known of a resource (all of it, or one node that failed). */
  invalidate(resource: string, nodeId?: NodeId): void {
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
