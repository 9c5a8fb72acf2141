// The DHT over real UDP: one socket per node, one message per datagram (see codec.ts).
// Requests are retransmitted with doubling intervals until their timeout; duplicate requests
// are answered from a short-lived reply cache, so a lost reply costs the handler nothing.

import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import { type Clock, systemClock, type TimerHandle } from '../clock.js';
import {
  ID_BYTES,
  UDP_REPLY_CACHE_MAX_ENTRIES,
  UDP_REPLY_CACHE_MS,
  UDP_RETRANSMIT_INITIAL_MS,
} from '../constants.js';
import type { Contact } from '../contact.js';
import { DhtError, TimeoutError } from '../errors.js';
import type { RequestHandler, Transport } from '../network.js';
import type { NodeId } from '../node-id.js';
import { cryptoRandom, type Random } from '../random.js';
import type { Request, Response } from '../rpc/messages.js';
import { endpointKey, formatEndpoint, parseEndpoint, unmapIPv4 } from './address.js';
import {
  decodeMessage,
  ERROR_UNSUPPORTED_VERSION,
  encodeRequest,
  encodeResponse,
  HEADER_BYTES,
  UnsupportedVersionError,
  WIRE_VERSION,
  type WireMessage,
} from './codec.js';
import { type DatagramCodec, RejectedMessageError } from './datagram-codec.js';

/**
 * The DHT's own compact, unsigned codec. A request of another version with a full header is
 * told which version this node speaks (only then, so a forged source gains no amplification).
 */
export function compactCodec(id: NodeId): DatagramCodec {
  return {
    encodeRequest: (txid, request) => encodeRequest(txid, request),
    encodeResponse: (txid, response) => encodeResponse(txid, response),
    decode: (data) => {
      try {
        return decodeMessage(data);
      } catch (err) {
        if (
          err instanceof UnsupportedVersionError &&
          err.isRequest &&
          data.length >= HEADER_BYTES
        ) {
          const message = `unsupported version ${err.version}; this node speaks version ${WIRE_VERSION}`;
          const reply = encodeResponse(err.txid, {
            sender: id,
            body: { type: 'ERROR', code: ERROR_UNSUPPORTED_VERSION, message },
          });
          throw new RejectedMessageError('version', message, reply);
        }
        throw err;
      }
    },
  };
}

export interface UdpBindOptions {
  /** Address to bind: an IPv4 or IPv6 literal ("127.0.0.1", "::1", "0.0.0.0", "::"). */
  host: string;
  /** 0 picks a free port; `address` then tells which. */
  port: number;
  /** The node's ID, named as sender in the replies the transport writes itself (version errors). */
  id?: NodeId;
  /** How messages become datagrams; the compact unsigned codec by default. */
  codec?: DatagramCodec;
  /** IPv6 sockets only: refuse IPv4 traffic instead of serving both. */
  ipv6Only?: boolean;
  clock?: Clock;
  /** Source of transaction IDs; unpredictable by default, so replies are hard to forge. */
  random?: Random;
  retransmitInitialMs?: number;
  replyCacheMs?: number;
  replyCacheMaxEntries?: number;
}

export interface UdpTransportStats {
  datagramsIn: number;
  datagramsOut: number;
  /** Datagrams that did not decode; dropped. */
  malformed: number;
  /** Well-formed datagrams the codec refused (wrong version, bad signature, replay...), by reason. */
  rejected: Record<string, number>;
  retransmissions: number;
  /** Requests that got no reply in time. */
  timeouts: number;
  /** Repeated requests answered from the reply cache (or dropped while the first is handled). */
  duplicates: number;
  /** Replies that matched no pending request: late, or from another address than asked. */
  unmatched: number;
  /** Send failures and socket errors reported by the operating system. */
  socketErrors: number;
}

interface Pending {
  /** Canonical address the reply must come from. */
  readonly from: string;
  readonly resolve: (res: Response) => void;
  readonly reject: (err: Error) => void;
  deadline: TimerHandle | undefined;
  retransmit: TimerHandle | undefined;
}

interface CachedReply {
  readonly at: number;
  /** Undefined while the handler is still working on the first copy. */
  bytes: Uint8Array | undefined;
}

export class UdpTransport implements Transport {
  readonly address: string;
  readonly stats: UdpTransportStats = {
    datagramsIn: 0,
    datagramsOut: 0,
    malformed: 0,
    rejected: {},
    retransmissions: 0,
    timeouts: 0,
    duplicates: 0,
    unmatched: 0,
    socketErrors: 0,
  };

  private handler: RequestHandler | undefined;
  private readonly pending = new Map<number, Pending>();
  /** Keyed by source address and txid, oldest first. */
  private readonly replies = new Map<string, CachedReply>();
  private readonly id: NodeId;
  private readonly codec: DatagramCodec;
  private readonly clock: Clock;
  private readonly random: Random;
  private readonly retransmitInitialMs: number;
  private readonly replyCacheMs: number;
  private readonly replyCacheMaxEntries: number;
  private readonly ipv6: boolean;
  private closed = false;

  private constructor(
    private readonly socket: Socket,
    options: UdpBindOptions,
  ) {
    const bound = socket.address();
    this.address = endpointKey(bound.address, bound.port);
    this.ipv6 = bound.family === 'IPv6';
    this.id = options.id ?? new Uint8Array(ID_BYTES);
    this.codec = options.codec ?? compactCodec(this.id);
    this.clock = options.clock ?? systemClock;
    this.random = options.random ?? cryptoRandom;
    this.retransmitInitialMs = options.retransmitInitialMs ?? UDP_RETRANSMIT_INITIAL_MS;
    this.replyCacheMs = options.replyCacheMs ?? UDP_REPLY_CACHE_MS;
    this.replyCacheMaxEntries = options.replyCacheMaxEntries ?? UDP_REPLY_CACHE_MAX_ENTRIES;
    socket.on('message', (data, rinfo) => this.onDatagram(data, rinfo));
    socket.on('error', () => {
      this.stats.socketErrors++;
    });
  }

  /** Opens and binds a socket. Rejects when the address cannot be bound (in use, not local). */
  static async bind(options: UdpBindOptions): Promise<UdpTransport> {
    const socket = createSocket({
      type: isIPv6(options.host) ? 'udp6' : 'udp4',
      ipv6Only: options.ipv6Only ?? false,
    });
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => {
        try {
          socket.close();
        } catch {
          // Never bound: nothing to close.
        }
        reject(
          new DhtError(
            'ERR_STOPPED',
            `cannot bind UDP ${options.host}:${options.port}: ${err.message}`,
          ),
        );
      };
      socket.once('error', onError);
      socket.bind(options.port, options.host, () => {
        socket.off('error', onError);
        resolve();
      });
    });
    return new UdpTransport(socket, options);
  }

  listen(handler: RequestHandler): void {
    this.handler = handler;
  }

  request(to: Contact, request: Request, timeoutMs: number): Promise<Response> {
    if (this.closed) return Promise.reject(new DhtError('ERR_STOPPED', 'UDP transport is closed'));
    const ep = parseEndpoint(to.address);
    if (!ep) {
      return Promise.reject(
        new DhtError('ERR_REJECTED', `"${to.address}" is not an IP:port address`),
      );
    }
    const ip = unmapIPv4(ep.ip);
    if (ip.length === 16 && !this.ipv6) {
      return Promise.reject(
        new DhtError('ERR_REJECTED', `cannot reach IPv6 ${to.address} from IPv4 ${this.address}`),
      );
    }
    const from = formatEndpoint(ip, ep.port);
    // A dual-stack socket reaches IPv4 peers through their mapped IPv6 address.
    const host = hostOf(from, this.ipv6);
    const txid = this.newTxid();
    let bytes: Uint8Array;
    try {
      bytes = this.codec.encodeRequest(txid, request, to.id);
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise<Response>((resolve, reject) => {
      const p: Pending = { from, resolve, reject, deadline: undefined, retransmit: undefined };
      this.pending.set(txid, p);
      p.deadline = this.clock.setTimeout(() => {
        this.forget(txid);
        this.stats.timeouts++;
        reject(new TimeoutError(`no reply from ${to.address} within ${timeoutMs} ms`));
      }, timeoutMs);
      // Sends at 0, T, 3T, 7T, ... (each gap doubling) while before the deadline.
      const transmit = (elapsed: number, gap: number) => {
        this.send(bytes, ep.port, host);
        if (elapsed + gap >= timeoutMs) return;
        p.retransmit = this.clock.setTimeout(() => {
          if (this.pending.get(txid) !== p) return;
          this.stats.retransmissions++;
          transmit(elapsed + gap, gap * 2);
        }, gap);
      };
      transmit(0, this.retransmitInitialMs);
    });
  }

  /** Closes the socket; pending requests reject with ERR_STOPPED. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.handler = undefined;
    for (const txid of [...this.pending.keys()]) {
      this.forget(txid)?.reject(new DhtError('ERR_STOPPED', 'UDP transport closed'));
    }
    this.replies.clear();
    await new Promise<void>((resolve) => this.socket.close(() => resolve()));
  }

  // --- Incoming ------------------------------------------------------------------------------

  private onDatagram(data: Buffer, rinfo: RemoteInfo): void {
    if (this.closed) return;
    this.stats.datagramsIn++;
    const from = endpointKey(rinfo.address, rinfo.port);
    const head = this.codec.peek?.(data);
    if (head?.response) {
      // Unsolicited or late: dropped before decoding, so a flood of them costs no verification.
      const p = this.pending.get(head.txid);
      if (!p || p.from !== from) {
        this.stats.unmatched++;
        return;
      }
    }
    let message: WireMessage;
    try {
      message = this.codec.decode(data, from);
    } catch (err) {
      if (err instanceof RejectedMessageError) {
        this.stats.rejected[err.reason] = (this.stats.rejected[err.reason] ?? 0) + 1;
        if (err.reply) this.send(err.reply, rinfo.port, rinfo.address);
      } else {
        this.stats.malformed++;
      }
      return;
    }
    if (message.kind === 'response') this.onResponse(message.txid, message.response, from);
    else this.onRequest(message.txid, message.request, from, rinfo);
  }

  private onResponse(txid: number, response: Response, from: string): void {
    const p = this.pending.get(txid);
    if (!p || p.from !== from) {
      this.stats.unmatched++;
      return;
    }
    this.forget(txid);
    p.resolve(response);
  }

  private onRequest(txid: number, request: Request, from: string, rinfo: RemoteInfo): void {
    const key = `${from}/${txid}`;
    const now = this.clock.now();
    this.pruneReplies(now);
    const cached = this.replies.get(key);
    if (cached) {
      this.stats.duplicates++;
      if (cached.bytes) this.send(cached.bytes, rinfo.port, rinfo.address);
      return;
    }
    const handler = this.handler;
    // Not listening yet (or any more): as silent as a closed port.
    if (!handler) return;
    const entry: CachedReply = { at: now, bytes: undefined };
    this.replies.set(key, entry);
    if (this.replies.size > this.replyCacheMaxEntries) {
      const oldest = this.replies.keys().next().value;
      if (oldest !== undefined) this.replies.delete(oldest);
    }
    const answer = (res: Response) => {
      entry.bytes = this.encodeReply(txid, res);
      if (!this.closed) this.send(entry.bytes, rinfo.port, rinfo.address);
    };
    const fail = () => answer(this.internalError());
    let result: Response | Promise<Response>;
    try {
      result = handler(request, from);
    } catch {
      fail();
      return;
    }
    if (result instanceof Promise) result.then(answer, fail);
    else answer(result);
  }

  private encodeReply(txid: number, res: Response): Uint8Array {
    try {
      return this.codec.encodeResponse(txid, res);
    } catch {
      // A handler's reply that cannot be encoded (bad sender ID, say) is our bug, not theirs.
      return this.codec.encodeResponse(txid, this.internalError());
    }
  }

  private internalError(): Response {
    return { sender: this.id, body: { type: 'ERROR', code: 500, message: 'internal error' } };
  }

  // --- Helpers ---------------------------------------------------------------------------------

  private send(bytes: Uint8Array, port: number, host: string): void {
    if (this.closed) return;
    this.stats.datagramsOut++;
    try {
      this.socket.send(bytes, port, host, (err) => {
        if (err) this.stats.socketErrors++;
      });
    } catch {
      this.stats.socketErrors++;
    }
  }

  private newTxid(): number {
    for (;;) {
      const b = this.random.bytes(4);
      const txid =
        (((b[0] as number) << 24) |
          ((b[1] as number) << 16) |
          ((b[2] as number) << 8) |
          (b[3] as number)) >>>
        0;
      if (!this.pending.has(txid)) return txid;
    }
  }

  /** Drops a pending request and its timers; returns it if it was still pending. */
  private forget(txid: number): Pending | undefined {
    const p = this.pending.get(txid);
    if (!p) return undefined;
    this.pending.delete(txid);
    if (p.deadline) this.clock.clearTimeout(p.deadline);
    if (p.retransmit) this.clock.clearTimeout(p.retransmit);
    return p;
  }

  private pruneReplies(now: number): void {
    for (const [key, entry] of this.replies) {
      if (now - entry.at < this.replyCacheMs) break;
      this.replies.delete(key);
    }
  }
}

/** The host part of a canonical endpoint, as a socket of the given family sends to it. */
function hostOf(endpoint: string, ipv6Socket: boolean): string {
  if (endpoint.startsWith('[')) return endpoint.slice(1, endpoint.lastIndexOf(']'));
  const host = endpoint.slice(0, endpoint.lastIndexOf(':'));
  return ipv6Socket ? `::ffff:${host}` : host;
}
