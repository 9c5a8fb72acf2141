// RFC 3261 §17 transactions on a fake clock and a recording transport: every state machine's
// transitions and timers over UDP and over reliable transports, and §17.1.3/§17.2.3 matching.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Clock, TimerHandle } from '@peerbx/dht-kademlia';
import { createResponse } from '../src/message/response.js';
import {
  parseSipMessage,
  type SipMessage,
  SipRequest,
  SipResponse,
  serialize,
} from '../src/message/sip-message.js';
import { resolveTimers, type TimerOptions } from '../src/transaction/timers.js';
import type { ClientTransactionUser } from '../src/transaction/transaction.js';
import {
  type ServerTransaction,
  TransactionLayer,
  type TransactionUser,
} from '../src/transaction/transaction-layer.js';
import type { SipDestination, SipTransportAddress } from '../src/transport/transport.js';

// ---- fixtures -------------------------------------------------------------------------------

interface FakeTimer {
  at: number;
  seq: number;
  fn: () => void;
}

/** Virtual time: timers fire in due order (ties in start order) only when advanced. */
class FakeClock implements Clock {
  private time = 0;
  private seq = 0;
  private readonly timers = new Map<TimerHandle, FakeTimer>();

  now(): number {
    return this.time;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const handle = {};
    this.timers.set(handle, { at: this.time + ms, seq: this.seq++, fn });
    return handle;
  }

  clearTimeout(handle: TimerHandle): void {
    this.timers.delete(handle);
  }

  get pending(): number {
    return this.timers.size;
  }

  advance(ms: number): void {
    const end = this.time + ms;
    for (;;) {
      let next: [TimerHandle, FakeTimer] | undefined;
      for (const entry of this.timers) {
        const [, t] = entry;
        if (t.at > end) continue;
        if (!next || t.at < next[1].at || (t.at === next[1].at && t.seq < next[1].seq))
          next = entry;
      }
      if (!next) break;
      this.timers.delete(next[0]);
      this.time = next[1].at;
      next[1].fn();
    }
    this.time = end;
  }
}

interface Sent {
  at: number;
  message: SipMessage;
  destination: SipDestination;
  reliable: boolean;
}

const UDP_PEER: SipTransportAddress = { transport: 'udp', address: '192.0.2.10', port: 5070 };
const TCP_PEER: SipTransportAddress = {
  transport: 'tcp',
  address: '192.0.2.20',
  port: 40000,
  connectionId: 'tcp-1',
};
const UDP_DEST: SipDestination = { transport: 'udp', address: '198.51.100.5', port: 5060 };
const TCP_DEST: SipDestination = { transport: 'tcp', address: '198.51.100.5', port: 5060 };

interface RequestOptions {
  branch?: string;
  sentBy?: string;
  transport?: string;
  cseq?: number;
  toTag?: string;
  rport?: boolean;
  callId?: string;
}

function request(method: string, o: RequestOptions = {}): SipRequest {
  const rport = o.rport ? ';rport' : '';
  const text = [
    `${method} sip:bob@example.com SIP/2.0`,
    `Via: SIP/2.0/${o.transport ?? 'UDP'} ${o.sentBy ?? '192.0.2.10:5070'};branch=${o.branch ?? 'z9hG4bKinv1'}${rport}`,
    'Max-Forwards: 70',
    'Route: <sip:proxy.example.com;lr>',
    'From: <sip:alice@example.com>;tag=a1',
    `To: <sip:bob@example.com>${o.toTag ? `;tag=${o.toTag}` : ''}`,
    `Call-ID: ${o.callId ?? 'call-1@example.com'}`,
    `CSeq: ${o.cseq ?? 1} ${method}`,
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n');
  const msg = parseSipMessage(text);
  assert.ok(msg instanceof SipRequest);
  return msg;
}

/** The ACK a UAC sends for a non-2xx response to `invite` (same branch, §17.1.1.3). */
function ackFor(invite: SipRequest, toTag: string, branch?: string): SipRequest {
  const via = invite.topVia!;
  return request('ACK', {
    branch: branch ?? via.branch!,
    sentBy: `${via.host}:${via.port}`,
    transport: via.transport,
    cseq: invite.cseq.seq,
    toTag,
  });
}

/** A response as it comes back over the wire (re-parsed, so no object is shared). */
function reply(req: SipRequest, status: number, toTag = 'b1'): SipResponse {
  const msg = parseSipMessage(serialize(createResponse(req, status, { toTag })));
  assert.ok(msg instanceof SipResponse);
  return msg;
}

const TIMERS: TimerOptions = { T1: 100, T2: 400, T4: 500 };

function harness(
  timers: TimerOptions = TIMERS,
  maxServerTransactions?: number,
  maxCompleted?: number,
) {
  const clock = new FakeClock();
  const sent: Sent[] = [];
  const requests: { request: SipRequest; transaction: ServerTransaction }[] = [];
  const acks: { ack: SipRequest; matched: boolean }[] = [];
  const stray: SipResponse[] = [];
  const ackTimeouts: ServerTransaction[] = [];
  const user: TransactionUser = {
    receiveRequest: (request, transaction) => requests.push({ request, transaction }),
    receiveAck: (ack, _source, transaction) =>
      acks.push({ ack, matched: transaction !== undefined }),
    receiveStrayResponse: (response) => stray.push(response),
    ackTimeout: (transaction) => ackTimeouts.push(transaction),
  };
  const layer = new TransactionLayer({
    send: (data, destination, reliable) => {
      sent.push({ at: clock.now(), message: parseSipMessage(data), destination, reliable });
    },
    user,
    clock,
    timers,
    ...(maxServerTransactions === undefined ? {} : { maxServerTransactions }),
    ...(maxCompleted === undefined ? {} : { maxCompleted }),
  });
  return { clock, sent, requests, acks, stray, ackTimeouts, layer };
}

function clientUser() {
  const responses: SipResponse[] = [];
  const errors: unknown[] = [];
  const user: ClientTransactionUser = {
    receiveResponse: (r) => responses.push(r),
    transportError: (e) => errors.push(e),
  };
  return { user, responses, errors, statuses: () => responses.map((r) => r.status) };
}

const describeSent = (s: Sent) =>
  s.message.kind === 'request' ? s.message.method : String(s.message.status);

/** Times between consecutive sends. */
const gaps = (sent: Sent[]) => sent.slice(1).map((s, i) => s.at - (sent[i] as Sent).at);

// ---- timers ---------------------------------------------------------------------------------

describe('transaction timers (RFC 3261 Table 4)', () => {
  it('derives Timers A-K from T1, T2 and T4', () => {
    const t = resolveTimers();
    assert.deepEqual(
      [t.T1, t.T2, t.T4, t.A, t.B, t.D, t.E, t.F, t.G, t.H, t.I, t.J, t.K, t.L, t.M, t.trying],
      [
        500, 4000, 5000, 500, 32000, 32000, 500, 32000, 500, 32000, 5000, 32000, 5000, 32000, 32000,
        200,
      ],
    );
  });

  it('scales with T1 and takes single overrides; rejects negative values', () => {
    const t = resolveTimers({ T1: 1000, K: 7 });
    assert.equal(t.B, 64_000);
    assert.equal(t.D, 64_000); // D stays above the server's Timer H
    assert.equal(t.K, 7);
    assert.throws(() => resolveTimers({ T1: -1 }), RangeError);
  });
});

// ---- INVITE client --------------------------------------------------------------------------

describe('INVITE client transaction (§17.1.1)', () => {
  it('100/180/486 over UDP: ACK with the same branch, 486 retransmits absorbed, Timer D', () => {
    const h = harness();
    const tu = clientUser();
    const invite = request('INVITE', { branch: 'z9hG4bKc1' });
    const tx = h.layer.sendRequest(invite, UDP_DEST, tu.user);
    assert.equal(tx.state, 'Calling');
    assert.equal(h.sent.length, 1);
    assert.deepEqual(h.sent[0]?.destination, UDP_DEST);
    assert.equal(h.sent[0]?.reliable, false);

    h.clock.advance(350); // Timer A at 100 and 300
    assert.deepEqual(gaps(h.sent), [100, 200]);

    h.layer.receive(reply(invite, 100), UDP_PEER);
    assert.equal(tx.state, 'Proceeding');
    h.clock.advance(10_000);
    assert.equal(h.sent.length, 3, 'no retransmission in Proceeding');

    h.layer.receive(reply(invite, 180), UDP_PEER);
    h.layer.receive(reply(invite, 486), UDP_PEER);
    assert.equal(tx.state, 'Completed');
    assert.deepEqual(tu.statuses(), [100, 180, 486]);

    const ack = h.sent[3]?.message;
    assert.ok(ack?.kind === 'request' && ack.method === 'ACK');
    assert.equal(ack.uri, invite.uri);
    assert.equal(ack.via.length, 1);
    assert.equal(ack.topVia?.branch, 'z9hG4bKc1');
    assert.equal(ack.toTag, 'b1');
    assert.equal(ack.fromTag, 'a1');
    assert.deepEqual(ack.cseq, { seq: 1, method: 'ACK' });
    assert.equal(ack.callId, invite.callId);
    assert.equal(ack.headers.get('route'), '<sip:proxy.example.com;lr>');
    assert.deepEqual(h.sent[3]?.destination, UDP_DEST);

    h.layer.receive(reply(invite, 486), UDP_PEER);
    h.layer.receive(reply(invite, 486), UDP_PEER);
    assert.deepEqual(h.sent.slice(3).map(describeSent), ['ACK', 'ACK', 'ACK']);
    assert.deepEqual(tu.statuses(), [100, 180, 486], 'retransmitted 486 not passed up');
    assert.equal(tx.holdsRequest, false, 'Completed keeps its ACK, not the INVITE, for 32 s');

    h.clock.advance(31_999);
    assert.equal(tx.state, 'Completed');
    h.clock.advance(1); // Timer D = 32 s
    assert.equal(tx.state, 'Terminated');
    assert.equal(h.layer.stats.active.client, 0);
    h.layer.receive(reply(invite, 486), UDP_PEER);
    assert.equal(h.stray.length, 1, 'after Timer D a 486 is stray');
    assert.equal(h.clock.pending, 0);

    const s = h.layer.stats;
    assert.equal(s.created['invite-client'], 1);
    assert.deepEqual(s.states['invite-client'], {
      Calling: 1,
      Proceeding: 1,
      Completed: 1,
      Terminated: 1,
    });
    assert.equal(s.retransmissions.sent, 4); // 2 INVITEs (Timer A) + 2 ACKs
    assert.equal(s.retransmissions.absorbed, 2);
  });

  it('over TCP: no Timer A, and a 486 terminates at once (Timer D = 0)', () => {
    const h = harness();
    const tu = clientUser();
    const invite = request('INVITE', { branch: 'z9hG4bKc2', transport: 'TCP' });
    const tx = h.layer.sendRequest(invite, TCP_DEST, tu.user);
    assert.equal(h.sent[0]?.reliable, true);
    h.clock.advance(5_000);
    assert.equal(h.sent.length, 1);
    h.layer.receive(reply(invite, 486), TCP_PEER);
    assert.deepEqual(h.sent.map(describeSent), ['INVITE', 'ACK']);
    assert.equal(tx.state, 'Terminated');
    assert.equal(h.clock.pending, 0);
  });

  it('Timer B: no answer → Timer A doubling, then a 408 to the TU', () => {
    const h = harness();
    const tu = clientUser();
    const invite = request('INVITE', { branch: 'z9hG4bKc3' });
    const tx = h.layer.sendRequest(invite, UDP_DEST, tu.user);
    h.clock.advance(6_399);
    assert.equal(tx.state, 'Calling');
    assert.deepEqual(gaps(h.sent), [100, 200, 400, 800, 1600, 3200]); // no T2 cap for INVITE
    h.clock.advance(1); // Timer B = 64 * T1
    assert.equal(tx.state, 'Terminated');
    assert.deepEqual(tu.statuses(), [408]);
    assert.equal(tu.responses[0]?.callId, invite.callId);
    assert.equal(h.layer.stats.timeouts.B, 1);
    assert.equal(h.clock.pending, 0);
  });

  it('2xx goes to the TU with no ACK from the transaction; Accepted passes 2xx retransmits, Timer M', () => {
    const h = harness();
    const tu = clientUser();
    const invite = request('INVITE', { branch: 'z9hG4bKc4' });
    const tx = h.layer.sendRequest(invite, UDP_DEST, tu.user);
    h.layer.receive(reply(invite, 180), UDP_PEER);
    h.layer.receive(reply(invite, 200), UDP_PEER);
    assert.equal(tx.state, 'Accepted');
    h.layer.receive(reply(invite, 200), UDP_PEER);
    h.layer.receive(reply(invite, 486), UDP_PEER); // nonsense after a 2xx: dropped
    assert.deepEqual(tu.statuses(), [180, 200, 200]);
    assert.deepEqual(
      h.sent.map(describeSent),
      ['INVITE'],
      'the TU ACKs a 2xx, not the transaction',
    );
    h.clock.advance(6_400); // Timer M = 64 * T1
    assert.equal(tx.state, 'Terminated');
    h.layer.receive(reply(invite, 200), UDP_PEER);
    assert.deepEqual(
      h.stray.map((r) => r.status),
      [200],
    );
  });

  it('a transport error terminates the transaction and tells the TU', async () => {
    const clock = new FakeClock();
    const tu = clientUser();
    const layer = new TransactionLayer({
      send: () => Promise.reject(new Error('ECONNREFUSED')),
      user: {
        receiveRequest: () => {},
        receiveAck: () => {},
        receiveStrayResponse: () => {},
      },
      clock,
      timers: TIMERS,
    });
    const tx = layer.sendRequest(request('INVITE', { branch: 'z9hG4bKc5' }), TCP_DEST, tu.user);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(tx.state, 'Terminated');
    assert.equal(tu.errors.length, 1);
    assert.equal(layer.stats.transportErrors, 1);
    assert.equal(layer.stats.active.client, 0);
  });

  it('refuses an ACK, a request without an RFC 3261 branch, and a reused branch', () => {
    const h = harness();
    const tu = clientUser();
    assert.throws(() => h.layer.sendRequest(request('ACK'), UDP_DEST, tu.user), {
      code: 'ERR_SIP_TRANSACTION_ACK',
    });
    assert.throws(
      () => h.layer.sendRequest(request('INVITE', { branch: 'old2543' }), UDP_DEST, tu.user),
      { code: 'ERR_SIP_TRANSACTION_BRANCH' },
    );
    h.layer.sendRequest(request('OPTIONS', { branch: 'z9hG4bKdup' }), UDP_DEST, tu.user);
    assert.throws(
      () => h.layer.sendRequest(request('OPTIONS', { branch: 'z9hG4bKdup' }), UDP_DEST, tu.user),
      { code: 'ERR_SIP_TRANSACTION_EXISTS' },
    );
  });
});

// ---- non-INVITE client ----------------------------------------------------------------------

describe('non-INVITE client transaction (§17.1.2)', () => {
  it('Timer E doubles up to T2, then Timer F → 408 to the TU', () => {
    const h = harness();
    const tu = clientUser();
    const tx = h.layer.sendRequest(request('OPTIONS', { branch: 'z9hG4bKn1' }), UDP_DEST, tu.user);
    assert.equal(tx.state, 'Trying');
    h.clock.advance(6_399);
    // 100, 200, 400 (T2), then T2 flat until F at 6400.
    assert.deepEqual(
      gaps(h.sent),
      [100, 200, 400, 400, 400, 400, 400, 400, 400, 400, 400, 400, 400, 400, 400, 400, 400],
    );
    assert.equal(tx.state, 'Trying');
    h.clock.advance(1);
    assert.equal(tx.state, 'Terminated');
    assert.deepEqual(tu.statuses(), [408]);
    assert.equal(h.layer.stats.timeouts.F, 1);
    assert.equal(h.clock.pending, 0);
  });

  it('Proceeding retransmits every T2; a final response → Completed, absorbs retransmits, Timer K', () => {
    const h = harness();
    const tu = clientUser();
    const req = request('REGISTER', { branch: 'z9hG4bKn2' });
    const tx = h.layer.sendRequest(req, UDP_DEST, tu.user);
    h.layer.receive(reply(req, 100), UDP_PEER);
    assert.equal(tx.state, 'Proceeding');
    h.clock.advance(1_000); // E fires at 100 (then interval T2): 100, 500, 900
    assert.deepEqual(gaps(h.sent), [100, 400, 400]);
    h.layer.receive(reply(req, 200), UDP_PEER);
    assert.equal(tx.state, 'Completed');
    h.layer.receive(reply(req, 200), UDP_PEER);
    assert.deepEqual(tu.statuses(), [100, 200]);
    assert.equal(tx.holdsRequest, false, 'Completed only absorbs: the request is let go');
    h.clock.advance(10_000);
    assert.equal(h.sent.length, 4, 'no retransmission in Completed');
    assert.equal(tx.state, 'Terminated'); // Timer K = T4
    assert.equal(h.layer.stats.retransmissions.absorbed, 1);
  });

  it('over TCP: no Timer E, Timer K = 0, Timer F still applies', () => {
    const h = harness();
    const a = clientUser();
    const req = request('OPTIONS', { branch: 'z9hG4bKn3', transport: 'TCP' });
    const tx = h.layer.sendRequest(req, TCP_DEST, a.user);
    h.clock.advance(1_000);
    assert.equal(h.sent.length, 1);
    h.layer.receive(reply(req, 200), TCP_PEER);
    assert.equal(tx.state, 'Terminated');

    const b = clientUser();
    const tx2 = h.layer.sendRequest(request('OPTIONS', { branch: 'z9hG4bKn4' }), TCP_DEST, b.user);
    h.clock.advance(6_400);
    assert.equal(tx2.state, 'Terminated');
    assert.deepEqual(b.statuses(), [408]);
    assert.equal(h.sent.length, 2);
  });
});

// ---- INVITE server --------------------------------------------------------------------------

describe('INVITE server transaction (§17.2.1)', () => {
  it('100 after 200 ms, retransmitted INVITE → last provisional, 486 by Timer G until ACK, Timer I', () => {
    const h = harness();
    const invite = request('INVITE', { branch: 'z9hG4bKs1', rport: true });
    h.layer.receive(invite, UDP_PEER);
    assert.equal(h.requests.length, 1);
    const tx = h.requests[0]!.transaction;
    assert.equal(tx.kind, 'invite-server');
    assert.equal(tx.state, 'Proceeding');

    h.clock.advance(199);
    assert.equal(h.sent.length, 0);
    h.clock.advance(1);
    assert.deepEqual(h.sent.map(describeSent), ['100']);
    assert.equal(h.sent[0]?.message.toTag, undefined);
    assert.deepEqual(h.sent[0]?.destination, {
      transport: 'udp',
      address: '192.0.2.10',
      port: 5070,
    });

    h.layer.receive(request('INVITE', { branch: 'z9hG4bKs1', rport: true }), UDP_PEER);
    assert.deepEqual(h.sent.map(describeSent), ['100', '100']);
    assert.equal(h.requests.length, 1, 'retransmission not passed to the TU');

    assert.ok(tx.respond(createResponse(invite, 180, { toTag: 'b1' })));
    h.layer.receive(request('INVITE', { branch: 'z9hG4bKs1', rport: true }), UDP_PEER);
    assert.deepEqual(h.sent.map(describeSent), ['100', '100', '180', '180']);

    assert.ok(tx.respond(createResponse(invite, 486, { toTag: 'b1' })));
    assert.equal(tx.state, 'Completed');
    h.clock.advance(1_400); // G: +100, +200, +400, +400 (T2), ...
    const finals = h.sent.filter((s) => describeSent(s) === '486');
    assert.deepEqual(gaps(finals), [100, 200, 400, 400]);
    h.layer.receive(request('INVITE', { branch: 'z9hG4bKs1', rport: true }), UDP_PEER);
    const count = h.sent.length;
    assert.equal(describeSent(h.sent[count - 1]!), '486', 'retransmitted INVITE gets the 486');

    h.layer.receive(ackFor(invite, 'b1'), UDP_PEER);
    assert.equal(tx.state, 'Confirmed');
    h.layer.receive(ackFor(invite, 'b1'), UDP_PEER);
    assert.equal(h.acks.length, 0, 'ACKs absorbed by the transaction');
    h.clock.advance(499);
    assert.equal(h.sent.length, count, 'Timer G stopped by the ACK');
    assert.equal(tx.state, 'Confirmed');
    h.clock.advance(1); // Timer I = T4
    assert.equal(tx.state, 'Terminated');
    assert.equal(h.layer.stats.active.server, 0);
    assert.equal(h.clock.pending, 0);
    assert.deepEqual(h.layer.stats.states['invite-server'], {
      Proceeding: 1,
      Completed: 1,
      Confirmed: 1,
      Terminated: 1,
    });
  });

  it('Timer H: no ACK → the TU is told, Terminated', () => {
    const h = harness();
    const invite = request('INVITE', { branch: 'z9hG4bKs2' });
    h.layer.receive(invite, UDP_PEER);
    const tx = h.requests[0]!.transaction;
    tx.respond(createResponse(invite, 603, { toTag: 'b1' }));
    h.clock.advance(6_399);
    assert.equal(tx.state, 'Completed');
    h.clock.advance(1); // Timer H = 64 * T1
    assert.equal(tx.state, 'Terminated');
    assert.deepEqual(h.ackTimeouts, [tx]);
    assert.equal(h.layer.stats.timeouts.H, 1);
    // No rport: responses go to the sent-by port.
    assert.deepEqual(h.sent[0]?.destination, {
      transport: 'udp',
      address: '192.0.2.10',
      port: 5070,
    });
  });

  it('no 100 Trying when the TU answers within 200 ms', () => {
    const h = harness();
    const invite = request('INVITE', { branch: 'z9hG4bKs3', sentBy: 'phone.example.com' });
    h.layer.receive(invite, UDP_PEER);
    h.clock.advance(150);
    h.requests[0]!.transaction.respond(createResponse(invite, 180, { toTag: 'b1' }));
    h.clock.advance(1_000);
    assert.deepEqual(h.sent.map(describeSent), ['180']);
    assert.deepEqual(h.sent[0]?.destination, {
      transport: 'udp',
      address: '192.0.2.10',
      port: 5060,
    });
  });

  it('2xx → Accepted: no retransmission by the transaction, INVITE retransmits absorbed, Timer L', () => {
    const h = harness();
    const invite = request('INVITE', { branch: 'z9hG4bKs4' });
    h.layer.receive(invite, UDP_PEER);
    const tx = h.requests[0]!.transaction;
    const ok = createResponse(invite, 200, { toTag: 'b1' });
    assert.ok(tx.respond(ok));
    assert.equal(tx.state, 'Accepted');
    h.clock.advance(1_000);
    assert.deepEqual(h.sent.map(describeSent), ['200']);
    h.layer.receive(request('INVITE', { branch: 'z9hG4bKs4' }), UDP_PEER);
    assert.equal(h.sent.length, 1);
    assert.equal(h.requests.length, 1);
    assert.ok(tx.respond(ok), 'the TU retransmits its 2xx through the transaction');
    assert.equal(tx.respond(createResponse(invite, 486)), false);
    assert.equal(h.sent.length, 2);

    // The ACK for a 2xx has its own branch: not a transaction, handed to the TU.
    h.layer.receive(ackFor(invite, 'b1', 'z9hG4bKack2xx'), UDP_PEER);
    assert.deepEqual(
      h.acks.map((a) => a.matched),
      [false],
    );
    h.clock.advance(5_400); // Timer L = 64 * T1
    assert.equal(tx.state, 'Terminated');
    assert.equal(tx.respond(ok), false);
  });

  it('over TCP: responses on the flow, no Timer G, ACK terminates at once (Timer I = 0)', () => {
    const h = harness();
    const invite = request('INVITE', { branch: 'z9hG4bKs5', transport: 'TCP' });
    h.layer.receive(invite, TCP_PEER);
    const tx = h.requests[0]!.transaction;
    tx.respond(createResponse(invite, 486, { toTag: 'b1' }));
    h.clock.advance(3_000);
    assert.deepEqual(h.sent.map(describeSent), ['486']);
    assert.deepEqual(h.sent[0]?.destination, { connectionId: 'tcp-1' });
    assert.equal(h.sent[0]?.reliable, true);
    h.layer.receive(ackFor(invite, 'b1'), TCP_PEER);
    assert.equal(tx.state, 'Terminated');
    assert.equal(h.clock.pending, 0);
  });
});

// ---- non-INVITE server ----------------------------------------------------------------------

describe('server transactions kept at most', () => {
  it('refuses a new call statelessly (503) when full; calls under way, CANCEL and answered calls are not held up', () => {
    const h = harness(TIMERS, 4);
    const invite = (n: number, toTag?: string) =>
      request('INVITE', {
        branch: `z9hG4bKfull${n}`,
        callId: `full-${n}`,
        ...(toTag ? { toTag } : {}),
      });
    const refusals = () =>
      h.sent.flatMap((s) => (s.message.kind === 'response' ? [s.message] : []));
    for (let n = 1; n <= 5; n++) h.layer.receive(invite(n), UDP_PEER);
    // Four kept (their TU answers nothing yet); the fifth answered at once, and not kept.
    assert.equal(h.requests.length, 4);
    assert.equal(h.layer.stats.active.server, 4);
    assert.equal(h.layer.stats.refusedFull, 1);
    const [refused] = refusals();
    assert.equal(refused?.status, 503);
    assert.equal(refused?.callId, 'full-5');
    assert.equal(refused?.headers.get('Retry-After'), '5');
    // Its ACK ends here: not a stray ACK for the TU to route.
    h.layer.receive(ackFor(invite(5), refused?.toTag ?? ''), UDP_PEER);
    assert.equal(h.acks.length, 0);
    // A CANCEL always gets through; a re-INVITE of a call under way too, up to 1.5 times as
    // many (6): a forged To tag gets no further.
    h.layer.receive(request('CANCEL', { branch: 'z9hG4bKfull1', callId: 'full-1' }), UDP_PEER);
    h.layer.receive(invite(6, 'b1'), UDP_PEER);
    h.layer.receive(invite(7, 'b1'), UDP_PEER);
    assert.deepEqual(
      h.requests.slice(4).map((r) => r.request.method),
      ['CANCEL', 'INVITE'],
    );
    assert.equal(h.layer.stats.refusedFull, 2);
    // The refused re-INVITE's ACK (its 503 kept the dialog's To tag) ends here too.
    h.layer.receive(ackFor(invite(7, 'b1'), 'b1'), UDP_PEER);
    assert.equal(h.acks.length, 0);
    // Answered calls (Accepted, Timer L) do not count: a new call is served at once.
    for (const r of h.requests.filter((x) => x.request.method === 'INVITE'))
      r.transaction.respond(createResponse(r.request, 200, { toTag: 'b1' }));
    h.layer.receive(invite(8), UDP_PEER);
    assert.equal(h.requests.at(-1)?.request.callId, 'full-8');
    assert.equal(h.layer.stats.refusedFull, 2);
  });
});

describe('completed non-INVITE responses kept at most', () => {
  it('lets the oldest go first: its retransmission is a new request', () => {
    const h = harness(TIMERS, undefined, 2);
    const options = (n: number) =>
      request('OPTIONS', { branch: `z9hG4bKdone${n}`, callId: `done-${n}` });
    for (let n = 1; n <= 3; n++) {
      h.layer.receive(options(n), UDP_PEER);
      const r = h.requests.at(-1)!;
      r.transaction.respond(createResponse(r.request, 200));
    }
    // 3 answered, 2 kept: a retransmission of the third is answered from what was kept...
    h.layer.receive(options(3), UDP_PEER);
    assert.equal(h.requests.length, 3);
    assert.equal(h.layer.stats.retransmissions.absorbed, 1);
    // ...and one of the first, let go, reaches the TU again.
    h.layer.receive(options(1), UDP_PEER);
    assert.equal(h.requests.length, 4);
  });
});

describe('non-INVITE server transaction (§17.2.2)', () => {
  it('retransmitted request: dropped while Trying, same response after; Timer J', () => {
    const h = harness();
    const reg = request('REGISTER', { branch: 'z9hG4bKr1' });
    h.layer.receive(reg, UDP_PEER);
    const tx = h.requests[0]!.transaction;
    assert.equal(tx.state, 'Trying');
    h.layer.receive(request('REGISTER', { branch: 'z9hG4bKr1' }), UDP_PEER);
    assert.equal(h.sent.length, 0);
    assert.equal(h.requests.length, 1);

    tx.respond(createResponse(reg, 100));
    assert.equal(tx.state, 'Proceeding');
    h.layer.receive(request('REGISTER', { branch: 'z9hG4bKr1' }), UDP_PEER);
    assert.deepEqual(h.sent.map(describeSent), ['100', '100']);

    assert.ok(tx.respond(createResponse(reg, 200, { toTag: 'r1' })));
    assert.equal(tx.state, 'Completed');
    assert.equal(tx.respond(createResponse(reg, 500)), false);
    h.layer.receive(request('REGISTER', { branch: 'z9hG4bKr1' }), UDP_PEER);
    h.layer.receive(request('REGISTER', { branch: 'z9hG4bKr1' }), UDP_PEER);
    assert.deepEqual(h.sent.map(describeSent), ['100', '100', '200', '200', '200']);
    assert.equal(h.sent[4]?.message.toTag, 'r1', 'the very same response');
    assert.equal(h.requests.length, 1);
    assert.equal(h.layer.stats.active.server, 1, 'Completed is a live transaction');

    h.clock.advance(6_399);
    assert.equal(tx.state, 'Completed');
    h.clock.advance(1); // Timer J = 64 * T1
    assert.equal(tx.state, 'Terminated');
    h.layer.receive(request('REGISTER', { branch: 'z9hG4bKr1' }), UDP_PEER);
    assert.equal(h.requests.length, 2, 'after Timer J the request is new to the layer');
    assert.equal(
      tx.holdsRequest,
      false,
      'a Completed UDP transaction keeps bytes, not the request',
    );
    assert.throws(() => tx.request, { code: 'ERR_SIP_TRANSACTION_RELEASED' });
    assert.equal(h.layer.stats.retransmissions.absorbed, 4);
    assert.equal(h.layer.stats.active.server, 1, 'only the new one, in Trying');
    assert.deepEqual(h.layer.stats.states['non-invite-server'], {
      Trying: 2,
      Proceeding: 1,
      Completed: 1,
      Terminated: 1,
    });
  });

  it('a refusal (a challenge) keeps no Completed state: a retransmission is refused afresh', () => {
    const h = harness();
    const reg = request('REGISTER', { branch: 'z9hG4bKr3' });
    h.layer.receive(reg, UDP_PEER);
    const tx = h.requests[0]!.transaction;
    assert.ok(tx.refuse(createResponse(reg, 401, { toTag: 'c1' })));
    assert.equal(tx.state, 'Terminated');
    assert.equal(h.layer.stats.active.server, 0, 'nothing kept for Timer J');
    assert.equal(h.clock.pending, 0);
    assert.equal(tx.refuse(createResponse(reg, 401)), false, 'one answer only');
    h.layer.receive(request('REGISTER', { branch: 'z9hG4bKr3' }), UDP_PEER);
    assert.equal(h.requests.length, 2, 'its retransmission is a new request');
    assert.deepEqual(h.sent.map(describeSent), ['401']);
  });

  it('over TCP: Timer J = 0', () => {
    const h = harness();
    const opt = request('OPTIONS', { branch: 'z9hG4bKr2', transport: 'TCP' });
    h.layer.receive(opt, TCP_PEER);
    const tx = h.requests[0]!.transaction;
    tx.respond(createResponse(opt, 200));
    assert.equal(tx.state, 'Terminated');
    assert.equal(tx.holdsRequest, false, 'the final response is out: the request is let go');
    assert.equal(h.clock.pending, 0);
  });
});

// ---- matching -------------------------------------------------------------------------------

describe('transaction matching (§17.1.3, §17.2.3)', () => {
  it('a CANCEL gets its own server transaction and finds the INVITE it cancels', () => {
    const h = harness();
    const invite = request('INVITE', { branch: 'z9hG4bKm1' });
    const cancel = request('CANCEL', { branch: 'z9hG4bKm1' });
    h.layer.receive(invite, UDP_PEER);
    h.layer.receive(cancel, UDP_PEER);
    assert.deepEqual(
      h.requests.map((r) => [r.request.method, r.transaction.kind]),
      [
        ['INVITE', 'invite-server'],
        ['CANCEL', 'non-invite-server'],
      ],
    );
    const [inv, can] = h.requests.map((r) => r.transaction);
    assert.notEqual(inv, can);
    assert.equal(h.layer.findCancelTarget(cancel), inv);
    can!.respond(createResponse(cancel, 200, { toTag: 'b1' }));
    inv!.respond(createResponse(invite, 487, { toTag: 'b1' }));
    h.layer.receive(request('CANCEL', { branch: 'z9hG4bKm1' }), UDP_PEER);
    assert.deepEqual(
      h.sent.map(describeSent),
      ['200', '487', '200'],
      'CANCEL retransmit → its 200',
    );
    assert.equal(h.layer.stats.active.server, 2);
  });

  it('responses match by branch and CSeq method: 200 to the CANCEL, 487 to the INVITE', () => {
    const h = harness();
    const forInvite = clientUser();
    const forCancel = clientUser();
    const invite = request('INVITE', { branch: 'z9hG4bKm2' });
    const cancel = request('CANCEL', { branch: 'z9hG4bKm2' });
    h.layer.sendRequest(invite, UDP_DEST, forInvite.user);
    h.layer.sendRequest(cancel, UDP_DEST, forCancel.user);
    h.layer.receive(reply(cancel, 200), UDP_PEER);
    h.layer.receive(reply(invite, 487), UDP_PEER);
    assert.deepEqual(forCancel.statuses(), [200]);
    assert.deepEqual(forInvite.statuses(), [487]);
    h.layer.receive(reply(request('INVITE', { branch: 'z9hG4bKother' }), 200), UDP_PEER);
    assert.equal(h.stray.length, 1);
  });

  it('an ACK for a non-2xx matches its INVITE server transaction by branch and sent-by', () => {
    const h = harness();
    const invite = request('INVITE', { branch: 'z9hG4bKm3' });
    h.layer.receive(invite, UDP_PEER);
    const tx = h.requests[0]!.transaction;
    tx.respond(createResponse(invite, 486, { toTag: 'b1' }));
    // Same branch from another sent-by: another transaction's ACK, not ours.
    h.layer.receive(
      request('ACK', { branch: 'z9hG4bKm3', sentBy: '203.0.113.9:5060', toTag: 'b1' }),
      UDP_PEER,
    );
    assert.equal(tx.state, 'Completed');
    assert.equal(h.acks.length, 1);
    assert.equal(h.layer.stats.strayAcks, 1);
    h.layer.receive(ackFor(invite, 'b1'), UDP_PEER);
    assert.equal(tx.state, 'Confirmed');
    assert.equal(h.acks.length, 1);
  });

  it('falls back to RFC 2543 matching for branches without the magic cookie', () => {
    const h = harness();
    const invite = request('INVITE', { branch: '2543abc' });
    h.layer.receive(invite, UDP_PEER);
    h.layer.receive(request('INVITE', { branch: '2543abc' }), UDP_PEER);
    assert.equal(h.requests.length, 1);
    const tx = h.requests[0]!.transaction;
    tx.respond(createResponse(invite, 404, { toTag: 'b1' }));
    h.layer.receive(ackFor(invite, 'b1'), UDP_PEER);
    assert.equal(tx.state, 'Confirmed');
  });
});
