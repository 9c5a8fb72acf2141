// SIP over TCP (RFC 3261 §18): a listener, outbound connections, and one connection's byte
// stream cut into messages by a StreamFramer. Keepalive pings get their CRLF pong here.

import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { type ConnectionDirection, type ConnectionHost, StreamConnection } from './connection.js';
import { SipTransportError } from './errors.js';
import { CRLF } from './sip-bytes.js';
import { StreamFramer, type StreamFramerOptions } from './stream-framer.js';

export class TcpConnection extends StreamConnection {
  readonly transport = 'tcp' as const;
  private readonly socket: Socket;
  private readonly framer: StreamFramer;
  /** A ping came while bytes waited to be written: its pong goes at the next 'drain'. */
  private pongOwed = false;

  constructor(
    host: ConnectionHost,
    id: string,
    socket: Socket,
    direction: ConnectionDirection,
    framing: StreamFramerOptions = {},
  ) {
    super(host, id, socket.remoteAddress ?? '0.0.0.0', socket.remotePort ?? 0, direction);
    this.socket = socket;
    this.framer = new StreamFramer(framing);
    socket.setNoDelay(true);
    // Active when a whole message (or a keepalive) arrives, not at every byte: a connection
    // that trickles a header a byte a minute is idle, and goes at the idle sweeps.
    this.framer.on('message', (data) => {
      this.lastActivity = this.host.now();
      this.messagesIn++;
      this.host.deliver(this, data);
    });
    this.framer.on('keepalive', () => {
      this.lastActivity = this.host.now();
      this.host.keepalive(this, false);
    });
    this.framer.on('ping', () => {
      this.lastActivity = this.host.now();
      // RFC 5626 §4.4.1: a double-CRLF ping is answered with a single CRLF pong. While bytes
      // wait to be written (the peer does not read what the kernel holds for it), one pong is
      // owed and goes once they have: each pong queued would cost a write request of its own,
      // and a peer that pinged 40 MiB without reading grew the heap by 560 MB (QA).
      if (this.closing || !this.socket.writable) return;
      if (this.socket.writableLength === 0) {
        this.pong();
        this.host.keepalive(this, true);
        return;
      }
      this.host.keepalive(this, false);
      if (this.pongOwed) return;
      this.pongOwed = true;
      this.socket.once('drain', () => {
        this.pongOwed = false;
        this.pong();
      });
    });
    this.framer.on('error', (err) => {
      this.host.unframeable(this, err);
      this.close(`unframeable: ${err.reason}`);
    });
    socket.on('data', (chunk: Buffer) => {
      if (this.closing) return;
      this.host.received(this, chunk.length);
      this.framer.push(chunk);
    });
    // Errors end in 'close', which is all the layer needs to know.
    socket.on('error', () => undefined);
    socket.on('close', () => this.finish('closed by peer'));
  }

  private pong(): void {
    if (this.closing || !this.socket.writable) return;
    this.socket.write(CRLF);
    this.host.sent(this, CRLF.length);
  }

  protected get label(): string {
    return `TCP connection ${this.id} to ${this.key}`;
  }

  protected get socketLocalAddress(): string | undefined {
    return this.socket.localAddress;
  }

  protected get writable(): boolean {
    return this.socket.writable;
  }

  protected get bufferedBytes(): number {
    return this.socket.writableLength;
  }

  protected transmit(data: Uint8Array): void {
    this.socket.write(data);
  }

  protected end(): void {
    this.socket.end();
  }

  protected kill(): void {
    this.socket.destroy();
  }
}

export interface BoundServer {
  readonly address: string;
  readonly port: number;
  close(): Promise<void>;
}

/** Listens for SIP over TCP; rejects with the system error (EADDRINUSE, ...). */
export function listenTcp(
  host: string,
  port: number,
  onSocket: (socket: Socket) => void,
): Promise<BoundServer> {
  const server: Server = createServer({ noDelay: true }, onSocket);
  return new Promise<BoundServer>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, exclusive: true }, () => {
      server.off('error', reject);
      // A later server error (EMFILE on accept) must not crash the process.
      server.on('error', () => undefined);
      const bound = server.address();
      resolve({
        address: bound && typeof bound === 'object' ? bound.address : host,
        port: bound && typeof bound === 'object' ? bound.port : port,
        close: () => new Promise<void>((done) => server.close(() => done())),
      });
    });
  });
}

/** Opens a TCP connection; rejects with ERR_UNREACHABLE on failure or after `timeoutMs`. */
export function connectTcp(host: string, port: number, timeoutMs: number): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    const socket = netConnect({ host, port, noDelay: true });
    const fail = (why: string, cause?: unknown) => {
      clearTimeout(timer);
      socket.destroy();
      reject(
        new SipTransportError(
          'ERR_UNREACHABLE',
          `cannot connect over TCP to ${host}:${port}: ${why}`,
          {
            cause,
          },
        ),
      );
    };
    const timer = setTimeout(() => fail(`no answer within ${timeoutMs} ms`), timeoutMs);
    socket.once('error', (err) => fail(err.message, err));
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve(socket);
    });
  });
}
