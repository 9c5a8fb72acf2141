// What a proxied call leaves behind (RFC 3261 §16.7 with RFC 6026): once the 2xx went
// upstream, the client transaction stays Accepted for 32 s to pass 2xx retransmissions on, and
// that must be all it keeps: no parsed request or response of the call. At 1,500 calls/s the
// difference is 20 KB a call, about a gigabyte over Timer M.
// And a context held open for branches that may still come (a callee's location asked again
// while the call rings): when it wakes the proxy, and that it answers only once the hold ends.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';
import v8 from 'node:v8';
import vm from 'node:vm';
import { systemClock } from '@peerbx/dht-kademlia';
import { generateBranch } from '../src/message/ids.js';
import { createResponse } from '../src/message/response.js';
import { parseSipMessage, SipRequest, SipResponse, serialize } from '../src/message/sip-message.js';
import { type Branch, ResponseContext } from '../src/proxy/response-context.js';
import { type ServerTransaction, TransactionLayer } from '../src/transaction/transaction-layer.js';
import type { SipDestination, SipTransportAddress } from '../src/transport/transport.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

const CALLER: SipTransportAddress = { transport: 'udp', address: '192.0.2.10', port: 5070 };
const CALLEE: SipDestination = { transport: 'udp', address: '198.51.100.5', port: 5060 };
const CALLEE_SOURCE: SipTransportAddress = {
  transport: 'udp',
  address: '198.51.100.5',
  port: 5060,
};

function parseRequest(text: string): SipRequest {
  const msg = parseSipMessage(text);
  assert.ok(msg instanceof SipRequest);
  return msg;
}

function invite(vias: string[]): SipRequest {
  return parseRequest(
    [
      'INVITE sip:bob@198.51.100.5 SIP/2.0',
      ...vias.map((v) => `Via: ${v}`),
      'Max-Forwards: 70',
      'From: <sip:alice@example.com>;tag=a1',
      'To: <sip:bob@example.com>',
      'Call-ID: aftermath@example.com',
      'CSeq: 1 INVITE',
      'Content-Type: application/sdp',
      'Content-Length: 4',
      '',
      'v=0\n',
    ].join('\r\n'),
  );
}

/** The 2xx as it comes back over the wire (re-parsed, so no object is shared). */
function ok(request: SipRequest): SipResponse {
  const msg = parseSipMessage(serialize(createResponse(request, 200, { toTag: 'b1' })));
  assert.ok(msg instanceof SipResponse);
  return msg;
}

/** A transaction layer sending through `send`; `serverTx()` is its latest server transaction. */
function proxyLayer(send: ConstructorParameters<typeof TransactionLayer>[0]['send']) {
  let server: ServerTransaction | undefined;
  const layer = new TransactionLayer({
    send,
    user: {
      receiveRequest: (_request, tx) => {
        server = tx;
      },
      receiveAck: () => undefined,
      receiveStrayResponse: () => undefined,
    },
  });
  const serverTx = (): ServerTransaction => {
    assert.ok(server, 'the request made a server transaction');
    return server;
  };
  return { layer, serverTx };
}

describe('response context aftermath', () => {
  it('keeps no message of a call after its 2xx, and still passes 2xx retransmissions up', async () => {
    const sent: { message: ReturnType<typeof parseSipMessage>; to: SipDestination }[] = [];
    const { layer, serverTx } = proxyLayer((data, to) => {
      sent.push({ message: parseSipMessage(data), to });
    });
    const callerVia = `SIP/2.0/UDP 192.0.2.10:5070;branch=${generateBranch()}`;
    let done = 0;
    // Everything of the call is made in here, so the test itself holds only weak references.
    const refs = (() => {
      layer.receive(invite([callerVia]), CALLER);
      const ctx = new ResponseContext({
        server: serverTx(),
        transactions: layer,
        clock: systemClock,
        timerCMs: 180_000,
        done: () => done++,
      });
      const forwarded = invite([
        `SIP/2.0/UDP 127.0.0.1:5060;branch=${generateBranch()}`,
        callerVia,
      ]);
      const branch: Branch = {
        request: forwarded,
        provisional: false,
        cancelPending: false,
        canceled: false,
        onFinal: () => undefined,
      };
      ctx.opened();
      ctx.start(branch, CALLEE);
      ctx.seal();
      const answer = ok(forwarded);
      layer.receive(answer, CALLEE_SOURCE);
      return {
        branch: new WeakRef(branch),
        request: new WeakRef(forwarded),
        response: new WeakRef(answer),
        context: new WeakRef(ctx),
        // The callee's retransmission, as bytes: the test keeps no object of the call.
        again: serialize(createResponse(forwarded, 200, { toTag: 'b1' })),
      };
    })();
    assert.equal(done, 1, 'the context is done once the 2xx went upstream');
    const upstream = () =>
      sent.filter(
        (s) => s.message.kind === 'response' && 'port' in s.to && s.to.port === CALLER.port,
      );
    assert.equal(upstream().length, 1);

    layer.receive(parseSipMessage(refs.again), CALLEE_SOURCE);
    assert.equal(upstream().length, 2, 'a 2xx retransmission still goes upstream');

    await tick();
    gc();
    assert.equal(layer.stats.active.client, 1, 'the branch transaction is still Accepted');
    assert.equal(refs.request.deref(), undefined, 'the forwarded INVITE was let go');
    assert.equal(refs.response.deref(), undefined, 'the 2xx was let go');
    assert.equal(refs.branch.deref(), undefined, 'the branch was let go');
    assert.equal(refs.context.deref(), undefined, 'the context was let go');
    layer.close();
  });
});

/** A proxied INVITE's context over a real transaction layer, its upstream answers recorded. */
function heldCall(
  timerCMs = 180_000,
  silenceMs?: { waiting: number; cancelled: number },
  ringTimeoutMs?: number,
) {
  const upstream: SipResponse[] = [];
  /** Requests sent to the callee's phones: method and port. */
  const downstream: string[] = [];
  const { layer, serverTx } = proxyLayer((data, to) => {
    const m = parseSipMessage(data);
    if (m instanceof SipResponse && 'port' in to && to.port === CALLER.port) upstream.push(m);
    if (m instanceof SipRequest && 'port' in to) downstream.push(`${m.method} ${to.port}`);
  });
  const callerVia = `SIP/2.0/UDP 192.0.2.10:5070;branch=${generateBranch()}`;
  layer.receive(invite([callerVia]), CALLER);
  const call = { done: 0, wakes: 0 };
  const ctx = new ResponseContext({
    server: serverTx(),
    transactions: layer,
    clock: systemClock,
    timerCMs,
    ...(silenceMs ? { silenceMs } : {}),
    ...(ringTimeoutMs ? { ringTimeoutMs } : {}),
    done: () => call.done++,
  });
  /** Starts a branch to the callee; returns a function that answers it with `status`. */
  const branch = (port: number) => {
    const forwarded = invite([`SIP/2.0/UDP 127.0.0.1:5060;branch=${generateBranch()}`, callerVia]);
    const b: Branch = {
      request: forwarded,
      provisional: false,
      cancelPending: false,
      canceled: false,
    };
    ctx.opened();
    ctx.start(b, { ...CALLEE, port });
    return (status: number, headers: { name: string; value: string }[] = []) => {
      const wire = serialize(createResponse(forwarded, status, { toTag: `t${port}`, headers }));
      layer.receive(parseSipMessage(wire), { ...CALLEE_SOURCE, port });
    };
  };
  const statuses = () => upstream.map((r) => r.status);
  return { layer, ctx, call, branch, statuses, upstream, downstream };
}

describe('response context choosing among failed branches (RFC 3261 §16.7 steps 6-7)', () => {
  it('prefers a challenge among 4xx answers, and passes up the challenges of every branch', () => {
    const { layer, ctx, branch, upstream } = heldCall();
    const busy = branch(5061);
    const realmA = branch(5062);
    const realmB = branch(5063);
    ctx.seal();
    busy(486);
    const challenge = (realm: string) => ({
      name: 'Proxy-Authenticate',
      value: `Digest realm="${realm}", nonce="n-${realm}", qop="auth"`,
    });
    realmA(407, [challenge('a.example')]);
    realmB(407, [challenge('b.example')]);
    assert.equal(upstream.length, 1);
    const final = upstream[0];
    assert.equal(final?.status, 407, 'a 407 rather than the 486 that came first');
    assert.deepEqual(
      final?.headers
        .getAll('proxy-authenticate')
        .map((v) => /realm="([^"]+)"/.exec(v)?.[1])
        .sort(),
      ['a.example', 'b.example'],
    );
    layer.close();
  });
});

describe('response context passing ringing on', () => {
  it('passes no ringing up once a phone declined, while the others are cancelled', () => {
    const { layer, ctx, branch, statuses } = heldCall();
    const ringing = branch(5061);
    const declining = branch(5062);
    ctx.seal();
    ringing(180);
    declining(603);
    ringing(183); // sent before its CANCEL arrived
    ringing(487);
    assert.deepEqual(statuses(), [180, 603]);
    layer.close();
  });

  it('passes no ringing up once the caller cancelled', () => {
    const { layer, ctx, branch, statuses } = heldCall();
    const ringing = branch(5061);
    ctx.seal();
    ringing(180);
    ctx.cancelAll();
    ringing(183);
    ringing(487);
    assert.deepEqual(statuses(), [180, 487]);
    layer.close();
  });
});

describe('response context held open for late branches', () => {
  it('does not answer while held: wakes once when every branch has failed, then takes a late branch', () => {
    const { layer, ctx, call, branch, statuses } = heldCall();
    const first = branch(5061);
    ctx.holdOpen(() => call.wakes++);
    ctx.seal();
    first(486);
    assert.equal(call.wakes, 1, 'woken when the only branch ended');
    assert.deepEqual(statuses(), [], 'no final answer while held');
    const late = branch(5062);
    ctx.unhold();
    assert.deepEqual(statuses(), [], 'the late branch is still ringing');
    late(200);
    assert.deepEqual(statuses(), [200], 'the late branch answered the call');
    assert.equal(call.done, 1);
    assert.equal(call.wakes, 1);
    layer.close();
  });

  it('answers with the best response once the hold ends and nothing was added', () => {
    const { layer, ctx, call, branch, statuses } = heldCall();
    const first = branch(5061);
    ctx.holdOpen(() => call.wakes++);
    ctx.seal();
    first(486);
    assert.deepEqual(statuses(), []);
    ctx.unhold();
    assert.deepEqual(statuses(), [486]);
    assert.equal(call.done, 1);
    ctx.unhold();
    assert.equal(call.done, 1, 'a second unhold changes nothing');
    layer.close();
  });

  it('ends the hold by itself, without waking, on a 2xx, a 6xx or a CANCEL', () => {
    for (const end of ['2xx', '6xx', 'cancel'] as const) {
      const { layer, ctx, call, branch, statuses } = heldCall();
      const first = branch(5061);
      const second = branch(5062);
      ctx.holdOpen(() => call.wakes++);
      ctx.seal();
      if (end === '2xx') first(200);
      else if (end === '6xx') first(603);
      else ctx.cancelAll();
      assert.equal(ctx.decided, true, `${end}: decided`);
      assert.equal(ctx.declined, end === '6xx', `${end}: declined`);
      if (end === 'cancel') first(487);
      second(487);
      assert.equal(call.wakes, 0, `${end}: nothing to look for any more`);
      assert.equal(call.done, 1, `${end}: done once both branches ended, no unhold needed`);
      const expected = { '2xx': 200, '6xx': 603, cancel: 487 }[end];
      assert.deepEqual(statuses(), [expected], `${end}: one final answer upstream`);
      layer.close();
    }
  });

  it('wakes after wakeAfterMs while a branch still rings, once; a closed context starts no branch', async () => {
    const { layer, ctx, call, branch, statuses } = heldCall();
    const first = branch(5061);
    ctx.holdOpen(() => call.wakes++, 20);
    ctx.seal();
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(call.wakes, 1, 'woken by its timer');
    first(486);
    assert.equal(call.wakes, 1, 'not woken again when the branch ends');
    assert.deepEqual(statuses(), [], 'the answer waits for unhold');
    ctx.unhold();
    assert.deepEqual(statuses(), [486]);
    assert.equal(ctx.closed, true);
    branch(5063);
    assert.equal(ctx.branches.length, 0, 'no branch starts on a closed context');
    layer.close();
  });

  it('stops its wake timer when disposed (the proxy closing)', async () => {
    const { layer, ctx, call, branch } = heldCall();
    branch(5061);
    ctx.holdOpen(() => call.wakes++, 20);
    ctx.seal();
    ctx.dispose();
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(call.wakes, 0);
    assert.equal(ctx.decided, true);
    layer.close();
  });

  it('ends a hold nobody lets go of when Timer C fires', async () => {
    const { layer, ctx, call, branch, statuses } = heldCall(30);
    branch(5061);
    ctx.holdOpen(() => call.wakes++);
    ctx.seal();
    await new Promise((r) => setTimeout(r, 120));
    assert.deepEqual(statuses(), [408], 'the unanswered branch ends the call with 408');
    assert.equal(call.done, 1);
    assert.equal(ctx.closed, true);
    ctx.unhold();
    assert.equal(call.done, 1, 'a late unhold changes nothing');
    layer.close();
  });
});

describe('response context giving up a branch that sends nothing back', () => {
  const silenceMs = { waiting: 80, cancelled: 20 };
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  it('answers a declined call once the silent phone is given up, not after its Timer B', async () => {
    const { layer, ctx, call, branch, statuses, upstream, downstream } = heldCall(
      180_000,
      silenceMs,
    );
    const asleep = branch(5061);
    const busy = branch(5062);
    ctx.seal();
    busy(486);
    assert.deepEqual(statuses(), [], 'the other phone may still answer');
    await sleep(150);
    assert.deepEqual(statuses(), [486], 'the busy answer, once the silent branch is given up');
    assert.equal(call.done, 1);
    // It rings after all: it gets its CANCEL (§9.1), and nothing goes upstream.
    asleep(180);
    assert.deepEqual(
      downstream.filter((d) => d.startsWith('CANCEL')),
      ['CANCEL 5061'],
      'the late ringing phone is cancelled',
    );
    assert.equal(upstream.length, 1);
    layer.close();
  });

  it('ends a call whose only phone is silent with 480, and leaves a phone that said 100 alone', async () => {
    const { layer, ctx, branch, statuses, upstream } = heldCall(180_000, silenceMs);
    branch(5061);
    ctx.seal();
    await sleep(150);
    assert.deepEqual(statuses(), [480]);
    assert.match(upstream[0]?.reason ?? '', /no response from the callee/);
    layer.close();

    const second = heldCall(180_000, silenceMs);
    const trying = second.branch(5061);
    second.ctx.seal();
    trying(100);
    await sleep(150);
    assert.deepEqual(second.statuses(), [], 'a phone that answered 100 is waited for');
    trying(486);
    assert.deepEqual(second.statuses(), [486]);
    second.layer.close();
  });

  it('gives up a silent branch sooner once the call is cancelled or declined elsewhere', async () => {
    for (const end of ['cancel', '6xx'] as const) {
      const { layer, ctx, branch, statuses, downstream } = heldCall(180_000, silenceMs);
      branch(5061);
      const other = branch(5062);
      ctx.seal();
      other(180);
      if (end === 'cancel') {
        ctx.cancelAll();
        other(487);
      } else other(603);
      assert.deepEqual(statuses(), [180], `${end}: waits for the silent branch a moment`);
      await sleep(50); // past `cancelled` (20 ms), well short of `waiting` (80 ms)
      const expected = end === 'cancel' ? 487 : 603;
      assert.deepEqual(statuses(), [180, expected], `${end}: answered before 'waiting' ran out`);
      assert.deepEqual(
        downstream.filter((d) => d.startsWith('CANCEL')),
        end === 'cancel' ? ['CANCEL 5062'] : [],
        `${end}: no CANCEL to a branch that never answered`,
      );
      layer.close();
    }
  });

  it("passes up a phone's own 4xx rather than the 480 made for a silent phone", async () => {
    const { layer, ctx, branch, statuses, upstream } = heldCall(180_000, silenceMs);
    branch(5061); // a laptop asleep
    const desk = branch(5062);
    ctx.seal();
    desk(180);
    await sleep(120); // the laptop is given up: 480 (no response from the callee)
    desk(486);
    assert.deepEqual(statuses(), [180, 486]);
    assert.equal(upstream.at(-1)?.reason, 'Busy Here');
    layer.close();
  });

  it('cancels a phone that rings only after the ring timeout ended its branch', async () => {
    const { layer, ctx, branch, statuses, downstream } = heldCall(
      180_000,
      { waiting: 10_000, cancelled: 10_000 },
      60,
    );
    const ringing = branch(5061);
    ringing(180);
    await sleep(30);
    const late = branch(5062); // a branch added late (the callee's location asked again)
    ctx.seal();
    await sleep(60); // the ring timeout: 5061 is CANCELed, 5062 (silent so far) ends with 480
    ringing(487);
    assert.deepEqual(statuses(), [180, 480]);
    late(180); // its phone rings now, after the caller was told 480
    assert.deepEqual(
      downstream.filter((d) => d.startsWith('CANCEL')),
      ['CANCEL 5061', 'CANCEL 5062'],
    );
    late(487);
    layer.close();
  });

  it('passes up a 2xx from a branch given up, and cancels the other phones', async () => {
    const { layer, ctx, branch, statuses, downstream } = heldCall(180_000, silenceMs);
    const late = branch(5061);
    const ringing = branch(5062);
    ctx.seal();
    ringing(180);
    await sleep(120);
    late(200);
    assert.deepEqual(statuses(), [180, 200], 'the late answer takes the call');
    assert.deepEqual(
      downstream.filter((d) => d.startsWith('CANCEL')),
      ['CANCEL 5062'],
    );
    ringing(487);
    layer.close();
  });
});
