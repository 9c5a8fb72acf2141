// Stateless nonces: the issue time and an HMAC of it under a per-node secret, so any nonce
// this node made can be checked (and its age read) without remembering it. Only the
// nonce-count of nonces in use is remembered, to refuse replays (RFC 7616 §3.4 `nc`).

import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Clock } from '@peerbx/dht-kademlia';
import { MAX_TRACKED_NONCES, NONCE_FUTURE_SKEW_MS, NONCE_LIFETIME_MS } from './constants.js';

export type NonceCheck = 'valid' | 'stale' | 'invalid';

const MAC_BYTES = 16;

export interface NonceOptions {
  clock: Clock;
  /** Bound into every nonce, so a nonce of one realm is not taken in another. */
  realm: string;
  /** HMAC key; default 32 random bytes (nonces then die with the process). */
  secret?: Uint8Array;
  lifetimeMs?: number;
}

export class NonceIssuer {
  private readonly secret: Uint8Array;
  private readonly lifetimeMs: number;
  /** nonce → highest nonce-count accepted, and when the nonce goes stale. */
  private readonly counts = new Map<string, { nc: number; staleAt: number }>();
  /** An opaque value clients must echo; fixed per secret. */
  readonly opaque: string;

  constructor(private readonly options: NonceOptions) {
    this.secret = options.secret ?? randomBytes(32);
    this.lifetimeMs = options.lifetimeMs ?? NONCE_LIFETIME_MS;
    this.opaque = this.mac(Buffer.from(`opaque:${options.realm}`)).toString('base64url');
  }

  issue(): string {
    const stamp = Buffer.alloc(8);
    stamp.writeBigUInt64BE(BigInt(Math.max(0, Math.floor(this.options.clock.now()))));
    return Buffer.concat([stamp, this.mac(stamp)]).toString('base64url');
  }

  /** Whether `nonce` is one of ours, and whether it is still fresh. */
  check(nonce: string): NonceCheck {
    const raw = Buffer.from(nonce, 'base64url');
    if (raw.length !== 8 + MAC_BYTES || raw.toString('base64url') !== nonce) return 'invalid';
    const stamp = raw.subarray(0, 8);
    if (!timingSafeEqual(raw.subarray(8), this.mac(stamp))) return 'invalid';
    const issued = Number(stamp.readBigUInt64BE());
    const now = this.options.clock.now();
    if (issued > now + NONCE_FUTURE_SKEW_MS) return 'invalid';
    return now - issued > this.lifetimeMs ? 'stale' : 'valid';
  }

  /**
   * Records the nonce-count of an authenticated request; false when it is not above the
   * highest one seen for this nonce (a replay, or a copy of an earlier request).
   */
  acceptCount(nonce: string, nc: number): boolean {
    const now = this.options.clock.now();
    const seen = this.counts.get(nonce);
    if (seen && nc <= seen.nc) return false;
    if (!seen) this.prune(now);
    const raw = Buffer.from(nonce, 'base64url');
    const issued = Number(raw.readBigUInt64BE(0));
    this.counts.delete(nonce);
    this.counts.set(nonce, { nc, staleAt: issued + this.lifetimeMs });
    return true;
  }

  private prune(now: number): void {
    for (const [nonce, entry] of this.counts) {
      if (entry.staleAt <= now || this.counts.size >= MAX_TRACKED_NONCES) {
        this.counts.delete(nonce);
      } else break; // insertion order is roughly issue order: the rest are younger
    }
  }

  private mac(data: Buffer): Buffer {
    return createHmac('sha256', this.secret)
      .update(this.options.realm)
      .update(data)
      .digest()
      .subarray(0, MAC_BYTES);
  }
}
