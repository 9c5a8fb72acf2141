// The SIP transports over real sockets on 127.0.0.1: UDP, TCP (framing, keepalives, flows,
// outbound connections, idle and eviction) and WebSocket (RFC 7118 subprotocol), hostile input
// that must cost only its own connection, and ports released on close.

import assert from 'node:assert/strict';
import { createSocket, type Socket as UdpClient } from 'node:dgram';
import { EventEmitter, once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Worker } from 'node:worker_threads';
import { type ClientOptions, WebSocket } from 'ws';
import type { ConnectionHost } from '../src/transport/connection.js';
import type { SipTransportError } from '../src/transport/errors.js';
import { SipSocketTransports, type SipTransportOptions } from '../src/transport/layer.js';
import { TcpConnection } from '../src/transport/tcp.js';
import type { SipFlowClosed, SipInboundMessage } from '../src/transport/transport.js';
import { bindUdp } from '../src/transport/udp.js';
import { originAllowed } from '../src/transport/ws.js';
import { testCertificate } from './fixtures/test-cert.js';

const HOST = '127.0.0.1';
const WAIT_MS = 3000;

function withTimeout<T>(promise: Promise<T>, what: string, ms = WAIT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function eventually(check: () => boolean, what: string, ms = WAIT_MS): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function request(method: string, callId: string, body = ''): string {
  return (
    `${method} sip:alice@example.com SIP/2.0\r\n` +
    `Via: SIP/2.0/TCP 127.0.0.1:5070;branch=z9hG4bK-${callId}\r\n` +
    `Call-ID: ${callId}\r\nCSeq: 1 ${method}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
  );
}

function reply(callId: string): Buffer {
  return Buffer.from(`SIP/2.0 200 OK\r\nCall-ID: ${callId}\r\nContent-Length: 0\r\n\r\n`);
}

/** The next `count` messages the layer delivers. */
function nextMessages(layer: SipSocketTransports, count = 1): Promise<SipInboundMessage[]> {
  const got: SipInboundMessage[] = [];
  return withTimeout(
    new Promise<SipInboundMessage[]>((resolve) => {
      const on = (m: SipInboundMessage) => {
        got.push(m);
        if (got.length < count) return;
        layer.off('message', on);
        resolve(got);
      };
      layer.on('message', on);
    }),
    `${count} SIP message(s)`,
  );
}

async function nextMessage(layer: SipSocketTransports): Promise<SipInboundMessage> {
  return (await nextMessages(layer, 1))[0] as SipInboundMessage;
}

/** Collects what a raw TCP client receives. */
function received(socket: Socket): { text: () => string } {
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  return { text: () => Buffer.concat(chunks).toString('latin1') };
}

const layers: SipSocketTransports[] = [];
const sockets: Socket[] = [];
const others: Array<{ close(): unknown }> = [];

async function start(options: SipTransportOptions = {}): Promise<SipSocketTransports> {
  const layer = await SipSocketTransports.listen({
    host: HOST,
    port: 0,
    wsHost: HOST,
    wsPort: 0,
    ...options,
  });
  layers.push(layer);
  return layer;
}

/** An IPv4 address of this machine other than loopback, if it has one. */
function lanAddress(): string | undefined {
  return Object.values(networkInterfaces())
    .flat()
    .find((i) => i && i.family === 'IPv4' && !i.internal)?.address;
}

async function tcpClient(layer: SipSocketTransports): Promise<Socket> {
  const socket = netConnect({ host: HOST, port: layer.addresses.tcp.port });
  socket.on('error', () => undefined);
  sockets.push(socket);
  await withTimeout(once(socket, 'connect'), 'TCP connect');
  return socket;
}

function wsClient(
  layer: SipSocketTransports,
  protocols?: string | string[],
  options: ClientOptions & { secure?: boolean } = {},
): WebSocket {
  const scheme = options.secure ? 'wss' : 'ws';
  const ws = new WebSocket(`${scheme}://${HOST}:${layer.addresses.ws?.port}`, protocols, options);
  ws.on('error', () => undefined);
  others.push({ close: () => ws.terminate() });
  return ws;
}

after(async () => {
  for (const s of sockets) s.destroy();
  for (const o of others) o.close();
  await withTimeout(Promise.all(layers.map((l) => l.close())), 'layers to close', 5000);
});

describe('SIP transports', () => {
  let layer: SipSocketTransports;
  const unframeable: Array<{ connectionId?: string; headers: string; reason: string }> = [];

  before(async () => {
    layer = await start({
      onUnframeable: (source, partialHeaders, reason) => {
        unframeable.push({
          connectionId: source.connectionId,
          headers: partialHeaders.toString(),
          reason,
        });
        // The layer above answers 400 before the connection closes.
        if (source.connectionId) {
          void layer
            .send(Buffer.from('SIP/2.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n'), {
              connectionId: source.connectionId,
            })
            .catch(() => undefined);
        }
      },
    });
  });

  it('binds port 0 to free ports, UDP and TCP on the same one', () => {
    const { udp, tcp, ws } = layer.addresses;
    assert.equal(udp.address, HOST);
    assert.ok(udp.port > 0);
    assert.equal(tcp.port, udp.port);
    assert.ok(ws && ws.port > 0 && ws.port !== tcp.port);
  });

  it('round-trips over UDP and drops what is not SIP', async () => {
    const client: UdpClient = createSocket('udp4');
    others.push({ close: () => client.close() });
    await new Promise<void>((r) => client.bind(0, HOST, () => r()));
    const before = layer.stats;
    const port = layer.addresses.udp.port;
    client.send(Buffer.alloc(0), port, HOST);
    client.send(Buffer.from('\r\n\r\n'), port, HOST);
    client.send(Buffer.from('\x00\x01garbage'), port, HOST);
    const inbound = nextMessage(layer);
    client.send(Buffer.from(request('REGISTER', 'udp-1')), port, HOST);
    const m = await inbound;
    assert.equal(m.data.toString(), request('REGISTER', 'udp-1'));
    assert.deepEqual(m.source, { transport: 'udp', address: HOST, port: client.address().port });
    const answer = withTimeout(once(client, 'message'), 'the UDP reply');
    await layer.send(reply('udp-1'), m.source);
    const [data] = (await answer) as [Buffer];
    assert.equal(data.toString(), reply('udp-1').toString());
    const after = layer.stats;
    assert.equal(after.malformed.udp - before.malformed.udp, 2);
    assert.equal(after.keepalivesIn - before.keepalivesIn, 1);
    assert.equal(after.messagesIn.udp - before.messagesIn.udp, 1);
    assert.equal(after.messagesOut.udp - before.messagesOut.udp, 1);
    await assert.rejects(
      layer.send(Buffer.alloc(65_508), m.source),
      (err: SipTransportError) => err.code === 'ERR_TOO_LARGE',
    );
  });

  it('frames TCP: byte by byte, three in one write, bodies, keepalives, replies on the flow', async () => {
    const socket = await tcpClient(layer);
    const got = received(socket);
    const invite = request('INVITE', 'tcp-1', 'v=0\r\ns=-\r\n');
    const first = nextMessage(layer);
    for (const byte of Buffer.from(invite)) {
      socket.write(Buffer.from([byte]));
      await new Promise((r) => setImmediate(r));
    }
    const m1 = await first;
    assert.equal(m1.data.toString(), invite);
    assert.equal(m1.source.transport, 'tcp');
    assert.equal(m1.source.port, socket.localPort);
    assert.ok(m1.source.connectionId);

    const three = nextMessages(layer, 3);
    socket.write(request('OPTIONS', 'a') + request('MESSAGE', 'b', 'hi') + request('BYE', 'c'));
    const ms = await three;
    assert.deepEqual(
      ms.map((m) => m.data.toString()),
      [request('OPTIONS', 'a'), request('MESSAGE', 'b', 'hi'), request('BYE', 'c')],
    );
    assert.ok(ms.every((m) => m.source.connectionId === m1.source.connectionId));

    const pongs = layer.stats.keepalivesOut;
    socket.write('\r\n\r\n');
    await eventually(() => got.text() === '\r\n', 'the CRLF pong');
    assert.equal(layer.stats.keepalivesOut, pongs + 1);

    const sent = await layer.send(reply('tcp-1'), {
      connectionId: m1.source.connectionId as string,
    });
    assert.equal(sent.connectionId, m1.source.connectionId);
    await eventually(
      () => got.text() === `\r\n${reply('tcp-1')}`,
      'the reply on the same connection',
    );
  });

  it('opens a TCP connection to a destination, reuses it and hears replies on it', async () => {
    const accepted: Socket[] = [];
    const server: Server = createServer((s) => {
      s.on('error', () => undefined);
      accepted.push(s);
    });
    others.push({ close: () => server.close() });
    await new Promise<void>((r) => server.listen(0, HOST, () => r()));
    const port = (server.address() as { port: number }).port;
    const opened = layer.stats.connectionsOpened.tcp;
    const [a, b] = await withTimeout(
      Promise.all([
        layer.send(Buffer.from(request('OPTIONS', 'out-1')), {
          transport: 'tcp',
          address: HOST,
          port,
        }),
        layer.send(Buffer.from(request('OPTIONS', 'out-2')), {
          transport: 'tcp',
          address: HOST,
          port,
        }),
      ]),
      'sends over a new connection',
    );
    assert.ok(a.connectionId);
    assert.equal(b.connectionId, a.connectionId, 'concurrent sends share one connection');
    assert.equal(layer.stats.connectionsOpened.tcp, opened + 1);
    await eventually(() => accepted.length === 1, 'the connection');
    const peer = accepted[0] as Socket;
    const got = received(peer);
    await eventually(
      () => got.text() === request('OPTIONS', 'out-1') + request('OPTIONS', 'out-2'),
      'both requests',
    );
    const inbound = nextMessage(layer);
    peer.write(reply('out-1'));
    const m = await inbound;
    assert.equal(m.source.connectionId, a.connectionId);
    for (const s of accepted) s.destroy();
  });

  it('carries SIP over WebSocket with the sip subprotocol, replies on the same socket', async () => {
    const ws = wsClient(layer, 'sip');
    await withTimeout(once(ws, 'open'), 'the WebSocket handshake');
    assert.equal(ws.protocol, 'sip');
    const inbound = nextMessage(layer);
    ws.send(request('REGISTER', 'ws-1'));
    const m = await inbound;
    assert.equal(m.data.toString(), request('REGISTER', 'ws-1'));
    assert.equal(m.source.transport, 'ws');
    assert.ok(m.source.connectionId?.startsWith('ws-'));
    const answer = withTimeout(once(ws, 'message'), 'the WebSocket reply');
    await layer.send(reply('ws-1'), { connectionId: m.source.connectionId as string });
    const [data, isBinary] = (await answer) as [Buffer, boolean];
    assert.equal(isBinary, false, 'UTF-8 SIP goes out as a text frame');
    assert.equal(data.toString(), reply('ws-1').toString());
    // A WebSocket destination is reachable only over the client's own connection.
    await layer.send(reply('ws-1b'), { transport: 'ws', address: HOST, port: m.source.port });
    await assert.rejects(
      layer.send(reply('ws-2'), { transport: 'ws', address: HOST, port: 1 }),
      (err: SipTransportError) => err.code === 'ERR_UNREACHABLE',
    );
    ws.close();
  });

  it('counts a frame that breaks the WebSocket protocol, and closes', async () => {
    const ws = wsClient(layer, 'sip');
    await withTimeout(once(ws, 'open'), 'the WebSocket handshake');
    const before = layer.stats.malformed.ws;
    // A text frame that is not UTF-8 (QA: closed 1007, but counted nowhere).
    ws.send(Buffer.from([0x49, 0x4e, 0xff, 0xfe]), { binary: false });
    const [code] = (await withTimeout(once(ws, 'close'), 'the close')) as [number];
    assert.equal(code, 1007);
    assert.equal(layer.stats.malformed.ws, before + 1);
  });

  it('selects the sip subprotocol as the client spelled it, among others', async () => {
    for (const offered of [['SIP'], ['chat', 'Sip']]) {
      const ws = wsClient(layer, offered);
      await withTimeout(once(ws, 'open'), 'the WebSocket handshake');
      assert.equal(ws.protocol, offered.at(-1));
      ws.close();
    }
  });

  it('refuses a WebSocket handshake without the sip subprotocol', async () => {
    const refused = layer.stats.connectionsRefused;
    for (const protocols of [undefined, 'foo']) {
      const ws = wsClient(layer, protocols);
      const [, response] = (await withTimeout(once(ws, 'unexpected-response'), 'the refusal')) as [
        unknown,
        { statusCode: number },
      ];
      assert.equal(response.statusCode, 400);
      ws.terminate();
    }
    assert.equal(layer.stats.connectionsRefused, refused + 2);
  });

  it('answers a handshake of another WebSocket version 426, naming version 13', async () => {
    const refused = layer.stats.connectionsRefused;
    const ws = wsClient(layer, 'sip', { protocolVersion: 8 });
    const [, response] = (await withTimeout(once(ws, 'unexpected-response'), 'the refusal')) as [
      unknown,
      { statusCode: number; headers: Record<string, string> },
    ];
    assert.equal(response.statusCode, 426);
    assert.equal(response.headers['sec-websocket-version'], '13');
    ws.terminate();
    assert.equal(layer.stats.connectionsRefused, refused + 1);
  });

  it("refuses a web page of another site, takes this machine's and those listed", async () => {
    /** 'open', or the HTTP status the handshake of a page of `origin` was refused with. */
    const open = async (l: SipSocketTransports, origin: string) => {
      const ws = wsClient(l, 'sip', { origin });
      const outcome = await withTimeout(
        new Promise<'open' | number | undefined>((resolve) => {
          ws.once('open', () => resolve('open'));
          ws.once('unexpected-response', (_req, res) => resolve(res.statusCode));
        }),
        'the handshake',
      );
      ws.terminate();
      return outcome;
    };
    const refused = layer.stats.connectionsRefused;
    assert.equal(await open(layer, 'https://evil.example'), 403);
    assert.equal(await open(layer, 'null'), 403, 'a sandboxed page of any site says null');
    assert.equal(layer.stats.connectionsRefused, refused + 2);
    assert.equal(await open(layer, 'http://localhost:8080'), 'open');
    assert.equal(await open(layer, 'http://127.0.0.1:3000'), 'open');
    const listed = await start({ wsOrigins: ['https://phone.example.com'] });
    assert.equal(await open(listed, 'https://phone.example.com'), 'open');
    assert.equal(await open(listed, 'http://phone.example.com'), 403, 'another scheme');
    assert.equal(await open(listed, 'https://evil.example'), 403);
  });

  it('closes an unframeable stream after the hook, counts it, and keeps serving', async () => {
    const before = layer.stats;
    const inputs = [
      'REGISTER sip:a SIP/2.0\r\nCall-ID: no-length@test\r\n\r\n',
      '\x16\x03\x01\x02\x00 binary garbage\r\n\r\n',
    ];
    for (const input of inputs) {
      const socket = await tcpClient(layer);
      const got = received(socket);
      const closed = withTimeout(once(socket, 'close'), 'the server to close the connection');
      socket.write(input);
      await closed;
      if (input.startsWith('REGISTER')) {
        assert.equal(got.text(), 'SIP/2.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n');
      }
    }
    const big = await tcpClient(layer);
    big.resume();
    const bigClosed = withTimeout(once(big, 'close'), 'the oversized header to close');
    big.write(`OPTIONS sip:a SIP/2.0\r\nX-Pad: ${'x'.repeat(70_000)}`);
    await bigClosed;

    const after = layer.stats;
    assert.equal(
      after.unframeable['missing-content-length'] - before.unframeable['missing-content-length'],
      1,
    );
    assert.equal(after.unframeable['not-sip'] - before.unframeable['not-sip'], 1);
    assert.equal(after.unframeable['header-too-large'] - before.unframeable['header-too-large'], 1);
    assert.ok(unframeable.some((u) => u.headers.includes('Call-ID: no-length@test')));
    await eventually(
      () => layer.stats.connectionsClosed.tcp - before.connectionsClosed.tcp >= 3,
      'the three connections to be counted closed',
    );

    const fresh = await tcpClient(layer);
    const inbound = nextMessage(layer);
    fresh.write(request('OPTIONS', 'after-garbage'));
    assert.equal((await inbound).data.toString(), request('OPTIONS', 'after-garbage'));
  });

  it('reports a gone flow and refuses destinations that are not IP literals', async () => {
    const socket = await tcpClient(layer);
    const inbound = nextMessage(layer);
    socket.write(request('OPTIONS', 'gone'));
    const id = (await inbound).source.connectionId as string;
    const flowClosed = withTimeout(
      new Promise<SipFlowClosed>((resolve) => {
        const on = (f: SipFlowClosed) => {
          if (f.connectionId !== id) return;
          layer.off('flow-closed', on);
          resolve(f);
        };
        layer.on('flow-closed', on);
      }),
      'flow-closed',
    );
    socket.destroy();
    assert.equal((await flowClosed).reason, 'closed by peer');
    assert.equal(layer.hasFlow(id), false);
    await assert.rejects(layer.send(reply('gone'), { connectionId: id }), { code: 'ERR_NO_FLOW' });
    await assert.rejects(
      layer.send(reply('name'), { transport: 'tcp', address: 'example.com', port: 5060 }),
      { code: 'ERR_DESTINATION' },
    );
  });
});

describe('the WebSocket Origin check', () => {
  const own = (h: string) => h === '192.0.2.7';
  it("takes no Origin (no browser), loopback pages and the machine's own", () => {
    for (const origin of [
      undefined,
      'http://localhost:8080',
      'http://127.0.0.1',
      'https://[::1]:3000',
      'http://192.0.2.7:8000',
    ]) {
      assert.equal(originAllowed(origin, [], own), true, String(origin));
    }
  });

  it('refuses a host name that only starts like a loopback or own address', () => {
    assert.equal(originAllowed('http://127.0.0.1.evil.example', [], own), false);
    assert.equal(originAllowed('http://127.attacker.example:8080', [], own), false);
    assert.equal(originAllowed('http://192.0.2.7.evil.example', [], own), false);
    assert.equal(originAllowed('http://localhost.evil.example', [], own), false);
    assert.equal(originAllowed('http://127.0.0.2:8000', [], own), true);
  });

  it('refuses other pages unless listed, by scheme, host and port', () => {
    const listed = ['https://phone.example.com', 'http://intranet.example:8080/'];
    assert.equal(originAllowed('https://evil.example', listed, own), false);
    assert.equal(originAllowed('https://phone.example.com', listed, own), true);
    assert.equal(originAllowed('https://PHONE.example.com:443', listed, own), true);
    assert.equal(originAllowed('https://phone.example.com:8443', listed, own), false);
    assert.equal(originAllowed('http://intranet.example:8080', listed, own), true);
    assert.equal(originAllowed('http://intranet.example', listed, own), false);
    assert.equal(originAllowed('not a url', listed, own), false);
    assert.equal(originAllowed('null', listed, own), false);
    assert.equal(originAllowed('null', ['null'], own), true);
    assert.equal(originAllowed('https://evil.example', ['*'], own), true);
  });
});

describe('SIP over secure WebSocket (wss)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'peerbx-wss-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const files = testCertificate(dir);
  const skip = files.skip;

  it('speaks TLS with the certificate given, and carries SIP over it', { skip }, async () => {
    const cert = readFileSync(files.cert);
    const layer = await start({ wsTls: { cert, key: readFileSync(files.key) } });
    const ws = wsClient(layer, 'sip', { secure: true, ca: cert });
    await withTimeout(once(ws, 'open'), 'the TLS and WebSocket handshakes');
    const inbound = nextMessage(layer);
    ws.send(request('REGISTER', 'wss-1'));
    const m = await inbound;
    assert.equal(m.source.transport, 'ws');
    const answer = withTimeout(once(ws, 'message'), 'the reply');
    await layer.send(reply('wss-1'), { connectionId: m.source.connectionId as string });
    assert.equal(((await answer) as [Buffer])[0].toString(), reply('wss-1').toString());
    ws.close();
    // Plain ws to a wss listener gets no WebSocket.
    const plain = wsClient(layer, 'sip');
    let opened = false;
    plain.on('open', () => {
      opened = true;
    });
    await withTimeout(new Promise((closed) => plain.once('close', closed)), 'plain ws to fail');
    assert.equal(opened, false);
  });
});

describe('SIP transport connection management', () => {
  it('closes idle connections but keeps a registered flow', async () => {
    const layer = await start({ ws: false, idleTimeoutMs: 150 });
    const idle = await tcpClient(layer);
    const kept = await tcpClient(layer);
    const inbound = nextMessage(layer);
    kept.write(request('REGISTER', 'kept'));
    const id = (await inbound).source.connectionId as string;
    assert.equal(layer.keepFlow(id, true), true);
    assert.equal(layer.keepFlow('tcp-nope', true), false);
    await withTimeout(once(idle, 'close'), 'the idle connection to close');
    assert.equal(layer.stats.connectionsIdleClosed, 1);
    await new Promise((r) => setTimeout(r, 250));
    assert.equal(layer.hasFlow(id), true, 'a kept flow outlives the idle timeout');
    layer.keepFlow(id, false);
    await withTimeout(once(kept, 'close'), 'the released flow to close');
  });

  it('keeps a WebSocket whose browser answers pings past the idle timeout, and drops one that does not', async () => {
    const layer = await start({ idleTimeoutMs: 300, wsPingIntervalMs: 60 });
    const open = (ws: WebSocket) => withTimeout(once(ws, 'open'), 'WebSocket open');
    const answers = wsClient(layer, 'sip');
    const mute = new WebSocket(`ws://${HOST}:${layer.addresses.ws?.port}`, 'sip', {
      autoPong: false,
    });
    mute.on('error', () => undefined);
    others.push({ close: () => mute.terminate() });
    await Promise.all([open(answers), open(mute)]);
    const inbound = nextMessage(layer);
    answers.send(request('OPTIONS', 'once'));
    await inbound;
    const muteClosed = once(mute, 'close');
    await new Promise((r) => setTimeout(r, 900));
    assert.equal(answers.readyState, WebSocket.OPEN, 'three idle timeouts later, still open');
    await withTimeout(muteClosed, 'the WebSocket that never answers a ping to close');
    assert.equal(layer.stats.connectionsIdleClosed, 0);
  });

  it('counts whole messages as activity, not bytes: a trickled header is idle', async () => {
    const layer = await start({ ws: false, idleTimeoutMs: 200 });
    const trickle = await tcpClient(layer);
    const text = Buffer.from(request('OPTIONS', 'slow'));
    let i = 0;
    const timer = setInterval(() => {
      if (i < text.length - 4) trickle.write(text.subarray(i, ++i));
    }, 20);
    try {
      await withTimeout(once(trickle, 'close'), 'the trickling connection to close');
    } finally {
      clearInterval(timer);
    }
    assert.ok(i < text.length - 4, 'closed before its message was whole');
    assert.equal(layer.stats.connectionsIdleClosed, 1);
  });

  it('closes an inbound connection that brings no whole message in time', async () => {
    const layer = await start({ ws: false, firstMessageTimeoutMs: 100, idleTimeoutMs: 60_000 });
    const silent = await tcpClient(layer);
    const talker = await tcpClient(layer);
    const inbound = nextMessage(layer);
    talker.write(request('OPTIONS', 'prompt'));
    await inbound;
    await withTimeout(once(silent, 'close'), 'the silent connection to close');
    assert.equal(talker.destroyed, false, 'the connection that spoke stays');
  });

  it('lets one host other than this machine hold only so many connections', {
    skip: lanAddress() ? false : 'this machine has no IPv4 address but loopback',
  }, async () => {
    const lan = lanAddress() as string;
    const layer = await start({ ws: false, host: lan, maxConnectionsPerHost: 2 });
    const connect = async (localAddress: string) => {
      const socket = netConnect({ host: lan, port: layer.addresses.tcp.port, localAddress });
      socket.on('error', () => undefined);
      sockets.push(socket);
      await withTimeout(once(socket, 'connect'), 'TCP connect');
      return socket;
    };
    await connect(lan);
    await connect(lan);
    await eventually(() => layer.stats.connectionsOpen.tcp === 2, 'two connections');
    const third = await connect(lan);
    await withTimeout(once(third, 'close'), 'the third connection from that host to close');
    assert.equal(layer.stats.connectionsRefused, 1);
    // Loopback (this machine) is not limited: its connection is taken.
    await connect('127.0.0.1');
    await eventually(() => layer.stats.connectionsOpen.tcp === 3, 'a connection from loopback');
  });

  it('closes the oldest idle connection to make room, and says so in the log', async () => {
    const warnings: string[] = [];
    const logger = {
      debug: () => undefined,
      info: () => undefined,
      warn: (_: object, msg?: string) => warnings.push(msg ?? ''),
      error: () => undefined,
      child: () => logger,
    };
    const layer = await start({ ws: false, maxConnections: 2, logger });
    const first = await tcpClient(layer);
    const firstClosed = withTimeout(once(first, 'close'), 'the oldest connection to close');
    await eventually(() => layer.stats.connectionsOpen.tcp === 1, 'the first connection');
    await new Promise((r) => setTimeout(r, 5));
    const second = await tcpClient(layer);
    await eventually(() => layer.stats.connectionsOpen.tcp === 2, 'the second connection');
    await new Promise((r) => setTimeout(r, 5));
    await tcpClient(layer);
    await firstClosed;
    assert.equal(layer.stats.connectionsEvicted, 1);
    assert.equal(second.destroyed, false);
    assert.deepEqual(warnings, [
      'the SIP connection table is full: closing the connection idle longest for a new one',
    ]);
  });

  it('sends the datagrams of one turn in order, those queued when it closes too', async () => {
    const layer = await start();
    const client: UdpClient = createSocket('udp4');
    others.push({ close: () => client.close() });
    await new Promise<void>((r) => client.bind(0, HOST, () => r()));
    const got: string[] = [];
    client.on('message', (d: Buffer) => got.push(d.toString()));
    const to = { transport: 'udp' as const, address: HOST, port: client.address().port };
    const ids = [1, 2, 3, 4, 5].map((i) => `batch-${i}`);
    // The replies go out after this turn; the close comes in the same turn and lets them go.
    const sent = ids.map((id) => layer.send(reply(id), to));
    await layer.close();
    await Promise.all(sent);
    await eventually(() => got.length === ids.length, 'the five replies');
    assert.deepEqual(
      got,
      ids.map((id) => reply(id).toString()),
    );
    await assert.rejects(layer.send(reply('late'), to), { code: 'ERR_CLOSED' });
  });

  it('releases its ports on close, so they can be bound again', async () => {
    const layer = await start();
    const { tcp, ws } = layer.addresses;
    const socket = await tcpClient(layer);
    await layer.close();
    await withTimeout(once(socket, 'close'), 'open connections to close');
    const again = await start({ port: tcp.port, wsPort: ws?.port });
    assert.equal(again.addresses.udp.port, tcp.port);
    assert.equal(again.addresses.ws?.port, ws?.port);
    await again.close();
    await assert.rejects(again.send(reply('x'), { transport: 'udp', address: HOST, port: 9 }), {
      code: 'ERR_CLOSED',
    });
  });
});

/**
 * A UDP receiver on another thread, so it reads while this thread is held up: for each of the
 * first `count` datagrams it notes whether this thread's turn was over (`endTurn` ran) by then.
 * `endTurn` holds this thread for 300 ms, then marks the turn over; call it on the next tick,
 * after dgram has sent what was sent at once in this turn.
 */
async function turnReceiver(count: number): Promise<{
  port: number;
  endTurn: () => void;
  arrived: Promise<[string, boolean][]>;
  close: () => Promise<number>;
}> {
  const turnOver = new Int32Array(new SharedArrayBuffer(4));
  const worker = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads');
     const flag = new Int32Array(workerData.flag);
     const s = require('node:dgram').createSocket('udp4');
     const got = [];
     s.on('message', (m) => {
       got.push([m.toString().split('\\r')[0], Atomics.load(flag, 0) === 1]);
       if (got.length === workerData.count) { parentPort.postMessage(got); s.close(); }
     });
     s.bind(0, '127.0.0.1', () => parentPort.postMessage(s.address().port));`,
    { eval: true, workerData: { flag: turnOver.buffer, count } },
  );
  const [port] = (await withTimeout(once(worker, 'message'), 'receiver port')) as [number];
  const arrived = withTimeout(once(worker, 'message'), `${count} datagrams`).then(
    ([got]) => got as [string, boolean][],
  );
  return {
    port,
    endTurn: () => {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 300);
      Atomics.store(turnOver, 0, 1);
    },
    arrived,
    close: () => worker.terminate(),
  };
}

describe('SIP UDP socket', () => {
  it('sends a datagram no one waits on (sendLater) after the turn, never as its first', async () => {
    const receiver = await turnReceiver(3);
    const sock = await bindUdp(
      HOST,
      0,
      () => {},
      () => {},
    );
    const client: UdpClient = createSocket('udp4');
    try {
      const out = (text: string) => Buffer.from(text);
      // The probe is asked for first in the turn, yet the message after it goes out at once
      // and the probe after the turn's batch.
      const sent = [
        sock.sendLater(out('probe'), HOST, receiver.port),
        sock.send(out('first'), HOST, receiver.port),
        sock.send(out('second'), HOST, receiver.port),
      ];
      process.nextTick(receiver.endTurn);
      await Promise.all(sent);
      assert.deepEqual(await receiver.arrived, [
        ['first', false],
        ['second', true],
        ['probe', true],
      ]);
      // Alone in its turn it goes out too, and one queued when the socket closes is sent; a
      // function given for the bytes is called as the datagram leaves, not before.
      await new Promise<void>((r) => client.bind(0, HOST, () => r()));
      const more: string[] = [];
      client.on('message', (d: Buffer) => more.push(d.toString()));
      const to = client.address().port;
      const made: string[] = [];
      const lazy = (text: string) => () => {
        made.push(text);
        return out(text);
      };
      const alone = sock.sendLater(lazy('alone'), HOST, to);
      assert.deepEqual(made, [], 'not made when asked for');
      await alone;
      const atClose = sock.sendLater(lazy('at close'), HOST, to);
      assert.deepEqual(made, ['alone']);
      await sock.close();
      await atClose;
      assert.deepEqual(made, ['alone', 'at close']);
      await eventually(() => more.length === 2, 'two datagrams');
      assert.deepEqual(more, ['alone', 'at close']);
      await assert.rejects(sock.sendLater(out('closed'), HOST, to), /socket closed/);
    } finally {
      client.close();
      await receiver.close();
      await sock.close();
    }
  });

  it('lets the reply a message prompts go out before the queue probe it prompted', async () => {
    const receiver = await turnReceiver(1);
    const layer = await start({ queueProbeIntervalMs: 0 });
    try {
      // As SipNode.inbound does: a probe for the message that came, then its reply.
      layer.probeQueue();
      const sent = layer.send(reply('answer'), {
        transport: 'udp',
        address: HOST,
        port: receiver.port,
      });
      process.nextTick(receiver.endTurn);
      await sent;
      assert.deepEqual(await receiver.arrived, [['SIP/2.0 200 OK', false]]);
    } finally {
      await receiver.close();
    }
  });
});

describe('TCP keepalive pongs', () => {
  it('answers no ping while bytes wait to be written to the peer', () => {
    // A socket whose peer stopped reading: what the kernel would not take waits in ours.
    const socket = Object.assign(new EventEmitter(), {
      writable: true,
      writableLength: 0,
      written: [] as string[],
      remoteAddress: '127.0.0.1',
      remotePort: 5070,
      setNoDelay: () => undefined,
      write(data: Uint8Array) {
        this.written.push(Buffer.from(data).toString());
        return true;
      },
      end: () => undefined,
      destroy: () => undefined,
    });
    const pongs: boolean[] = [];
    const host: ConnectionHost = {
      now: () => 0,
      received: () => undefined,
      sent: () => undefined,
      deliver: () => undefined,
      keepalive: (_c, pong) => pongs.push(pong),
      malformed: () => undefined,
      unframeable: () => undefined,
      closed: () => undefined,
    };
    new TcpConnection(host, 'c1', socket as unknown as Socket, 'inbound');
    socket.emit('data', Buffer.from('\r\n\r\n\r\n\r\n'));
    assert.deepEqual(socket.written, ['\r\n', '\r\n']);
    // Each pong queued would be a write request of its own: 40 MiB of pings took 560 MB.
    socket.writableLength = 2;
    socket.emit('data', Buffer.from('\r\n\r\n'.repeat(1000)));
    assert.equal(socket.written.length, 2, 'none while the peer does not read');
    socket.writableLength = 0;
    socket.emit('drain');
    assert.equal(socket.written.length, 3, 'one owed, sent once it read');
    socket.emit('data', Buffer.from('\r\n\r\n'));
    assert.equal(socket.written.length, 4, 'answered at once again');
    assert.equal(pongs.length, 1003, 'every ping counted');
  });
});
