// Overload control: the queue probe measures how long a datagram waits in the node's UDP socket
// and event loop (real sockets), the guard turns a standing queue into a refused share and lets
// it go once the queue is gone, and a node whose queue stands refuses new calls with 503 while
// requests of calls already taken, REGISTER and keepalives go on.

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { after, before, describe, it } from 'node:test';
import type { SipMessage } from '../src/message/sip-message.js';
import { OVERLOAD_RETRY_AFTER_S, OverloadGuard } from '../src/node/overload-guard.js';
import { SipSocketTransports } from '../src/transport/index.js';
import { QUEUE_PROBE_BYTES, QueueProbe } from '../src/transport/queue-probe.js';
import { type PeerNode, rawRegister } from './fixtures/sipp.js';
import { TestBed } from './fixtures/test-bed.js';
import { request, type UdpPhone } from './fixtures/udp-phone.js';

/** Keeps the event loop busy for `ms`, as a node doing more work than it can. */
function busy(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // spin
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('overload guard', () => {
  /** A guard on a hand-driven clock whose coin always says "refuse" when it may. */
  function driven(targetMs = 200) {
    let t = 0;
    const guard = new OverloadGuard({ targetMs, now: () => t, random: () => 0 });
    return {
      guard,
      /** One probe every 20 ms for `ms`, each having waited `sojournMs`. */
      probes(ms: number, sojournMs: number) {
        for (let i = 0; i < ms / 20; i++) {
          t += 20;
          guard.sample(sojournMs);
        }
      },
      wait(ms: number) {
        t += ms;
      },
    };
  }

  it('refuses nothing while requests are read at once, or after one long pause', () => {
    const d = driven();
    d.probes(2000, 2);
    assert.equal(d.guard.admit(), true);
    // A 700 ms garbage-collection pause: one probe waited, the next ones did not.
    d.guard.sample(700);
    d.probes(100, 1);
    assert.equal(d.guard.stats.refusing, 0);
    assert.equal(d.guard.admit(), true);
    assert.equal(d.guard.stats.refused, 0);
  });

  it('refuses a growing share while a queue stands over the target, none once it is gone', () => {
    const d = driven();
    d.probes(200, 350);
    const early = d.guard.stats.refusing;
    assert.ok(early > 0, 'refusing once the queue stood for three probes');
    d.probes(400, 350);
    assert.ok(d.guard.stats.refusing > early, 'more while it stays');
    assert.equal(d.guard.stats.queueDelayMs, 350);
    assert.equal(d.guard.admit(), false);
    assert.equal(d.guard.stats.refused, 1);
    d.probes(2000, 1);
    assert.equal(d.guard.stats.refusing, 0, 'the queue drained: nothing refused');
    assert.equal(d.guard.admit(), true);
  });

  it('keeps refusing through a stall longer than a second while a probe is still away', () => {
    let t = 0;
    let away = 0;
    const guard = new OverloadGuard({ now: () => t, random: () => 0, waiting: () => away });
    for (let i = 0; i < 50; i++) {
      t += 20;
      guard.sample(400);
    }
    const share = guard.stats.refusing;
    assert.ok(share > 0);
    t += 3000;
    away = 3000;
    assert.equal(guard.admit(), false, 'a probe still away is no idleness');
    assert.equal(guard.stats.refusing, share);
    guard.sample(Number.NaN);
    guard.sample(-5);
    assert.equal(guard.stats.refusing, share, 'no sample from a broken clock');
    away = 0;
    assert.equal(guard.admit(), true, 'idle: forgotten');
  });

  it('raises the share by 0.1 at most at once (0.02 from 0.1 on), lowers it by 0.1 at most', () => {
    const d = driven();
    const near = (x: number, y: number) => assert.ok(Math.abs(x - y) < 1e-9, `${x} is not ${y}`);
    d.probes(60, 5);
    d.guard.sample(5000);
    d.guard.sample(5000);
    d.guard.sample(5000);
    near(d.guard.stats.refusing, 0.1);
    d.probes(100, 5000);
    near(d.guard.stats.refusing, 0.2);
    d.guard.sample(0); // the queue fell from 5 s to nothing at once
    near(d.guard.stats.refusing, 0.1);
  });

  it('raises the share by a whole step for a probe lost, whatever the others say', () => {
    const d = driven();
    d.probes(100, 1);
    d.guard.lost(600);
    assert.ok(Math.abs(d.guard.stats.refusing - 0.1) < 1e-9);
    assert.equal(d.guard.stats.queueDelayMs, 600);
    d.guard.lost(600);
    assert.ok(Math.abs(d.guard.stats.refusing - 0.12) < 1e-9);
    d.guard.lost(Number.NaN);
    assert.ok(Math.abs(d.guard.stats.refusing - 0.12) < 1e-9);
  });

  it('forgets an old overload when no probe came back for a while (the node went idle)', () => {
    const d = driven();
    d.probes(1000, 400);
    assert.ok(d.guard.stats.refusing > 0);
    d.wait(5000);
    assert.equal(d.guard.admit(), true);
    assert.equal(d.guard.stats.refusing, 0);
  });
});

describe('queue probe', () => {
  function probeAt() {
    const clock = { t: 0 };
    const reports: [number, boolean][] = [];
    const sent: Buffer[] = [];
    const probe = new QueueProbe(
      (stamp) => sent.push(stamp()),
      (ms, lost) => reports.push([ms, lost]),
      { intervalMs: 20, now: () => clock.t },
    );
    return { clock, reports, sent, probe };
  }

  it('reports a probe overtaken by a later one as lost at once (loopback keeps order)', () => {
    const { clock, reports, sent, probe } = probeAt();
    probe.maybeSend();
    clock.t += 10;
    probe.maybeSend();
    assert.equal(sent.length, 1, 'one probe per interval');
    clock.t += 20;
    probe.maybeSend();
    clock.t += 5;
    assert.equal(
      probe.take(sent[1] as Buffer, () => true),
      'sample',
    );
    assert.deepEqual(reports, [
      [35, true],
      [5, false],
    ]);
    assert.equal(probe.lost, 1);
    assert.equal(probe.waitingMs(), 0);
    assert.equal(
      probe.take(sent[0] as Buffer, () => true),
      'sample',
      'the dropped one after all',
    );
    assert.equal(reports.length, 2, 'no second report for it');
    assert.equal(
      probe.take(Buffer.from('REGISTER sip:x SIP/2.0'), () => true),
      'not-a-probe',
    );
  });

  it('stamps a probe as it leaves, not when it was asked for', () => {
    const clock = { t: 0 };
    const reports: [number, boolean][] = [];
    let stamp: (() => Buffer) | undefined;
    const probe = new QueueProbe(
      (s, late) => {
        assert.equal(late, true, 'no queue found yet: after the turn');
        stamp = s;
      },
      (ms, lost) => reports.push([ms, lost]),
      { intervalMs: 20, now: () => clock.t },
    );
    probe.maybeSend();
    clock.t += 7; // the rest of the loop turn
    assert.equal(probe.waitingMs(), 7, 'waiting since it was asked for: a stall is no idleness');
    const datagram = (stamp as () => Buffer)();
    clock.t += 3;
    assert.equal(probe.waitingMs(), 3);
    assert.equal(
      probe.take(datagram, () => true),
      'sample',
    );
    assert.deepEqual(reports, [[3, false]], 'the wait since it left, not since it was asked for');
  });

  it('sends probes at once for a second after one found a queue, then late again', () => {
    const clock = { t: 0 };
    const lates: boolean[] = [];
    const sent: Buffer[] = [];
    const probe = new QueueProbe(
      (stamp, late) => {
        lates.push(late);
        sent.push(stamp());
      },
      () => {},
      { intervalMs: 20, now: () => clock.t },
    );
    probe.maybeSend();
    clock.t += 6;
    probe.take(sent[0] as Buffer, () => true); // waited 6 ms: a queue
    clock.t += 20;
    probe.maybeSend();
    clock.t += 1;
    probe.take(sent[1] as Buffer, () => true); // 1 ms: none, but the queue was seen 21 ms ago
    clock.t += 960;
    probe.maybeSend();
    probe.take(sent[2] as Buffer, () => true);
    clock.t += 30; // 1011 ms since the queue
    probe.maybeSend();
    assert.deepEqual(lates, [true, false, false, true]);
  });

  it('takes a probe overtaken (dropped by a full buffer) as a queue, however quick the next', () => {
    const clock = { t: 0 };
    const lates: boolean[] = [];
    const stamps: (() => Buffer)[] = [];
    const probe = new QueueProbe(
      (stamp, late) => {
        lates.push(late);
        stamps.push(stamp);
      },
      () => {},
      { intervalMs: 0, now: () => clock.t },
    );
    // Two asked for in one long turn, stamped together as it ends; the first is dropped.
    probe.maybeSend();
    probe.maybeSend();
    clock.t += 30;
    (stamps[0] as () => Buffer)();
    clock.t += 0.01;
    const second = (stamps[1] as () => Buffer)();
    clock.t += 1;
    probe.take(second as Buffer, () => true);
    assert.equal(probe.lost, 1);
    probe.maybeSend();
    assert.deepEqual(lates, [true, true, false]);
  });

  it('reports a probe away a second as lost at the next send, and forgets one away 2 s', () => {
    const { clock, reports, sent, probe } = probeAt();
    probe.maybeSend();
    clock.t += 999;
    probe.maybeSend();
    assert.deepEqual(reports, [], 'not yet');
    clock.t += 20;
    assert.equal(probe.waitingMs(), 1019);
    probe.maybeSend();
    assert.deepEqual(reports, [[1019, true]]);
    assert.equal(sent.length, 3);
    // The two still away are dropped too, and then the node is quiet.
    clock.t += 1999;
    assert.equal(probe.waitingMs(), 1999, 'the one sent at 999 ms is forgotten, not the last');
    clock.t += 1;
    assert.equal(probe.waitingMs(), 0, 'forgotten after 2 s');
    probe.maybeSend();
    assert.deepEqual(reports, [[1019, true]], 'nothing from probes of long ago');
  });
});

describe('queue probe (real UDP socket)', () => {
  let transports: SipSocketTransports;
  const samples: number[] = [];
  const messages: Buffer[] = [];

  before(async () => {
    transports = await SipSocketTransports.listen({
      host: '127.0.0.1',
      port: 0,
      ws: false,
      queueProbeIntervalMs: 0,
      // A probe that waited 250 ms or more makes the next go out at once (the default, 5 ms,
      // a busy test machine may reach by itself).
      queueProbeEarlyMs: 250,
    });
    transports.on('queue-delay', (ms) => samples.push(ms));
    transports.on('message', ({ data }) => messages.push(data));
  });

  after(async () => {
    await transports.close();
  });

  it('measures the wait of a datagram behind a busy event loop', async () => {
    transports.probeQueue();
    await waitFor(() => samples.length === 1);
    assert.ok((samples[0] as number) < 250, `an idle node reads at once (${samples[0]} ms)`);
    // No queue found (none of 250 ms): the probe leaves after this turn, so 300 ms of work in this turn is no
    // wait for it; work in the next turn is.
    transports.probeQueue();
    busy(300);
    setImmediate(() => busy(300)); // runs just after the probe has left
    await waitFor(() => samples.length === 2);
    const second = samples[1] as number;
    assert.ok(second >= 290 && second < 550, `waited behind the next turn's work (${second} ms)`);
    // A queue found: the next probe goes out at once and waits behind this turn's work too.
    transports.probeQueue();
    busy(300);
    await waitFor(() => samples.length === 3);
    assert.ok((samples[2] as number) >= 290, `waited behind 300 ms of work (${samples[2]} ms)`);
    assert.equal(messages.length, 0, 'probes are not SIP messages');
  });

  it('drops a forged probe from another socket and counts it as malformed', async () => {
    const before = transports.stats.malformed.udp;
    const samplesBefore = samples.length;
    const sock: Socket = createSocket('udp4');
    try {
      const forged = Buffer.alloc(QUEUE_PROBE_BYTES);
      forged.write('\0peerbx-queue-probe\0', 'latin1');
      await new Promise<void>((resolve, reject) =>
        sock.send(forged, transports.addresses.udp.port, '127.0.0.1', (e) =>
          e ? reject(e) : resolve(),
        ),
      );
      await waitFor(() => transports.stats.malformed.udp === before + 1);
    } finally {
      sock.close();
    }
    assert.equal(messages.length, 0);
    assert.equal(samples.length, samplesBefore, 'no sample from a forgery');
  });
});

async function waitFor(cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await sleep(5);
  }
}

/**
 * Another process sending keepalives (OPTIONS to the node, never refused) to `port` every 2 ms,
 * so the node has work waiting whenever it is busy. It exits by itself after 20 s.
 */
function keepaliveFlood(port: number): ChildProcess {
  return spawn(
    process.execPath,
    [
      '-e',
      `setTimeout(() => process.exit(0), 20000);
       const s = require('node:dgram').createSocket('udp4');
       s.bind(0, '127.0.0.1', () => {
         const me = s.address().port; let i = 0;
         setInterval(() => {
           for (let k = 0; k < 4; k++, i++) s.send(
             'OPTIONS sip:127.0.0.1:${port} SIP/2.0\\r\\nVia: SIP/2.0/UDP 127.0.0.1:' + me +
             ';branch=z9hG4bK-ka' + i + '\\r\\nFrom: <sip:ka@peerbx.local>;tag=k\\r\\n' +
             'To: <sip:127.0.0.1:${port}>\\r\\nCall-ID: ka' + i + '\\r\\nCSeq: 1 OPTIONS\\r\\n' +
             'Max-Forwards: 70\\r\\nContent-Length: 0\\r\\n\\r\\n', ${port}, '127.0.0.1');
         }, 2);
       });`,
    ],
    { stdio: 'ignore' },
  );
}

/**
 * This process works in 45 ms stretches (whatever arrives meanwhile waits for the next gap)
 * for `ms`; with `ms` 0, until `done` says so, within 8 s (false if it never did).
 */
async function overloaded(ms: number, done: () => boolean = () => false): Promise<boolean> {
  const end = performance.now() + (ms > 0 ? ms : 8000);
  while (performance.now() < end) {
    if (ms <= 0 && done()) return true;
    busy(45);
    await new Promise((resolve) => setImmediate(resolve));
  }
  return ms <= 0 && done();
}

/** Retransmissions under way (stopped by the test, or by the suite's `after`). */
const resending = new Set<NodeJS.Timeout>();

/** Sends `text` to the node now and every 300 ms, as a phone over UDP does, until stopped. */
function retransmitted(phone: UdpPhone, text: string, port: number): () => void {
  phone.send(text, port);
  const timer = setInterval(() => phone.send(text, port), 300);
  resending.add(timer);
  return () => {
    clearInterval(timer);
    resending.delete(timer);
  };
}

function stopResending(): void {
  for (const timer of resending) clearInterval(timer);
  resending.clear();
}

const finalTo = (method: string) => (m: SipMessage) =>
  m.kind === 'response' && m.status >= 200 && m.cseq.method === method;

/**
 * Places new calls from `phone` to `uri` through the node at `port` (each INVITE sent again
 * until answered) while this process keeps the overloaded node's queue standing, until one is
 * refused (5xx); its final response. Within 20 tries.
 */
async function firstRefusal(
  phone: UdpPhone,
  uri: string,
  port: number,
  guard: { readonly stats: { refusing: number } },
): Promise<SipMessage> {
  for (let i = 0; i < 20; i++) {
    assert.ok(await overloaded(0, () => guard.stats.refusing > 0.05), 'the node is overloaded');
    const invite = request('INVITE', uri, phone);
    const stop = retransmitted(phone, invite.text, port);
    const answer = phone.next(
      (m) => finalTo('INVITE')(m) && m.callId === invite.callId,
      'final response to INVITE',
      8000,
    );
    await overloaded(100);
    const final = await answer.finally(stop);
    if (final.kind === 'response' && final.status >= 500) return final;
  }
  throw new Error('no new call refused in 20 tries');
}

describe('nodes whose queue stands (real sockets)', () => {
  const bed = new TestBed('peerbx-overload-');
  /** A caller's node with the default overload control. */
  let caller: PeerNode;
  /** A node with a low target, so that a test process can make its queue stand; its coin
   * always refuses when the refused share is above zero. */
  let peer: PeerNode;
  let phone: UdpPhone;
  let flood: ChildProcess | undefined;

  before(async () => {
    caller = await bed.startPeer('a');
    peer = await bed.startPeer('b', { overload: { targetMs: 20, random: () => 0 } });
    phone = await bed.phone();
  });

  after(async () => {
    flood?.kill();
    stopResending();
    await bed.close();
  });

  it('refuses new calls with 503 and Retry-After, serves the rest, and recovers', async () => {
    flood = keepaliveFlood(peer.port);
    const guard = peer.sip.overload;
    assert.ok(
      await overloaded(0, () => guard.stats.refusing > 0.05),
      `refusing (queue ${guard.stats.queueDelayMs} ms)`,
    );

    // New calls while it lasts: one is refused (the share is above 0 most of the time, and a
    // UDP socket that overflows may drop an INVITE, which is then sent again).
    const refused = await firstRefusal(phone, 'sip:nobody@peerbx.local', peer.port, guard);
    assert.equal(refused.kind === 'response' && refused.status, 503);
    assert.match(refused.kind === 'response' ? refused.reason : '', /overloaded/);
    assert.equal(refused.headers.get('retry-after'), String(OVERLOAD_RETRY_AFTER_S));
    const refusals = guard.stats.refused;
    assert.ok(refusals >= 1);

    // A request of a call already taken (To tag) and a REGISTER, sent while the node refuses
    // new calls, are not refused.
    assert.ok(await overloaded(0, () => guard.stats.refusing > 0.05));
    const bye = request('BYE', 'sip:nobody@peerbx.local', phone);
    const stopBye = retransmitted(
      phone,
      bye.text.replace(/^(To: [^\r]*)/m, '$1;tag=callee'),
      peer.port,
    );
    const register = [
      `REGISTER sip:127.0.0.1:${peer.port} SIP/2.0`,
      `Via: SIP/2.0/UDP ${phone.contact};branch=z9hG4bK-reg-${Date.now()};rport`,
      'From: <sip:alice@127.0.0.1>;tag=r1',
      'To: <sip:alice@127.0.0.1>',
      `Call-ID: reg-${Date.now()}@test`,
      'CSeq: 1 REGISTER',
      `Contact: <sip:alice@${phone.contact}>`,
      'Expires: 60',
      'Max-Forwards: 70',
      'Content-Length: 0',
      '',
      '',
    ].join('\r\n');
    const stopRegister = retransmitted(phone, register, peer.port);
    const registered = phone.next(finalTo('REGISTER'), 'final response to REGISTER');
    await overloaded(100);
    assert.ok(guard.stats.refusing > 0, 'still refusing new requests');
    const byeAnswer = await phone.next(finalTo('BYE'), 'final response to BYE');
    stopBye();
    assert.doesNotMatch(byeAnswer.kind === 'response' ? byeAnswer.reason : '', /overloaded/);
    const registerAnswer = await registered.finally(stopRegister);
    assert.equal(registerAnswer.kind === 'response' && registerAnswer.status, 200);
    assert.equal(guard.stats.refused, refusals, 'neither was refused');

    // The load goes away: once the node has read what was queued, and the probes show no queue
    // (or stop coming back for a second), nothing is refused.
    flood.kill();
    flood = undefined;
    await waitFor(() => guard.stats.refusing === 0, 8000);
    const again = request('INVITE', 'sip:nobody@peerbx.local', phone);
    phone.send(again.text, peer.port);
    const answer = await phone.next(
      (m) => finalTo('INVITE')(m) && m.callId === again.callId,
      'final response to the second INVITE',
    );
    assert.doesNotMatch(answer.kind === 'response' ? answer.reason : '', /overloaded/);
    assert.equal(answer.kind === 'response' && answer.status, 404);
  });

  it("a callee's node's refusal reaches the caller as 500 with reason and Retry-After", async () => {
    const callee = peer;
    assert.equal(
      await rawRegister({ host: '127.0.0.1', port: callee.port }, 'bob', 'sip:bob@127.0.0.1:9'),
      'SIP/2.0 200 OK',
    );
    flood = keepaliveFlood(callee.port);
    const guard = callee.sip.overload;
    assert.ok(
      await overloaded(0, () => guard.stats.refusing > 0.05),
      `refusing (queue ${guard.stats.queueDelayMs} ms)`,
    );
    assert.equal(caller.sip.overload.stats.refusing, 0, "the caller's node is not overloaded");

    const final = await firstRefusal(phone, 'sip:bob@peerbx.local', caller.port, guard);
    assert.equal(final.kind === 'response' && final.status, 500);
    assert.match(
      final.kind === 'response' ? final.reason : '',
      /^Server Internal Error \(503 .*overloaded.* downstream\)$/,
    );
    assert.equal(final.headers.get('retry-after'), String(OVERLOAD_RETRY_AFTER_S));
  });
});
