// How long a message waits before this node reads it. A probe datagram sent to our own UDP
// socket queues behind whatever phones sent before it, in the socket buffer and then in the
// event loop, so the time it took to come back is the wait a new request meets right now:
// the overload signal of RFC 6357 §5 (queueing delay), measured where it builds up.
//
// Probes go out only while messages arrive (at most one per interval), so an idle node sends
// none. While no probe found a queue (QUEUE_PROBE_EARLY_MS, or lost) in the last second
// (QUEUE_PROBE_CALM_MS), a probe leaves at the end of the loop turn of the message that prompts
// it (the transport's sendLater), so that this message's own sends (a phone's INVITE forwarded,
// say) do not wait behind it; it is stamped as it leaves. Otherwise probes go out at once,
// after the work of the message that prompts them (the node asks for a probe once it has handled
// a message) but ahead of the rest of their turn, and measure the wait of a datagram arriving
// then, the turn's remaining work included: under load the signal is what matters, though the
// probe then takes the turn's send-at-once slot when that message sent nothing over UDP.
//
// Loopback keeps order, so a probe overtaken by a later one was dropped by a full socket
// buffer: it is reported lost at once (on a kernel with the default 208 KiB receive buffer a
// busy socket drops datagrams before they wait long, and lost probes are then the signal). A
// probe away QUEUE_PROBE_LOST_MS is reported lost too, when the next one goes out: dropped
// with all after it, or behind a second of work. A lost probe gives no sample if it does come
// back. Each carries its send time and a per-process secret; a datagram that looks like a
// probe but does not carry the secret (or comes from elsewhere) is dropped, never delivered as
// SIP.

import { randomBytes } from 'node:crypto';

const MAGIC = Buffer.from('\0peerbx-queue-probe\0', 'latin1');
const SECRET_BYTES = 16;
/** Magic, secret, send time (float64, ms of the monotonic clock). */
export const QUEUE_PROBE_BYTES = MAGIC.length + SECRET_BYTES + 8;
/** A probe goes out at most this often (while messages arrive). */
export const QUEUE_PROBE_INTERVAL_MS = 20;
/** A probe that waited this long, ms, makes the next ones go out at once (see above)... */
export const QUEUE_PROBE_EARLY_MS = 5;
/** ... until none has for this long, ms. */
export const QUEUE_PROBE_CALM_MS = 1000;
/** A probe not overtaken but not back after this long is reported lost, ms. */
export const QUEUE_PROBE_LOST_MS = 1000;
/**
 * A probe away this long is forgotten without a sample, ms: the node has been idle since (a
 * probe dropped as a burst ended, then no message), and its first request after that is no
 * sign of a queue. Between QUEUE_PROBE_LOST_MS and this, such a probe still counts: a node
 * that dropped probes may refuse new requests for up to this long after its load stopped.
 */
export const QUEUE_PROBE_FORGET_MS = 2000;
/** Probes tracked while they are away; older ones are forgotten. */
const MAX_AWAY = 256;

export type ProbeVerdict = 'not-a-probe' | 'sample' | 'forged';

export interface QueueProbeOptions {
  /** Least time between two probes, ms. */
  intervalMs?: number;
  /** A probe that waited this long, ms, makes probes go out at once for a while. */
  earlyMs?: number;
  now?: () => number;
}

export class QueueProbe {
  private readonly secret = randomBytes(SECRET_BYTES);
  private readonly intervalMs: number;
  private readonly earlyMs: number;
  private readonly now: () => number;
  /** When the oldest probe asked for but not yet stamped (sent late) was asked for. */
  private askedAt: number | undefined;
  private lastSentAt = Number.NEGATIVE_INFINITY;
  /** When a probe last came back after earlyMs or more, or was reported lost. */
  private queueSeenAt = Number.NEGATIVE_INFINITY;
  /** Send times of the probes not back yet, oldest first (they come back in order). */
  private readonly away: number[] = [];
  /** Probes reported lost (overtaken, or away too long), for statistics and tests. */
  lost = 0;

  constructor(
    /**
     * Sends `stamp()` to our own socket, called as the datagram leaves: at once, or (`late`)
     * after the loop turn's other datagrams.
     */
    private readonly sendToSelf: (stamp: () => Buffer, late: boolean) => void,
    /**
     * A probe's wait, ms; `lost`: it was overtaken (dropped) or has been away
     * QUEUE_PROBE_LOST_MS and is given up.
     */
    private readonly onSample: (sojournMs: number, lost: boolean) => void,
    options: QueueProbeOptions = {},
  ) {
    this.intervalMs = options.intervalMs ?? QUEUE_PROBE_INTERVAL_MS;
    this.earlyMs = options.earlyMs ?? QUEUE_PROBE_EARLY_MS;
    this.now = options.now ?? (() => performance.now());
  }

  /** Sends a probe unless one went out less than an interval ago. */
  maybeSend(): void {
    const now = this.now();
    if (now - this.lastSentAt < this.intervalMs) return;
    this.lastSentAt = now;
    this.forgetOld(now);
    const oldest = this.away[0];
    if (oldest !== undefined && now - oldest >= QUEUE_PROBE_LOST_MS) {
      this.away.shift();
      this.lost++;
      this.report(now - oldest, true);
    }
    const late = now - this.queueSeenAt >= QUEUE_PROBE_CALM_MS;
    if (late) this.askedAt ??= now;
    this.sendToSelf(() => this.stamp(), late);
  }

  /** The probe datagram, stamped now and counted away from now. */
  private stamp(): Buffer {
    const now = this.now();
    this.askedAt = undefined;
    this.away.push(now);
    if (this.away.length > MAX_AWAY) this.away.shift();
    const probe = Buffer.allocUnsafe(QUEUE_PROBE_BYTES);
    MAGIC.copy(probe, 0);
    this.secret.copy(probe, MAGIC.length);
    probe.writeDoubleBE(now, MAGIC.length + SECRET_BYTES);
    return probe;
  }

  /**
   * Looks at a datagram before it is taken for SIP. `fromSelf`: it came from our own socket's
   * address and port (asked only of a probe-like datagram). A probe of ours yields a sample;
   * anything probe-like otherwise is forged.
   */
  take(data: Buffer, fromSelf: () => boolean): ProbeVerdict {
    // A SIP message never starts with NUL: one comparison on the hot path.
    if (data.length === 0 || data[0] !== 0 || data.length !== QUEUE_PROBE_BYTES) {
      return 'not-a-probe';
    }
    if (
      !fromSelf() ||
      !data.subarray(0, MAGIC.length).equals(MAGIC) ||
      !data.subarray(MAGIC.length, MAGIC.length + SECRET_BYTES).equals(this.secret)
    ) {
      return 'forged';
    }
    const sentAt = data.readDoubleBE(MAGIC.length + SECRET_BYTES);
    const sojourn = this.now() - sentAt;
    if (!(sojourn >= 0)) return 'forged';
    // It is back; any sent before it that are still away were dropped (one report for them).
    // One already reported lost gives no sample now.
    let wasAway = false;
    let overtaken: number | undefined;
    while (this.away.length > 0 && (this.away[0] as number) <= sentAt) {
      const t = this.away.shift() as number;
      if (t === sentAt) wasAway = true;
      else {
        overtaken ??= t;
        this.lost++;
      }
    }
    if (overtaken !== undefined) this.report(this.now() - overtaken, true);
    if (wasAway) this.report(sojourn, false);
    return 'sample';
  }

  /** A probe's wait to the guard; a long one (or a loss) keeps probes early for a while. */
  private report(waitMs: number, lost: boolean): void {
    if (lost || waitMs >= this.earlyMs) this.queueSeenAt = this.now();
    this.onSample(waitMs, lost);
  }

  /**
   * How long the oldest probe still away has been, ms (0: none away); a probe asked for but
   * not yet sent (late) counts from when it was asked for.
   */
  waitingMs(): number {
    const now = this.now();
    this.forgetOld(now);
    const oldest = this.away[0];
    const away = oldest === undefined ? 0 : now - oldest;
    return this.askedAt === undefined ? away : Math.max(away, now - this.askedAt);
  }

  private forgetOld(now: number): void {
    while (this.away.length > 0 && now - (this.away[0] as number) >= QUEUE_PROBE_FORGET_MS) {
      this.away.shift();
    }
  }
}
