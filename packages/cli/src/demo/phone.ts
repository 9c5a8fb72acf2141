// A scripted SIP phone for the demo: one UDP socket on loopback, REGISTER, an auto-answering
// callee (180, 200 with SDP, ACK, BYE), a caller that sets up and tears down a dialog through
// the route set its nodes recorded, and MESSAGE. Enough SIP to show calls crossing the overlay.

import { randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import {
  formatUri,
  parseNameAddr,
  parseSipMessage,
  type SipMessage,
  type SipRequest,
  type SipResponse,
} from '@peerbx/sip-adapter';

/** How long the phone waits for any one answer. */
export const PHONE_WAIT_MS = 8_000;

export interface CallResult {
  from: string;
  to: string;
  /** INVITE sent → 200 OK received, ms. */
  setupMs: number;
  /** INVITE sent → 180 Ringing received, ms (undefined if none came). */
  ringingMs?: number;
  /** Node-IDs (hex) from the recorded route, caller's node first. */
  nodes: string[];
}

interface Waiter {
  pred: (m: SipMessage) => boolean;
  resolve: (m: SipMessage) => void;
}

const id = () => randomBytes(6).toString('hex');

export class DemoPhone {
  readonly received: { from: string; text: string }[] = [];
  /** Calls this phone answered (Call-IDs). */
  readonly answered = new Set<string>();
  private waiters: Waiter[] = [];
  private cseq = 1;
  private readonly answers = new Map<string, string>();

  private constructor(
    readonly user: string,
    readonly domain: string,
    private readonly sock: Socket,
    readonly port: number,
    /** Where its node takes SIP (UDP). */
    readonly node: { host: string; port: number },
  ) {
    sock.on('message', (data) => this.onDatagram(data));
  }

  static async open(
    user: string,
    domain: string,
    node: { host: string; port: number },
  ): Promise<DemoPhone> {
    const sock = createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(0, '127.0.0.1', () => resolve());
    });
    return new DemoPhone(user, domain, sock, sock.address().port, node);
  }

  get aor(): string {
    return `sip:${this.user}@${this.domain}`;
  }

  private get contact(): string {
    return `<sip:${this.user}@127.0.0.1:${this.port}>`;
  }

  close(): void {
    this.sock.close();
  }

  /** REGISTER with its node; expires 0 unregisters. */
  async register(expires: number): Promise<void> {
    const callId = `reg-${this.user}-${id()}`;
    const res = await this.transaction(
      this.request('REGISTER', `sip:${this.domain}`, {
        to: this.aor,
        callId,
        headers: [`Contact: ${this.contact}`, `Expires: ${expires}`],
      }),
      this.node,
      callId,
    );
    if (res.status !== 200)
      throw new Error(`REGISTER of ${this.user} got ${res.status} ${res.reason}`);
  }

  /** Calls `to` (a user in the same domain), holds the call for `holdMs`, hangs up. */
  async call(to: string, holdMs: number): Promise<CallResult> {
    const target = `sip:${to}@${this.domain}`;
    const callId = `call-${this.user}-${to}-${id()}`;
    const fromTag = id();
    const sdp = sdpOffer(this.user, this.port + 1000);
    const t0 = performance.now();
    let ringingMs: number | undefined;
    const ringing = this.next(
      (m) => m.kind === 'response' && m.callId === callId && m.status === 180,
      PHONE_WAIT_MS,
    ).then(
      () => {
        ringingMs = performance.now() - t0;
      },
      () => undefined,
    );
    const res = await this.transaction(
      this.request('INVITE', target, {
        to: target,
        callId,
        fromTag,
        headers: [`Contact: ${this.contact}`, 'Content-Type: application/sdp'],
        body: sdp,
      }),
      this.node,
      callId,
    );
    const setupMs = performance.now() - t0;
    await Promise.race([ringing, Promise.resolve()]);
    if (res.status !== 200)
      throw new Error(`INVITE ${this.user} → ${to} got ${res.status} ${res.reason}`);
    // The route set, as the caller uses it: Record-Route reversed (RFC 3261 §12.1.2).
    const recorded = res.headers.getList('record-route');
    const routes = [...recorded].reverse();
    const remote = parseNameAddr(res.headers.get('contact') ?? '');
    const remoteUri = formatUri(remote.uri);
    const toHeader = res.headers.get('to') ?? `<${target}>`;
    const first = routes[0] ? hostPortOf(routes[0]) : this.node;
    const cseq = res.cseq.seq;
    const inDialog = (method: string, seq: number, branch: string) =>
      [
        `${method} ${remoteUri} SIP/2.0`,
        `Via: SIP/2.0/UDP 127.0.0.1:${this.port};branch=z9hG4bK${branch};rport`,
        'Max-Forwards: 70',
        ...(routes.length > 0 ? [`Route: ${routes.join(', ')}`] : []),
        `From: <${this.aor}>;tag=${fromTag}`,
        `To: ${toHeader}`,
        `Call-ID: ${callId}`,
        `CSeq: ${seq} ${method}`,
        'Content-Length: 0',
        '',
        '',
      ].join('\r\n');
    this.sendTo(inDialog('ACK', cseq, id()), first);
    await sleep(holdMs);
    const byeBranch = id();
    const bye = this.next(
      (m) =>
        m.kind === 'response' && m.callId === callId && m.cseq.method === 'BYE' && m.status >= 200,
      PHONE_WAIT_MS,
    );
    this.sendTo(inDialog('BYE', cseq + 1, byeBranch), first);
    const byeRes = (await bye.catch(() => {
      throw new Error(`BYE ${this.user} → ${to}: no answer within ${PHONE_WAIT_MS} ms`);
    })) as SipResponse;
    if (byeRes.status !== 200) throw new Error(`BYE ${this.user} → ${to} got ${byeRes.status}`);
    const nodes = routes.map(nodeOfRoute).filter((n): n is string => n !== undefined);
    return {
      from: this.user,
      to,
      setupMs,
      ...(ringingMs !== undefined ? { ringingMs } : {}),
      nodes,
    };
  }

  /** Sends a MESSAGE to `to`; resolves when it was accepted (200/202). */
  async message(to: string, text: string): Promise<number> {
    const target = `sip:${to}@${this.domain}`;
    const callId = `msg-${this.user}-${id()}`;
    const t0 = performance.now();
    const res = await this.transaction(
      this.request('MESSAGE', target, {
        to: target,
        callId,
        headers: ['Content-Type: text/plain'],
        body: text,
      }),
      this.node,
      callId,
    );
    if (res.status !== 200 && res.status !== 202)
      throw new Error(`MESSAGE ${this.user} → ${to} got ${res.status} ${res.reason}`);
    return performance.now() - t0;
  }

  // --- plumbing --------------------------------------------------------------------------------

  private request(
    method: string,
    uri: string,
    o: { to: string; callId: string; fromTag?: string; headers?: string[]; body?: string },
  ): string {
    const body = o.body ?? '';
    return [
      `${method} ${uri} SIP/2.0`,
      `Via: SIP/2.0/UDP 127.0.0.1:${this.port};branch=z9hG4bK${id()};rport`,
      'Max-Forwards: 70',
      `From: <${this.aor}>;tag=${o.fromTag ?? id()}`,
      `To: <${o.to}>`,
      `Call-ID: ${o.callId}`,
      `CSeq: ${this.cseq++} ${method}`,
      'User-Agent: peerbx-demo',
      ...(o.headers ?? []),
      `Content-Length: ${Buffer.byteLength(body)}`,
      '',
      body,
    ].join('\r\n');
  }

  /** Sends a request and returns its final response, retransmitting like Timer A on UDP. */
  private async transaction(
    text: string,
    to: { host: string; port: number },
    callId: string,
  ): Promise<SipResponse> {
    const final = this.next(
      (m) => m.kind === 'response' && m.callId === callId && m.status >= 200,
      PHONE_WAIT_MS,
    );
    let interval = 500;
    let timer: NodeJS.Timeout | undefined;
    const resend = () => {
      this.sendTo(text, to);
      timer = setTimeout(resend, interval);
      interval = Math.min(interval * 2, 4000);
    };
    const provisional = this.next(
      (m) => m.kind === 'response' && m.callId === callId,
      PHONE_WAIT_MS,
    ).then(
      () => clearTimeout(timer),
      () => undefined,
    );
    resend();
    try {
      return (await final.catch(() => {
        const method = text.slice(0, text.indexOf(' '));
        throw new Error(`${method} from ${this.user}: no final answer within ${PHONE_WAIT_MS} ms`);
      })) as SipResponse;
    } finally {
      clearTimeout(timer);
      void provisional;
    }
  }

  private next(pred: (m: SipMessage) => boolean, ms: number): Promise<SipMessage> {
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        pred,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error('timeout'));
      }, ms);
      this.waiters.push(waiter);
    });
  }

  private sendTo(text: string, to: { host: string; port: number }): void {
    this.sock.send(text, to.port, to.host);
  }

  private onDatagram(data: Buffer): void {
    let m: SipMessage;
    try {
      m = parseSipMessage(data);
    } catch {
      return;
    }
    if (m.kind === 'request') this.onRequest(m);
    for (const w of [...this.waiters]) {
      if (w.pred(m)) {
        this.waiters = this.waiters.filter((x) => x !== w);
        w.resolve(m);
      }
    }
  }

  /** The callee side: answers at once; a retransmitted request gets the same answer again. */
  private onRequest(req: SipRequest): void {
    const key = `${req.callId}/${req.cseq.seq}/${req.method}`;
    const again = this.answers.get(key);
    const back = this.replyTarget(req);
    if (again) {
      this.sendTo(again, back);
      return;
    }
    switch (req.method) {
      case 'INVITE': {
        const toTag = id();
        this.sendTo(this.response(req, 180, 'Ringing', toTag), back);
        const ok = this.response(req, 200, 'OK', toTag, sdpOffer(this.user, this.port + 1000));
        this.answers.set(key, ok);
        this.answered.add(req.callId);
        this.sendTo(ok, back);
        return;
      }
      case 'ACK':
        return;
      case 'MESSAGE': {
        const ok = this.response(req, 200, 'OK', id());
        this.received.push({ from: formatUri(req.from.uri), text: req.body.toString('utf8') });
        this.answers.set(key, ok);
        this.sendTo(ok, back);
        return;
      }
      case 'BYE':
      case 'OPTIONS':
      case 'CANCEL': {
        const ok = this.response(req, 200, 'OK', req.toTag ?? id());
        this.answers.set(key, ok);
        this.sendTo(ok, back);
        return;
      }
      default:
        this.sendTo(this.response(req, 405, 'Method Not Allowed', id()), back);
    }
  }

  private response(
    req: SipRequest,
    status: number,
    reason: string,
    toTag: string,
    sdp?: string,
  ): string {
    const to = req.headers.get('to') ?? '';
    const body = sdp ?? '';
    return [
      `SIP/2.0 ${status} ${reason}`,
      ...req.headers.getAll('via').map((v) => `Via: ${v}`),
      ...req.headers.getAll('record-route').map((v) => `Record-Route: ${v}`),
      `From: ${req.headers.get('from') ?? ''}`,
      `To: ${/;\s*tag=/i.test(to) ? to : `${to};tag=${toTag}`}`,
      `Call-ID: ${req.callId}`,
      `CSeq: ${req.cseq.seq} ${req.cseq.method}`,
      ...(req.method === 'INVITE' ? [`Contact: ${this.contact}`] : []),
      ...(sdp ? ['Content-Type: application/sdp'] : []),
      `Content-Length: ${Buffer.byteLength(body)}`,
      '',
      body,
    ].join('\r\n');
  }

  /** Responses go to the top Via's received/rport, else its sent-by (RFC 3261 §18.2.2). */
  private replyTarget(req: SipRequest): { host: string; port: number } {
    const via = req.topVia;
    if (!via) return this.node;
    const host = via.params.received ?? via.host;
    const rport = via.params.rport;
    const port = rport ? Number(rport) : (via.port ?? 5060);
    return { host: typeof host === 'string' ? host : this.node.host, port };
  }
}

function sdpOffer(user: string, rtpPort: number): string {
  return [
    'v=0',
    `o=${user} 1 1 IN IP4 127.0.0.1`,
    's=peerbx demo',
    'c=IN IP4 127.0.0.1',
    't=0 0',
    `m=audio ${rtpPort} RTP/AVP 0`,
    'a=rtpmap:0 PCMU/8000',
    '',
  ].join('\r\n');
}

function hostPortOf(route: string): { host: string; port: number } {
  const m = /@([^:;>]+):(\d+)/.exec(route) ?? /sip:([^:;>@]+):(\d+)/.exec(route);
  return m ? { host: m[1] as string, port: Number(m[2]) } : { host: '127.0.0.1', port: 5060 };
}

function nodeOfRoute(route: string): string | undefined {
  return /sip:([0-9a-f]{64})@/i.exec(route)?.[1]?.toLowerCase();
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
