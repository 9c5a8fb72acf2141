// Admission of overlay work (the registrar's writes, the proxy's location lookups): a few
// under way at once, more waiting their turn in arrival order, the rest refused at once. All
// started together, every lookup or write would slow the others down until their DHT
// requests time out and are sent again, and the node would get less done the more it is
// offered; refused, the caller hears 503 with Retry-After instead of silence.

import type { Clock, TimerHandle } from '@peerbx/dht-kademlia';

export interface AdmissionLimits {
  /** Under way at once. */
  maxInFlight: number;
  /** Waiting at once; beyond, refused at once. */
  maxWaiting: number;
  /** Refused once it waited over this long, whether or not a place freed up meanwhile. */
  maxWaitMs: number;
  /** Background work waiting at once; beyond, refused at once (default: no limit). */
  maxBackground?: number;
}

/** Work waiting for its turn: started with true, or given up with false. */
interface Waiter {
  readonly since: number;
  readonly go: (start: boolean) => void;
}

/** The longest timeout Node's timers take (2^31 - 1 ms). */
const MAX_TIMER_MS = 2 ** 31 - 2;

export class Admission {
  /** Refused because too many waited, or their wait was too long. */
  refusals = 0;
  private inFlight = 0;
  /** Work someone waits for, in arrival order. */
  private readonly queue: Waiter[] = [];
  /** Work nobody waits for: started only when `queue` is empty, refused only past maxBackground. */
  private readonly background: Waiter[] = [];
  /** Due when the oldest waiting work will have waited too long. */
  private expiry: TimerHandle | undefined;

  constructor(
    private readonly clock: Clock,
    private readonly limits: AdmissionLimits,
    /** The error a refused caller gets, told how many wait. */
    private readonly refusal: (waiting: number) => Error,
  ) {}

  /** Under way, waiting, and waiting in the background. */
  get pending(): { inFlight: number; waiting: number; background: number } {
    return {
      inFlight: this.inFlight,
      waiting: this.queue.length,
      background: this.background.length,
    };
  }

  /** Runs `work` once fewer than maxInFlight are under way; rejects with the refusal error. */
  async run<T>(work: () => Promise<T>, background = false): Promise<T> {
    if (this.inFlight < this.limits.maxInFlight) {
      this.inFlight++;
    } else {
      if (!background) {
        this.dropExpired();
        if (this.queue.length >= this.limits.maxWaiting) {
          this.refusals++;
          throw this.refusal(this.queue.length);
        }
      } else if (
        this.background.length >= (this.limits.maxBackground ?? Number.POSITIVE_INFINITY)
      ) {
        this.refusals++;
        throw this.refusal(this.background.length);
      }
      // The finishing work hands its place over: inFlight stays as it is.
      const started = await new Promise<boolean>((go) => {
        (background ? this.background : this.queue).push({ since: this.clock.now(), go });
        if (!background) this.watchExpiry();
      });
      if (!started) {
        this.refusals++;
        throw this.refusal(this.queue.length);
      }
    }
    try {
      return await work();
    } finally {
      this.handOver();
    }
  }

  /** A place became free: the next work that is still worth doing gets it. */
  private handOver(): void {
    this.dropExpired();
    const next = this.queue.shift() ?? this.background.shift();
    if (next) next.go(true);
    else this.inFlight--;
    if (this.queue.length === 0 && this.expiry !== undefined) {
      // Nobody waits: no timer holds the process (or a test) open.
      this.clock.clearTimeout(this.expiry);
      this.expiry = undefined;
    }
  }

  /** Work that waited over maxWaitMs is refused (the oldest waits at the head). */
  private dropExpired(): void {
    const now = this.clock.now();
    while (this.queue.length > 0 && now - (this.queue[0] as Waiter).since > this.limits.maxWaitMs) {
      this.queue.shift()?.go(false);
    }
  }

  /**
   * One timer, for the oldest waiting work: it is refused when its wait runs out even if no
   * place frees up meanwhile (work under way can take a DHT timeout or two), then the timer
   * moves on to the next oldest.
   */
  private watchExpiry(): void {
    if (this.expiry !== undefined || !Number.isFinite(this.limits.maxWaitMs)) return;
    const head = this.queue[0];
    if (!head) return;
    // Never past what a timer can hold (Node fires longer ones at once): it re-arms then.
    const due = Math.min(head.since + this.limits.maxWaitMs - this.clock.now(), MAX_TIMER_MS);
    this.expiry = this.clock.setTimeout(() => {
      this.expiry = undefined;
      this.dropExpired();
      this.watchExpiry();
    }, Math.max(0, due) + 1);
  }
}
