// Transaction identities: RFC 3261 §17.1.3 (responses to client transactions) and §17.2.3
// (requests to server transactions), with a simplified RFC 2543 fallback for requests whose
// branch lacks the magic cookie.

import { isRfc3261Branch } from '../message/ids.js';
import type { SipMessage, SipRequest } from '../message/sip-message.js';
import { formatVia } from '../message/uri.js';

/** The ACK for a non-2xx response belongs to the INVITE transaction it acknowledges. */
function transactionMethod(method: string): string {
  return method === 'ACK' ? 'INVITE' : method;
}

/**
 * §17.1.3: a response matches the client transaction whose request carried its top Via
 * branch and the same CSeq method (so a CANCEL's response does not reach the INVITE).
 * Also the key a client transaction is stored under, computed from its request.
 */
export function clientTransactionKey(message: SipMessage): string | undefined {
  const branch = message.topVia?.branch;
  if (!branch) return undefined;
  return `${branch}\n${message.cseq.method}`;
}

/**
 * §17.2.3: branch, sent-by and method of the top Via, the ACK mapped to INVITE and CANCEL
 * kept apart. Without the magic cookie, an RFC 2543 key: Request-URI, From tag, Call-ID,
 * CSeq number and method, and the top Via (the To tag, which a non-2xx ACK adds, is left out).
 */
export function serverTransactionKey(request: SipRequest): string | undefined {
  return keyWithMethod(request, transactionMethod(request.method));
}

/** §9.2: the INVITE server transaction a CANCEL cancels has the CANCEL's key with INVITE. */
export function cancelTargetKey(cancel: SipRequest): string | undefined {
  return keyWithMethod(cancel, 'INVITE');
}

function keyWithMethod(request: SipRequest, method: string): string | undefined {
  const via = request.topVia;
  if (!via) return undefined;
  if (isRfc3261Branch(via.branch)) {
    const sentBy = `${via.host.toLowerCase()}:${via.port ?? ''}`;
    return `${via.branch}\n${sentBy}\n${method}`;
  }
  return [
    'rfc2543',
    request.uri,
    request.fromTag ?? '',
    request.callId,
    request.cseq.seq,
    method,
    formatVia(via),
  ].join('\n');
}
