// Public API of the SIP transports.

export * from './constants.js';
export {
  SipTransportError,
  type SipTransportErrorCode,
  UNFRAMEABLE_REASONS,
  UnframeableError,
  type UnframeableReason,
} from './errors.js';
export { SipSocketTransports, type SipTransportOptions, type UnframeableHook } from './layer.js';
export { classifyDatagram, contentLengthOf, looksLikeSipStartLine } from './sip-bytes.js';
export {
  StreamFramer,
  type StreamFramerEvents,
  type StreamFramerOptions,
} from './stream-framer.js';
export type * from './transport.js';
