// Calls of browser phones here. A browser (SIP over WebSocket, RFC 7118) is reached only over
// its own connection; when that closes mid-call (its tab closed, the machine asleep), it can no
// longer send the BYE, and the other side would sit in a silent call until its user hangs up.
// The proxy remembers, per call of a browser here, the BYE the browser would send, and sends it
// itself once the browser's connection has closed and the browser has not come back (as
// Kamailio's dialog module does with dlg_end_dlg). A browser that came back on a new connection
// is asked whether it still has the call (an OPTIONS in the dialog, as Kamailio's dialog
// keepalives): sip.js drops its calls when its connection fails, then registers again with the
// same Contact, and answers 481. Other phones are left alone: a TCP phone's connection may drop
// and come back while its call goes on, its media being direct.

import { setBounded } from '@peerbx/overlay-core';
import type { SipRequest, SipResponse } from '../message/sip-message.js';
import { formatNameAddr, formatUri, type NameAddr, type Via } from '../message/uri.js';
import type { SipDestination } from '../transport/transport.js';
import { dialogRequest } from './dialog-request.js';
import { nodeOfUri } from './node-route.js';

/** Calls of browsers remembered at most (by Call-ID; the oldest forgotten first). */
export const MAX_BROWSER_CALLS = 10_000;
/**
 * Requests a browser may send in the early dialog before its 2xx is seen (PRACK, UPDATE, of a
 * call it answers): its BYE's CSeq stays above them.
 */
const EARLY_CSEQ_MARGIN = 10;

/** Where the BYE goes: a SIP destination, or a node (its channel found when sending). */
export type ByeDestination = SipDestination | { nodeHex: string };

/** One browser's side of a call. */
interface BrowserCall {
  /** The browser's connection (moved when it comes back on another). */
  flow: string;
  /** The browser's own Contact, by which it is found again on a new connection. */
  contact: string;
  /** The highest CSeq the browser used in the dialog. */
  cseq: number;
  /** The BYE's parts, once the call was answered. */
  bye?: {
    destination: ByeDestination;
    via: Via;
    target: string;
    routes: readonly string[];
    /** From and To as the browser sends them (its own tag in From), and the two tags. */
    from: string;
    to: string;
    tags: readonly [string | undefined, string | undefined];
  };
}

export interface BrowserCallsOptions {
  /** Sends a BYE (a new client transaction; its answer is not awaited). */
  send(bye: SipRequest, to: ByeDestination): void;
  /** The connection a browser with this Contact is registered on again, if it came back. */
  backOn(contact: string): string | undefined;
  /** Our Via for a request to a browser over its connection. */
  viaToward(flow: string): Via;
  /**
   * Sends a request to a browser over its connection; `answered` gets the final status (408
   * when none came), and is not called when the request could not be sent.
   */
  ask(request: SipRequest, flow: string, answered: (status: number) => void): void;
}

export class BrowserCalls {
  /** By Call-ID: a browser's side, or both when two browsers here call each other. */
  private readonly calls = new Map<string, BrowserCall[]>();

  constructor(private readonly options: BrowserCallsOptions) {}

  /** An INVITE from or to a browser here went on: its CSeqs are counted from now. */
  expect(callId: string, flow: string, contact: string, cseq: number): BrowserCall {
    const sides = this.calls.get(callId) ?? [];
    let call = sides.find((c) => c.flow === flow);
    if (!call) {
      call = { flow, contact, cseq };
      sides.push(call);
      setBounded(this.calls, callId, sides, MAX_BROWSER_CALLS);
    }
    return call;
  }

  /**
   * A 2xx to an INVITE from a browser here went upstream: its BYE goes where the INVITE went
   * (under our Via), to the callee's Contact, along the 2xx's Record-Routes of the hops after
   * us (those beyond the INVITE's own), reversed (§12.1.2).
   */
  callerAnswered(call: BrowserCall, invite: SipRequest, ok: SipResponse, to: ByeDestination): void {
    const via = invite.topVia;
    const target = contactOf(ok);
    if (call.bye || !via || target === undefined) return;
    const rr = ok.recordRoutes;
    const routes = rr.slice(0, Math.max(0, rr.length - invite.recordRoutes.length)).reverse();
    call.bye = {
      destination: to,
      via,
      target,
      routes: routes.map(formatNameAddr),
      from: ok.headers.get('from') ?? '',
      to: ok.headers.get('to') ?? '',
      tags: [ok.fromTag, ok.toTag],
    };
  }

  /**
   * A browser here answered an INVITE with a 2xx: its BYE goes back the way the INVITE came
   * (`to`, under `via`), to the caller's Contact, along the INVITE's Record-Routes after ours
   * (§12.1.1), with From and To swapped.
   */
  calleeAnswered(
    call: BrowserCall,
    invite: SipRequest,
    ok: SipResponse,
    to: ByeDestination,
    via: Via,
  ): void {
    const target = contactOf(invite);
    if (call.bye || target === undefined) return;
    call.bye = {
      destination: to,
      via,
      target,
      routes: afterOurs(invite.recordRoutes).map(formatNameAddr),
      from: ok.headers.get('to') ?? '',
      to: ok.headers.get('from') ?? '',
      tags: [ok.toTag, ok.fromTag],
    };
  }

  /**
   * A request passing through: a BYE of the dialog ends the browser's side of it; the
   * browser's own requests raise the CSeq its BYE will need.
   */
  seen(request: SipRequest, flow: string | undefined): void {
    if (this.calls.size === 0) return;
    const sides = this.calls.get(request.callId);
    if (!sides) return;
    if (request.method === 'BYE') {
      const tags = [request.fromTag, request.toTag];
      const left = sides.filter((c) => !c.bye || !sameTags(c.bye.tags, tags));
      if (left.length === 0) this.calls.delete(request.callId);
      else this.calls.set(request.callId, left);
      return;
    }
    for (const c of sides) if (c.flow === flow) c.cseq = Math.max(c.cseq, request.cseq.seq);
  }

  /**
   * A browser's connection closed a while ago: each call it answered or made is ended with
   * its BYE, unless the browser is registered again on another connection (a page that
   * reconnected), where its calls move, and it is asked whether it still has each. Returns how
   * many BYEs went.
   */
  flowClosed(flow: string): number {
    let ended = 0;
    for (const [callId, sides] of [...this.calls]) {
      for (const call of [...sides]) {
        if (call.flow !== flow) continue;
        const back = this.options.backOn(call.contact);
        if (back === undefined) {
          if (this.end(callId, call, "The browser's connection closed")) ended++;
          continue;
        }
        call.flow = back;
        if (call.bye) this.ask(callId, call, call.bye);
      }
    }
    return ended;
  }

  /**
   * An OPTIONS in the dialog to a browser back on a new connection: 481 (or no answer) says
   * its call is gone, and the BYE goes. CSeq 0 is out of order for a dialog the browser has
   * (a 500 is an answer as good as a 200), and changes no CSeq it expects next.
   */
  private ask(callId: string, call: BrowserCall, bye: NonNullable<BrowserCall['bye']>): void {
    const options = dialogRequest({
      method: 'OPTIONS',
      target: call.contact,
      via: this.options.viaToward(call.flow),
      routes: [],
      from: bye.to,
      to: bye.from,
      callId,
      cseq: 0,
    });
    this.options.ask(options, call.flow, (status) => {
      if (status === 481 || status === 408) {
        this.end(callId, call, 'The browser no longer has the call');
      }
    });
  }

  /** Forgets a browser's side of a call, and sends its BYE if it was answered. */
  private end(callId: string, call: BrowserCall, why: string): boolean {
    const sides = this.calls.get(callId);
    const at = sides?.indexOf(call) ?? -1;
    if (!sides || at < 0) return false;
    sides.splice(at, 1);
    if (sides.length === 0) this.calls.delete(callId);
    const bye = call.bye;
    if (!bye) return false;
    this.options.send(
      dialogRequest({
        method: 'BYE',
        ...bye,
        callId,
        cseq: call.cseq + EARLY_CSEQ_MARGIN + 1,
        reason: `SIP;text="${why}"`,
      }),
      bye.destination,
    );
    return true;
  }
}

function sameTags(a: readonly (string | undefined)[], b: readonly (string | undefined)[]): boolean {
  return (a[0] === b[0] && a[1] === b[1]) || (a[0] === b[1] && a[1] === b[0]);
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

/**
 * The Record-Routes after ours at the top: one entry of ours, or two when the call joined two
 * transports here (Proxy.forward).
 */
function afterOurs(routes: readonly NameAddr[]): NameAddr[] {
  const ours = routes[0] === undefined ? undefined : nodeOfUri(routes[0].uri);
  let n = 1;
  while (ours !== undefined && n < routes.length && nodeOfUri(routes[n]!.uri) === ours) n++;
  return routes.slice(n);
}
