// Header names: case-insensitive, with RFC 3261 §7.3.3 compact forms (and the compact forms
// registered since), mapped to one lower-case key; and the spelling we write on the wire.

/** Compact form → lower-case full name (IANA "Header Fields" registry). */
export const COMPACT_FORMS: Readonly<Record<string, string>> = {
  a: 'accept-contact',
  b: 'referred-by',
  c: 'content-type',
  d: 'request-disposition',
  e: 'content-encoding',
  f: 'from',
  i: 'call-id',
  j: 'reject-contact',
  k: 'supported',
  l: 'content-length',
  m: 'contact',
  n: 'identity-info',
  o: 'event',
  r: 'refer-to',
  s: 'subject',
  t: 'to',
  u: 'allow-events',
  v: 'via',
  x: 'session-expires',
  y: 'identity',
};

const CANONICAL: Readonly<Record<string, string>> = {
  'accept-contact': 'Accept-Contact',
  'allow-events': 'Allow-Events',
  'authentication-info': 'Authentication-Info',
  'call-id': 'Call-ID',
  'content-encoding': 'Content-Encoding',
  'content-length': 'Content-Length',
  'content-type': 'Content-Type',
  cseq: 'CSeq',
  'identity-info': 'Identity-Info',
  'max-forwards': 'Max-Forwards',
  'mime-version': 'MIME-Version',
  'proxy-authenticate': 'Proxy-Authenticate',
  'proxy-authorization': 'Proxy-Authorization',
  'proxy-require': 'Proxy-Require',
  'record-route': 'Record-Route',
  'refer-to': 'Refer-To',
  'referred-by': 'Referred-By',
  'reject-contact': 'Reject-Contact',
  'request-disposition': 'Request-Disposition',
  rseq: 'RSeq',
  rack: 'RAck',
  'session-expires': 'Session-Expires',
  'www-authenticate': 'WWW-Authenticate',
  accept: 'Accept',
  allow: 'Allow',
  authorization: 'Authorization',
  contact: 'Contact',
  date: 'Date',
  event: 'Event',
  expires: 'Expires',
  from: 'From',
  identity: 'Identity',
  path: 'Path',
  require: 'Require',
  route: 'Route',
  server: 'Server',
  subject: 'Subject',
  supported: 'Supported',
  timestamp: 'Timestamp',
  to: 'To',
  unsupported: 'Unsupported',
  'user-agent': 'User-Agent',
  via: 'Via',
  warning: 'Warning',
};

const keyCache = new Map<string, string>();
const KEY_CACHE_LIMIT = 1024;

/** The lower-case full name a header is stored and looked up under: 'I' and 'call-ID' → 'call-id'. */
export function headerKey(name: string): string {
  const cached = keyCache.get(name);
  if (cached !== undefined) return cached;
  const lower = name.toLowerCase();
  const key = (lower.length === 1 ? COMPACT_FORMS[lower] : undefined) ?? lower;
  if (keyCache.size < KEY_CACHE_LIMIT) keyCache.set(name, key);
  return key;
}

/** The name to write: the canonical spelling of a known header, else the name as received. */
export function wireName(key: string, received: string): string {
  return CANONICAL[key] ?? received;
}
