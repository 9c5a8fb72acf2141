// Typed errors of the SIP transports, each with a stable code.

export type SipTransportErrorCode =
  /** A listening address could not be bound (in use, not local). */
  | 'ERR_BIND'
  /** The transport layer is closed. */
  | 'ERR_CLOSED'
  /** The flow (connection) named by a connectionId is gone; RFC 5626 calls for 430 Flow Failed. */
  | 'ERR_NO_FLOW'
  /** A connection could not be opened, or there is no way to reach the destination. */
  | 'ERR_UNREACHABLE'
  /** The message is too large for the transport (UDP: 65,507 bytes). */
  | 'ERR_TOO_LARGE'
  /** The destination is not an IP literal and port, or names an unknown transport. */
  | 'ERR_DESTINATION'
  /** The connection limit is reached and no idle connection can be closed to make room. */
  | 'ERR_LIMIT'
  /** A byte stream cannot be split into SIP messages; the connection is closed. */
  | 'ERR_UNFRAMEABLE';

export class SipTransportError extends Error {
  readonly code: SipTransportErrorCode;
  constructor(code: SipTransportErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SipTransportError';
    this.code = code;
  }
}

/** Why a stream cannot be resynchronised (RFC 3261 §18.3: a stream has no other boundaries). */
export type UnframeableReason =
  | 'not-sip'
  | 'header-too-large'
  | 'missing-content-length'
  | 'invalid-content-length'
  | 'body-too-large';

export const UNFRAMEABLE_REASONS: readonly UnframeableReason[] = [
  'not-sip',
  'header-too-large',
  'missing-content-length',
  'invalid-content-length',
  'body-too-large',
];

export class UnframeableError extends SipTransportError {
  readonly reason: UnframeableReason;
  /** The header bytes buffered so far (up to the limit), so a 400 can name Via and Call-ID. */
  readonly partialHeaders: Buffer;
  constructor(reason: UnframeableReason, message: string, partialHeaders: Buffer) {
    super('ERR_UNFRAMEABLE', message);
    this.name = 'UnframeableError';
    this.reason = reason;
    this.partialHeaders = partialHeaders;
  }
}
