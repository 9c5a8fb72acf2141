// SIP over WebSocket (RFC 7118): an HTTP listener that upgrades only handshakes asking for the
// "sip" subprotocol, and connections where each text or binary frame is one SIP message.

import { isUtf8 } from 'node:buffer';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import { type RawData, type WebSocket, WebSocketServer } from 'ws';
import { isLoopbackHost } from '../auth/policy.js';
import { type ConnectionHost, StreamConnection } from './connection.js';
import { WS_SUBPROTOCOL } from './constants.js';
import { classifyDatagram } from './sip-bytes.js';
import type { BoundServer } from './tcp.js';

export class WsConnection extends StreamConnection {
  readonly transport = 'ws' as const;
  private readonly ws: WebSocket;
  private alive = true;
  private readonly local: string | undefined;

  constructor(host: ConnectionHost, id: string, ws: WebSocket, request: IncomingMessage) {
    super(
      host,
      id,
      request.socket.remoteAddress ?? '0.0.0.0',
      request.socket.remotePort ?? 0,
      'inbound',
    );
    this.ws = ws;
    this.local = request.socket.localAddress;
    ws.on('message', (raw: RawData) => this.onFrame(toBuffer(raw)));
    // A pong is activity: a browser phone that answers our pings is there, registered or not
    // (one that only calls may say nothing for longer than the idle timeout).
    ws.on('pong', () => {
      this.alive = true;
      this.lastActivity = this.host.now();
    });
    // ws reports a frame that breaks the protocol (over its size limit, not UTF-8 in a text
    // frame, unmasked, reserved bits set) as an error and closes: counted as a frame dropped.
    ws.on('error', (err: Error & { code?: string }) => {
      this.host.malformed(this, `WebSocket protocol: ${err.code ?? err.message}`);
    });
    ws.on('close', () => this.finish('closed by peer'));
  }

  /** Keepalive round: drops the connection if the last ping went unanswered, else pings. */
  ping(): void {
    if (this.closing) return;
    if (!this.alive) {
      this.destroy('no pong');
      return;
    }
    this.alive = false;
    this.ws.ping();
  }

  protected get label(): string {
    return `WebSocket connection ${this.id} from ${this.key}`;
  }

  protected get socketLocalAddress(): string | undefined {
    return this.local;
  }

  protected get writable(): boolean {
    return this.ws.readyState === this.ws.OPEN;
  }

  protected get bufferedBytes(): number {
    return this.ws.bufferedAmount;
  }

  protected transmit(data: Uint8Array): void {
    // RFC 7118 §5: text frames for UTF-8 messages (what browsers expect), binary otherwise.
    this.ws.send(data, { binary: !isUtf8(data) });
  }

  protected end(): void {
    this.ws.close(1000);
  }

  protected kill(): void {
    this.ws.terminate();
  }

  private onFrame(payload: Buffer): void {
    if (this.closing) return;
    this.alive = true;
    this.lastActivity = this.host.now();
    this.host.received(this, payload.length);
    const verdict = classifyDatagram(payload);
    if (verdict.kind === 'message') {
      this.messagesIn++;
      this.host.deliver(this, verdict.data);
    } else if (verdict.kind === 'keepalive') this.host.keepalive(this, false);
    else this.host.malformed(this, verdict.reason);
  }
}

function toBuffer(raw: RawData): Buffer {
  if (Buffer.isBuffer(raw)) return raw;
  if (Array.isArray(raw)) return Buffer.concat(raw);
  return Buffer.from(raw);
}

/** Whether a handshake's Sec-WebSocket-Protocol header offers "sip" (RFC 7118 §4.1). */
export function offersSipSubprotocol(request: IncomingMessage): boolean {
  const header = request.headers['sec-websocket-protocol'];
  if (typeof header !== 'string') return false;
  return header.split(',').some((p) => p.trim().toLowerCase() === WS_SUBPROTOCOL);
}

/**
 * Whether a browser page of `origin` (the handshake's Origin header) may open a SIP WebSocket.
 * No Origin is no browser (a softphone, sip.js in Node): yes. A page of this machine (its host
 * loopback, localhost or one of `isOwnHost`'s): yes. Any other page only when `allowed` lists
 * its origin (scheme://host[:port]), or `*`; "null" (a page opened from a file, or a sandboxed
 * one of any site) only when listed. Without this check any web site the user visits could
 * register as the user at the node on loopback and take the user's calls (RFC 6455 §10.2).
 */
export function originAllowed(
  origin: string | undefined,
  allowed: readonly string[],
  isOwnHost: (host: string) => boolean,
): boolean {
  if (origin === undefined) return true;
  if (allowed.includes('*')) return true;
  if (origin === 'null') return allowed.includes('null');
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return false;
  }
  const host = url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  // An address, not a name that starts like one (127.0.0.1.attacker.example).
  if (isLoopbackHost(host) || (isIP(host) !== 0 && isOwnHost(host))) return true;
  return allowed.some((a) => a !== 'null' && a !== '*' && sameOrigin(a, url));
}

function sameOrigin(listed: string, url: URL): boolean {
  try {
    return new URL(listed).origin === url.origin;
  } catch {
    return false;
  }
}

export interface WsListenOptions {
  host: string;
  port: number;
  maxPayload: number;
  /** Secure WebSocket (wss): the listener speaks TLS with this certificate and key (PEM). */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Whether a page of this Origin may connect (originAllowed); default any. */
  originAllowed?(origin: string | undefined): boolean;
  /** A handshake with the "sip" subprotocol completed. */
  onConnection(ws: WebSocket, request: IncomingMessage): void;
  /** A handshake was refused (no "sip" subprotocol, or `accept` said no). */
  onRefused(request: IncomingMessage, why: string): void;
  /** Asked before upgrading; false refuses with 503 (no room for another connection). */
  accept(request: IncomingMessage): boolean;
  /**
   * Plain HTTP requests (no upgrade): true when it answered (the web phone, web-phone.ts);
   * otherwise they get 426.
   */
  page?(request: IncomingMessage, response: ServerResponse): boolean;
}

/** The WebSocket protocol version of RFC 6455, the only one spoken. */
const WS_VERSION = '13';

/** An HTTP upgrade request not complete by then is dropped. */
const WS_UPGRADE_TIMEOUT_MS = 10_000;

/** Listens for SIP over WebSocket; rejects with the system error (EADDRINUSE, ...). */
export function listenWs(options: WsListenOptions): Promise<BoundServer> {
  const wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    maxPayload: options.maxPayload,
    // The value the client offered, as it spelled it (RFC 6455 §4.2.2: one of those offered).
    handleProtocols: (offered) =>
      [...offered].find((p) => p.toLowerCase() === WS_SUBPROTOCOL) ?? false,
  });
  const plain = (req: IncomingMessage, res: ServerResponse) => {
    if (options.page?.(req, res)) return;
    res.writeHead(426, { Connection: 'close', Upgrade: 'websocket' });
    res.end('SIP over WebSocket only (RFC 7118)\n');
  };
  const server: Server = options.tls
    ? createTlsServer({ cert: options.tls.cert, key: options.tls.key }, plain)
    : createServer(plain);
  // A browser sends its upgrade request at once; a connection that trickles one is dropped.
  server.headersTimeout = WS_UPGRADE_TIMEOUT_MS;
  server.requestTimeout = WS_UPGRADE_TIMEOUT_MS;
  server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => undefined);
    // RFC 6455 §4.4: a version this server does not speak gets 426 and the one it does (the
    // `ws` library would take the drafts' version 8 too). A missing one is ws's 400.
    const version = request.headers['sec-websocket-version'];
    if (version !== undefined && version !== WS_VERSION) {
      refuse(socket, 426, 'Upgrade Required', `WebSocket version ${WS_VERSION} only (RFC 6455)`, {
        'Sec-WebSocket-Version': WS_VERSION,
      });
      options.onRefused(request, `WebSocket version ${version}`);
      return;
    }
    if (!offersSipSubprotocol(request)) {
      refuse(socket, 400, 'Bad Request', 'the "sip" WebSocket subprotocol is required (RFC 7118)');
      options.onRefused(request, 'no "sip" subprotocol');
      return;
    }
    const origin = request.headers.origin;
    if (options.originAllowed && !options.originAllowed(origin)) {
      refuse(
        socket,
        403,
        'Forbidden',
        `pages of origin ${origin} may not use this node: list it under wsOrigins in the node's config file`,
      );
      options.onRefused(request, `origin ${origin} not allowed`);
      return;
    }
    if (!options.accept(request)) {
      refuse(socket, 503, 'Service Unavailable', 'too many connections');
      options.onRefused(request, 'no room for another connection');
      return;
    }
    wss.handleUpgrade(request, socket, head, (ws) => options.onConnection(ws, request));
  });
  return new Promise<BoundServer>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: options.host, port: options.port, exclusive: true }, () => {
      server.off('error', reject);
      server.on('error', () => undefined);
      const bound = server.address();
      resolve({
        address: bound && typeof bound === 'object' ? bound.address : options.host,
        port: bound && typeof bound === 'object' ? bound.port : options.port,
        close: async () => {
          for (const ws of wss.clients) ws.terminate();
          await new Promise<void>((done) => wss.close(() => done()));
          server.closeAllConnections();
          await new Promise<void>((done) => server.close(() => done()));
        },
      });
    });
  });
}

function refuse(
  socket: Duplex,
  status: number,
  text: string,
  why: string,
  headers: Record<string, string> = {},
): void {
  const extra = Object.entries(headers)
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('');
  socket.end(
    `HTTP/1.1 ${status} ${text}\r\nConnection: close\r\n${extra}Content-Type: text/plain\r\n` +
      `Content-Length: ${Buffer.byteLength(why) + 1}\r\n\r\n${why}\n`,
  );
}
