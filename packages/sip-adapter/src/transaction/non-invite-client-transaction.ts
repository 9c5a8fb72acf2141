// The non-INVITE client transaction, RFC 3261 §17.1.2: Trying → Proceeding → Completed →
// Terminated, with Timer E retransmitting (doubling up to T2), F timing out, K lingering.

import type { SipRequest, SipResponse } from '../message/sip-message.js';
import { forTransport } from './timers.js';
import {
  ClientTransactionBase,
  type ClientTransactionUser,
  type TransactionChannel,
  type TransactionOptions,
} from './transaction.js';

export type NonInviteClientTransactionState = 'Trying' | 'Proceeding' | 'Completed' | 'Terminated';

export class NonInviteClientTransaction extends ClientTransactionBase<NonInviteClientTransactionState> {
  readonly kind = 'non-invite-client' as const;
  private timerEInterval: number;

  constructor(
    request: SipRequest,
    channel: TransactionChannel,
    user: ClientTransactionUser,
    options: TransactionOptions,
  ) {
    super(request, channel, user, options, 'Trying');
    this.timerEInterval = this.timerValues.E;
  }

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
        // Completed only absorbs retransmitted responses: the request is not needed again.
        if (response.status >= 200) this.releaseRequest();
        return;
      case 'Completed':
        this.absorb(response);
        return;
      case 'Terminated':
        return;
    }
  }

  /** Timers E (unreliable transports only) and F. */
  protected startTimers(): void {
    if (!this.reliable) this.startTimerE();
    this.timers.start('F', this.timerValues.F, () => this.timerF());
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
    if (this.state === 'Trying' || this.state === 'Proceeding') this.timeOut('F');
  }
}
