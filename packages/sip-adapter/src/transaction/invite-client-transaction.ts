// The INVITE client transaction, RFC 3261 §17.1.1 with the Accepted state of RFC 6026 §7.2:
// Calling → Proceeding → Completed (non-2xx, ACKed here) | Accepted (2xx, ACKed by the TU)
// → Terminated.

import { SipRequest, type SipResponse } from '../message/sip-message.js';
import { formatVia } from '../message/uri.js';
import { forTransport } from './timers.js';
import {
  ClientTransactionBase,
  type ClientTransactionUser,
  type TransactionChannel,
  type TransactionOptions,
} from './transaction.js';

export type InviteClientTransactionState =
  | 'Calling'
  | 'Proceeding'
  | 'Completed'
  | 'Accepted'
  | 'Terminated';

export class InviteClientTransaction extends ClientTransactionBase<InviteClientTransactionState> {
  readonly kind = 'invite-client' as const;
  /**
   * The ACK for a non-2xx response, as sent: bytes of its own, not a message whose header
   * values are cut from the INVITE's and the response's text (they would live on with it).
   */
  private ack: Uint8Array | undefined;
  private timerAInterval: number;

  constructor(
    request: SipRequest,
    channel: TransactionChannel,
    user: ClientTransactionUser,
    options: TransactionOptions,
  ) {
    super(request, channel, user, options, 'Calling');
    this.timerAInterval = this.timerValues.A;
  }

  receiveResponse(response: SipResponse): void {
    const status = response.status;
    switch (this.state) {
      case 'Calling':
      case 'Proceeding':
        if (status < 200) {
          this.stopCallingTimers();
          this.transition('Proceeding');
          this.user.receiveResponse(response, this);
        } else if (status < 300) {
          // RFC 6026 §7.2: stay to pass 2xx retransmissions to the TU, which ACKs them.
          this.stopCallingTimers();
          this.transition('Accepted');
          this.timers.start('M', this.timerValues.M, () => this.transition('Terminated'));
          this.user.receiveResponse(response, this);
          // Accepted only passes 2xx retransmissions up: the INVITE is not needed for 32 s.
          this.releaseRequest();
        } else {
          this.stopCallingTimers();
          this.transition('Completed');
          // Its own exact-size copy: the bytes sent may share a pooled slab with others.
          this.ack = new Uint8Array(this.send(this.createAck(response)));
          this.user.receiveResponse(response, this);
          // Completed resends the ACK it keeps: the INVITE is not needed for Timer D's 32 s.
          this.releaseRequest();
          this.startOrTerminate('D', forTransport(this.timerValues.D, this.reliable));
        }
        return;
      case 'Completed':
        // §17.1.1.2: a retransmitted final response is answered with the ACK again.
        this.absorb(response);
        if (status >= 300 && this.ack) this.resend(this.ack);
        return;
      case 'Accepted':
        if (status >= 200 && status < 300) this.user.receiveResponse(response, this);
        else this.absorb(response);
        return;
      case 'Terminated':
        return;
    }
  }

  /**
   * §17.1.1.3: the ACK for a non-2xx response: the INVITE's Request-URI, Call-ID, From, CSeq
   * number and Route set, its top Via alone (same branch), and the response's To (with tag).
   */
  createAck(response: SipResponse): SipRequest {
    const req = this.request;
    const topVia = req.topVia;
    const ack = new SipRequest({ method: 'ACK', uri: req.uri, version: req.version });
    const h = ack.headers;
    if (topVia) h.append('Via', formatVia(topVia));
    h.append('Max-Forwards', '70');
    for (const route of req.headers.getAll('route')) h.append('Route', route);
    h.append('From', req.headers.get('from') ?? '');
    h.append('To', response.headers.get('to') ?? req.headers.get('to') ?? '');
    h.append('Call-ID', req.callId);
    h.append('CSeq', `${req.cseq.seq} ACK`);
    return ack;
  }

  /** Timers A (unreliable transports only) and B. */
  protected startTimers(): void {
    if (!this.reliable) this.startTimerA();
    this.timers.start('B', this.timerValues.B, () => this.timerB());
  }

  private startTimerA(): void {
    this.timers.start('A', this.timerAInterval, () => {
      if (this.state !== 'Calling') return;
      this.send(this.request, true);
      // §17.1.1.2: Timer A doubles without the T2 cap non-INVITE requests have.
      this.timerAInterval *= 2;
      this.startTimerA();
    });
  }

  private timerB(): void {
    if (this.state === 'Calling') this.timeOut('B');
  }

  private stopCallingTimers(): void {
    this.timers.stop('A');
    this.timers.stop('B');
  }
}
