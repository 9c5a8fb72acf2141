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
