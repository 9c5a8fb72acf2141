// SIP requests and responses: parsed from wire bytes, typed views of the headers the core
// acts on, and serialised back to RFC 3261 wire format with a correct Content-Length.
// Strict where a wrong guess would misroute or misframe (start line, CSeq, Content-Length,
// mandatory and single-valued headers); tolerant where RFC 4475 asks (LWS, folding, case,
// compact forms, unknown headers, escaped URIs).

import { isUtf8 } from 'node:buffer';
import { MAX_MESSAGE_BYTES, SIP_VERSION } from '../constants.js';
import { SipParseError } from '../errors.js';
import { SipHeaders } from './header-list.js';
import { wireName } from './header-names.js';
import {
  type ContactList,
  type CSeq,
  parseContacts,
  parseCSeq,
  parseExpires,
  parseMaxForwards,
  parseRoutes,
} from './headers.js';
import { isToken, trimWs } from './lexer.js';
import {
  formatVia,
  isSipUri,
  type NameAddr,
  parseNameAddr,
  parseUri,
  parseVia,
  type Uri,
  type Via,
} from './uri.js';

export interface HeaderInit {
  name: string;
  value: string;
}

interface MessageInit {
  headers?: SipHeaders | Iterable<HeaderInit>;
  body?: Uint8Array | string;
  version?: string;
}

function missing(header: string): SipParseError {
  return new SipParseError('ERR_SIP_MISSING_HEADER', `missing ${header} header`, {
    header: header.toLowerCase(),
  });
}

function toBuffer(b: Uint8Array | string | undefined): Buffer {
  if (b === undefined) return Buffer.alloc(0);
  if (typeof b === 'string') return Buffer.from(b, 'utf8');
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

abstract class SipMessageBase {
  /** 'SIP/2.0'; anything else is answered 505 by the layer above. */
  version: string;
  readonly headers: SipHeaders;
  /**
   * The body, exactly Content-Length bytes. After parsing it is a view into the input
   * buffer (no copy): do not reuse that buffer while the message is alive.
   */
  body: Buffer;

  /** Parsed views of headers, by header key, with the header's revision they were parsed at. */
  private views = new Map<string, { revision: number; value: unknown }>();

  constructor(init: MessageInit) {
    this.version = init.version ?? SIP_VERSION;
    this.headers = init.headers instanceof SipHeaders ? init.headers : new SipHeaders(init.headers);
    this.body = toBuffer(init.body);
  }

  /**
   * A parsed view of the header `key`, cached until that header changes. Views are never
   * modified, so a copy of the message (copyViewsFrom) shares them.
   */
  protected view<T>(key: string, parse: () => T): T {
    const revision = this.headers.revisionOf(key);
    const hit = this.views.get(key);
    if (hit && hit.revision === revision) return hit.value as T;
    const value = parse();
    this.views.set(key, { revision, value });
    return value;
  }

  /** Takes the parsed views of `other`, whose headers this message's were cloned from. */
  protected copyViewsFrom(other: SipMessageBase): void {
    this.views = new Map(other.views);
  }

  private required(name: string): string {
    const v = this.headers.get(name);
    if (v === undefined) throw missing(name);
    return v;
  }

  /** Every Via, top first, over all Via lines. */
  get via(): Via[] {
    return this.view('via', () => this.headers.getAll('via').flatMap(parseVia));
  }

  get topVia(): Via | undefined {
    return this.via[0];
  }

  /**
   * Puts `via` in place of the top Via (the first element of the first Via line), and keeps
   * the parsed list up to date: nothing is parsed again.
   */
  replaceTopVia(via: Via): void {
    const rest = this.via.slice(1);
    this.headers.shift('Via');
    this.headers.prepend('Via', formatVia(via));
    this.views.set('via', { revision: this.headers.revisionOf('via'), value: [via, ...rest] });
  }

  get from(): NameAddr {
    return this.view('from', () => parseNameAddr(this.required('From'), 'from'));
  }

  get to(): NameAddr {
    return this.view('to', () => parseNameAddr(this.required('To'), 'to'));
  }

  get fromTag(): string | undefined {
    return this.from.params.tag ?? undefined;
  }

  get toTag(): string | undefined {
    return this.to.params.tag ?? undefined;
  }

  get callId(): string {
    return this.required('Call-ID');
  }

  get cseq(): CSeq {
    return this.view('cseq', () => parseCSeq(this.required('CSeq')));
  }

  /** undefined when absent (RFC 2543 elements omit it; a proxy then uses 70). */
  get maxForwards(): number | undefined {
    return this.view('max-forwards', () => {
      const v = this.headers.get('max-forwards');
      return v === undefined ? undefined : parseMaxForwards(v);
    });
  }

  /** The Expires header in seconds, or undefined. */
  get expires(): number | undefined {
    return this.view('expires', () => {
      const v = this.headers.get('expires');
      return v === undefined ? undefined : parseExpires(v);
    });
  }

  get contentType(): string | undefined {
    return this.headers.get('content-type');
  }

  /** Every Contact over all lines, or '*'; [] when none. Parsed on first use: may throw SipParseError. */
  get contacts(): ContactList {
    return this.view('contact', () => parseContacts(this.headers.getAll('contact')));
  }

  /** Route entries, top first. Parsed on first use: may throw SipParseError. */
  get routes(): NameAddr[] {
    return this.view('route', () => parseRoutes(this.headers.getAll('route'), 'route'));
  }

  /** Record-Route entries, top first. Parsed on first use: may throw SipParseError. */
  get recordRoutes(): NameAddr[] {
    return this.view('record-route', () =>
      parseRoutes(this.headers.getAll('record-route'), 'record-route'),
    );
  }

  /** The first value of any header, by any spelling of its name ('i', 'call-id', 'Call-ID'). */
  header(name: string): string | undefined {
    return this.headers.get(name);
  }
}

export interface SipRequestInit extends MessageInit {
  method: string;
  /** The Request-URI as it goes on the wire. */
  uri: string;
}

export class SipRequest extends SipMessageBase {
  readonly kind = 'request' as const;
  method: string;
  /** The Request-URI as on the wire; `requestUri` is its parsed form. */
  uri: string;
  private parsedUri: { text: string; uri: Uri } | undefined;

  constructor(init: SipRequestInit) {
    super(init);
    this.method = init.method;
    this.uri = init.uri;
  }

  /**
   * A copy to change and forward: its own header list (a clone) and Request-URI, the same
   * body, and the parsed views of this one until its headers change.
   */
  copy(): SipRequest {
    const c = new SipRequest({
      method: this.method,
      uri: this.uri,
      version: this.version,
      headers: this.headers.clone(),
      body: this.body,
    });
    c.copyViewsFrom(this);
    c.parsedUri = this.parsedUri;
    return c;
  }

  /** The parsed Request-URI (cached per `uri` string). Throws SipParseError if malformed. */
  get requestUri(): Uri {
    if (this.parsedUri?.text !== this.uri)
      this.parsedUri = { text: this.uri, uri: parseUri(this.uri) };
    return this.parsedUri.uri;
  }
}

export interface SipResponseInit extends MessageInit {
  status: number;
  reason: string;
}

export class SipResponse extends SipMessageBase {
  readonly kind = 'response' as const;
  status: number;
  reason: string;

  constructor(init: SipResponseInit) {
    super(init);
    this.status = init.status;
    this.reason = init.reason;
  }
}

export type SipMessage = SipRequest | SipResponse;

// ---- parsing ------------------------------------------------------------------------------

const CRLFCRLF = Buffer.from('\r\n\r\n');
const SINGLE_VALUED = new Set(['from', 'to', 'call-id', 'cseq', 'max-forwards', 'content-type']);
const REQUEST_VERSION = /^SIP\/\d+\.\d+$/i;
const STATUS_LINE = /^(SIP\/\d+\.\d+) ([1-6]\d\d)(?: (.*))?$/i;

export interface ParseOptions {
  /** Reject larger inputs (default MAX_MESSAGE_BYTES). */
  maxBytes?: number;
}

/**
 * Parses one SIP message: a UDP datagram, or a frame cut by `sipMessageLength` from a stream.
 * Bytes after Content-Length are ignored (RFC 3261 §18.3; RFC 4475 §3.1.1.8 dblreq). Without
 * Content-Length the body is the rest of the input (datagram rule). Throws SipParseError.
 */
export function parseSipMessage(
  input: Uint8Array | string,
  options: ParseOptions = {},
): SipMessage {
  const buf = toBuffer(input);
  const maxBytes = options.maxBytes ?? MAX_MESSAGE_BYTES;
  if (buf.length > maxBytes) {
    throw new SipParseError(
      'ERR_SIP_TOO_LARGE',
      `message of ${buf.length} bytes exceeds ${maxBytes}`,
    );
  }
  // RFC 3261 §7.5: CRLFs before the start line are ignored (and are keep-alives, RFC 5626).
  let start = 0;
  while (buf[start] === 0x0d && buf[start + 1] === 0x0a) start += 2;
  if (start >= buf.length) throw new SipParseError('ERR_SIP_EMPTY', 'no SIP message (only CRLF)');
  const headEnd = buf.indexOf(CRLFCRLF, start);
  const headBytes = buf.subarray(start, headEnd < 0 ? buf.length : headEnd);
  const encoding = isUtf8(headBytes) ? 'utf8' : 'latin1';
  const { startLine, headers, problem } = splitHead(headBytes.toString(encoding));
  headers.encoding = encoding;
  const isRequest = !startLine.startsWith('SIP/');
  // A request with a Via can be answered, even one missing From, To, Call-ID or CSeq (RFC 4475
  // §3.3.1: ideally a 400; its sender sees why in a trace, if it cannot match the answer).
  // RFC 3261 §17: an ACK is never answered, one that does not parse neither (it is dropped).
  const replyable = isRequest && headers.has('via') && !isAck(startLine, headers);
  try {
    if (problem) throw problem;
    if (headEnd < 0) {
      throw new SipParseError('ERR_SIP_INCOMPLETE', 'no empty line after the headers');
    }
    const msg = isRequest
      ? requestFromLine(startLine, headers)
      : responseFromLine(startLine, headers);
    msg.body = readBody(buf, headEnd + 4, headers);
    validate(msg);
    return msg;
  } catch (err) {
    if (err instanceof SipParseError && replyable && !err.canReply400) throw err.withReply(headers);
    throw err;
  }
}

/** An ACK by its request line or its CSeq, whichever still reads. */
function isAck(startLine: string, headers: SipHeaders): boolean {
  return startLine.startsWith('ACK ') || /(^|[ \t])ACK$/.test(headers.get('cseq') ?? '');
}

function splitHead(head: string): {
  startLine: string;
  headers: SipHeaders;
  problem?: SipParseError;
} {
  const lines = head.split('\r\n');
  const startLine = lines[0] ?? '';
  const headers = new SipHeaders();
  let problem: SipParseError | undefined;
  const seen: Record<string, number> = {};
  let name: string | undefined;
  let value = '';
  const flush = () => {
    if (name === undefined) return;
    headers.pushParsed(name, trimWs(value));
    name = undefined;
  };
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i] as string;
    const c = line.charCodeAt(0);
    if (c === 0x20 || c === 0x09) {
      // RFC 3261 §7.3.1: a folded line continues the previous value; the fold is one SP.
      if (name === undefined) {
        problem ??= new SipParseError('ERR_SIP_HEADER', 'continuation line without a header');
      } else value = `${trimWs(value)} ${trimWs(line)}`;
      continue;
    }
    flush();
    const colon = line.indexOf(':');
    const n = colon < 0 ? '' : trimWs(line.slice(0, colon)); // "TO :" is legal (HCOLON)
    if (!isToken(n)) {
      problem ??= new SipParseError('ERR_SIP_HEADER', `bad header line "${line.slice(0, 80)}"`);
      continue;
    }
    name = n;
    value = line.slice(colon + 1);
  }
  flush();
  for (const f of headers) {
    if (!SINGLE_VALUED.has(f.key) && f.key !== 'content-length') continue;
    seen[f.key] = (seen[f.key] ?? 0) + 1;
    if (seen[f.key] === 2 && f.key !== 'content-length') {
      // RFC 4475 §3.3.9 multi01
      problem ??= new SipParseError('ERR_SIP_DUPLICATE_HEADER', `more than one ${f.name} header`, {
        header: f.key,
      });
    }
  }
  return problem ? { startLine, headers, problem } : { startLine, headers };
}

function startLineError(line: string, why: string): SipParseError {
  return new SipParseError('ERR_SIP_START_LINE', `bad start line "${line.slice(0, 80)}": ${why}`);
}

function requestFromLine(line: string, headers: SipHeaders): SipRequest {
  // Request-Line = Method SP Request-URI SP SIP-Version: exactly one SP each (RFC 3261 §7.1;
  // extra or trailing LWS is rejected, RFC 4475 §3.1.2.7-9).
  const sp1 = line.indexOf(' ');
  const sp2 = sp1 < 0 ? -1 : line.indexOf(' ', sp1 + 1);
  if (sp1 <= 0 || sp2 < 0 || line.indexOf(' ', sp2 + 1) >= 0) {
    throw startLineError(line, 'not "Method SP Request-URI SP SIP-Version"');
  }
  const method = line.slice(0, sp1);
  const uri = line.slice(sp1 + 1, sp2);
  const version = line.slice(sp2 + 1);
  if (!isToken(method)) throw startLineError(line, 'method is not a token');
  if (!REQUEST_VERSION.test(version)) throw startLineError(line, 'bad SIP-Version');
  const req = new SipRequest({ method, uri, headers, version: version.toUpperCase() });
  let parsed: Uri;
  try {
    parsed = req.requestUri;
  } catch (err) {
    throw startLineError(line, err instanceof Error ? err.message : 'bad Request-URI');
  }
  // RFC 3261 §19.1.5: headers are not allowed in a Request-URI (RFC 4475 §3.1.2.10 escruri).
  if (isSipUri(parsed) && Object.keys(parsed.headers).length > 0) {
    throw startLineError(line, 'Request-URI carries ?headers');
  }
  return req;
}

function responseFromLine(line: string, headers: SipHeaders): SipResponse {
  const m = STATUS_LINE.exec(line);
  if (!m) throw startLineError(line, 'not "SIP-Version SP Status-Code SP Reason-Phrase"');
  return new SipResponse({
    status: Number(m[2]),
    reason: m[3] ?? '',
    headers,
    version: (m[1] as string).toUpperCase(),
  });
}

function contentLengthError(message: string): SipParseError {
  return new SipParseError('ERR_SIP_CONTENT_LENGTH', message, { header: 'content-length' });
}

function readContentLength(headers: SipHeaders): number | undefined {
  const values = headers.getAll('content-length');
  if (values.length === 0) return undefined;
  if (values.length > 1) throw contentLengthError('more than one Content-Length'); // mcl01
  const v = trimWs(values[0] as string);
  if (!/^\d{1,10}$/.test(v)) throw contentLengthError(`bad Content-Length "${v.slice(0, 20)}"`);
  return Number(v);
}

function readBody(buf: Buffer, bodyStart: number, headers: SipHeaders): Buffer {
  const length = readContentLength(headers);
  const available = Math.max(0, buf.length - bodyStart);
  if (length === undefined) return buf.subarray(bodyStart);
  if (length > available) {
    // RFC 3261 §18.3, RFC 4475 §3.1.2.2 clerr
    throw contentLengthError(`Content-Length ${length} but only ${available} body bytes`);
  }
  return buf.subarray(bodyStart, bodyStart + length);
}

function validate(msg: SipMessage): void {
  // RFC 3261 §8.1.1: To, From, CSeq, Call-ID, Via (Max-Forwards is not enforced: RFC 2543
  // requests lack it, RFC 4475 §3.4.1 inv2543).
  const absent = ['Via', 'From', 'To', 'Call-ID', 'CSeq'].filter((h) => !msg.headers.has(h));
  if (absent.length > 1) {
    throw new SipParseError('ERR_SIP_MISSING_HEADER', `missing ${absent.join(', ')} headers`);
  }
  if (absent[0] !== undefined) throw missing(absent[0]);
  if (msg.via.length === 0) throw missing('Via');
  void msg.from;
  void msg.to;
  const callId = msg.callId;
  if (callId === '' || /\s/.test(callId)) {
    throw new SipParseError('ERR_SIP_HEADER', `bad Call-ID "${callId.slice(0, 80)}"`, {
      header: 'call-id',
    });
  }
  const cseq = msg.cseq;
  if (msg.kind === 'request' && cseq.method !== msg.method) {
    // RFC 3261 §8.1.1.5; RFC 4475 §3.1.2.16-17 mismatch01/02
    throw new SipParseError(
      'ERR_SIP_CSEQ',
      `CSeq method ${cseq.method} does not match request method ${msg.method}`,
      { header: 'cseq' },
    );
  }
  void msg.maxForwards;
}

/**
 * The length of the first frame in a stream buffer, or undefined if more bytes are needed.
 * Leading CRLFs form a frame of their own (a keep-alive, which parseSipMessage rejects as
 * ERR_SIP_EMPTY). Stream transports MUST carry Content-Length (RFC 3261
 * §18.3); its absence or a malformed value throws SipParseError.
 */
export function sipMessageLength(buf: Uint8Array): number | undefined {
  const b = toBuffer(buf);
  let start = 0;
  while (b[start] === 0x0d && b[start + 1] === 0x0a) start += 2;
  if (start > 0) return start; // a keep-alive (RFC 5626 §4.4.1): its own frame
  const headEnd = b.indexOf(CRLFCRLF);
  if (headEnd < 0) return undefined;
  const { headers } = splitHead(b.toString('latin1', 0, headEnd));
  const length = readContentLength(headers);
  if (length === undefined) throw contentLengthError('no Content-Length on a stream transport');
  const total = headEnd + 4 + length;
  return total <= b.length ? total : undefined;
}

// ---- serialising --------------------------------------------------------------------------

/** RFC 3261 wire format: start line, headers (canonical names), Content-Length, body. */
export function serialize(msg: SipMessage): Buffer {
  let head =
    msg.kind === 'request'
      ? `${msg.method} ${msg.uri} ${msg.version}\r\n`
      : `${msg.version} ${msg.status} ${msg.reason}\r\n`;
  for (const f of msg.headers) {
    if (f.key === 'content-length') continue;
    head += `${wireName(f.key, f.name)}: ${f.value}\r\n`;
  }
  head += `Content-Length: ${msg.body.length}\r\n\r\n`;
  const encoding = msg.headers.encoding;
  const headLength = Buffer.byteLength(head, encoding);
  const out = Buffer.allocUnsafe(headLength + msg.body.length);
  out.write(head, 0, encoding);
  msg.body.copy(out, headLength);
  return out;
}
