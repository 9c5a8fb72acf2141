// What every RFC 3261 §17 transaction shares: an identity (the matching key), a state with
// observable transitions, a channel to the transport, named timers, and termination.

import type { Clock } from '@peerbx/dht-kademlia';
import { createResponse } from '../message/response.js';
import type { SipMessage, SipRequest, SipResponse } from '../message/sip-message.js';
import { SipTransactionError } from './errors.js';
import { TimerSet, type TransactionTimers } from './timers.js';

export type TransactionKind =
  | 'invite-client'
  | 'non-invite-client'
  | 'invite-server'
  | 'non-invite-server';

/** The RFC's timer names, plus the INVITE server's 100 Trying delay. */
export type TimerName =
  | 'A'
  | 'B'
  | 'D'
  | 'E'
  | 'F'
  | 'G'
  | 'H'
  | 'I'
  | 'J'
  | 'K'
  | 'L'
  | 'M'
  | 'trying';

/**
 * The transport as one transaction sees it: a fixed destination (§17.1.1.3: the ACK goes
 * where the INVITE went; §18.2.2: responses go back where the request came from).
 */
export interface TransactionChannel {
  /** TCP, WebSocket, overlay channel: no retransmissions, Timers D/I/J/K are zero. */
  readonly reliable: boolean;
  /**
   * Hands one message to the transport and returns the bytes that went out. A failure is
   * reported via `transportError`.
   */
  send(message: SipMessage): Uint8Array;
  /** Hands bytes sent before to the transport again (a stored response's retransmission). */
  sendBytes(data: Uint8Array): void;
}

/** What a client transaction tells its TU (RFC 3261 §17.1). */
export interface ClientTransactionUser {
  /**
   * A response for the TU: provisional and final ones, retransmissions absorbed, and the
   * 408 the transaction synthesizes when Timer B or F fires.
   */
  receiveResponse(response: SipResponse, transaction: ClientTransactionLike): void;
  /** The request could not be sent (RFC 3261 §8.1.3.1: a UAC treats this as a 503). */
  transportError?(error: unknown, transaction: ClientTransactionLike): void;
}

/** What a server transaction tells its TU besides the request that created it. */
export interface ServerTransactionUser {
  /** Timer H fired: the ACK for a non-2xx final response never came (RFC 3261 §17.2.1). */
  ackTimeout?(transaction: ServerTransactionLike): void;
  /** An ACK matched an INVITE server transaction in the Accepted state (RFC 6026 §8.7). */
  receiveAck?(ack: SipRequest, transaction: ServerTransactionLike): void;
  /** A response could not be sent (RFC 3261 §17.2.4). */
  transportError?(error: unknown, transaction: ServerTransactionLike): void;
}

/** The view of a client transaction its TU gets. */
export interface ClientTransactionLike {
  readonly kind: 'invite-client' | 'non-invite-client';
  readonly request: SipRequest;
  readonly branch: string;
  readonly state: string;
}

/** The view of a server transaction its TU gets. */
export interface ServerTransactionLike {
  readonly kind: 'invite-server' | 'non-invite-server';
  readonly request: SipRequest;
  readonly branch: string;
  readonly state: string;
  /** Sends a response from the TU; false when the state does not allow it (it is dropped). */
  respond(response: SipResponse): boolean;
}

/** Observes transactions for counters and logs; the transaction layer is the usual one. */
export interface TransactionObserver {
  stateChanged?(transaction: Transaction, from: string, to: string): void;
  /** A message we sent again: a request (Timers A/E), a response (Timer G, resends), an ACK. */
  retransmitted?(transaction: Transaction, message: SipMessage | Uint8Array): void;
  /** An incoming retransmission the transaction absorbed. */
  absorbed?(transaction: Transaction, message: SipMessage): void;
  timedOut?(transaction: Transaction, timer: TimerName): void;
  terminated?(transaction: Transaction): void;
}

export interface TransactionOptions {
  clock: Clock;
  timers: TransactionTimers;
  observer?: TransactionObserver;
}

export abstract class Transaction<State extends string = string> {
  abstract readonly kind: TransactionKind;
  /** The top Via branch of `request`. */
  readonly branch: string;
  /** The key the transaction layer files it under (§17.1.3/§17.2.3 matching). */
  key: string | undefined;
  /** A client transaction's connection (TCP/WS flow or node channel), if its request took one. */
  flowId: string | undefined;
  private createdBy: SipRequest | undefined;
  protected readonly channel: TransactionChannel;
  protected readonly timerValues: TransactionTimers;
  protected readonly timers: TimerSet<TimerName>;
  protected readonly observer: TransactionObserver | undefined;
  private currentState: State;

  protected constructor(
    request: SipRequest,
    channel: TransactionChannel,
    options: TransactionOptions,
    initial: State,
  ) {
    this.createdBy = request;
    this.branch = detached(request.topVia?.branch ?? '');
    this.channel = channel;
    this.timerValues = options.timers;
    this.timers = new TimerSet(options.clock);
    this.observer = options.observer;
    this.currentState = initial;
  }

  get state(): State {
    return this.currentState;
  }

  /**
   * The request that created the transaction. A non-INVITE server transaction lets go of it
   * once its final response is out (it only resends stored bytes then): reading it after
   * that is a programming error and throws.
   */
  get request(): SipRequest {
    if (this.createdBy === undefined) {
      throw new SipTransactionError(
        'ERR_SIP_TRANSACTION_RELEASED',
        `the ${this.kind} transaction ${this.branch} no longer holds its request (state ${this.currentState})`,
      );
    }
    return this.createdBy;
  }

  /** False once the transaction let go of its request. */
  get holdsRequest(): boolean {
    return this.createdBy !== undefined;
  }

  /** Drops the parsed request; the memory of a transaction waiting out Timer J. */
  protected releaseRequest(): void {
    this.createdBy = undefined;
  }

  get reliable(): boolean {
    return this.channel.reliable;
  }

  get terminated(): boolean {
    return this.currentState === 'Terminated';
  }

  /** The transport failed to send (RFC 3261 §17.1.4, §17.2.4): inform the TU, terminate. */
  abstract transportError(error: unknown): void;

  /** Stops every timer and terminates without telling the TU (the layer is shutting down). */
  dispose(): void {
    if (!this.terminated) this.transition('Terminated' as State);
  }

  protected transition(to: State): void {
    const from = this.currentState;
    if (from === to) return;
    this.currentState = to;
    this.observer?.stateChanged?.(this, from, to);
    if (to === 'Terminated') {
      this.timers.stopAll();
      this.observer?.terminated?.(this);
    }
  }

  protected send(message: SipMessage, retransmission = false): Uint8Array {
    if (retransmission) this.observer?.retransmitted?.(this, message);
    return this.channel.send(message);
  }

  /** Resends bytes sent before (always a retransmission). */
  protected resend(data: Uint8Array): void {
    this.observer?.retransmitted?.(this, data);
    this.channel.sendBytes(data);
  }

  protected absorb(message: SipMessage): void {
    this.observer?.absorbed?.(this, message);
  }

  protected timedOut(timer: TimerName): void {
    this.observer?.timedOut?.(this, timer);
  }

  /**
   * Starts a timer that ends a state; a zero duration (reliable transports) terminates at
   * once rather than on the next tick, so no stray state survives the call.
   */
  protected startOrTerminate(timer: TimerName, ms: number): void {
    if (ms === 0) this.transition('Terminated' as State);
    else this.timers.start(timer, ms, () => this.transition('Terminated' as State));
  }
}

/**
 * What both client transactions share (RFC 3261 §17.1): the TU, one start that sends the
 * request and starts the timers, the 408 on timeout, and termination on a transport error.
 */
export abstract class ClientTransactionBase<State extends string> extends Transaction<State> {
  abstract override readonly kind: 'invite-client' | 'non-invite-client';
  protected readonly user: ClientTransactionUser;
  private readonly initialState: State;
  private started = false;

  protected constructor(
    request: SipRequest,
    channel: TransactionChannel,
    user: ClientTransactionUser,
    options: TransactionOptions,
    initial: State,
  ) {
    super(request, channel, options, initial);
    this.user = user;
    this.initialState = initial;
  }

  /** Sends the request and starts the transaction's timers (once, in the initial state). */
  start(): void {
    if (this.state !== this.initialState || this.started) return;
    this.started = true;
    this.send(this.request);
    this.startTimers();
  }

  /** A response whose branch and CSeq method matched this transaction (§17.1.3). */
  abstract receiveResponse(response: SipResponse): void;

  transportError(error: unknown): void {
    if (this.terminated) return;
    this.transition('Terminated' as State);
    this.user.transportError?.(error, this);
  }

  /** Starts the retransmission timer (unreliable transports only) and the timeout timer. */
  protected abstract startTimers(): void;

  /** Timer B or F fired: terminate and give the TU a synthesized 408. */
  protected timeOut(timer: 'B' | 'F'): void {
    this.timedOut(timer);
    this.transition('Terminated' as State);
    this.user.receiveResponse(createResponse(this.request, 408), this);
  }
}

/**
 * A copy of `text` that shares no memory with the message it was cut from: a substring of a
 * parsed message keeps the whole message text alive for as long as the substring lives.
 */
export function detached(text: string): string {
  return Buffer.from(text, 'utf8').toString('utf8');
}
