// A request inside a dialog that the proxy sends on a phone's behalf (an ACK or BYE for a 2xx
// nobody upstream can take, the BYE of a browser that went away), or to ask a browser whether
// it still has a call (OPTIONS): its headers per RFC 3261 §12.2.1.1, under a Via of ours with a
// new branch.

import { generateBranch } from '../message/ids.js';
import { SipRequest } from '../message/sip-message.js';
import { formatVia, type Via } from '../message/uri.js';

export interface DialogRequestParts {
  method: 'ACK' | 'BYE' | 'OPTIONS';
  /** The remote target (the other side's Contact). */
  target: string;
  /** Our Via (its branch is renewed). */
  via: Via;
  /** The route set, in order. */
  routes: readonly string[];
  from: string;
  to: string;
  callId: string;
  cseq: number;
  /** A Reason header (RFC 3326) for a BYE. */
  reason?: string;
}

export function dialogRequest(p: DialogRequestParts): SipRequest {
  const req = new SipRequest({ method: p.method, uri: p.target });
  const h = req.headers;
  h.append('Via', formatVia({ ...p.via, params: { ...p.via.params, branch: generateBranch() } }));
  h.append('Max-Forwards', '70');
  for (const route of p.routes) h.append('Route', route);
  h.append('From', p.from);
  h.append('To', p.to);
  h.append('Call-ID', p.callId);
  h.append('CSeq', `${p.cseq} ${p.method}`);
  if (p.reason) h.append('Reason', p.reason);
  h.append('Content-Length', '0');
  return req;
}
