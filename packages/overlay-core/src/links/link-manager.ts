// The node's links: listeners (TCP, and WebSocket for clients that cannot open TCP), dialling
// with reuse of open links (one per remote node-ID, concurrent dials merged), per-application
// channel handlers, and connect(), which the overlay uses to reach a node by ID once the DHT has
// told it where the node is.

import { EventEmitter } from 'node:events';
import { createServer, connect as netConnect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import {
  type Clock,
  endpointKey,
  idEquals,
  idToHex,
  type NodeId,
  systemClock,
} from '@peerbx/dht-kademlia';
import { createWebSocketStream, WebSocket, WebSocketServer } from 'ws';
import { addCount } from '../bounded-map.js';
import { OverlayError } from '../errors.js';
import { type KeyPair, nodeIdOf } from '../identity/keys.js';
import {
  FrameDecoder,
  HANDSHAKE_MAX_FRAME_BYTES,
  type LinkRole,
  MAX_FRAME_BYTES,
} from './framing.js';
import {
  HANDSHAKE_FAILURE_REASONS,
  HANDSHAKE_TIMEOUT_MS,
  HandshakeError,
  type HandshakeFailureReason,
  type HandshakeResult,
  runHandshake,
  SEAL_OVERHEAD_BYTES,
} from './handshake.js';
import { type Channel, type ChannelHandler, isLoopbackHost, Link, type LinkInfo } from './link.js';

/**
 * Inbound handshakes in progress at once. A connection beyond them takes the place of the
 * oldest: a peer that keeps them all busy with connections that say nothing (each would hold
 * its place for the handshake timeout) must then open 64 within any node's handshake, not 64
 * in 5 s, to keep other nodes out.
 */
export const MAX_PENDING_HANDSHAKES = 64;
/**
 * Of those, from one host (loopback excepted): a host that opens connections and stays
 * silent holds at most this many places, not all of them (no other node could link to us).
 */
export const MAX_PENDING_HANDSHAKES_PER_HOST = 8;
/**
 * Open links one node-ID may hold with this node. Two are routine (both ends dialled at once,
 * or a node redialling while its broken link has not timed out yet); beyond a few, one peer is
 * holding sockets and send buffers (each up to maxUnsentBytes) that other peers need, and the
 * oldest link is closed for each new one.
 */
export const MAX_LINKS_PER_NODE = 4;
/** Largest WebSocket message: one sealed frame with its length prefix, and some slack. */
const WS_MAX_PAYLOAD = MAX_FRAME_BYTES + SEAL_OVERHEAD_BYTES + 64;

/** `tcp`: plain TCP, addresses "host:port". `ws`: WebSocket, addresses "ws://host:port". */
export type LinkTransport = 'tcp' | 'ws';

export interface LinkManagerOptions {
  keys: KeyPair;
  /** Hash of the overlay configuration (configHash()); a peer with another hash is refused. */
  configHash: Uint8Array;
  /** Leading zero bits a remote node-ID must have (the overlay's puzzleBits). */
  puzzleBits: number;
  role: LinkRole;
  /** The overlay's name, to word configuration-mismatch errors. */
  overlayName?: string;
  clock?: Clock;
  handshakeTimeoutMs?: number;
  keepaliveIntervalMs?: number;
  maxMissedPongs?: number;
  silenceProbeMs?: number;
  silenceProbeTimeoutMs?: number;
  maxUnsentBytes?: number;
  openTimeoutMs?: number;
  maxChannelsPerLink?: number;
  maxPendingHandshakes?: number;
  maxPendingHandshakesPerHost?: number;
  maxLinksPerNode?: number;
}

export interface ListenOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** Default tcp. A manager may listen once per transport. */
  transport?: LinkTransport;
}

interface Listener {
  transport: LinkTransport;
  address: string;
  close(): Promise<void>;
}

export interface LinkManagerStats {
  handshakesOk: number;
  handshakesFailed: Record<HandshakeFailureReason, number>;
  /** Frames that did not decode or were too large, before or after the handshake. */
  framesMalformed: number;
  /** Well-formed frames out of place on an established link. */
  protocolViolations: number;
  linksInbound: number;
  linksOutbound: number;
  linksClosed: number;
  /** Oldest links closed because their node-ID opened more than maxLinksPerNode. */
  linksOverLimit: number;
}

export interface LinkManagerEvents {
  /** A link finished its handshake. */
  link: [link: Link];
  /** A link closed; the error is absent for a clean close. */
  'link-closed': [link: Link, error?: OverlayError];
}

/** Splits "host:port" or "[v6]:port" (TCP link addresses). */
export function parseLinkAddress(address: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(address);
  const port = Number(m?.[3]);
  if (!m || port < 1 || port > 65535) {
    throw new OverlayError(
      'ERR_MALFORMED',
      `link address "${address}" is not "host:port" or "[ipv6]:port"`,
    );
  }
  return { host: (m[1] ?? m[2]) as string, port };
}

export class LinkManager extends EventEmitter<LinkManagerEvents> {
  /** This node's ID. */
  readonly nodeId: NodeId;
  private readonly options: LinkManagerOptions;
  private readonly clock: Clock;
  private readonly handlers = new Map<string, ChannelHandler>();
  /** Open links by remote node-ID hex, oldest first (both directions may coexist briefly). */
  private readonly byNode = new Map<string, Link[]>();
  private readonly pendingByNode = new Map<string, Promise<Link>>();
  private readonly pendingByAddress = new Map<string, Promise<Link>>();
  /** Remote node-ID hex of the last link dialled at an address, to reuse it for a plain dial. */
  private readonly nodeAtAddress = new Map<string, string>();
  private readonly handshaking = new Set<Duplex>();
  /** Inbound handshakes in progress, the oldest first. */
  private readonly inboundHandshakes = new Set<{ stream: Duplex; host: string }>();
  /** Pending handshakes let go for newer connections (MAX_PENDING_HANDSHAKES). */
  private readonly letGo = new WeakSet<Duplex>();
  /** Inbound handshakes in progress, by remote host. */
  private readonly handshakesFrom = new Map<string, number>();
  private readonly allLinks = new Set<Link>();
  private readonly servers: Listener[] = [];
  private isClosed = false;
  private readonly counters: LinkManagerStats;

  constructor(options: LinkManagerOptions) {
    super();
    if (options.configHash.length !== 32) {
      throw new OverlayError('ERR_CONFIG', 'link manager: configHash must be 32 bytes');
    }
    this.options = options;
    this.clock = options.clock ?? systemClock;
    this.nodeId = nodeIdOf(options.keys.publicKey);
    this.counters = {
      handshakesOk: 0,
      handshakesFailed: Object.fromEntries(HANDSHAKE_FAILURE_REASONS.map((r) => [r, 0])) as Record<
        HandshakeFailureReason,
        number
      >,
      framesMalformed: 0,
      protocolViolations: 0,
      linksInbound: 0,
      linksOutbound: 0,
      linksClosed: 0,
      linksOverLimit: 0,
    };
  }

  /** "host:port" of the TCP listener (else of the first listener), once listening. */
  get address(): string | undefined {
    return (this.servers.find((l) => l.transport === 'tcp') ?? this.servers[0])?.address;
  }

  /** Every listening address: "host:port" for TCP, "ws://host:port" for WebSocket. */
  get addresses(): string[] {
    return this.servers.map((l) => l.address);
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** A snapshot of the counters. */
  get stats(): LinkManagerStats {
    return { ...this.counters, handshakesFailed: { ...this.counters.handshakesFailed } };
  }

  /**
   * Accepts links on host:port (port 0: any free port). Resolves with the bound address,
   * "host:port" for TCP and "ws://host:port" for WebSocket.
   */
  async listen(options: ListenOptions): Promise<string> {
    if (this.isClosed) throw this.stoppedError();
    const transport = options.transport ?? 'tcp';
    const existing = this.servers.find((l) => l.transport === transport);
    if (existing) {
      throw new OverlayError(
        'ERR_CONFIG',
        `already listening for ${transport} links on ${existing.address}`,
      );
    }
    const where = `${options.host}:${options.port}`;
    const cannot = (err: Error) =>
      new OverlayError(
        'ERR_CONFIG',
        `cannot listen for ${transport} links on ${where}: ${err.message}`,
        {
          cause: err,
        },
      );
    const listener =
      transport === 'tcp'
        ? await this.listenTcp(options, cannot)
        : await this.listenWs(options, cannot);
    if (this.isClosed) {
      await listener.close();
      throw this.stoppedError();
    }
    this.servers.push(listener);
    return listener.address;
  }

  private listenTcp(
    options: ListenOptions,
    cannot: (err: Error) => OverlayError,
  ): Promise<Listener> {
    const server = createServer((socket) => {
      socket.on('error', () => {});
      socket.setNoDelay(true);
      this.onInbound(
        socket,
        endpointKey(socket.remoteAddress ?? '?', socket.remotePort ?? 0),
        socket.remoteAddress ?? '?',
      );
    });
    return new Promise<Listener>((resolve, reject) => {
      server.once('error', (err) => reject(cannot(err)));
      server.listen({ host: options.host, port: options.port }, () => {
        server.removeAllListeners('error');
        // A later server error (rare: EMFILE on accept) must not crash the process.
        server.on('error', () => {});
        const bound = server.address();
        resolve({
          transport: 'tcp',
          address:
            bound && typeof bound === 'object'
              ? endpointKey(bound.address, bound.port)
              : `${options.host}:${options.port}`,
          close: () => new Promise<void>((done) => server.close(() => done())),
        });
      });
    });
  }

  private listenWs(
    options: ListenOptions,
    cannot: (err: Error) => OverlayError,
  ): Promise<Listener> {
    const wss = new WebSocketServer({
      host: options.host,
      port: options.port,
      perMessageDeflate: false,
      maxPayload: WS_MAX_PAYLOAD,
    });
    wss.on('connection', (ws, request) => {
      const socket = request.socket;
      socket.setNoDelay(true);
      const stream = createWebSocketStream(ws);
      stream.on('error', () => {});
      this.onInbound(
        stream,
        endpointKey(socket.remoteAddress ?? '?', socket.remotePort ?? 0),
        socket.remoteAddress ?? '?',
      );
    });
    return new Promise<Listener>((resolve, reject) => {
      wss.once('error', (err) => reject(cannot(err)));
      wss.once('listening', () => {
        wss.removeAllListeners('error');
        wss.on('error', () => {});
        const bound = wss.address();
        resolve({
          transport: 'ws',
          address: `ws://${
            bound && typeof bound === 'object'
              ? endpointKey(bound.address, bound.port)
              : `${options.host}:${options.port}`
          }`,
          close: () => new Promise<void>((done) => wss.close(() => done())),
        });
      });
    });
  }

  /** Routes incoming channels for `application` to `handler` (replacing an earlier one). */
  handle(application: string, handler: ChannelHandler): void {
    this.handlers.set(application, handler);
  }

  unhandle(application: string): void {
    this.handlers.delete(application);
  }

  /** The oldest open link to a node, if any. */
  linkTo(nodeId: NodeId): Link | undefined {
    return this.byNode.get(idToHex(nodeId))?.find((l) => !l.closed);
  }

  /**
   * A link to the node at `address`: an open one to the same node is reused, concurrent dials
   * to the same node (or address) share one attempt. With `expectedNodeId`, any other node at
   * that address is refused (ERR_UNREACHABLE).
   */
  dial(address: string, expectedNodeId?: NodeId): Promise<Link> {
    if (this.isClosed) return Promise.reject(this.stoppedError());
    if (!expectedNodeId) {
      const knownHex = this.nodeAtAddress.get(address);
      const open = knownHex ? this.byNode.get(knownHex)?.find((l) => !l.closed) : undefined;
      return open ? Promise.resolve(open) : this.dialAddress(address);
    }
    return this.linkToNode(expectedNodeId, () => this.dialAddress(address, expectedNodeId));
  }

  /**
   * A channel to `application` on node `nodeId`: reuses an open link, or asks `resolveAddress`
   * (the overlay looks the node up in the DHT) and dials. A link found broken while opening the
   * channel is dialled afresh once.
   */
  async connect(
    nodeId: NodeId,
    application: string,
    resolveAddress: (nodeId: NodeId) => Promise<string>,
  ): Promise<Channel> {
    if (idEquals(nodeId, this.nodeId)) {
      throw new OverlayError('ERR_UNREACHABLE', 'cannot open a link to this node itself');
    }
    for (let attempt = 0; ; attempt++) {
      if (this.isClosed) throw this.stoppedError();
      const link = await this.linkToNode(nodeId, async () =>
        this.dialAddress(await resolveAddress(nodeId), nodeId),
      );
      try {
        return await link.openChannel(application);
      } catch (err) {
        if (attempt === 0 && link.closed && !this.isClosed) continue;
        throw err;
      }
    }
  }

  /** An open link to the node, else the dial in progress to it, else `dialIt()` (shared). */
  private linkToNode(nodeId: NodeId, dialIt: () => Promise<Link>): Promise<Link> {
    const open = this.linkTo(nodeId);
    if (open) return Promise.resolve(open);
    const hex = idToHex(nodeId);
    const pending = this.pendingByNode.get(hex);
    if (pending) return pending;
    const attempt = dialIt();
    this.pendingByNode.set(hex, attempt);
    const forget = () => {
      if (this.pendingByNode.get(hex) === attempt) this.pendingByNode.delete(hex);
    };
    attempt.then(forget, forget);
    return attempt;
  }

  /** Dials an address, sharing an attempt already under way to the same address and node. */
  private dialAddress(address: string, expectedNodeId?: NodeId): Promise<Link> {
    if (this.isClosed) return Promise.reject(this.stoppedError());
    const key = `${address}|${expectedNodeId ? idToHex(expectedNodeId) : ''}`;
    const pending = this.pendingByAddress.get(key);
    if (pending) return pending;
    const attempt = this.dialNew(address, expectedNodeId);
    this.pendingByAddress.set(key, attempt);
    const forget = () => {
      if (this.pendingByAddress.get(key) === attempt) this.pendingByAddress.delete(key);
    };
    attempt.then(forget, forget);
    return attempt;
  }

  /** Diagnostics: every open link. */
  links(): LinkInfo[] {
    return [...this.allLinks].filter((l) => !l.closed).map((l) => l.info());
  }

  /** Stops listening, drops handshakes in progress, closes every link (GOAWAY). */
  async close(): Promise<void> {
    if (this.isClosed) return;
    this.isClosed = true;
    const listeners = this.servers.splice(0);
    for (const stream of this.handshaking) stream.destroy();
    const links = [...this.allLinks];
    for (const link of links) link.close('node shutting down', 'ERR_STOPPED');
    await Promise.all([
      ...listeners.map((l) => l.close()),
      ...links.map((l) => l.whenStreamClosed()),
    ]);
  }

  private stoppedError(): OverlayError {
    return new OverlayError('ERR_STOPPED', 'the link manager is closed');
  }

  private countFailure(err: unknown): void {
    const reason = err instanceof HandshakeError ? err.reason : 'closed';
    this.counters.handshakesFailed[reason]++;
    if (reason === 'malformed') this.counters.framesMalformed++;
  }

  private onInbound(stream: Duplex, remoteAddress: string, host: string): void {
    const max = this.options.maxPendingHandshakes ?? MAX_PENDING_HANDSHAKES;
    const perHost = this.options.maxPendingHandshakesPerHost ?? MAX_PENDING_HANDSHAKES_PER_HOST;
    const hostFull = !isLoopbackHost(host) && (this.handshakesFrom.get(host) ?? 0) >= perHost;
    if (this.isClosed || hostFull) {
      if (!this.isClosed) this.counters.handshakesFailed.overload++;
      stream.destroy();
      return;
    }
    const pending = { stream, host };
    const done = () => {
      if (this.inboundHandshakes.delete(pending)) addCount(this.handshakesFrom, host, -1);
    };
    if (this.inboundHandshakes.size >= max) {
      const [oldest] = this.inboundHandshakes;
      if (oldest) {
        this.counters.handshakesFailed.overload++;
        this.letGo.add(oldest.stream);
        this.inboundHandshakes.delete(oldest);
        addCount(this.handshakesFrom, oldest.host, -1);
        oldest.stream.destroy();
      }
    }
    this.inboundHandshakes.add(pending);
    addCount(this.handshakesFrom, host, 1);
    this.handshake(stream, false, remoteAddress)
      .finally(done)
      .then(
        ({ result, decoder }) => this.adopt(stream, decoder, result, 'inbound', remoteAddress),
        () => {},
      );
  }

  private async dialNew(address: string, expectedNodeId?: NodeId): Promise<Link> {
    const stream = await this.openStream(address, expectedNodeId);
    const { result, decoder } = await this.handshake(stream, true, address, expectedNodeId);
    const link = this.adopt(stream, decoder, result, 'outbound', address);
    if (!link) throw this.stoppedError();
    this.nodeAtAddress.set(address, link.remoteNodeIdHex);
    return link;
  }

  /** Connects by TCP ("host:port") or WebSocket ("ws://…", "wss://…"), within the timeout. */
  private openStream(address: string, expectedNodeId?: NodeId): Promise<Duplex> {
    const timeoutMs = this.options.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS;
    const who = expectedNodeId ? `node ${idToHex(expectedNodeId)} at ${address}` : address;
    const isWs = /^wss?:\/\//.test(address);
    const tcp = isWs ? undefined : parseLinkAddress(address);
    return new Promise<Duplex>((resolve, reject) => {
      let settled = false;
      let ws: WebSocket | undefined;
      let socket: Socket | undefined;
      const abort = () => {
        ws?.terminate();
        socket?.destroy();
      };
      const fail = (why: string, cause?: unknown) => {
        if (settled) return;
        settled = true;
        this.clock.clearTimeout(timer);
        this.handshaking.delete(placeholder);
        abort();
        this.counters.handshakesFailed.unreachable++;
        reject(
          new HandshakeError(
            'unreachable',
            'ERR_UNREACHABLE',
            `cannot reach ${who}: ${why}`,
            cause !== undefined ? { cause } : undefined,
          ),
        );
      };
      const succeed = (stream: Duplex) => {
        if (settled) return;
        settled = true;
        this.clock.clearTimeout(timer);
        this.handshaking.delete(placeholder);
        stream.on('error', () => {});
        if (this.isClosed) {
          stream.destroy();
          reject(this.stoppedError());
          return;
        }
        resolve(stream);
      };
      // close() must be able to abort a connect in progress.
      const placeholder = { destroy: () => fail('the link manager closed') } as unknown as Duplex;
      this.handshaking.add(placeholder);
      const timer = this.clock.setTimeout(
        () => fail(`no connection within ${timeoutMs} ms`),
        timeoutMs,
      );
      const onError = (err: NodeJS.ErrnoException) => fail(err.code ?? err.message, err);
      if (tcp) {
        const s = netConnect({ host: tcp.host, port: tcp.port });
        socket = s;
        s.once('error', onError);
        s.once('close', () => fail('connection closed'));
        s.once('connect', () => {
          s.removeAllListeners('error');
          s.removeAllListeners('close');
          s.setNoDelay(true);
          succeed(s);
        });
      } else {
        let w: WebSocket;
        try {
          w = new WebSocket(address, { perMessageDeflate: false, maxPayload: WS_MAX_PAYLOAD });
        } catch (err) {
          this.clock.clearTimeout(timer);
          this.handshaking.delete(placeholder);
          settled = true;
          reject(
            new OverlayError('ERR_MALFORMED', `link address "${address}" is not a WebSocket URL`, {
              cause: err,
            }),
          );
          return;
        }
        ws = w;
        w.once('error', onError);
        w.once('close', () => fail('connection closed'));
        w.once('open', () => {
          w.removeAllListeners('error');
          w.removeAllListeners('close');
          succeed(createWebSocketStream(w));
        });
      }
    });
  }

  private async handshake(
    socket: Duplex,
    initiator: boolean,
    remoteAddress: string,
    expectedNodeId?: NodeId,
  ): Promise<{ result: HandshakeResult; decoder: FrameDecoder }> {
    const decoder = new FrameDecoder(HANDSHAKE_MAX_FRAME_BYTES);
    this.handshaking.add(socket);
    try {
      const result = await runHandshake(socket, decoder, {
        keys: this.options.keys,
        configHash: this.options.configHash,
        puzzleBits: this.options.puzzleBits,
        role: this.options.role,
        initiator,
        remoteAddress,
        clock: this.clock,
        ...(this.options.overlayName !== undefined
          ? { overlayName: this.options.overlayName }
          : {}),
        ...(this.options.handshakeTimeoutMs !== undefined
          ? { timeoutMs: this.options.handshakeTimeoutMs }
          : {}),
        ...(expectedNodeId ? { expectedNodeId } : {}),
      });
      this.counters.handshakesOk++;
      return { result, decoder };
    } catch (err) {
      // One let go for a newer connection is counted once, as overload, where it was let go.
      if (!this.letGo.has(socket)) this.countFailure(err);
      throw err;
    } finally {
      this.handshaking.delete(socket);
    }
  }

  private adopt(
    stream: Duplex,
    decoder: FrameDecoder,
    handshake: HandshakeResult,
    direction: 'outbound' | 'inbound',
    remoteAddress: string,
  ): Link | undefined {
    if (this.isClosed) {
      stream.destroy();
      return undefined;
    }
    const o = this.options;
    const link = new Link({
      stream,
      decoder,
      handshake,
      direction,
      remoteAddress,
      clock: this.clock,
      acceptChannel: (application) => this.handlers.get(application),
      onProtocolError: (kind) => {
        if (kind === 'malformed') this.counters.framesMalformed++;
        else this.counters.protocolViolations++;
      },
      ...(o.keepaliveIntervalMs !== undefined
        ? { keepaliveIntervalMs: o.keepaliveIntervalMs }
        : {}),
      ...(o.maxMissedPongs !== undefined ? { maxMissedPongs: o.maxMissedPongs } : {}),
      ...(o.silenceProbeMs !== undefined ? { silenceProbeMs: o.silenceProbeMs } : {}),
      ...(o.silenceProbeTimeoutMs !== undefined
        ? { silenceProbeTimeoutMs: o.silenceProbeTimeoutMs }
        : {}),
      ...(o.maxUnsentBytes !== undefined ? { maxUnsentBytes: o.maxUnsentBytes } : {}),
      ...(o.openTimeoutMs !== undefined ? { openTimeoutMs: o.openTimeoutMs } : {}),
      ...(o.maxChannelsPerLink !== undefined ? { maxChannels: o.maxChannelsPerLink } : {}),
    });
    if (link.closed) {
      this.counters.linksClosed++;
      return direction === 'outbound' ? link : undefined;
    }
    if (direction === 'inbound') this.counters.linksInbound++;
    else this.counters.linksOutbound++;
    const hex = link.remoteNodeIdHex;
    const list = this.byNode.get(hex) ?? [];
    list.push(link);
    this.byNode.set(hex, list);
    this.allLinks.add(link);
    const max = o.maxLinksPerNode ?? MAX_LINKS_PER_NODE;
    const open = list.filter((l) => !l.closed);
    if (open.length > max) {
      this.counters.linksOverLimit++;
      open[0]?.close(
        `node ${hex} opened more than ${max} links; its oldest is closed`,
        'ERR_LIMIT',
      );
    }
    link.once('close', (error) => {
      this.counters.linksClosed++;
      this.allLinks.delete(link);
      const remaining = (this.byNode.get(hex) ?? []).filter((l) => l !== link);
      if (remaining.length > 0) this.byNode.set(hex, remaining);
      else this.byNode.delete(hex);
      this.emit('link-closed', link, error);
    });
    this.emit('link', link);
    return link;
  }
}
