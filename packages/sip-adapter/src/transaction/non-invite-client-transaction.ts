// The non-INVITE client transaction, RFC 3261 §17.1.2: Trying → Proceeding → Completed →
// Terminated, with Timer E retransmitting (doubling up to T2), F timing out, K lingering.

import { createResponse } from '../message/response.js';
import type { SipRequest, SipResponse } from '../message/sip-message.js';
import { forTransport } from './timers.js';
import {
  type ClientTransactionUser,
  Transaction,
  type TransactionChannel,
  type TransactionOptions,
} from './transaction.js';

export type NonInviteClientTransactionState = 'Trying' | 'Proceeding' | 'Completed' | 'Terminated';

export class NonInviteClientTransaction extends Transaction<NonInviteClientTransactionState> {
  readonly kind = 'non-invite-client' as const;
  private readonly user: ClientTransactionUser;
  private started = false;
  private timerEInterval: number;

  constructor(
    request: SipRequest,
    channel: TransactionChannel,
    user: ClientTransactionUser,
    options: TransactionOptions,
  ) {
    super(request, channel, options, 'Trying');
    this.user = user;
    this.timerEInterval = this.timerValues.E;
  }

  /** Sends the request and starts Timers E (unreliable transports only) and F. */
  start(): void {
    if (this.state !== 'Trying' || this.started) return;
    this.started = true;
    this.send(this.request);
    if (!this.reliable) this.startTimerE();
    this.timers.start('F', this.timerValues.F, () => this.timerF());
  }

  /** A response whose branch and CSeq method matched this transaction (§17.1.3). */
  receiveResponse(response: SipResponse): void {
    switch (this.state) {
      case 'Trying':
      case 'Proceeding':
        if (response.status < 200) {
          this.transition('Proceeding');
        } else {
          this.timers.stop('E');
          this.timers.stop('F');
          this.transition('Completed');
          this.startOrTerminate('K', forTransport(this.timerValues.K, this.reliable));
        }
        this.user.receiveResponse(response, this);
        return;
      case 'Completed':
        this.absorb(response);
        return;
      case 'Terminated':
        return;
    }
  }

  transportError(error: unknown): void {
    if (this.terminated) return;
    this.transition('Terminated');
    this.user.transportError?.(error, this);
  }

  private startTimerE(): void {
    this.timers.start('E', this.timerEInterval, () => {
      if (this.state !== 'Trying' && this.state !== 'Proceeding') return;
      this.send(this.request, true);
      // §17.1.2.2: doubling up to T2 while Trying; T2 flat once a provisional came.
      this.timerEInterval =
        this.state === 'Trying'
          ? Math.min(2 * this.timerEInterval, this.timerValues.T2)
          : this.timerValues.T2;
      this.startTimerE();
    });
  }

  private timerF(): void {
    if (this.state !== 'Trying' && this.state !== 'Proceeding') return;
    this.timedOut('F');
    this.transition('Terminated');
    this.user.receiveResponse(createResponse(this.request, 408), this);
  }
}
