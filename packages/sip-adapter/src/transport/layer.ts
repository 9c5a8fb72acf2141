// The SIP transport layer over real sockets: UDP and TCP on one address, WebSocket on another.
// It owns the connection table (flows by connectionId and by remote address, idle timeout,
// eviction under the connection limit, registered flows kept) and the counters.

import { randomBytes } from 'node:crypto';
import type { RemoteInfo } from 'node:dgram';
import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isIP, type Socket } from 'node:net';
import { isLoopbackHost, type Logger, silentLogger } from '@peerbx/overlay-core';
import type { ConnectionHost, StreamConnection } from './connection.js';
import {
  CONNECT_TIMEOUT_MS,
  DEFAULT_SIP_HOST,
  DEFAULT_SIP_PORT,
  DEFAULT_WS_HOST,
  DEFAULT_WS_PORT,
  FIRST_MESSAGE_TIMEOUT_MS,
  IDLE_TIMEOUT_MS,
  MAX_CONNECTIONS,
  MAX_CONNECTIONS_PER_HOST,
  MAX_STREAM_MESSAGE_BYTES,
  MAX_UDP_MESSAGE_BYTES,
  WS_PING_INTERVAL_MS,
} from './constants.js';
import {
  SipTransportError,
  UNFRAMEABLE_REASONS,
  type UnframeableError,
  type UnframeableReason,
} from './errors.js';
import { InterfaceAddresses } from './local-address.js';
import { QueueProbe } from './queue-probe.js';
import { classifyDatagram, endpointKey, unmapIPv4 } from './sip-bytes.js';
import { type BoundServer, connectTcp, listenTcp, TcpConnection } from './tcp.js';
import type {
  SipDestination,
  SipListenAddresses,
  SipStreamProtocol,
  SipTransportAddress,
  SipTransportEvents,
  SipTransportLayer,
  SipTransportProtocol,
  SipTransportStats,
} from './transport.js';
import { bindUdp, type UdpSocket } from './udp.js';
import { listenWs, originAllowed, WsConnection } from './ws.js';

/** Called before an unframeable stream is closed; a 400 sent to source.connectionId still goes out. */
export type UnframeableHook = (
  source: SipTransportAddress,
  partialHeaders: Buffer,
  reason: UnframeableReason,
) => void;

export interface SipTransportOptions {
  /** UDP and TCP listen here; default 127.0.0.1:5060. Port 0 picks a free port for both. */
  host?: string;
  port?: number;
  /** WebSocket listens here; default 127.0.0.1:5066. Port 0 picks a free port. */
  wsHost?: string;
  wsPort?: number;
  /** False: no WebSocket listener. */
  ws?: boolean;
  /** Secure WebSocket (wss) with this certificate and key (PEM); default plain ws. */
  wsTls?: { cert: string | Buffer; key: string | Buffer };
  /**
   * Origins of pages besides this machine's that may connect over WebSocket (originAllowed);
   * `*` for any. Default none.
   */
  wsOrigins?: readonly string[];
  /** Answers plain HTTP requests at the WebSocket address (the web phone); default 426. */
  wsPage?: (request: IncomingMessage, response: ServerResponse) => boolean;
  logger?: Logger;
  onUnframeable?: UnframeableHook;
  idleTimeoutMs?: number;
  maxConnections?: number;
  maxConnectionsPerHost?: number;
  firstMessageTimeoutMs?: number;
  connectTimeoutMs?: number;
  wsPingIntervalMs?: number;
  /** Largest message on a stream or in a WebSocket frame; default MAX_STREAM_MESSAGE_BYTES. */
  maxMessageBytes?: number;
  /** Milliseconds clock for connection activity; Date.now by default. */
  now?: () => number;
  /** Least time between two queue probes (probeQueue), ms; default QUEUE_PROBE_INTERVAL_MS. */
  queueProbeIntervalMs?: number;
  /** A probe's wait that makes probes go out at once for a while, ms; default QUEUE_PROBE_EARLY_MS. */
  queueProbeEarlyMs?: number;
}

/** Where a socket bound to `address` sends itself probes: loopback when it is any address. */
function probeAddress(address: string): string {
  return address === '0.0.0.0' ? '127.0.0.1' : address === '::' ? '::1' : address;
}

/** Free-port attempts when UDP cannot take the port TCP was given. */
const SHARED_PORT_ATTEMPTS = 10;

function perTransport(): Record<SipTransportProtocol, number> {
  return { udp: 0, tcp: 0, ws: 0 };
}

function perStream(): Record<SipStreamProtocol, number> {
  return { tcp: 0, ws: 0 };
}

/** A full connection table is logged at most this often. */
const EVICTION_LOG_INTERVAL_MS = 60_000;

export class SipSocketTransports
  extends EventEmitter<SipTransportEvents>
  implements SipTransportLayer
{
  private readonly options: SipTransportOptions;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly idleTimeoutMs: number;
  private readonly maxConnections: number;
  private readonly counters: SipTransportStats = {
    messagesIn: perTransport(),
    messagesOut: perTransport(),
    bytesIn: perTransport(),
    bytesOut: perTransport(),
    malformed: perTransport(),
    unframeable: Object.fromEntries(UNFRAMEABLE_REASONS.map((r) => [r, 0])) as Record<
      UnframeableReason,
      number
    >,
    keepalivesIn: 0,
    keepalivesOut: 0,
    connectionsOpen: perStream(),
    connectionsOpened: perStream(),
    connectionsClosed: perStream(),
    connectionsIdleClosed: 0,
    connectionsEvicted: 0,
    connectionsRefused: 0,
    sendErrors: 0,
  };
  /** Open connections by connectionId, oldest first. */
  private readonly connections = new Map<string, StreamConnection>();
  /** The newest open connection to each remote "ip:port". */
  private readonly byRemote = new Map<string, StreamConnection>();
  private readonly dialing = new Map<string, Promise<TcpConnection>>();
  private readonly host: ConnectionHost;
  /** Makes connectionIds of one run unlike those of another. */
  private readonly idPrefix = randomBytes(6).toString('hex');
  private nextId = 1;
  private udp: UdpSocket | undefined;
  private probe: QueueProbe | undefined;
  /** A probe could not be sent (warned once). */
  private probeFailed = false;
  private tcp: BoundServer | undefined;
  private ws: BoundServer | undefined;
  private timers: NodeJS.Timeout[] = [];
  private isClosed = false;
  /** When a full connection table was last logged (at most every EVICTION_LOG_INTERVAL_MS). */
  private evictionToldAt = Number.NEGATIVE_INFINITY;

  private constructor(options: SipTransportOptions) {
    super();
    this.options = options;
    this.log = (options.logger ?? silentLogger).child({ component: 'sip-transport' });
    this.now = options.now ?? Date.now;
    this.idleTimeoutMs = options.idleTimeoutMs ?? IDLE_TIMEOUT_MS;
    this.maxConnections = options.maxConnections ?? MAX_CONNECTIONS;
    this.host = this.connectionHost();
  }

  /** Binds every listener; rejects with ERR_BIND (and holds nothing) when one cannot be bound. */
  static async listen(options: SipTransportOptions = {}): Promise<SipSocketTransports> {
    const layer = new SipSocketTransports(options);
    try {
      await layer.bind();
    } catch (err) {
      await layer.close();
      throw err;
    }
    return layer;
  }

  get addresses(): SipListenAddresses {
    if (!this.udp || !this.tcp) {
      throw new SipTransportError('ERR_CLOSED', 'the SIP transports are not listening');
    }
    const udp = { address: this.udp.address, port: this.udp.port };
    const tcp = { address: this.tcp.address, port: this.tcp.port };
    return this.ws
      ? { udp, tcp, ws: { address: this.ws.address, port: this.ws.port } }
      : { udp, tcp };
  }

  get stats(): SipTransportStats {
    const c = this.counters;
    return {
      ...c,
      messagesIn: { ...c.messagesIn },
      messagesOut: { ...c.messagesOut },
      bytesIn: { ...c.bytesIn },
      bytesOut: { ...c.bytesOut },
      malformed: { ...c.malformed },
      unframeable: { ...c.unframeable },
      connectionsOpen: { ...c.connectionsOpen },
      connectionsOpened: { ...c.connectionsOpened },
      connectionsClosed: { ...c.connectionsClosed },
    };
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Whether a flow is still open (a binding on a closed flow is unreachable, RFC 5626 §5.3). */
  hasFlow(connectionId: string): boolean {
    const connection = this.connections.get(connectionId);
    return connection !== undefined && !connection.closing;
  }

  /** The IP of this machine that an open flow runs on. */
  localAddressOf(connectionId: string): string | undefined {
    return this.connections.get(connectionId)?.localAddress;
  }

  keepFlow(connectionId: string, keep: boolean): boolean {
    const connection = this.connections.get(connectionId);
    if (!connection || connection.closing) return false;
    connection.kept = keep;
    // Idleness counts from when the registration went away, not from the last message.
    if (!keep) connection.lastActivity = this.now();
    return true;
  }

  async send(data: Uint8Array, destination: SipDestination): Promise<SipTransportAddress> {
    try {
      if (this.isClosed) throw new SipTransportError('ERR_CLOSED', 'the SIP transports are closed');
      if ('connectionId' in destination) {
        const connection = this.connections.get(destination.connectionId);
        if (!connection) {
          throw new SipTransportError(
            'ERR_NO_FLOW',
            `no open connection ${destination.connectionId}: the flow has closed`,
          );
        }
        return this.writeTo(connection, data);
      }
      const { transport, address, port } = destination;
      if (isIP(address) === 0 || !Number.isInteger(port) || port < 1 || port > 65535) {
        throw new SipTransportError(
          'ERR_DESTINATION',
          `SIP destination ${address}:${port} is not an IP literal and port (resolve names first)`,
        );
      }
      switch (transport) {
        case 'udp':
          return await this.sendUdp(data, address, port);
        case 'tcp': {
          // An open connection is written to at once (in order with other writes), not after
          // an await.
          const connection = this.tcpOpenTo(address, port) ?? (await this.dial(address, port));
          return this.writeTo(connection, data);
        }
        case 'ws': {
          const existing = this.byRemote.get(endpointKey(address, port));
          if (existing && !existing.closing && existing.transport === 'ws') {
            return this.writeTo(existing, data);
          }
          throw new SipTransportError(
            'ERR_UNREACHABLE',
            `no WebSocket connection from ${address}:${port}: WebSocket clients are reached only over their own connection`,
          );
        }
        default:
          throw new SipTransportError(
            'ERR_DESTINATION',
            `unknown SIP transport "${String(transport)}" (udp, tcp or ws)`,
          );
      }
    } catch (err) {
      this.counters.sendErrors++;
      throw err;
    }
  }

  async close(): Promise<void> {
    if (this.isClosed) return;
    this.isClosed = true;
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
    for (const connection of [...this.connections.values()]) connection.destroy('closing');
    await Promise.all([this.udp?.close(), this.tcp?.close(), this.ws?.close()]);
    this.log.debug({}, 'SIP transports closed');
  }

  // --- Listening -------------------------------------------------------------------------------

  private async bind(): Promise<void> {
    const host = this.options.host ?? DEFAULT_SIP_HOST;
    const port = this.options.port ?? DEFAULT_SIP_PORT;
    const attempts = port === 0 ? SHARED_PORT_ATTEMPTS : 1;
    for (let attempt = 1; ; attempt++) {
      const tcp = await listenTcp(host, port, (socket) => this.onTcpSocket(socket)).catch(
        (err: Error) => {
          throw bindError('TCP', host, port, err);
        },
      );
      try {
        this.udp = await bindUdp(
          host,
          tcp.port,
          (data, from) => this.onDatagram(data, from),
          (err) => this.log.warn({ err: err.message }, 'UDP socket error'),
        );
        this.tcp = tcp;
        break;
      } catch (err) {
        await tcp.close();
        const inUse = (err as NodeJS.ErrnoException).code === 'EADDRINUSE';
        if (!inUse || attempt >= attempts) throw bindError('UDP', host, tcp.port, err as Error);
      }
    }
    this.probe = this.queueProbe(this.udp);
    if (this.options.ws !== false) {
      const wsHost = this.options.wsHost ?? DEFAULT_WS_HOST;
      const wsPort = this.options.wsPort ?? DEFAULT_WS_PORT;
      const origins = this.options.wsOrigins ?? [];
      const interfaces = new InterfaceAddresses();
      this.ws = await listenWs({
        host: wsHost,
        port: wsPort,
        maxPayload: this.options.maxMessageBytes ?? MAX_STREAM_MESSAGE_BYTES,
        ...(this.options.wsTls ? { tls: this.options.wsTls } : {}),
        ...(this.options.wsPage ? { page: this.options.wsPage } : {}),
        originAllowed: (origin) => originAllowed(origin, origins, (h) => interfaces.has(h)),
        accept: (request) =>
          this.hostHasRoom(request.socket.remoteAddress ?? '') && this.makeRoom(),
        onConnection: (ws, request) => {
          if (this.isClosed) {
            ws.terminate();
            return;
          }
          this.add(new WsConnection(this.host, this.newId('ws'), ws, request));
        },
        onRefused: (request, why) => {
          this.counters.connectionsRefused++;
          this.log.info(
            {
              remote: endpointKey(
                request.socket.remoteAddress ?? '?',
                request.socket.remotePort ?? 0,
              ),
              why,
            },
            'WebSocket handshake refused',
          );
        },
      }).catch((err: Error) => {
        throw bindError('WebSocket', wsHost, wsPort, err);
      });
    }
    const firstMs = this.options.firstMessageTimeoutMs ?? FIRST_MESSAGE_TIMEOUT_MS;
    const sweepMs = Math.min(this.idleTimeoutMs, firstMs) / 4;
    this.every(Math.max(10, Math.min(sweepMs, 30_000)), () => this.sweepIdle());
    this.every(this.options.wsPingIntervalMs ?? WS_PING_INTERVAL_MS, () => {
      for (const connection of this.connections.values()) {
        if (connection instanceof WsConnection) connection.ping();
      }
    });
    this.log.info({ addresses: this.addresses }, 'SIP transports listening');
  }

  /** Probes go to our own socket: to loopback when it listens on every address. */
  private queueProbe(udp: UdpSocket): QueueProbe {
    const to = probeAddress(udp.address);
    return new QueueProbe(
      (stamp, late) => {
        if (this.isClosed) return;
        // Late: after the turn's messages, which should not wait behind the probe's send.
        (late ? udp.sendLater(stamp, to, udp.port) : udp.send(stamp(), to, udp.port)).catch(
          (err: Error) => {
            if (this.probeFailed) return;
            this.probeFailed = true;
            this.log.warn(
              { err: err.message, to: endpointKey(to, udp.port) },
              'queue probe not sent: overload control sees no queue',
            );
          },
        );
      },
      (sojournMs, lost) => this.emit('queue-delay', sojournMs, lost),
      { intervalMs: this.options.queueProbeIntervalMs, earlyMs: this.options.queueProbeEarlyMs },
    );
  }

  /**
   * Sends a probe through our UDP socket unless one went out within the probe interval; its
   * wait comes back as a 'queue-delay' event. Call it for each message received, once the
   * message is handled.
   */
  probeQueue(): void {
    this.probe?.maybeSend();
  }

  /** How long the oldest queue probe still away has been, ms (0: none away). */
  queueProbeWaitingMs(): number {
    return this.probe?.waitingMs() ?? 0;
  }

  private every(ms: number, fn: () => void): void {
    const timer = setInterval(fn, ms);
    timer.unref();
    this.timers.push(timer);
  }

  // --- Incoming --------------------------------------------------------------------------------

  private onDatagram(data: Buffer, from: RemoteInfo): void {
    if (this.isClosed) return;
    const address = unmapIPv4(from.address);
    const probe = this.probe?.take(
      data,
      () => from.port === this.udp?.port && this.isOwnHost(address),
    );
    if (probe === 'sample') return;
    this.counters.bytesIn.udp += data.length;
    if (probe === 'forged') {
      this.counters.malformed.udp++;
      return;
    }
    const verdict = classifyDatagram(data);
    if (verdict.kind === 'keepalive') {
      this.counters.keepalivesIn++;
    } else if (verdict.kind === 'malformed') {
      this.counters.malformed.udp++;
      this.log.debug(
        { remote: endpointKey(address, from.port), why: verdict.reason },
        'datagram dropped',
      );
    } else {
      this.counters.messagesIn.udp++;
      this.emitMessage(verdict.data, { transport: 'udp', address, port: from.port });
    }
  }

  /** The address our probes come from: the one we listen on, or loopback when that is any. */
  private isOwnHost(address: string): boolean {
    return this.udp !== undefined && address === probeAddress(this.udp.address);
  }

  private onTcpSocket(socket: Socket): void {
    if (this.isClosed || !this.hostHasRoom(socket.remoteAddress ?? '') || !this.makeRoom()) {
      this.counters.connectionsRefused++;
      socket.on('error', () => undefined);
      socket.destroy();
      return;
    }
    this.add(
      new TcpConnection(this.host, this.newId('tcp'), socket, 'inbound', this.framingOptions()),
    );
  }

  private emitMessage(data: Buffer, source: SipTransportAddress): void {
    try {
      this.emit('message', { data, source });
    } catch (err) {
      // A failing listener costs its message, never the connection or the process.
      this.log.error({ err: (err as Error).message, source }, 'SIP message listener threw');
    }
  }

  // --- Outgoing --------------------------------------------------------------------------------

  private async sendUdp(
    data: Uint8Array,
    address: string,
    port: number,
  ): Promise<SipTransportAddress> {
    if (data.length > MAX_UDP_MESSAGE_BYTES) {
      throw new SipTransportError(
        'ERR_TOO_LARGE',
        `a ${data.length}-byte SIP message does not fit a UDP datagram (${MAX_UDP_MESSAGE_BYTES} bytes); send it over TCP`,
      );
    }
    const udp = this.udp as UdpSocket;
    try {
      await udp.send(data, address, port);
    } catch (err) {
      throw new SipTransportError(
        'ERR_UNREACHABLE',
        `cannot send UDP to ${endpointKey(address, port)}: ${(err as Error).message}`,
        { cause: err },
      );
    }
    this.counters.messagesOut.udp++;
    this.counters.bytesOut.udp += data.length;
    return { transport: 'udp', address: unmapIPv4(address), port };
  }

  private writeTo(connection: StreamConnection, data: Uint8Array): SipTransportAddress {
    connection.write(data);
    this.counters.messagesOut[connection.transport]++;
    return connection.source;
  }

  /**
   * Opens a TCP connection to address:port, or finds one open: how a request too large for
   * UDP reaches a phone registered over UDP (RFC 3261 §18.1.1). Rejects when the phone takes
   * no connection (refused, reset, or silent for the connect timeout).
   */
  async connectTcp(address: string, port: number): Promise<void> {
    if (!this.tcpOpenTo(address, port)) await this.dial(address, port);
  }

  /** Whether a TCP connection to address:port is open (no connection is made). */
  hasTcpTo(address: string, port: number): boolean {
    return this.tcpOpenTo(address, port) !== undefined;
  }

  /** The open TCP connection to address:port, if there is one. */
  private tcpOpenTo(address: string, port: number): StreamConnection | undefined {
    const existing = this.byRemote.get(endpointKey(address, port));
    return existing && !existing.closing && existing.transport === 'tcp' ? existing : undefined;
  }

  /** An outbound TCP connection; concurrent sends to one address share one connect. */
  private dial(address: string, port: number): Promise<TcpConnection> {
    const key = endpointKey(address, port);
    let pending = this.dialing.get(key);
    if (!pending) {
      pending = this.openTcp(address, port).finally(() => this.dialing.delete(key));
      this.dialing.set(key, pending);
    }
    return pending;
  }

  private async openTcp(address: string, port: number): Promise<TcpConnection> {
    if (!this.makeRoom()) {
      throw new SipTransportError(
        'ERR_LIMIT',
        `cannot connect to ${endpointKey(address, port)}: ${this.maxConnections} connections are open and none is idle`,
      );
    }
    const socket = await connectTcp(
      address,
      port,
      this.options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS,
    );
    if (this.isClosed) {
      socket.destroy();
      throw new SipTransportError('ERR_CLOSED', 'the SIP transports closed while connecting');
    }
    const connection = new TcpConnection(
      this.host,
      this.newId('tcp'),
      socket,
      'outbound',
      this.framingOptions(),
    );
    this.add(connection);
    return connection;
  }

  // --- Connection table ------------------------------------------------------------------------

  private newId(transport: SipStreamProtocol): string {
    return `${transport}-${this.idPrefix}-${this.nextId++}`;
  }

  private framingOptions(): { maxMessageBytes?: number } {
    return { maxMessageBytes: this.options.maxMessageBytes };
  }

  private add(connection: StreamConnection): void {
    this.connections.set(connection.id, connection);
    this.byRemote.set(connection.key, connection);
    this.counters.connectionsOpen[connection.transport]++;
    this.counters.connectionsOpened[connection.transport]++;
    this.log.debug(
      { connectionId: connection.id, remote: connection.key, direction: connection.direction },
      'connection opened',
    );
  }

  /**
   * True when one more connection fits, closing the least recently active unkept connection
   * if the table is full.
   */
  private makeRoom(): boolean {
    let live = 0;
    let oldest: StreamConnection | undefined;
    for (const connection of this.connections.values()) {
      if (connection.closing) continue;
      live++;
      if (!connection.kept && (!oldest || connection.lastActivity < oldest.lastActivity)) {
        oldest = connection;
      }
    }
    if (live < this.maxConnections) return true;
    if (!oldest) return false;
    this.counters.connectionsEvicted++;
    const now = this.now();
    if (now - this.evictionToldAt >= EVICTION_LOG_INTERVAL_MS) {
      this.evictionToldAt = now;
      this.log.warn(
        { max: this.maxConnections, evicted: this.counters.connectionsEvicted },
        'the SIP connection table is full: closing the connection idle longest for a new one',
      );
    }
    oldest.close('evicted');
    return true;
  }

  private sweepIdle(): void {
    const now = this.now();
    const cutoff = now - this.idleTimeoutMs;
    const firstBy = now - (this.options.firstMessageTimeoutMs ?? FIRST_MESSAGE_TIMEOUT_MS);
    for (const connection of this.connections.values()) {
      if (connection.kept || connection.closing) continue;
      // TCP only: a browser phone may connect, say nothing until it calls, and be kept
      // alive by WebSocket pings meanwhile.
      const silent =
        connection.transport === 'tcp' &&
        connection.direction === 'inbound' &&
        connection.messagesIn === 0 &&
        connection.openedAt <= firstBy;
      if (!silent && connection.lastActivity > cutoff) continue;
      this.counters.connectionsIdleClosed++;
      connection.close(silent ? 'no message' : 'idle');
    }
  }

  /** Whether one more inbound connection from `address` fits under the per-host limit. */
  private hostHasRoom(address: string): boolean {
    const host = unmapIPv4(address);
    if (isLoopbackHost(host)) return true;
    const most = this.options.maxConnectionsPerHost ?? MAX_CONNECTIONS_PER_HOST;
    let open = 0;
    for (const connection of this.connections.values()) {
      if (!connection.closing && connection.address === host && ++open >= most) return false;
    }
    return true;
  }

  private connectionHost(): ConnectionHost {
    return {
      now: () => this.now(),
      received: (connection, bytes) => {
        this.counters.bytesIn[connection.transport] += bytes;
      },
      sent: (connection, bytes) => {
        this.counters.bytesOut[connection.transport] += bytes;
      },
      deliver: (connection, data) => {
        this.counters.messagesIn[connection.transport]++;
        this.emitMessage(data, connection.source);
      },
      keepalive: (_connection, pong) => {
        this.counters.keepalivesIn++;
        if (pong) this.counters.keepalivesOut++;
      },
      malformed: (connection, reason) => {
        this.counters.malformed[connection.transport]++;
        this.log.debug({ connectionId: connection.id, why: reason }, 'frame dropped');
      },
      unframeable: (connection, error) => this.onUnframeable(connection, error),
      closed: (connection) => {
        this.connections.delete(connection.id);
        if (this.byRemote.get(connection.key) === connection) this.byRemote.delete(connection.key);
        this.counters.connectionsOpen[connection.transport]--;
        this.counters.connectionsClosed[connection.transport]++;
        const reason = connection.closeReason ?? 'closed';
        this.log.debug(
          { connectionId: connection.id, remote: connection.key, reason },
          'connection closed',
        );
        try {
          this.emit('flow-closed', {
            connectionId: connection.id,
            transport: connection.transport,
            address: connection.address,
            port: connection.port,
            reason,
          });
        } catch (err) {
          this.log.error({ err: (err as Error).message }, 'flow-closed listener threw');
        }
      },
    };
  }

  private onUnframeable(connection: StreamConnection, error: UnframeableError): void {
    this.counters.unframeable[error.reason]++;
    // The peer's doing, as a datagram that is no SIP is (logged at debug): no warning of ours.
    this.log.info(
      { connectionId: connection.id, remote: connection.key, reason: error.reason },
      `closing connection: ${error.message}`,
    );
    try {
      this.options.onUnframeable?.(connection.source, error.partialHeaders, error.reason);
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'onUnframeable hook threw');
    }
  }
}

function bindError(what: string, host: string, port: number, err: Error): SipTransportError {
  return new SipTransportError(
    'ERR_BIND',
    `cannot listen for SIP over ${what} on ${host}:${port}: ${err.message}; choose another address or port, or stop the program using it`,
    { cause: err },
  );
}
