// One proxied request's response context (RFC 3261 §16.7): its server transaction, its client
// branches, Timer C, the best final response so far, and the CANCELs owed to other branches.

import type { Clock, TimerHandle } from '@peerbx/dht-kademlia';
import { createResponse } from '../message/response.js';
import { SipRequest, type SipResponse } from '../message/sip-message.js';
import { formatNameAddr, formatUri, formatVia, type Via } from '../message/uri.js';
import { FlowClosedError } from '../transaction/errors.js';
import type {
  ClientTransaction,
  ClientTransactionUser,
  ServerTransaction,
  TransactionLayer,
} from '../transaction/index.js';
import { SipTransportError } from '../transport/errors.js';
import type { SipDestination } from '../transport/transport.js';
import { dialogRequest } from './dialog-request.js';

export interface Branch {
  /** The request as forwarded on this branch. */
  request: SipRequest;
  destination?: SipDestination;
  tx?: ClientTransaction;
  provisional: boolean;
  final?: SipResponse;
  /** A CANCEL is due once a provisional response arrives (§9.1). */
  cancelPending: boolean;
  /** Reason header values its CANCEL carries (RFC 3326), say why it is cancelled. */
  cancelReasons?: readonly string[];
  canceled: boolean;
  /**
   * CANCELed as out of time: its 487 counts as this answer instead (Timer C: 408; the ring
   * timeout: 480).
   */
  timedOut?: { status: number; reason?: string };
  /** Told when this branch ends with a final response (locator invalidation on failure). */
  onFinal?: (status: number) => void;
  /** Sees each 1xx (but 100) and 2xx of this branch before it goes upstream (may change it). */
  onResponse?: (response: SipResponse) => void;
  /** When its request went out, and the timer that gives it up if nothing at all comes back. */
  startedAt?: number;
  silentTimer?: TimerHandle | undefined;
  /**
   * Given up: nothing came back in time (see `silenceMs`), so it ended here with a 480, or a
   * 487 when it was to be cancelled. Its client transaction goes on: a provisional response
   * that comes after all gets the CANCEL (§9.1); a 2xx goes upstream while the caller still
   * waits, and after its final answer is ACKed and ended with a BYE here (endUnwanted).
   */
  abandoned?: boolean;
  /** What its client transaction reports to (set by `start`). */
  user?: BranchUser;
  /** Set once a 2xx of this INVITE branch had nowhere to go upstream (see endUnwanted). */
  dialogEnd?: DialogEnd;
}

/** A branch's transaction user, re-pointed when the context is done (see release). */
export interface BranchUser extends ClientTransactionUser {
  route: (response: SipResponse) => void;
  failed: (error: unknown) => void;
}

export interface ResponseContextOptions {
  server: ServerTransaction;
  transactions: TransactionLayer;
  clock: Clock;
  timerCMs: number;
  /**
   * An INVITE still without a final answer this long after it was forwarded is CANCELed on
   * every branch and answered 480 (a local policy, as a PBX's ring time; off by default).
   */
  ringTimeoutMs?: number;
  /**
   * How long an INVITE branch may stay without any response, not even a 100, before it is
   * given up (default SILENT_BRANCH_T1 x T1), and how long once it is to be cancelled (default
   * SILENT_CANCELLED_T1 x T1).
   */
  silenceMs?: { waiting: number; cancelled: number };
  /** Called once the context has sent its final response (or the last 2xx went through). */
  done: (ctx: ResponseContext) => void;
  /** The connection the request came over (a phone's TCP/WS flow, another node's channel). */
  upstream?: string;
  /** The loop hash of the request as it arrived (loopHash), for the branch of each Via added. */
  loopHash?: string;
}

/**
 * §16.7 step 3: our own Via goes and the response continues to the next one. The rest must be
 * the Vias the request came with; they are restored from it, so a UAS that echoes only the Via
 * of a CANCEL (or mangles the list) still answers the right way.
 */
function restoreVias(response: SipResponse, vias: readonly string[]): void {
  response.headers.delete('via');
  for (const v of vias) response.headers.append('Via', v);
}

/** §9.1: CANCEL with the INVITE's Request-URI, top Via, Route set, From, To, Call-ID, CSeq number. */
function cancelFor(req: SipRequest, reasons: readonly string[] = []): SipRequest {
  const cancel = new SipRequest({ method: 'CANCEL', uri: req.uri });
  const h = cancel.headers;
  const via = req.topVia;
  if (via) h.append('Via', formatVia(via));
  h.append('Max-Forwards', '70');
  for (const route of req.headers.getAll('route')) h.append('Route', route);
  h.append('From', req.headers.get('from') ?? '');
  h.append('To', req.headers.get('to') ?? '');
  h.append('Call-ID', req.callId);
  h.append('CSeq', `${req.cseq.seq} CANCEL`);
  for (const reason of reasons) h.append('Reason', reason);
  return cancel;
}

function sendCancelRequest(
  transactions: TransactionLayer,
  cancel: SipRequest,
  destination: SipDestination,
): void {
  try {
    transactions.sendRequest(cancel, destination, { receiveResponse: () => undefined });
  } catch {
    // A CANCEL already running for this branch: nothing more to do.
  }
}

/**
 * What a branch's 2xx needs for an ACK and BYE of the proxy's own when nobody upstream can take
 * it (see endUnwanted): small, so that a context done keeps it instead of the request.
 */
interface DialogEnd {
  destination: SipDestination;
  /** Our Via on the forwarded INVITE: the ACK and BYE go under it with new branches. */
  via: Via;
  /** Record-Route entries the INVITE went on with: ours and those of the hops before us. */
  recordRoutes: number;
  /** A re-INVITE's Route set as it went on (ours taken off): the dialog's route onward. */
  routes: readonly string[] | undefined;
  /** A BYE has gone: the 2xx's retransmissions get their ACK only. */
  byeSent: boolean;
}

function dialogEndOf(branch: Branch): DialogEnd | undefined {
  const via = branch.request.topVia;
  if (!branch.destination || !via || branch.request.method !== 'INVITE') return undefined;
  const inDialog = branch.request.toTag !== undefined;
  return {
    destination: branch.destination,
    via,
    recordRoutes: inDialog ? 0 : branch.request.headers.getAll('record-route').length,
    routes: inDialog ? branch.request.headers.getAll('route') : undefined,
    byeSent: false,
  };
}

/**
 * A 2xx to an INVITE whose caller can no longer be given it (its final answer went out first:
 * the node is stopping, or the branch had been given up): the proxy ACKs it and ends the call
 * with a BYE, as a UAC does with a 2xx it does not want (§13.2.2.4), so the callee's phone is
 * not left in a call nobody is on until it gives up waiting for its ACK (64 x T1). Both go to
 * the callee's Contact along the route set downstream of us (§12.1.2: the Record-Routes the
 * hops after us added, reversed), or a re-INVITE's Route set.
 */
function endUnwanted(response: SipResponse, end: DialogEnd, transactions: TransactionLayer): void {
  let target: string | undefined;
  let routes: readonly string[];
  try {
    const contacts = response.contacts;
    const contact = contacts === '*' ? undefined : contacts[0];
    target = contact && formatUri(contact.uri);
    if (end.routes) routes = end.routes;
    else {
      const rr = response.recordRoutes;
      routes = rr
        .slice(0, Math.max(0, rr.length - end.recordRoutes))
        .reverse()
        .map(formatNameAddr);
    }
  } catch {
    return; // a Contact or Record-Route that does not parse: nowhere to send them
  }
  if (!target) return;
  const toDialog = (method: 'ACK' | 'BYE', seq: number) =>
    dialogRequest({
      method,
      target,
      via: end.via,
      routes,
      from: response.headers.get('from') ?? '',
      to: response.headers.get('to') ?? '',
      callId: response.callId,
      cseq: seq,
      ...(method === 'BYE' ? { reason: 'SIP;text="The caller was already answered"' } : {}),
    });
  const seq = response.cseq.seq;
  try {
    transactions.sendStateless(toDialog('ACK', seq), end.destination);
    if (end.byeSent) return;
    end.byeSent = true;
    transactions.sendRequest(toDialog('BYE', seq + 1), end.destination, {
      receiveResponse: () => undefined,
    });
  } catch {
    // The flow to the callee is gone: its phone ends the call when no ACK comes.
  }
}

/**
 * The route of a branch given up once its context is done: its CANCEL when it rings after
 * all, a 2xx upstream. Outside the class, so that it holds the CANCEL and not the context.
 */
function cancelWhenRinging(
  cancel: SipRequest,
  destination: SipDestination,
  transactions: TransactionLayer,
  forwardLate: (response: SipResponse) => void,
): (response: SipResponse) => void {
  let sent = false;
  return (response) => {
    if (response.status >= 200) forwardLate(response);
    else if (!sent) {
      sent = true;
      sendCancelRequest(transactions, cancel, destination);
    }
  };
}

/**
 * A branch's transaction user. A class, not an object literal of closures: closures made in
 * one scope share its context, so a literal's methods would keep the branch (its request and
 * final response) alive for as long as the client transaction lives, 32 s after a 2xx.
 */
class BranchSink implements BranchUser {
  constructor(
    public route: (response: SipResponse) => void,
    public failed: (error: unknown) => void,
  ) {}

  receiveResponse(response: SipResponse): void {
    this.route(response);
  }

  transportError(error: unknown): void {
    this.failed(error);
  }
}

/** §16.7 step 6: the 4xx a proxy prefers, as the caller can act on them (credentials, ...). */
const PREFERRED_4XX = new Set([401, 407, 415, 420, 484]);

/**
 * The answers this proxy made for its branches (a silent phone, a transport error, Timer C, a
 * node it could not reach), not a phone's own (§16.7 step 6 leaves the choice within a class).
 */
const MADE_HERE = new WeakSet<SipResponse>();

/** A branch's final answer made here (MADE_HERE). */
function madeHere(request: SipRequest, status: number, reason?: string): SipResponse {
  const response = createResponse(request, status, reason === undefined ? {} : { reason });
  MADE_HERE.add(response);
  return response;
}

/**
 * Lower is better: 6xx, then the lowest class; within it the 4xx the caller can act on, then
 * the phones' own answers before the ones made here (a desk phone's 486 Busy Here, not the
 * 480 of a laptop asleep given up before it).
 */
function rank(response: SipResponse): number {
  const status = response.status;
  if (status >= 600) return 0;
  const made = MADE_HERE.has(response) ? 0.25 : 0;
  return Math.floor(status / 100) - (PREFERRED_4XX.has(status) ? 0.5 : 0) + made;
}

const CHALLENGE_HEADERS = ['WWW-Authenticate', 'Proxy-Authenticate'] as const;

/**
 * A live phone or node answers an INVITE within 200 ms (a 100 Trying at least, §17.2.1), and
 * over UDP again to each retransmission (at 0.5, 1.5, 3.5 and 7.5 s with T1 = 500 ms). A branch that
 * has got nothing back after 16 x T1 (8 s) is a phone that went away without unregistering (a
 * laptop asleep, a phone out of coverage): it is given up rather than let the caller wait for
 * its Timer B (64 x T1, 32 s) when the other branches have ended. One to be cancelled (the
 * caller hung up, another phone answered or declined) is given up after 2 x T1 (1 s).
 */
export const SILENT_BRANCH_T1 = 16;
export const SILENT_CANCELLED_T1 = 2;
const SILENT_REASON = 'Temporarily Unavailable (no response from the callee)';

export class ResponseContext {
  readonly server: ServerTransaction;
  /** See ResponseContextOptions.loopHash. */
  readonly loopHash: string | undefined;
  readonly branches: Branch[] = [];
  /** Branches still being set up (overlay connect in progress). */
  private opening = 0;
  /** True once every branch there will be has been added. */
  private sealed = false;
  private best: SipResponse | undefined;
  /** The 401 and 407 answers so far: a challenge passed up carries all of theirs (§16.7). */
  private readonly challenged: SipResponse[] = [];
  finalSent = false;
  canceled = false;
  /**
   * True once the context is done (its answer out and every branch ended) or disposed (the
   * proxy closing, or answering itself): no branch may start.
   */
  closed = false;
  /** The answer once the callee is known registered nowhere (registeredNowhere). */
  private nowhere: { status: 404 | 480; reason: string } | undefined;
  /** Set while branches may still be added after `seal` (see `holdOpen`). */
  private hold: { wake: () => void; woken: boolean; timer: TimerHandle | undefined } | undefined;
  private timerC: TimerHandle | undefined;
  /** Timer C or the ring timeout fired: the branches still open were CANCELed (timeUp). */
  private outOfTime = false;
  private ringTimer: TimerHandle | undefined;

  /**
   * The request being proxied, kept here until the context is done: the server transaction
   * lets go of it once its final response is out.
   */
  private proxied: SipRequest | undefined;
  /** Its Vias, which every response forwarded upstream gets back (late 2xx ones too). */
  private readonly vias: readonly string[];
  private readonly isInvite: boolean;
  private readonly silence: { waiting: number; cancelled: number };

  constructor(private readonly options: ResponseContextOptions) {
    this.server = options.server;
    this.loopHash = options.loopHash;
    this.proxied = options.server.request;
    this.vias = this.proxied.headers.getAll('via');
    this.isInvite = this.proxied.method === 'INVITE';
    const T1 = options.transactions.timers.T1;
    this.silence = options.silenceMs ?? {
      waiting: SILENT_BRANCH_T1 * T1,
      cancelled: SILENT_CANCELLED_T1 * T1,
    };
    if (this.isInvite) {
      this.restartTimerC();
      const ring = options.ringTimeoutMs;
      if (ring !== undefined)
        this.ringTimer = options.clock.setTimeout(() => {
          this.ringTimer = undefined;
          if (this.finalSent) return;
          const reason = `Temporarily Unavailable (no answer within ${Math.round(ring / 1000)} s)`;
          this.timeUp({ status: 480, reason });
        }, ring);
    }
  }

  /** The request being proxied (until the context is done). */
  get request(): SipRequest {
    if (!this.proxied) throw new Error('response context is done: the request is gone');
    return this.proxied;
  }

  /** True once a branch declined with a 6xx: no other branch may be tried (§16.7 step 10). */
  get declined(): boolean {
    return this.best !== undefined && this.best.status >= 600;
  }

  /** Announces a branch whose destination is still being found. */
  opened(): void {
    this.opening++;
  }

  /** Starts a client transaction on a branch (none once the context is closed). */
  start(branch: Branch, destination: SipDestination): void {
    if (this.closed) return;
    branch.destination = destination;
    this.branches.push(branch);
    if (this.opening > 0) this.opening--;
    const user = new BranchSink(
      (response) => this.receive(branch, response),
      (error) =>
        this.receive(
          branch,
          // The callee's phone or node went away while the request waited there, or a phone
          // whose connection closed takes no new one: nobody is there to answer (§16.9 would
          // have a 503, which the caller hears as a 500).
          error instanceof FlowClosedError
            ? madeHere(
                branch.request,
                480,
                'Temporarily Unavailable (the connection to the callee closed)',
              )
            : error instanceof SipTransportError && error.code === 'ERR_UNREACHABLE'
              ? madeHere(
                  branch.request,
                  480,
                  'Temporarily Unavailable (the callee takes no connection)',
                )
              : madeHere(branch.request, 503, 'Transport Error'),
        ),
    );
    branch.user = user;
    try {
      branch.tx = this.options.transactions.sendRequest(branch.request, destination, user);
    } catch {
      this.receive(branch, madeHere(branch.request, 503, 'Transport Error'));
      return;
    }
    if (branch.request.method === 'INVITE' && branch.final === undefined) {
      branch.startedAt = this.options.clock.now();
      this.armSilence(branch, this.silence.waiting);
    }
  }

  /** A branch that failed before it could be sent: its response is synthesized here. */
  fail(branch: Branch, status: number, reason?: string): void {
    if (this.closed) return;
    this.branches.push(branch);
    if (this.opening > 0) this.opening--;
    this.receive(branch, madeHere(branch.request, status, reason));
  }

  /** No more branches will be added; answers at once when all of them are already done. */
  seal(): void {
    this.sealed = true;
    this.maybeFinish();
  }

  /**
   * True once no branch may be added: the final response is out (or a 2xx went through), the
   * request was cancelled, a branch declined with a 6xx, or the context is closed.
   */
  get decided(): boolean {
    return this.finalSent || this.canceled || this.declined || this.closed || this.outOfTime;
  }

  /**
   * True once a branch decided on may no longer start: `decided` for an INVITE; for other
   * requests only once cancelled, declined (a 6xx, §16.7 step 10) or closed, since a MESSAGE
   * another device took first still goes to every device it was forked to (its answer is not
   * passed on).
   */
  get shut(): boolean {
    return this.isInvite ? this.decided : this.canceled || this.declined || this.closed;
  }

  /**
   * Keeps the context from answering, sealed or not, while the proxy may still add branches
   * (the callee's location asked again). `wake` is told once: after `wakeAfterMs` if given, or
   * sooner when every branch so far has ended (the answer would be due now). The proxy adds
   * what branches it will and calls `unhold`. Once the outcome is decided the hold ends by
   * itself; the proxy must check `decided` before it adds a branch.
   */
  holdOpen(wake: () => void, wakeAfterMs?: number): void {
    if (this.hold || this.decided) return;
    const hold = { wake, woken: false, timer: undefined as TimerHandle | undefined };
    this.hold = hold;
    if (wakeAfterMs !== undefined) {
      // dropHold and wake clear it: it fires only for the hold still in place.
      hold.timer = this.options.clock.setTimeout(() => this.wake(hold), wakeAfterMs);
    }
  }

  /**
   * The callee turned out to be registered nowhere (a recheck of a cached location found
   * none): a 480 the branches answered (a device gone from the node the cache named) goes to
   * the caller as this answer instead (404, or 480 saying why for a user the overlay knows).
   */
  registeredNowhere(status: 404 | 480, reason: string): void {
    this.nowhere = { status, reason };
  }

  /** Ends a hold: the context answers once its branches have. */
  unhold(): void {
    if (!this.hold) return;
    this.dropHold();
    this.maybeFinish();
  }

  /** CANCEL from upstream (§16.10), its Reason headers passed on (RFC 3326). */
  cancelAll(reasons: readonly string[] = []): void {
    this.canceled = true;
    for (const b of this.branches) this.cancelBranch(b, reasons);
    this.maybeFinish();
  }

  /** The connection the request came over, if any (ResponseContextOptions.upstream). */
  get upstream(): string | undefined {
    return this.options.upstream;
  }

  /**
   * The node is closing: ringing branches are cancelled, and the caller gets `status` now
   * instead of an answer that would never come.
   */
  abort(status: number, reason: string): void {
    if (this.closed) return;
    this.canceled = true;
    for (const b of this.branches) this.cancelBranch(b, []);
    if (!this.finalSent) {
      this.finalSent = true;
      this.server.respond(createResponse(this.request, status, { reason }));
    }
    this.dispose();
  }

  /** Stops the context's timers and its hold, and closes it (the proxy closing, or done). */
  dispose(): void {
    this.closed = true;
    if (this.timerC) this.options.clock.clearTimeout(this.timerC);
    this.timerC = undefined;
    if (this.ringTimer) this.options.clock.clearTimeout(this.ringTimer);
    this.ringTimer = undefined;
    this.dropHold();
    for (const b of this.branches) this.disarmSilence(b);
  }

  /** Gives `branch` up once it has been silent for `ms` since its request went out. */
  private armSilence(branch: Branch, ms: number): void {
    const clock = this.options.clock;
    this.disarmSilence(branch);
    const left = Math.max(0, (branch.startedAt ?? clock.now()) + ms - clock.now());
    branch.silentTimer = clock.setTimeout(() => {
      branch.silentTimer = undefined;
      if (branch.provisional || branch.final !== undefined || this.closed) return;
      const status = branch.cancelPending ? 487 : 480;
      branch.abandoned = true;
      this.receive(
        branch,
        madeHere(branch.request, status, status === 480 ? SILENT_REASON : undefined),
      );
    }, left);
  }

  /**
   * Every branch that has answered has ended without a 2xx (busy, rejected): one that has sent
   * nothing at all, not even a 100 Trying, is a phone gone, given up SILENT_CANCELLED_T1 x T1
   * after its request went out rather than SILENT_BRANCH_T1 x T1, so that the caller hears the
   * others' refusal within a second, not up to 8 s after it.
   */
  private hurrySilent(): void {
    if (this.branches.some((b) => b.final === undefined && b.provisional)) return;
    for (const b of this.branches) {
      if (b.final === undefined && b.silentTimer !== undefined) {
        this.armSilence(b, this.silence.cancelled);
      }
    }
  }

  private disarmSilence(branch: Branch): void {
    if (branch.silentTimer === undefined) return;
    this.options.clock.clearTimeout(branch.silentTimer);
    branch.silentTimer = undefined;
  }

  private dropHold(): void {
    const timer = this.hold?.timer;
    if (timer) this.options.clock.clearTimeout(timer);
    this.hold = undefined;
  }

  private wake(hold: NonNullable<ResponseContext['hold']>): void {
    if (hold.woken) return;
    hold.woken = true;
    if (hold.timer) this.options.clock.clearTimeout(hold.timer);
    hold.timer = undefined;
    hold.wake(); // it calls unhold, now or later
  }

  private receive(branch: Branch, answer: SipResponse): void {
    this.disarmSilence(branch);
    if (branch.abandoned && branch.final !== undefined) {
      // Given up, and answering after all: ringing is cancelled, a 2xx is a 2xx (below).
      if (answer.status < 200) this.sendCancel(branch);
      if (answer.status < 200 || answer.status >= 300) return;
    }
    const response =
      branch.timedOut && answer.status === 487
        ? timeUpResponse(branch.request, branch.timedOut)
        : answer;
    restoreVias(response, this.vias);
    const status = response.status;
    if (status > 100 && status < 300 && branch.onResponse) {
      try {
        branch.onResponse(response);
      } catch {
        // A header the hook reads that does not parse (a Record-Route, say): what it would
        // have learnt is lost, not the response (a 200 that never reached the caller left the
        // call ringing and its context held for good, review).
      }
    }
    if (status < 200) {
      branch.provisional = true;
      // §16.7 step 2: 101 to 199 restart Timer C; a 100 only says the next hop has the request.
      if (this.isInvite && status > 100) this.restartTimerC();
      if (branch.cancelPending) this.sendCancel(branch);
      // No ringing once the call is decided (declined, cancelled, out of time): a phone whose
      // 180 crossed its CANCEL would have the caller's phone ring after a 603 (review).
      if (status > 100 && !this.decided) this.server.respond(response);
      return;
    }
    if (status < 300) {
      const first = branch.final === undefined;
      branch.final ??= response;
      // §16.7 step 5: every 2xx to an INVITE is forwarded, also after another branch's; one
      // the caller cannot take any more (answered already) is ended here.
      if ((!this.finalSent || this.isInvite) && !this.server.respond(response) && this.isInvite) {
        branch.dialogEnd ??= dialogEndOf(branch);
        if (branch.dialogEnd) endUnwanted(response, branch.dialogEnd, this.options.transactions);
      }
      if (!this.finalSent) {
        this.finalSent = true;
        // RFC 3326: the other phones show no missed call.
        const elsewhere = [`SIP;cause=${status};text="Call completed elsewhere"`];
        for (const b of this.branches) if (b !== branch) this.cancelBranch(b, elsewhere);
      }
      if (first) branch.onFinal?.(status);
      this.maybeFinish();
      return;
    }
    if (branch.final !== undefined) return;
    branch.final = response;
    branch.onFinal?.(status);
    if (!this.best || rank(response) < rank(this.best)) this.best = response;
    if (status === 401 || status === 407) this.challenged.push(response);
    if (status >= 600 && !this.finalSent) {
      const phrase = response.reason.replace(/["\\]/g, '');
      const declined = [`SIP;cause=${status};text="${phrase}"`];
      for (const b of this.branches) if (b !== branch) this.cancelBranch(b, declined);
    }
    this.hurrySilent();
    this.maybeFinish();
  }

  private maybeFinish(): void {
    const hold = this.hold;
    if (hold) {
      if (!this.decided) {
        // Every branch so far has ended: the answer is due, unless the proxy finds more.
        if (this.opening === 0 && this.branches.every((b) => b.final !== undefined)) {
          this.wake(hold);
        }
        return;
      }
      // Decided: no branch can be added any more, so there is nothing to hold open for.
      this.dropHold();
    }
    if (this.closed || !this.sealed || this.opening > 0) return;
    if (this.branches.some((b) => b.final === undefined)) return;
    this.dispose(); // closed from here on
    if (!this.finalSent) {
      this.finalSent = true;
      const final = this.chooseFinal();
      // RFC 4320 §4.2: no 408 to a non-INVITE request; its sender times out by itself.
      if (final.status === 408 && this.server.kind === 'non-invite-server') this.server.abandon();
      else this.server.respond(final);
    }
    this.options.done(this);
    this.release();
  }

  /**
   * Done: an INVITE's client transactions stay Accepted for 32 s to pass 2xx retransmissions
   * up, and that is all they still need of the context: the server transaction and the Vias.
   * Everything else (requests, responses, branches) is let go, so a call's aftermath holds
   * bytes, not messages.
   */
  private release(): void {
    const server = this.server;
    const vias = this.vias;
    const transactions = this.options.transactions;
    const lateFor = (end: DialogEnd | undefined) => (response: SipResponse) => {
      if (response.status < 200 || response.status >= 300) return;
      restoreVias(response, vias);
      if (!server.respond(response) && end) endUnwanted(response, end, transactions);
    };
    for (const b of this.branches) {
      if (b.user) {
        const forwardLate = lateFor(b.dialogEnd ?? dialogEndOf(b));
        // A branch given up that rings after all is still owed its CANCEL.
        b.user.route =
          b.abandoned && !b.canceled && b.destination
            ? cancelWhenRinging(
                cancelFor(b.request, b.cancelReasons),
                b.destination,
                this.options.transactions,
                forwardLate,
              )
            : forwardLate;
        b.user.failed = () => undefined;
      }
    }
    this.branches.length = 0;
    this.best = undefined;
    this.challenged.length = 0;
    this.proxied = undefined;
  }

  private chooseFinal(): SipResponse {
    const best = this.best;
    if (!best) return createResponse(this.request, this.canceled ? 487 : 480);
    // Not when a phone rang first: its 480 (do not disturb, no answer) is its own.
    if (
      best.status === 480 &&
      this.nowhere !== undefined &&
      !this.branches.some((b) => b.provisional)
    ) {
      return createResponse(this.request, this.nowhere.status, { reason: this.nowhere.reason });
    }
    // §16.7 step 6: a 503 from downstream becomes 500 (the service is not unavailable here),
    // keeping its Retry-After (§21.5.1 allows one on a 500): a callee's node that refused the
    // call while overloaded still tells the caller when to try again.
    if (best.status === 503) {
      const retryAfter = best.headers.get('retry-after');
      return createResponse(this.request, 500, {
        reason: `Server Internal Error (${best.status} ${best.reason} downstream)`,
        ...(retryAfter ? { headers: [{ name: 'Retry-After', value: retryAfter }] } : {}),
      });
    }
    // §16.7 step 7: a 401 or 407 passed up carries the challenges of every other 401 and 407
    // (a device of each realm), so that the caller can answer them all at once.
    if (best.status === 401 || best.status === 407) {
      for (const other of this.challenged) {
        if (other === best) continue;
        for (const name of CHALLENGE_HEADERS) {
          for (const value of other.headers.getAll(name)) best.headers.append(name, value);
        }
      }
    }
    return best;
  }

  private cancelBranch(branch: Branch, reasons: readonly string[] = []): void {
    if (branch.final !== undefined || branch.canceled || !branch.tx) return;
    if (branch.request.method !== 'INVITE') return;
    if (reasons.length > 0) branch.cancelReasons ??= reasons;
    if (!branch.provisional) {
      branch.cancelPending = true;
      if (branch.silentTimer !== undefined) this.armSilence(branch, this.silence.cancelled);
      return;
    }
    this.sendCancel(branch);
  }

  /** §9.1: CANCEL with the INVITE's Request-URI, top Via, Route set, From, To, Call-ID, CSeq number. */
  private sendCancel(branch: Branch): void {
    if (branch.canceled || !branch.destination) return;
    if (branch.final !== undefined && !branch.abandoned) return;
    branch.canceled = true;
    branch.cancelPending = false;
    sendCancelRequest(
      this.options.transactions,
      cancelFor(branch.request, branch.cancelReasons),
      branch.destination,
    );
    this.giveUpAfterCancel(branch);
  }

  /**
   * §9.1: a branch that sends no final response within 64*T1 of its CANCEL is given up. Its
   * client transaction, in Proceeding (a state with no timer), is ended, also when the context
   * is done already, else a phone that died after its 180 would hold it for good; and the
   * branch ends with a 487 (a 408 when Timer C cancelled it: see receive).
   */
  private giveUpAfterCancel(branch: Branch): void {
    const tx = branch.tx;
    if (!tx) return;
    this.options.clock.setTimeout(() => {
      if (tx.state !== 'Calling' && tx.state !== 'Proceeding') return;
      tx.dispose();
      if (branch.final === undefined && !this.closed) {
        this.receive(branch, madeHere(branch.request, 487));
      }
    }, this.options.transactions.timers.B);
  }

  /** §16.6 step 11 / §16.7 step 2: Timer C, restarted by every provisional response. */
  private restartTimerC(): void {
    if (this.outOfTime) return; // the branches left are CANCELed and are not kept longer
    const clock = this.options.clock;
    if (this.timerC) clock.clearTimeout(this.timerC);
    this.timerC = clock.setTimeout(() => {
      this.timerC = undefined;
      this.timeUp({ status: 408 });
    }, this.options.timerCMs);
  }

  /**
   * §16.8: a branch with no provisional response ends as if it got a 408; one that rang is
   * CANCELed, and its own final response decides (a 487, or a 2xx that crossed the CANCEL and
   * must reach the caller, RFC 6026), or a 408 when none came within 64*T1 (§9.1,
   * giveUpAfterCancel). The ring timeout ends a call the same way, with 480 for 408.
   */
  private timeUp(answer: { status: number; reason?: string }): void {
    if (this.outOfTime || this.closed) return;
    this.outOfTime = true;
    // No branch comes late now: the call ends with what its branches have.
    this.dropHold();
    for (const b of this.branches) {
      if (b.final !== undefined) continue;
      if (b.provisional) {
        b.timedOut = answer;
        this.sendCancel(b);
      } else {
        // Given up: should its phone ring after all, it is CANCELed then (receive, release).
        b.abandoned = true;
        this.receive(b, timeUpResponse(b.request, answer));
      }
    }
    // Whatever was held open or still opening, the answer is due once the branches have one.
    this.sealed = true;
    this.opening = 0;
    this.maybeFinish();
  }
}

/** The answer a branch ended by Timer C or the ring timeout counts as. */
function timeUpResponse(request: SipRequest, answer: { status: number; reason?: string }) {
  return madeHere(request, answer.status, answer.reason);
}
