// Calls of browser phones here. A browser (SIP over WebSocket, RFC 7118) is reached only over
// its own connection; when that closes mid-call (its tab closed, the machine asleep), it can no
// longer send the BYE, and the other side would sit in a silent call until its user hangs up.
// The proxy remembers, per answered call of a browser here, the BYE the browser would send,
// and sends it itself once the browser's connection closes (as Kamailio's dialog module does
// with dlg_end_dlg). Other phones are left alone: a TCP phone's connection may drop and come
// back while its call goes on, its media being direct.

import { setBounded } from '@peerbx/overlay-core';
import { generateBranch } from '../message/ids.js';
import { SipRequest, type SipResponse } from '../message/sip-message.js';
import { formatNameAddr, formatUri, formatVia, type Via } from '../message/uri.js';
import type { TransactionLayer } from '../transaction/index.js';
import type { SipDestination } from '../transport/transport.js';

/** Answered calls of browsers remembered at most (the oldest forgotten first). */
export const MAX_BROWSER_CALLS = 10_000;

/** What the BYE of one side of a dialog needs. */
interface BrowserCall {
  /** The browser's connection. */
  readonly flow: string;
  /** Where the BYE goes, the Via it goes under (branch renewed), and its route. */
  readonly destination: SipDestination;
  readonly via: Via;
  readonly target: string;
  readonly routes: readonly string[];
  /** From and To as the browser sends them: its own tag in From. */
  readonly from: string;
  readonly to: string;
  /** The highest CSeq the browser used in the dialog. */
  cseq: number;
}

export class BrowserCalls {
  /** By Call-ID. */
  private readonly calls = new Map<string, BrowserCall>();

  constructor(private readonly transactions: TransactionLayer) {}

  /**
   * A 2xx to an INVITE from a browser here went upstream: the browser's BYE goes where the
   * INVITE went (`destination`, under our Via), to the callee's Contact, along the 2xx's
   * Record-Routes of the hops after us (the 2xx's beyond those the INVITE already had),
   * reversed (§12.1.2).
   */
  callerAnswered(
    flow: string,
    invite: SipRequest,
    ok: SipResponse,
    destination: SipDestination,
  ): void {
    const via = invite.topVia;
    const target = contactOf(ok);
    if (!via || target === undefined) return;
    const rr = ok.recordRoutes;
    const ours = invite.recordRoutes.length;
    this.remember(ok.callId, {
      flow,
      destination,
      via,
      target,
      routes: rr
        .slice(0, Math.max(0, rr.length - ours))
        .reverse()
        .map(formatNameAddr),
      from: ok.headers.get('from') ?? '',
      to: ok.headers.get('to') ?? '',
      cseq: invite.cseq.seq,
    });
  }

  /**
   * A 2xx of a browser here to an INVITE went upstream: the browser's BYE goes back the way
   * the INVITE came (`upstream`, under `via`), to the caller's Contact, along the INVITE's
   * Record-Routes after ours (§12.1.1), with From and To swapped.
   */
  calleeAnswered(
    flow: string,
    invite: SipRequest,
    ok: SipResponse,
    upstream: SipDestination,
    via: Via,
  ): void {
    const target = contactOf(invite);
    if (target === undefined) return;
    this.remember(ok.callId, {
      flow,
      destination: upstream,
      via,
      target,
      routes: invite.recordRoutes.slice(1).map(formatNameAddr),
      from: ok.headers.get('to') ?? '',
      to: ok.headers.get('from') ?? '',
      cseq: 0,
    });
  }

  /** A request passing through: a BYE ends the call; a browser's own raise its CSeq. */
  seen(request: SipRequest, flow: string | undefined): void {
    if (this.calls.size === 0 || request.toTag === undefined) return;
    const call = this.calls.get(request.callId);
    if (!call) return;
    if (request.method === 'BYE') this.calls.delete(request.callId);
    else if (flow === call.flow) call.cseq = Math.max(call.cseq, request.cseq.seq);
  }

  /** The connection closed: each of its browser's answered calls is ended with its BYE. */
  flowClosed(flow: string): number {
    let ended = 0;
    for (const [callId, call] of this.calls) {
      if (call.flow !== flow) continue;
      this.calls.delete(callId);
      try {
        this.transactions.sendRequest(bye(callId, call), call.destination, {
          receiveResponse: () => undefined,
        });
        ended++;
      } catch {
        // The other side's flow is gone too: nobody is left in the call.
      }
    }
    return ended;
  }

  private remember(callId: string, call: BrowserCall): void {
    // A 2xx retransmission, or a second 2xx of a forked call: the first answer stands.
    if (this.calls.has(callId)) return;
    setBounded(this.calls, callId, call, MAX_BROWSER_CALLS);
  }
}

function contactOf(message: SipRequest | SipResponse): string | undefined {
  try {
    const contacts = message.contacts;
    const first = contacts === '*' ? undefined : contacts[0];
    return first && formatUri(first.uri);
  } catch {
    return undefined; // a Contact that does not parse: nowhere to send a BYE
  }
}

function bye(callId: string, call: BrowserCall): SipRequest {
  const req = new SipRequest({ method: 'BYE', uri: call.target });
  const h = req.headers;
  h.append(
    'Via',
    formatVia({ ...call.via, params: { ...call.via.params, branch: generateBranch() } }),
  );
  h.append('Max-Forwards', '70');
  for (const route of call.routes) h.append('Route', route);
  h.append('From', call.from);
  h.append('To', call.to);
  h.append('Call-ID', callId);
  h.append('CSeq', `${call.cseq + 1} BYE`);
  h.append('Reason', 'SIP;text="The browser\'s connection closed"');
  h.append('Content-Length', '0');
  return req;
}
