// Typed errors of the SIP adapter, each with a stable code. A malformed SIP message is a
// protocol event (answer 400 or drop), never a crash: callers switch on `code` and `canReply400`.

import type { SipHeaders } from './message/header-list.js';

export type SipErrorCode =
  | 'ERR_SIP_EMPTY'
  | 'ERR_SIP_START_LINE'
  | 'ERR_SIP_HEADER'
  | 'ERR_SIP_MISSING_HEADER'
  | 'ERR_SIP_DUPLICATE_HEADER'
  | 'ERR_SIP_CSEQ'
  | 'ERR_SIP_CONTENT_LENGTH'
  | 'ERR_SIP_INCOMPLETE'
  | 'ERR_SIP_TOO_LARGE'
  | 'ERR_SIP_URI';

export class SipError extends Error {
  readonly code: SipErrorCode;
  constructor(code: SipErrorCode, message: string) {
    super(message);
    this.name = 'SipError';
    this.code = code;
  }
}

export interface SipParseErrorOptions {
  /** The header whose value is at fault, as a lower-case full name (e.g. 'cseq'). */
  header?: string;
  /** True when the bytes were a request (not an ACK) carrying a Via to answer along. */
  canReply400?: boolean;
  /** The headers that were read, present when `canReply400` (to build the 400 from). */
  headers?: SipHeaders;
}

/**
 * Bytes that are not a well-formed SIP message, or a header value that does not parse.
 * `canReply400` tells the transport whether a 400 can be sent: to a request (not an ACK) with
 * a Via, even one missing From, To, Call-ID or CSeq (RFC 4475 §3.3.1); when false the message
 * is silently dropped, as for every malformed response (RFC 3261 §18.1.2).
 */
export class SipParseError extends SipError {
  readonly header: string | undefined;
  readonly canReply400: boolean;
  readonly headers: SipHeaders | undefined;
  constructor(code: SipErrorCode, message: string, options: SipParseErrorOptions = {}) {
    super(code, message);
    this.name = 'SipParseError';
    this.header = options.header;
    this.canReply400 = options.canReply400 ?? false;
    this.headers = options.canReply400 ? options.headers : undefined;
  }

  /** A short reason phrase for the 400 response, e.g. "Bad Request (bad CSeq)". */
  get reasonPhrase(): string {
    const what: Partial<Record<SipErrorCode, string>> = {
      ERR_SIP_START_LINE: 'bad request line',
      ERR_SIP_DUPLICATE_HEADER: 'duplicate header',
      ERR_SIP_CSEQ: 'bad CSeq',
      ERR_SIP_CONTENT_LENGTH: 'bad Content-Length',
      ERR_SIP_URI: 'bad URI',
    };
    const detail =
      this.code === 'ERR_SIP_MISSING_HEADER'
        ? this.message
        : (what[this.code] ?? (this.header ? `bad ${this.header} header` : 'malformed'));
    return `Bad Request (${detail})`;
  }

  /** The same error, now known to belong to a message a 400 can answer. */
  withReply(headers: SipHeaders): SipParseError {
    return new SipParseError(this.code, this.message, {
      header: this.header,
      canReply400: true,
      headers,
    });
  }
}

/** Too many location lookups are waiting: the proxy answers 503 with Retry-After. */
export class LocatorBusyError extends Error {
  constructor(readonly waiting: number) {
    super(`${waiting} location lookups are waiting`);
    this.name = 'LocatorBusyError';
  }
}

/** Too many overlay writes are waiting: the registrar answers 503 with Retry-After. */
export class RegistrarBusyError extends Error {
  constructor(readonly waiting: number) {
    super(`${waiting} overlay writes are waiting`);
    this.name = 'RegistrarBusyError';
  }
}
