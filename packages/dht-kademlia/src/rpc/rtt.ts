// Round-trip estimates per contact (RFC 6298's SRTT and RTTVAR), so that a request to a node
// that died times out after a few of its usual round trips instead of the fixed worst case.
// A contact never measured is given twice what the contacts measured so far typically need:
// lookups learn of nodes from others' replies, and a dead one among them would otherwise hold
// a lookup up for the full ceiling.

interface Estimate {
  srtt: number;
  rttvar: number;
}

export class RttEstimator {
  private readonly estimates = new Map<string, Estimate>();
  /** Every sample together: the typical round trip of this node's contacts. */
  private overall: Estimate | undefined;

  constructor(
    /** Timeout for contacts never measured, and the ceiling for all. */
    private readonly maxMs: number,
    /** Floor: leaves room for one retransmission of a lost datagram. */
    private readonly minMs: number,
    /** Contacts remembered; the least recently measured is forgotten first. */
    private readonly capacity = 1_024,
  ) {}

  timeout(key: string): number {
    const e = this.estimates.get(key);
    if (e) return this.clamp(e.srtt + 4 * e.rttvar);
    if (!this.overall) return this.maxMs;
    return this.clamp(2 * (this.overall.srtt + 4 * this.overall.rttvar));
  }

  sample(key: string, rttMs: number): void {
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
