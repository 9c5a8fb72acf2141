// Round-trip estimates per contact (RFC 6298's SRTT and RTTVAR), so that a request to a node
// that died times out after a few of its usual round trips instead of the fixed worst case.

export class RttEstimator {
  private readonly estimates = new Map<string, { srtt: number; rttvar: number }>();

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
    if (!e) return this.maxMs;
    return Math.min(this.maxMs, Math.max(this.minMs, e.srtt + 4 * e.rttvar));
  }

  sample(key: string, rttMs: number): void {
    const e = this.estimates.get(key);
    if (!e) {
      if (this.estimates.size >= this.capacity) {
        const oldest = this.estimates.keys().next().value;
        if (oldest !== undefined) this.estimates.delete(oldest);
      }
      this.estimates.set(key, { srtt: rttMs, rttvar: rttMs / 2 });
      return;
    }
    e.rttvar = 0.75 * e.rttvar + 0.25 * Math.abs(e.srtt - rttMs);
    e.srtt = 0.875 * e.srtt + 0.125 * rttMs;
    // Re-insert: Map order is then least recently measured first.
    this.estimates.delete(key);
    this.estimates.set(key, e);
  }
}
