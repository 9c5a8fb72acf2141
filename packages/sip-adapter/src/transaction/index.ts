// Public API of the RFC 3261 §17 transaction layer.

export { FlowClosedError, SipTransactionError, type SipTransactionErrorCode } from './errors.js';
export {
  InviteClientTransaction,
  type InviteClientTransactionState,
} from './invite-client-transaction.js';
export {
  InviteServerTransaction,
  type InviteServerTransactionState,
} from './invite-server-transaction.js';
export { cancelTargetKey, clientTransactionKey, serverTransactionKey } from './matching.js';
export {
  NonInviteClientTransaction,
  type NonInviteClientTransactionState,
} from './non-invite-client-transaction.js';
export {
  NonInviteServerTransaction,
  type NonInviteServerTransactionState,
} from './non-invite-server-transaction.js';
export * from './timers.js';
export {
  ClientTransactionBase,
  type ClientTransactionLike,
  type ClientTransactionUser,
  type ServerTransactionLike,
  type ServerTransactionUser,
  type TimerName,
  Transaction,
  type TransactionChannel,
  type TransactionKind,
  type TransactionObserver,
  type TransactionOptions,
} from './transaction.js';
export {
  type ClientTransaction,
  defaultResponseDestination,
  type SendRequestOptions,
  type ServerTransaction,
  stampTopVia,
  TransactionLayer,
  type TransactionLayerOptions,
  type TransactionSend,
  type TransactionStats,
  type TransactionUser,
} from './transaction-layer.js';
