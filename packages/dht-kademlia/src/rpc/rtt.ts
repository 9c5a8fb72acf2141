// Round-trip estimates per contact (RFC 6298's SRTT and RTTVAR), so that a request to a node
// that died times out after a few of its usual round trips instead of the fixed worst case.
// A contact never measured is given twice what the contacts measured so far typically need,
// but at least half the ceiling: lookups learn of nodes from others' replies, and a dead one
// among them would otherwise hold a lookup up for the full ceiling; the half-ceiling floor
// leaves a first contact over a slow link (satellite, 600 ms round trips, one datagram lost
// and resent) time to answer even when every contact measured so far was on the same LAN.

interface Estimate {
  srtt: number;
  rttvar: number;
}

export class RttEstimator {
  private readonly estimates = new Map<string, Estimate>();
  /**
   * Timeouts in a row per contact, and when the last two were: each doubles its next timeout
   * (RFC 6298 §5.5).
   */
  private readonly missed = new Map<string, { count: number; at: number; previousAt: number }>();
  /** Every sample together: the typical round trip of this node's contacts. */
  private overall: Estimate | undefined;

  constructor(
    /** Timeout before anything was measured, and the ceiling for all. */
    private readonly maxMs: number,
    /** Floor: leaves room for one retransmission of a lost datagram. */
    private readonly minMs: number,
    /** Contacts remembered; the least recently measured is forgotten first. */
    private readonly capacity = 1_024,
  ) {}

  timeout(key: string): number {
    const e = this.estimates.get(key);
    let base: number;
    if (e) base = this.clamp(e.srtt + 4 * e.rttvar);
    else if (this.overall) {
      const typical = this.overall.srtt + 4 * this.overall.rttvar;
      base = this.clamp(Math.max(2 * typical, this.maxMs / 2));
    } else return this.maxMs;
    return Math.min(this.maxMs, base * 2 ** (this.missed.get(key)?.count ?? 0));
  }

  /**
   * When an answer from a typical contact is late, ms: the round trip of all contacts
   * together plus four deviations (RFC 6298's timeout, without its floor, which leaves room
   * for a retransmission: this is a time to ask someone else too, not to give up). The
   * ceiling before anything was measured.
   */
  lateAfter(): number {
    if (!this.overall) return this.maxMs;
    const typical = this.overall.srtt + 4 * this.overall.rttvar;
    return Math.min(this.maxMs, Math.max(1, Math.ceil(typical)));
  }

  /**
   * Two requests in a row to the contact timed out, both at `since` or later, and it has not
   * answered since nor been heard from: lookups presume it dead (see KademliaNode.runLookup).
   */
  silentTwiceSince(key: string, since: number): boolean {
    const m = this.missed.get(key);
    return m !== undefined && m.count >= 2 && m.previousAt >= since;
  }

  /**
   * Whether any contact has a timeout on record: callers skip building keys for heard() and
   * silentTwiceSince() when none has (the common case), as both would find nothing.
   */
  get anySilence(): boolean {
    return this.missed.size > 0;
  }

  /** Forgets every silence (this node's own network was down: they say nothing of others). */
  forgetSilences(): void {
    this.missed.clear();
  }

  /**
   * The contact said it leaves: presumed dead from now on as if twice silent (lookups skip it),
   * until it is heard from again.
   */
  left(key: string, now: number): void {
    this.missed.delete(key);
    if (this.missed.size >= this.capacity) {
      const oldest = this.missed.keys().next().value;
      if (oldest !== undefined) this.missed.delete(oldest);
    }
    this.missed.set(key, { count: 2, at: now, previousAt: now });
  }

  /** The contact sent a request of its own: it is back, and its back-off ends. */
  heard(key: string): void {
    this.missed.delete(key);
  }

  /**
   * A request to the contact, sent at `sentAt`, timed out: the next one waits twice as long
   * (up to the ceiling). Nothing is counted when it was sent before the last timeout:
   * requests that were out together and time out together (one stall of the contact's, or
   * of the network) are one silence, not several in a row.
   */
  timedOut(key: string, now: number, sentAt: number): void {
    const m = this.missed.get(key);
    if (m && sentAt < m.at) return;
    const n = m?.count ?? 0;
    this.missed.delete(key);
    if (this.missed.size >= this.capacity) {
      const oldest = this.missed.keys().next().value;
      if (oldest !== undefined) this.missed.delete(oldest);
    }
    this.missed.set(key, { count: Math.min(n + 1, 8), at: now, previousAt: m?.at ?? now });
  }

  sample(key: string, rttMs: number): void {
    this.missed.delete(key);
    if (this.overall) update(this.overall, rttMs);
    else this.overall = { srtt: rttMs, rttvar: rttMs / 2 };
    const e = this.estimates.get(key);
    if (!e) {
      if (this.estimates.size >= this.capacity) {
        const oldest = this.estimates.keys().next().value;
        if (oldest !== undefined) this.estimates.delete(oldest);
      }
      this.estimates.set(key, { srtt: rttMs, rttvar: rttMs / 2 });
      return;
    }
    update(e, rttMs);
    // Re-insert: Map order is then least recently measured first.
    this.estimates.delete(key);
    this.estimates.set(key, e);
  }

  private clamp(ms: number): number {
    return Math.min(this.maxMs, Math.max(this.minMs, ms));
  }
}

/** RFC 6298 §2.3. */
function update(e: Estimate, rttMs: number): void {
  e.rttvar = 0.75 * e.rttvar + 0.25 * Math.abs(e.srtt - rttMs);
  e.srtt = 0.875 * e.srtt + 0.125 * rttMs;
}
