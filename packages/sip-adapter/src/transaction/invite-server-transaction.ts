// The INVITE server transaction, RFC 3261 §17.2.1 with the Accepted state of RFC 6026 §7.1:
// Proceeding → Completed (non-2xx, retransmitted by Timer G until the ACK) → Confirmed, or
// Proceeding → Accepted (2xx, retransmitted by the TU) → Terminated.

import { createResponse } from '../message/response.js';
import type { SipRequest, SipResponse } from '../message/sip-message.js';
import { forTransport } from './timers.js';
import {
  type ServerTransactionUser,
  Transaction,
  type TransactionChannel,
  type TransactionOptions,
} from './transaction.js';

export type InviteServerTransactionState =
  | 'Proceeding'
  | 'Completed'
  | 'Confirmed'
  | 'Accepted'
  | 'Terminated';

export class InviteServerTransaction extends Transaction<InviteServerTransactionState> {
  readonly kind = 'invite-server' as const;
  private readonly user: ServerTransactionUser;
  private lastProvisional: SipResponse | undefined;
  private finalResponse: SipResponse | undefined;
  private timerGInterval: number;

  /** Enters Proceeding and arms the 100 Trying timer (§17.2.1). */
  constructor(
    request: SipRequest,
    channel: TransactionChannel,
    user: ServerTransactionUser,
    options: TransactionOptions,
  ) {
    super(request, channel, options, 'Proceeding');
    this.user = user;
    this.timerGInterval = this.timerValues.G;
    this.timers.start('trying', this.timerValues.trying, () => {
      if (this.state === 'Proceeding' && !this.lastProvisional) {
        this.respond(createResponse(this.request, 100));
      }
    });
  }

  /** A retransmitted INVITE (matched per §17.2.3); never reaches the TU. */
  receiveRequest(request: SipRequest): void {
    this.absorb(request);
    if (this.state === 'Proceeding' && this.lastProvisional) {
      this.send(this.lastProvisional, true);
    } else if (this.state === 'Completed' && this.finalResponse) {
      this.send(this.finalResponse, true);
    }
  }

  /** An ACK whose branch matched this transaction: the ACK for our non-2xx response. */
  receiveAck(ack: SipRequest): void {
    switch (this.state) {
      case 'Completed':
        this.timers.stop('G');
        this.timers.stop('H');
        this.transition('Confirmed');
        // Timer I absorbs the ACK retransmissions still in flight.
        this.startOrTerminate('I', forTransport(this.timerValues.I, this.reliable));
        return;
      case 'Accepted':
        this.user.receiveAck?.(ack, this);
        return;
      default:
        this.absorb(ack);
    }
  }

  /**
   * A response from the TU. Provisional and final in Proceeding; further 2xx in Accepted
   * (the TU retransmits 2xx, RFC 6026 §7.1). False (and dropped) in any other case.
   */
  respond(response: SipResponse, once = false): boolean {
    const status = response.status;
    if (this.state === 'Accepted') {
      if (status < 200 || status >= 300) return false;
      this.send(response);
      return true;
    }
    if (this.state !== 'Proceeding') return false;
    this.timers.stop('trying');
    this.send(response);
    if (status < 200) {
      this.lastProvisional = response;
    } else if (status < 300) {
      this.transition('Accepted');
      this.timers.start('L', this.timerValues.L, () => this.transition('Terminated'));
      // Accepted absorbs INVITE retransmissions and passes ACKs and 2xx on: no message kept.
      this.lastProvisional = undefined;
      this.releaseRequest();
    } else {
      this.finalResponse = response;
      this.transition('Completed');
      if (!this.reliable && !once) this.startTimerG();
      const waitAck = once && !this.reliable ? this.timerValues.T4 : this.timerValues.H;
      this.timers.start('H', waitAck, () => {
        if (this.state !== 'Completed') return;
        this.timedOut('H');
        this.transition('Terminated');
        this.user.ackTimeout?.(this);
      });
    }
    return true;
  }

  /**
   * A final refusal (300-699) sent once: a challenge, or a 503 for overload, to an INVITE
   * nobody vouched for yet. Unlike respond(), Timer G does not send it again, and over UDP the
   * ACK is awaited T4, not 64×T1: the source address may be forged, and one INVITE must not
   * bring its victim eleven responses, nor keep state here for 32 s. A phone that lost the
   * response sends its INVITE again and gets it again, as from a stateless server (which
   * Kamailio answers challenges as).
   */
  refuse(response: SipResponse): boolean {
    return this.respond(response, true);
  }

  transportError(error: unknown): void {
    if (this.terminated) return;
    this.transition('Terminated');
    this.user.transportError?.(error, this);
  }

  private startTimerG(): void {
    this.timers.start('G', this.timerGInterval, () => {
      if (this.state !== 'Completed' || !this.finalResponse) return;
      this.send(this.finalResponse, true);
      this.timerGInterval = Math.min(2 * this.timerGInterval, this.timerValues.T2);
      this.startTimerG();
    });
  }
}
