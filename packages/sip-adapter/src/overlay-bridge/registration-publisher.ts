// Publishes a user's local bindings to the overlay as this node's SIP-REGISTRATION entry, and
// only when it matters: a new or gone device, or bindings that will outlive the published
// record by more than half its lifetime. A phone refreshing every few minutes costs no
// overlay write; the last device leaving publishes a short tombstone.

import type { Clock } from '@peerbx/dht-kademlia';
import { KIND_SIP_REGISTRATION } from '@peerbx/overlay-core';
import type { Binding } from '../registrar/binding-store.js';
import type { OverlayAccess } from './overlay-access.js';
import { encodeRegistrationValue } from './registration-value.js';

/** A removed registration stays visible as a tombstone this long, so caches learn of it. */
export const TOMBSTONE_LIFETIME_MS = 120_000;

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

  constructor(
    private readonly overlay: OverlayAccess,
    private readonly clock: Clock,
  ) {}

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
   * ERR_FORBIDDEN: the name belongs to another key), which the registrar turns into a 403.
   */
  async sync(
    aor: string,
    resource: string,
    bindings: readonly Binding[],
  ): Promise<PublishDecision> {
    const decision = this.decide(aor, bindings);
    if (!decision.write) return decision;
    const now = this.clock.now();
    const devices = bindings.length;
    const expiresAt =
      devices > 0 ? Math.max(...bindings.map((b) => b.expiresAt)) : now + TOMBSTONE_LIFETIME_MS;
    const lifetimeMs = Math.max(1000, expiresAt - now);
    await this.overlay.publish({
      kind: KIND_SIP_REGISTRATION,
      resource,
      dictionaryKey: this.overlay.nodeId,
      value: devices > 0 ? encodeRegistrationValue({ devices, expiresAt }) : new Uint8Array(0),
      lifetimeMs,
    });
    this.writes++;
    this.published.set(aor, { devices, expiresAt, lifetimeMs });
    return decision;
  }
}
