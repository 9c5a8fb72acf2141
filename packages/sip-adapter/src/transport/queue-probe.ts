// How long a message waits before this node reads it. A probe datagram sent to our own UDP
// socket queues behind whatever phones sent before it, in the socket buffer and then in the
// event loop, so the time it took to come back is the wait a new request meets right now:
// the overload signal of RFC 6357 §5 (queueing delay), measured where it builds up.
//
// Probes go out only while messages arrive (at most one per interval), so an idle node sends
// none. Each carries its send time and a per-process secret; a datagram that looks like a probe
// but does not carry the secret (or comes from elsewhere) is dropped, never delivered as SIP.

import { randomBytes } from 'node:crypto';

const MAGIC = Buffer.from('\0peerbx-queue-probe\0', 'latin1');
const SECRET_BYTES = 16;
/** Magic, secret, send time (float64, ms of the monotonic clock). */
export const QUEUE_PROBE_BYTES = MAGIC.length + SECRET_BYTES + 8;
/** A probe goes out at most this often (while messages arrive). */
export const QUEUE_PROBE_INTERVAL_MS = 20;

export type ProbeVerdict = 'not-a-probe' | 'sample' | 'forged';

export class QueueProbe {
  private readonly secret = randomBytes(SECRET_BYTES);
  private lastSentAt = Number.NEGATIVE_INFINITY;
  /** Probes sent and come back, for statistics and tests. */
  sent = 0;
  received = 0;

  constructor(
    private readonly sendToSelf: (data: Buffer) => void,
    private readonly onSample: (sojournMs: number) => void,
    private readonly intervalMs = QUEUE_PROBE_INTERVAL_MS,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Sends a probe unless one went out less than an interval ago. */
  maybeSend(): void {
    const now = this.now();
    if (now - this.lastSentAt < this.intervalMs) return;
    this.lastSentAt = now;
    const probe = Buffer.allocUnsafe(QUEUE_PROBE_BYTES);
    MAGIC.copy(probe, 0);
    this.secret.copy(probe, MAGIC.length);
    probe.writeDoubleBE(now, MAGIC.length + SECRET_BYTES);
    this.sent++;
    this.sendToSelf(probe);
  }

  /**
   * Looks at a datagram before it is taken for SIP. `fromSelf`: it came from our own socket's
   * address and port. A probe of ours yields a sample; anything probe-like otherwise is forged.
   */
  take(data: Buffer, fromSelf: boolean): ProbeVerdict {
    // A SIP message never starts with NUL: one comparison on the hot path.
    if (data.length === 0 || data[0] !== 0 || data.length !== QUEUE_PROBE_BYTES) {
      return 'not-a-probe';
    }
    if (
      !fromSelf ||
      !data.subarray(0, MAGIC.length).equals(MAGIC) ||
      !data.subarray(MAGIC.length, MAGIC.length + SECRET_BYTES).equals(this.secret)
    ) {
      return 'forged';
    }
    const sentAt = data.readDoubleBE(MAGIC.length + SECRET_BYTES);
    const sojourn = this.now() - sentAt;
    if (!(sojourn >= 0)) return 'forged';
    this.received++;
    this.onSample(sojourn);
    return 'sample';
  }
}
