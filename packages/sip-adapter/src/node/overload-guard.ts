// Overload control (RFC 6357): when requests wait too long before this node reads them, a
// share of new requests is refused at once with 503 and Retry-After, so the calls taken still
// complete and the phones refused hear so at once. Without it a node offered more than it can
// do lets its UDP queue grow past Timer A (500 ms): phones send every request again, the node
// works through stale copies, its socket buffer overflows, and calls end in silence after
// their timers. Measured with SIPp on 3 nodes sharing 2 cores, 3,200 calls/s for 30 s (about
// twice what they answer): without it (4 runs) 33,973-47,753 calls answered, 17,998-33,003
// ended cleanly, 62,997-78,002 timed out and SIPp sent 235,051-323,450 retransmissions; with it
// (3 runs) 37,136-39,518 answered, 35,235-39,470 ended cleanly, 56,482-57,470 refused at once,
// 48-3,295 timed out and 20,170-41,114 retransmissions.
//
// The signal is the queue probe's sojourn (transport/queue-probe.ts). The smallest sojourn of
// the last three probes is the standing queue: a garbage-collection pause delays the probes
// under way, not those sent after it. The refused share follows it as in PIE (RFC 8033 §4.2):
// at each probe it moves by ALPHA times the standing queue's distance from the target, plus
// BETA times how much the queue grew or shrank since the last probe; it rises by at most 0.1 at
// once (0.02 once it is 0.1 or more, as PIE caps it) and falls by at most 0.1, so it settles
// where the queue stays near the target instead of swinging between all and nothing. A probe
// lost (dropped by a full socket buffer, or away a second) raises it by a step at once.
// Requests that end or continue calls already taken (in-dialog requests, ACK, CANCEL) are
// never refused, nor REGISTER (its overlay writes have their own admission) or OPTIONS to the
// node (phones' keepalives).

/**
 * The standing queue the refused share aims to keep, ms: below Timer A (T1, 500 ms), so phones
 * whose requests are taken do not send them again, and far above what a node under its limit
 * sees (a few ms; a garbage-collection pause is one probe, not a standing queue).
 */
export const OVERLOAD_TARGET_MS = 200;
/** The standing queue is the smallest sojourn of this many probes, the last ones. */
export const OVERLOAD_PROBES = 3;
/** PIE's gains, per probe, per second of queue delay (RFC 8033 §5: 0.125 and 1.25). */
export const SHED_ALPHA = 0.125;
export const SHED_BETA = 1.25;
/** Largest rise or fall of the refused share at one probe; rises MAX_STEP_HIGH once >= 0.1. */
export const MAX_STEP = 0.1;
export const MAX_STEP_HIGH = 0.02;
/**
 * No probe came back (or was reported lost) for this long, and none is away that was sent
 * before the quiet began: the node is idle, nothing is refused, ms.
 */
export const OVERLOAD_STALE_MS = 1000;
/** Retry-After (seconds) on the 503 of a refused request. */
export const OVERLOAD_RETRY_AFTER_S = 5;

export interface OverloadGuardOptions {
  targetMs?: number;
  /** Milliseconds, monotonic; performance.now by default. */
  now?: () => number;
  /** Uniform in [0, 1); Math.random by default. */
  random?: () => number;
  /**
   * How long the oldest probe still away (or asked for and not yet sent) has been, ms (0:
   * none): such a probe is no idleness.
   */
  waiting?: () => number;
}

export interface OverloadStats {
  /** The standing queue: smallest sojourn of the last probes, ms. */
  queueDelayMs: number;
  /** Share of new requests being refused, 0 to 1. */
  refusing: number;
  /** Requests refused with 503 since start. */
  refused: number;
}

export class OverloadGuard {
  private readonly targetMs: number;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly waiting: () => number;
  /** The last probes' sojourns, oldest first. */
  private samples: number[] = [];
  private shed = 0;
  private standing = 0;
  private previous = 0;
  private lastSampleAt = Number.NEGATIVE_INFINITY;
  private refusedCount = 0;

  constructor(options: OverloadGuardOptions = {}) {
    this.targetMs = options.targetMs ?? OVERLOAD_TARGET_MS;
    this.now = options.now ?? (() => performance.now());
    this.random = options.random ?? Math.random;
    this.waiting = options.waiting ?? (() => 0);
  }

  /**
   * A probe reported lost after `awayMs` (dropped by a full socket buffer, or away a second):
   * the share rises by the largest step at once. It is no sample of the standing queue:
   * the probes that do come back from a socket that drops are quick ones.
   */
  lost(awayMs: number): void {
    if (!Number.isFinite(awayMs) || awayMs < 0) return;
    this.lastSampleAt = this.now();
    this.standing = Math.max(this.standing, awayMs);
    this.shed = Math.min(1, this.shed + this.riseCap());
  }

  /** One probe's sojourn, ms. */
  sample(sojournMs: number): void {
    if (!Number.isFinite(sojournMs) || sojournMs < 0) return;
    this.lastSampleAt = this.now();
    const samples = this.samples;
    samples.push(sojournMs);
    if (samples.length > OVERLOAD_PROBES) samples.shift();
    const min = Math.min(...samples);
    this.standing = min;
    const growth = min - this.previous;
    this.previous = min;
    if (samples.length < OVERLOAD_PROBES) return;
    // Refusing all, a draining queue lowers the share by its distance from the target only (so
    // it holds at 1 until the queue is under the target): the growth term would undo at once
    // what the climb to 1 took, queue still long or not.
    const slope = this.shed >= 1 && growth < 0 ? 0 : SHED_BETA * growth;
    const change = (SHED_ALPHA * (min - this.targetMs) + slope) / 1000;
    this.shed = Math.min(
      1,
      Math.max(0, this.shed + Math.min(this.riseCap(), Math.max(-MAX_STEP, change))),
    );
  }

  /** The largest rise at one probe: smaller once a tenth is refused (RFC 8033 §4.2). */
  private riseCap(): number {
    return this.shed >= 0.1 ? MAX_STEP_HIGH : MAX_STEP;
  }

  /** False when this new request is to be refused (counted). */
  admit(): boolean {
    this.forgetIfIdle();
    if (this.shed === 0 || this.random() >= this.shed) return true;
    this.refusedCount++;
    return false;
  }

  /** The current figures (an overload the node has since gone idle from is forgotten first). */
  get stats(): OverloadStats {
    this.forgetIfIdle();
    return { queueDelayMs: this.standing, refusing: this.shed, refused: this.refusedCount };
  }

  /**
   * No probe back for a while, and the oldest one away (if any) went out after the quiet began
   * (a request that just came sent it): the node went idle, its queue with it. A probe away
   * since before the quiet is a stall, not idleness.
   */
  private forgetIfIdle(): void {
    if (this.shed === 0 && this.samples.length === 0) return;
    const quiet = this.now() - this.lastSampleAt;
    if (quiet <= OVERLOAD_STALE_MS || this.waiting() >= quiet - OVERLOAD_STALE_MS) return;
    this.shed = 0;
    this.samples = [];
    this.standing = 0;
    this.previous = 0;
  }
}
