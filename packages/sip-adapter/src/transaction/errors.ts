// Typed errors of the transaction layer: mistakes of the TU calling it, each with a stable code.

export type SipTransactionErrorCode =
  | 'ERR_SIP_TRANSACTION_ACK'
  | 'ERR_SIP_TRANSACTION_BRANCH'
  | 'ERR_SIP_TRANSACTION_EXISTS'
  | 'ERR_SIP_TRANSACTION_RELEASED';

export class SipTransactionError extends Error {
  readonly code: SipTransactionErrorCode;
  constructor(code: SipTransactionErrorCode, message: string) {
    super(message);
    this.name = 'SipTransactionError';
    this.code = code;
  }
}

/**
 * The connection a client transaction's request went out on closed before a final response
 * came back over it (a phone's TCP/WebSocket flow, or the channel to another node): none will.
 */
export class FlowClosedError extends Error {
  constructor(readonly connectionId: string) {
    super(`connection ${connectionId} closed before the request was answered`);
    this.name = 'FlowClosedError';
  }
}
