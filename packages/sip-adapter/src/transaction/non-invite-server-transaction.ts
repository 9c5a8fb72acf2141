// The non-INVITE server transaction, RFC 3261 §17.2.2: Trying → Proceeding → Completed →
// Terminated; retransmitted requests get the last response again, Timer J ends Completed.

import type { SipRequest, SipResponse } from '../message/sip-message.js';
import {
  type ServerTransactionUser,
  Transaction,
  type TransactionChannel,
  type TransactionOptions,
} from './transaction.js';

export type NonInviteServerTransactionState = 'Trying' | 'Proceeding' | 'Completed' | 'Terminated';

/**
 * Takes over a transaction entering Completed over an unreliable transport: from then on the
 * transaction layer answers retransmitted requests with `response` and ends the state after
 * Timer J (calling `expire`), holding only those bytes: the Completed transactions of a
 * registrar at 15,000 REGISTERs/s are 32 s' worth, about half a million. An abandoned
 * transaction (no `response`) is held the same way, its retransmissions absorbed unanswered.
 */
export type CompletedHandOver = (
  tx: NonInviteServerTransaction,
  response: Uint8Array | undefined,
) => void;

export class NonInviteServerTransaction extends Transaction<NonInviteServerTransactionState> {
  readonly kind = 'non-invite-server' as const;
  private readonly user: ServerTransactionUser;
  /** The last provisional response sent, as bytes, resent to a retransmitted request. */
  private lastProvisional: Uint8Array | undefined;

  constructor(
    request: SipRequest,
    channel: TransactionChannel,
    user: ServerTransactionUser,
    options: TransactionOptions,
    private readonly handOver: CompletedHandOver,
  ) {
    super(request, channel, options, 'Trying');
    this.user = user;
  }

  /** A retransmission of the request (matched per §17.2.3); never reaches the TU. */
  receiveRequest(request: SipRequest): void {
    this.absorb(request);
    // §17.2.2: discarded while Trying; resent while Proceeding (Completed is the layer's).
    if (this.state === 'Proceeding' && this.lastProvisional) this.resend(this.lastProvisional);
  }

  /**
   * A final refusal (300-699) before anything was done for the request (a challenge, a 503
   * for overload or shutdown), sent as a stateless server would: the transaction ends at once
   * and keeps no Completed state for Timer J (32 s over UDP), so a retransmission is refused
   * afresh. A flood of REGISTERs with wrong passwords kept 175,000 of them (QA: 700 MB).
   */
  refuse(response: SipResponse): boolean {
    if (this.state !== 'Trying' && this.state !== 'Proceeding') return false;
    if (response.status < 300) return this.respond(response);
    this.send(response);
    this.lastProvisional = undefined;
    this.releaseRequest();
    this.transition('Terminated');
    return true;
  }

  /** A response from the TU. False (and dropped) once a final response was sent. */
  respond(response: SipResponse): boolean {
    if (this.state !== 'Trying' && this.state !== 'Proceeding') return false;
    const sent = this.send(response);
    if (response.status < 200) {
      this.lastProvisional = sent;
      this.transition('Proceeding');
      return true;
    }
    this.transition('Completed');
    this.lastProvisional = undefined;
    // The final response is out: the request is not needed again (a proxy's forwarded
    // responses keep this transaction reachable for Timer K's 5 s).
    this.releaseRequest();
    if (this.reliable) {
      this.transition('Terminated'); // Timer J is zero on reliable transports
      return true;
    }
    // Its own exact-size copy: the bytes sent share a pooled 8 KiB slab with other messages.
    this.handOver(this, new Uint8Array(sent));
    return true;
  }

  /**
   * Ends the transaction without a final response: RFC 4320 §4.2 forbids a 408 to a
   * non-INVITE request, so a proxy whose branches all timed out sends nothing, and the
   * requester's own Timer F ends its side. Until then (Timer J more, over UDP: a requester
   * whose T1 is longer than ours retransmits longer) its retransmissions are absorbed, not
   * handled again as new requests (a MESSAGE would reach the callee twice).
   */
  abandon(): void {
    if (this.state !== 'Trying' && this.state !== 'Proceeding') return;
    this.lastProvisional = undefined;
    this.releaseRequest();
    if (this.reliable) this.transition('Terminated');
    else this.handOver(this, undefined);
  }

  /**
   * Timer J fired while the transaction layer held the Completed state, or the state of an
   * abandoned transaction (see CompletedHandOver).
   */
  expire(): void {
    if (!this.terminated) this.transition('Terminated');
  }

  transportError(error: unknown): void {
    if (this.terminated) return;
    this.transition('Terminated');
    this.user.transportError?.(error, this);
  }
}
