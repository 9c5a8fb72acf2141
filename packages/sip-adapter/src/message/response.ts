// Responses built from a request as a UAS or proxy must (RFC 3261 §8.2.6): Via, From, To,
// Call-ID and CSeq copied, a To tag added; and the 400 for a request that failed to parse.

import type { SipParseError } from '../errors.js';
import type { SipHeaders } from './header-list.js';
import { generateTag, type RandomBytes } from './ids.js';
import { type HeaderInit, type SipRequest, SipResponse } from './sip-message.js';

export const REASON_PHRASES: Readonly<Record<number, string>> = {
  100: 'Trying',
  180: 'Ringing',
  181: 'Call Is Being Forwarded',
  182: 'Queued',
  183: 'Session Progress',
  200: 'OK',
  202: 'Accepted',
  301: 'Moved Permanently',
  302: 'Moved Temporarily',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  407: 'Proxy Authentication Required',
  408: 'Request Timeout',
  415: 'Unsupported Media Type',
  416: 'Unsupported URI Scheme',
  420: 'Bad Extension',
  423: 'Interval Too Brief',
  480: 'Temporarily Unavailable',
  481: 'Call/Transaction Does Not Exist',
  482: 'Loop Detected',
  483: 'Too Many Hops',
  486: 'Busy Here',
  487: 'Request Terminated',
  488: 'Not Acceptable Here',
  500: 'Server Internal Error',
  501: 'Not Implemented',
  503: 'Service Unavailable',
  504: 'Server Time-out',
  505: 'Version Not Supported',
  513: 'Message Too Large',
  600: 'Busy Everywhere',
  603: 'Decline',
  604: 'Does Not Exist Anywhere',
};

export function reasonPhrase(status: number): string {
  return REASON_PHRASES[status] ?? REASON_PHRASES[Math.floor(status / 100) * 100] ?? 'Unknown';
}

export interface CreateResponseOptions {
  reason?: string;
  /** The To tag to add when the request's To has none (default: a fresh one). */
  toTag?: string;
  /** Further headers, appended after the copied ones (Contact, Allow, Require...). */
  headers?: Iterable<HeaderInit>;
  body?: Uint8Array | string;
  /** Randomness for the generated To tag. */
  random?: RandomBytes;
}

const HAS_TAG = /;\s*tag\s*=/i;

function fromRequestHeaders(
  src: SipHeaders,
  status: number,
  hasToTag: boolean,
  options: CreateResponseOptions,
): SipResponse {
  const res = new SipResponse({
    status,
    reason: options.reason ?? reasonPhrase(status),
    ...(options.body === undefined ? {} : { body: options.body }),
  });
  const h = res.headers;
  h.encoding = src.encoding;
  for (const via of src.getAll('via')) h.append('Via', via);
  // A 400 to a request missing any of these (RFC 4475 §3.3.1) goes without it.
  const from = src.get('from');
  if (from !== undefined) h.append('From', from);
  let to = src.get('to');
  if (to !== undefined) {
    // §8.2.6.2: a UAS adds a To tag, except that 100 (Trying) need not carry one.
    if (!hasToTag && status !== 100) to += `;tag=${options.toTag ?? generateTag(options.random)}`;
    h.append('To', to);
  }
  const callId = src.get('call-id');
  if (callId !== undefined) h.append('Call-ID', callId);
  const cseq = src.get('cseq');
  if (cseq !== undefined) h.append('CSeq', cseq);
  // §8.2.6.1: a 100 (Trying) echoes the request's Timestamp.
  const ts = src.get('timestamp');
  if (status === 100 && ts !== undefined) h.append('Timestamp', ts);
  for (const x of options.headers ?? []) h.append(x.name, x.value);
  return res;
}

/** A response to `req` per RFC 3261 §8.2.6: Via list, From, To (+tag), Call-ID, CSeq copied. */
export function createResponse(
  req: SipRequest,
  status: number,
  options: CreateResponseOptions = {},
): SipResponse {
  return fromRequestHeaders(req.headers, status, req.toTag !== undefined, options);
}

/**
 * The 400 answering a request that failed to parse, or undefined when none can be sent
 * (`err.canReply400` false: a response, an ACK, or no Via). Header values
 * are copied raw since they may be the malformed ones; send it to the packet's source.
 */
export function createBadRequest(
  err: SipParseError,
  options: CreateResponseOptions = {},
): SipResponse | undefined {
  if (!err.canReply400 || !err.headers) return undefined;
  const hasToTag = HAS_TAG.test(err.headers.get('to') ?? '');
  return fromRequestHeaders(err.headers, 400, hasToTag, {
    reason: err.reasonPhrase,
    ...options,
  });
}

/** Text made fit for a reason phrase: no CR or LF, and not growing without bound. */
export function reasonText(text: string, max = 100): string {
  return text.replace(/[\r\n]+/g, ' ').slice(0, max);
}
