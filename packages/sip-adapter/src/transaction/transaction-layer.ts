// The RFC 3261 §17 transaction layer: matches incoming messages to transactions (§17.1.3,
// §17.2.3), creates them, hands new requests and stray messages to the TU, and sends through
// an abstract function so it runs over sockets, overlay channels or a test recorder alike.

import { type Clock, systemClock, type TimerHandle } from '@peerbx/dht-kademlia';
import { generateTag, isRfc3261Branch } from '../message/ids.js';
import type { Params } from '../message/lexer.js';
import { createResponse } from '../message/response.js';
import type { SipMessage, SipRequest, SipResponse } from '../message/sip-message.js';
import { serialize } from '../message/sip-message.js';
import type { SipDestination, SipTransportAddress } from '../transport/transport.js';
import { FlowClosedError, SipTransactionError } from './errors.js';
import { InviteClientTransaction } from './invite-client-transaction.js';
import { InviteServerTransaction } from './invite-server-transaction.js';
import { cancelTargetKey, clientTransactionKey, serverTransactionKey } from './matching.js';
import { NonInviteClientTransaction } from './non-invite-client-transaction.js';
import { NonInviteServerTransaction } from './non-invite-server-transaction.js';
import { resolveTimers, type TimerOptions, type TransactionTimers } from './timers.js';
import type {
  ClientTransactionUser,
  Transaction,
  TransactionChannel,
  TransactionKind,
  TransactionObserver,
  TransactionOptions,
} from './transaction.js';
import { detached } from './transaction.js';

export type ClientTransaction = InviteClientTransaction | NonInviteClientTransaction;

/** A non-INVITE server transaction's Completed state, held by the layer (CompletedHandOver). */
interface CompletedEntry {
  readonly key: string;
  /** Undefined for a transaction ended without a response (abandoned, RFC 4320). */
  readonly response: Uint8Array | undefined;
  readonly destination: SipDestination;
  readonly expiresAt: number;
  /** The transaction object while its TU still holds it, to be told of Timer J. */
  readonly tx: WeakRef<NonInviteServerTransaction>;
}
export type ServerTransaction = InviteServerTransaction | NonInviteServerTransaction;

/**
 * Puts bytes on the wire. `reliable` says whether the transport retransmits by itself. A
 * throw or a rejected promise (SipSocketTransports.send returns one) is a transport error
 * for the transaction that sent them; any other result is ignored.
 */
export type TransactionSend = (
  data: Uint8Array,
  destination: SipDestination,
  reliable: boolean,
) => unknown;

/** The transaction user as the layer sees it: the proxy, registrar or a UA core. */
export interface TransactionUser {
  /** A request that created a server transaction; answer through `transaction.respond`. */
  receiveRequest(
    request: SipRequest,
    transaction: ServerTransaction,
    source: SipTransportAddress,
  ): void;
  /**
   * An ACK no transaction absorbed: the ACK for a 2xx, which is end to end (§17.1.1.3; a
   * proxy forwards it statelessly), or one reaching an Accepted INVITE server transaction
   * (RFC 6026 §8.7), which is then given.
   */
  receiveAck(
    ack: SipRequest,
    source: SipTransportAddress,
    transaction?: InviteServerTransaction,
  ): void;
  /** A response no client transaction matched (a 2xx retransmission after Timer M, ...). */
  receiveStrayResponse(response: SipResponse, source: SipTransportAddress): void;
  /** Timer H: the ACK for a non-2xx final response never came. */
  ackTimeout?(transaction: InviteServerTransaction): void;
  /** A server transaction's response could not be sent (§17.2.4). */
  transportError?(error: unknown, transaction: ServerTransaction): void;
}

export interface TransactionLayerOptions {
  send: TransactionSend;
  user: TransactionUser;
  clock?: Clock;
  timers?: TimerOptions;
  /** Where a server transaction's responses go; default `defaultResponseDestination`. */
  responseDestination?: (request: SipRequest, source: SipTransportAddress) => SipDestination;
  /** Server transactions kept at most; default MAX_SERVER_TRANSACTIONS. */
  maxServerTransactions?: number;
  /** Completed non-INVITE responses kept at most; default MAX_COMPLETED. */
  maxCompleted?: number;
}

/**
 * Server transactions kept at most, not counting answered INVITEs (Accepted) nor non-INVITE
 * ones reduced to their Completed response: those under way, and INVITEs refused and waiting
 * for their ACK. Beyond, a new call or message is refused statelessly (503, Retry-After): a
 * flood of INVITEs nobody ACKs would otherwise keep each for 32 s (Timer H), and the node's
 * memory would grow with the flood's rate. Requests of calls under way (To tag), REGISTERs
 * and OPTIONS go on up to 1.5 times as many (a forged To tag gets no further); CANCEL always.
 * Calls answered within a second at 1,000/s keep about a thousand.
 */
export const MAX_SERVER_TRANSACTIONS = 20_000;
/** Retry-After of the stateless 503 when MAX_SERVER_TRANSACTIONS are kept, s. */
export const FULL_RETRY_AFTER_S = 5;
/**
 * Non-INVITE requests over UDP answered in the last 32 s (Timer J) kept at most, their
 * responses held to answer retransmissions: 16 s at 12,500 requests/s. Beyond, the oldest
 * go first, and a late retransmission of one is handled as a new request.
 */
export const MAX_COMPLETED = 200_000;
/** Stateless 503s whose ACK is absorbed (those to requests that had a To tag), at most. */
const MAX_REFUSED_REMEMBERED = 10_000;

export interface SendRequestOptions {
  /** Default: true for a flow or a TCP/WS address, false for UDP. */
  reliable?: boolean;
}

export interface TransactionStats {
  /** Transactions created, by kind. */
  created: Record<TransactionKind, number>;
  /** Entries into each state, by kind (the initial state included). */
  states: Record<TransactionKind, Record<string, number>>;
  /** Transactions alive now. */
  active: { client: number; server: number };
  retransmissions: {
    /** Messages we sent again: Timers A, E, G, resent responses and ACKs. */
    sent: number;
    /** Incoming retransmissions a transaction absorbed. */
    absorbed: number;
  };
  /** Timer B and F (no final response), Timer H (no ACK). */
  timeouts: { B: number; F: number; H: number };
  /** Responses that matched no client transaction, passed to the TU. */
  strayResponses: number;
  /** ACKs that matched no INVITE server transaction (ACKs for 2xx), passed to the TU. */
  strayAcks: number;
  transportErrors: number;
  /** New requests refused statelessly (503) while MAX_SERVER_TRANSACTIONS were kept. */
  refusedFull: number;
}

const KINDS: readonly TransactionKind[] = [
  'invite-client',
  'non-invite-client',
  'invite-server',
  'non-invite-server',
];

/**
 * RFC 3261 §18.2.2 with RFC 3581: a flow's responses go back on the flow; over UDP to the
 * source address, and to the source port when the Via asked for rport, else to the sent-by
 * port (default 5060).
 */
export function defaultResponseDestination(
  request: SipRequest,
  source: SipTransportAddress,
): SipDestination {
  if (source.connectionId !== undefined) return { connectionId: source.connectionId };
  const via = request.topVia;
  const port = via === undefined || via.rport !== undefined ? source.port : (via.port ?? 5060);
  return { transport: source.transport, address: source.address, port };
}

/**
 * RFC 3261 §18.2.1 and RFC 3581 §4: a request's top Via gets `received` (the packet's source
 * address) when its sent-by host differs from it (a phone behind NAT, a browser's `.invalid`
 * host) or when it asked for rport, and `rport` the source port when it asked for it. Its
 * responses carry the Via back, and tell the phone the address it is seen at. A Via already
 * right costs nothing (most phones on the node's own network).
 */
export function stampTopVia(request: SipRequest, source: SipTransportAddress): void {
  const via = request.topVia;
  if (!via) return;
  const host = via.host.startsWith('[') ? via.host.slice(1, -1) : via.host;
  const askedRport = via.rport === null;
  if (!askedRport && host.toLowerCase() === source.address) return;
  const params: Params = { ...via.params, received: source.address };
  if (askedRport) params.rport = String(source.port);
  request.replaceTopVia({
    ...via,
    params,
    received: source.address,
    rport: askedRport ? source.port : via.rport,
  });
}

function isReliableDestination(destination: SipDestination): boolean {
  return 'connectionId' in destination || destination.transport !== 'udp';
}

export class TransactionLayer {
  readonly timers: TransactionTimers;
  private readonly sendBytes: TransactionSend;
  private readonly user: TransactionUser;
  private readonly responseDestination: (
    request: SipRequest,
    source: SipTransportAddress,
  ) => SipDestination;
  private readonly transactionOptions: TransactionOptions;
  private readonly clock: Clock;
  private readonly clients = new Map<string, ClientTransaction>();
  private readonly servers = new Map<string, ServerTransaction>();
  /**
   * Non-INVITE server transactions in Completed over UDP, reduced to what the state needs:
   * the response to resend and when Timer J ends it. In expiry order (Timer J is one value).
   */
  private readonly completed = new Map<string, CompletedEntry>();
  private completedQueue: CompletedEntry[] = [];
  private completedHead = 0;
  private completedTimer: TimerHandle | undefined;
  private readonly counters = {
    created: Object.fromEntries(KINDS.map((k) => [k, 0])) as Record<TransactionKind, number>,
    states: Object.fromEntries(KINDS.map((k) => [k, {}])) as Record<
      TransactionKind,
      Record<string, number>
    >,
    retransmissions: { sent: 0, absorbed: 0 },
    timeouts: { B: 0, F: 0, H: 0 },
    strayResponses: 0,
    strayAcks: 0,
    transportErrors: 0,
    refusedFull: 0,
  };
  private readonly maxServers: number;
  private readonly maxCompleted: number;
  /** INVITE server transactions in Accepted (in `servers`, not counted against maxServers). */
  private acceptedServers = 0;
  /** The To tag of the stateless 503s: their ACKs end here. */
  private readonly statelessTag = generateTag();
  /**
   * Server keys of stateless 503s to requests that had a To tag (the 503 keeps it), and when:
   * their ACKs end here too, for 64×T1.
   */
  private readonly refusedKeys = new Map<string, number>();

  constructor(options: TransactionLayerOptions) {
    this.sendBytes = options.send;
    this.user = options.user;
    this.timers = resolveTimers(options.timers);
    this.responseDestination = options.responseDestination ?? defaultResponseDestination;
    this.maxServers = options.maxServerTransactions ?? MAX_SERVER_TRANSACTIONS;
    this.maxCompleted = options.maxCompleted ?? MAX_COMPLETED;
    this.clock = options.clock ?? systemClock;
    this.transactionOptions = {
      clock: this.clock,
      timers: this.timers,
      observer: this.observer(),
    };
  }

  /** A snapshot of the counters. */
  get stats(): TransactionStats {
    const c = this.counters;
    return {
      created: { ...c.created },
      states: Object.fromEntries(KINDS.map((k) => [k, { ...c.states[k] }])) as Record<
        TransactionKind,
        Record<string, number>
      >,
      active: { client: this.clients.size, server: this.servers.size + this.completed.size },
      retransmissions: { ...c.retransmissions },
      timeouts: { ...c.timeouts },
      strayResponses: c.strayResponses,
      strayAcks: c.strayAcks,
      transportErrors: c.transportErrors,
      refusedFull: c.refusedFull,
    };
  }

  /** One parsed message from the transport. */
  receive(message: SipMessage, source: SipTransportAddress): void {
    if (message.kind === 'response') this.receiveResponse(message, source);
    else this.receiveRequest(message, source);
  }

  /**
   * Starts a client transaction: sends `request` (whose top Via carries a fresh RFC 3261
   * branch) to `destination` and reports responses to `user`. An ACK is not sent this way:
   * the ACK for a 2xx is its own end-to-end request (use `sendStateless`).
   */
  sendRequest(
    request: SipRequest,
    destination: SipDestination,
    user: ClientTransactionUser,
    options: SendRequestOptions = {},
  ): ClientTransaction {
    if (request.method === 'ACK') {
      throw new SipTransactionError(
        'ERR_SIP_TRANSACTION_ACK',
        'an ACK has no client transaction: send it with sendStateless',
      );
    }
    const key = clientTransactionKey(request);
    if (key === undefined || !isRfc3261Branch(request.topVia?.branch)) {
      throw new SipTransactionError(
        'ERR_SIP_TRANSACTION_BRANCH',
        'the top Via needs a branch from generateBranch() before the request is sent',
      );
    }
    if (this.clients.has(key)) {
      throw new SipTransactionError(
        'ERR_SIP_TRANSACTION_EXISTS',
        `a client transaction with branch ${request.topVia?.branch} is already running: use a new branch`,
      );
    }
    const reliable = options.reliable ?? isReliableDestination(destination);
    let tx: ClientTransaction | undefined;
    const channel = this.channel(destination, reliable, () => tx);
    tx =
      request.method === 'INVITE'
        ? new InviteClientTransaction(request, channel, user, this.transactionOptions)
        : new NonInviteClientTransaction(request, channel, user, this.transactionOptions);
    this.created(tx);
    // Registered before the request goes out, so even an instant answer finds it.
    tx.key = detached(key);
    if ('connectionId' in destination) tx.flowId = destination.connectionId;
    this.clients.set(tx.key, tx);
    tx.start();
    return tx;
  }

  /**
   * A connection closed (a phone's TCP/WebSocket flow, a channel to another node): the client
   * transactions whose request went out on it and that still wait for a final response will
   * get none. Each is told of a transport error now (§17.1.4), not at Timer B or F, nor after
   * the proxy's Timer C (3 minutes for an INVITE that is ringing).
   */
  flowClosed(connectionId: string): void {
    for (const tx of this.clients.values()) {
      if (tx.flowId === connectionId && awaitsFinal(tx)) {
        // Deferred: the close may come from inside a send of this very transaction's start.
        queueMicrotask(() => this.transportFailed(tx, new FlowClosedError(connectionId)));
      }
    }
  }

  /** INVITE client transactions still awaiting a final response (a callee ringing, say). */
  invitesAwaitingFinal(): number {
    let n = 0;
    for (const tx of this.clients.values()) {
      if (tx.kind === 'invite-client' && awaitsFinal(tx)) n++;
    }
    return n;
  }

  /** The connections on which some client transaction still awaits a final response. */
  awaitedFlows(): Set<string> {
    const flows = new Set<string>();
    for (const tx of this.clients.values()) {
      if (tx.flowId !== undefined && awaitsFinal(tx)) flows.add(tx.flowId);
    }
    return flows;
  }

  /** Sends a message outside any transaction: an ACK for a 2xx, a statelessly forwarded message. */
  sendStateless(
    message: SipMessage,
    destination: SipDestination,
    options: SendRequestOptions = {},
  ): void {
    const reliable = options.reliable ?? isReliableDestination(destination);
    this.channel(destination, reliable, () => undefined).send(message);
  }

  /** The client transaction a response belongs to (§17.1.3), if any. */
  findClientTransaction(response: SipResponse): ClientTransaction | undefined {
    const key = clientTransactionKey(response);
    return key === undefined ? undefined : this.clients.get(key);
  }

  /** The server transaction a request belongs to (§17.2.3), if any. */
  findServerTransaction(request: SipRequest): ServerTransaction | undefined {
    const key = serverTransactionKey(request);
    return key === undefined ? undefined : this.servers.get(key);
  }

  /** The INVITE server transaction a CANCEL cancels (§9.2), if it is still alive. */
  findCancelTarget(cancel: SipRequest): InviteServerTransaction | undefined {
    const key = cancelTargetKey(cancel);
    const tx = key === undefined ? undefined : this.servers.get(key);
    return tx?.kind === 'invite-server' ? tx : undefined;
  }

  /** Stops every timer and forgets every transaction without telling the TU. */
  close(): void {
    for (const tx of [...this.clients.values(), ...this.servers.values()]) tx.dispose();
    this.clients.clear();
    this.servers.clear();
    this.acceptedServers = 0;
    this.refusedKeys.clear();
    if (this.completedTimer !== undefined) this.clock.clearTimeout(this.completedTimer);
    this.completedTimer = undefined;
    this.completed.clear();
    this.completedQueue = [];
    this.completedHead = 0;
  }

  private receiveResponse(response: SipResponse, source: SipTransportAddress): void {
    const tx = this.findClientTransaction(response);
    if (tx) {
      tx.receiveResponse(response);
      return;
    }
    this.counters.strayResponses++;
    this.user.receiveStrayResponse(response, source);
  }

  private receiveRequest(request: SipRequest, source: SipTransportAddress): void {
    const key = serverTransactionKey(request);
    if (key === undefined) return; // no Via: the parser does not let these through
    const existing = this.servers.get(key);
    if (request.method === 'ACK') {
      if (existing?.kind === 'invite-server') {
        existing.receiveAck(request);
      } else if (request.toTag === this.statelessTag || this.refusedLately(key)) {
        // The ACK of a stateless 503 (hasRoomFor): nothing to pass on.
      } else {
        this.counters.strayAcks++;
        this.user.receiveAck(request, source);
      }
      return;
    }
    if (existing) {
      existing.receiveRequest(request);
      return;
    }
    const done = this.completed.get(key);
    if (done) {
      // §17.2.2: a retransmission in Completed gets the final response again; one of a request
      // ended without a response gets nothing (and is not handled a second time).
      this.counters.retransmissions.absorbed++;
      if (done.response === undefined) return;
      this.counters.retransmissions.sent++;
      this.sendWithoutState(done.response, done.destination);
      return;
    }
    if (!this.hasRoomFor(request)) {
      this.counters.refusedFull++;
      const full = createResponse(request, 503, {
        reason: 'Service Unavailable (too many transactions)',
        toTag: this.statelessTag,
        headers: [{ name: 'Retry-After', value: String(FULL_RETRY_AFTER_S) }],
      });
      this.sendWithoutState(serialize(full), this.responseDestination(request, source));
      if (request.toTag !== undefined && request.method === 'INVITE') {
        if (this.refusedKeys.size >= MAX_REFUSED_REMEMBERED) {
          const oldest = this.refusedKeys.keys().next().value;
          if (oldest !== undefined) this.refusedKeys.delete(oldest);
        }
        this.refusedKeys.set(detached(key), this.clock.now());
      }
      return;
    }
    const tx = this.createServerTransaction(request, source);
    tx.key = detached(key);
    this.servers.set(tx.key, tx);
    this.created(tx);
    this.user.receiveRequest(request, tx, source);
  }

  /** Whether an ACK's key is that of an INVITE refused statelessly within 64×T1. */
  private refusedLately(key: string): boolean {
    const at = this.refusedKeys.get(key);
    if (at === undefined) return false;
    if (this.clock.now() - at <= this.timers.H) return true;
    this.refusedKeys.delete(key);
    return false;
  }

  /** Whether a new server transaction for `request` fits (MAX_SERVER_TRANSACTIONS). */
  private hasRoomFor(request: SipRequest): boolean {
    if (request.method === 'CANCEL') return true;
    const kept = this.servers.size - this.acceptedServers;
    if (kept < this.maxServers) return true;
    if (kept >= this.maxServers * 1.5) return false;
    return (
      request.toTag !== undefined || request.method === 'REGISTER' || request.method === 'OPTIONS'
    );
  }

  private createServerTransaction(
    request: SipRequest,
    source: SipTransportAddress,
  ): ServerTransaction {
    const reliable = source.transport !== 'udp';
    let tx: ServerTransaction | undefined;
    const destination = this.responseDestination(request, source);
    const channel = this.channel(destination, reliable, () => tx);
    if (request.method === 'INVITE') {
      const invite: InviteServerTransaction = new InviteServerTransaction(
        request,
        channel,
        {
          ackTimeout: () => this.user.ackTimeout?.(invite),
          receiveAck: (ack) => this.user.receiveAck(ack, source, invite),
          transportError: (error) => this.user.transportError?.(error, invite),
        },
        this.transactionOptions,
      );
      tx = invite;
    } else {
      const other: NonInviteServerTransaction = new NonInviteServerTransaction(
        request,
        channel,
        { transportError: (error) => this.user.transportError?.(error, other) },
        this.transactionOptions,
        (completed, response) => this.holdCompleted(completed, response, destination),
      );
      tx = other;
    }
    return tx;
  }

  /** Takes a non-INVITE server transaction's Completed state over (CompletedHandOver). */
  private holdCompleted(
    tx: NonInviteServerTransaction,
    response: Uint8Array | undefined,
    destination: SipDestination,
  ): void {
    const key = tx.key;
    if (key === undefined) return;
    if (this.servers.get(key) === tx) this.servers.delete(key);
    const entry: CompletedEntry = {
      key,
      response,
      destination,
      expiresAt: this.clock.now() + this.timers.J,
      tx: new WeakRef(tx),
    };
    this.completed.set(key, entry);
    this.completedQueue.push(entry);
    // Bounded: the oldest go first (a retransmission of one comes in as a new request).
    while (
      this.completed.size > this.maxCompleted &&
      this.completedHead < this.completedQueue.length
    ) {
      this.endCompleted(this.completedQueue[this.completedHead++] as CompletedEntry);
    }
    if (this.completedTimer === undefined) this.armCompletedTimer(this.timers.J);
  }

  /** A response no transaction stands behind: a failure to send it is only counted. */
  private sendWithoutState(bytes: Uint8Array, destination: SipDestination): void {
    try {
      const result = this.sendBytes(bytes, destination, false);
      if (result instanceof Promise) result.catch(() => this.counters.transportErrors++);
    } catch {
      this.counters.transportErrors++;
    }
  }

  private armCompletedTimer(ms: number): void {
    this.completedTimer = this.clock.setTimeout(() => {
      this.completedTimer = undefined;
      this.expireCompleted();
    }, ms);
  }

  /** Timer J of a Completed entry fired (or the entry made room for a newer one). */
  private endCompleted(entry: CompletedEntry): void {
    if (this.completed.get(entry.key) === entry) this.completed.delete(entry.key);
    const tx = entry.tx.deref();
    if (tx) tx.expire();
    else {
      // Gone with its TU's last reference: count the state it would have entered.
      const states = this.counters.states['non-invite-server'];
      states.Terminated = (states.Terminated ?? 0) + 1;
    }
  }

  /** Timer J for every held Completed state that is due; re-armed for the next one. */
  private expireCompleted(): void {
    const now = this.clock.now();
    const queue = this.completedQueue;
    while (this.completedHead < queue.length) {
      const entry = queue[this.completedHead] as CompletedEntry;
      if (entry.expiresAt > now) break;
      this.completedHead++;
      this.endCompleted(entry);
    }
    if (this.completedHead > 1024 && this.completedHead * 2 > queue.length) {
      this.completedQueue = queue.slice(this.completedHead);
      this.completedHead = 0;
    }
    const next = this.completedQueue[this.completedHead];
    if (next) this.armCompletedTimer(Math.max(1, next.expiresAt - now));
  }

  private created(tx: Transaction): void {
    this.counters.created[tx.kind]++;
    const states = this.counters.states[tx.kind];
    states[tx.state] = (states[tx.state] ?? 0) + 1;
  }

  private channel(
    destination: SipDestination,
    reliable: boolean,
    owner: () => Transaction | undefined,
  ): TransactionChannel {
    const sendBytes = (data: Uint8Array) => {
      let result: unknown;
      try {
        result = this.sendBytes(data, destination, reliable);
      } catch (error) {
        // Deferred: the transaction may still be inside its constructor.
        queueMicrotask(() => this.transportFailed(owner(), error));
        return;
      }
      if (result instanceof Promise) {
        result.catch((error: unknown) => this.transportFailed(owner(), error));
      }
    };
    return {
      reliable,
      send: (message) => {
        const data = serialize(message);
        sendBytes(data);
        return data;
      },
      sendBytes,
    };
  }

  private transportFailed(tx: Transaction | undefined, error: unknown): void {
    if (!tx || tx.terminated) return;
    this.counters.transportErrors++;
    tx.transportError(error);
  }

  private observer(): TransactionObserver {
    const c = this.counters;
    return {
      stateChanged: (tx, from, to) => {
        const states = c.states[tx.kind];
        states[to] = (states[to] ?? 0) + 1;
        if (tx.kind === 'invite-server') {
          if (to === 'Accepted') this.acceptedServers++;
          else if (from === 'Accepted') this.acceptedServers--;
        }
      },
      retransmitted: () => {
        c.retransmissions.sent++;
      },
      absorbed: () => {
        c.retransmissions.absorbed++;
      },
      timedOut: (_tx, timer) => {
        if (timer === 'B' || timer === 'F' || timer === 'H') c.timeouts[timer]++;
      },
      terminated: (tx) => this.forget(tx),
    };
  }

  private forget(tx: Transaction): void {
    const key = tx.key;
    if (key === undefined) return;
    const map =
      tx.kind === 'invite-client' || tx.kind === 'non-invite-client' ? this.clients : this.servers;
    if (map.get(key) === tx) map.delete(key);
  }
}

function awaitsFinal(tx: ClientTransaction): boolean {
  const state: string = tx.state;
  return !tx.terminated && (state === 'Calling' || state === 'Trying' || state === 'Proceeding');
}
