// What TCP and WebSocket connections have in common: an identity (the flow's connectionId),
// the remote end, activity for the idle timeout, the keep mark of a registered flow, and
// writing, closing (with a linger) and finishing over whatever socket carries the stream.

import { CLOSE_LINGER_MS, MAX_WRITE_BUFFER_BYTES } from './constants.js';
import { SipTransportError, type UnframeableError } from './errors.js';
import { endpointKey, unmapIPv4 } from './sip-bytes.js';
import type { SipStreamProtocol, SipTransportAddress } from './transport.js';

/** What a connection reports to the layer that owns it. */
export interface ConnectionHost {
  now(): number;
  /** Raw bytes (TCP) or a frame's payload (WebSocket) arrived. */
  received(connection: StreamConnection, bytes: number): void;
  /** Bytes went out, SIP or keepalive. */
  sent(connection: StreamConnection, bytes: number): void;
  /** One whole SIP message arrived. */
  deliver(connection: StreamConnection, data: Buffer): void;
  /** A CRLF keepalive arrived; `pong` is true when a CRLF went back for a double-CRLF ping. */
  keepalive(connection: StreamConnection, pong: boolean): void;
  /** A WebSocket frame that is no SIP message was dropped. */
  malformed(connection: StreamConnection, reason: string): void;
  /** The stream is unframeable; the connection closes once this returns. */
  unframeable(connection: StreamConnection, error: UnframeableError): void;
  /** The connection has closed (called once). */
  closed(connection: StreamConnection): void;
}

export type ConnectionDirection = 'inbound' | 'outbound';

export abstract class StreamConnection {
  abstract readonly transport: SipStreamProtocol;
  readonly id: string;
  readonly address: string;
  readonly port: number;
  /** endpointKey of the remote end: TCP sends to an address reuse a connection found by it. */
  readonly key: string;
  readonly direction: ConnectionDirection;
  readonly openedAt: number;
  lastActivity: number;
  /** Whole SIP messages received (keepalives not counted). */
  messagesIn = 0;
  /** A registration uses this flow: never closed for idleness, never evicted. */
  kept = false;
  /** Set on the first close or destroy; the reason the flow-closed event reports. */
  closeReason: string | undefined;
  protected readonly host: ConnectionHost;
  private linger: NodeJS.Timeout | undefined;
  private finished = false;

  constructor(
    host: ConnectionHost,
    id: string,
    address: string,
    port: number,
    direction: ConnectionDirection,
  ) {
    this.host = host;
    this.id = id;
    this.key = endpointKey(address, port);
    // The key's form: IPv4-mapped addresses unmapped, IPv6 in lower case.
    this.address = this.key.startsWith('[')
      ? this.key.slice(1, this.key.lastIndexOf(']'))
      : unmapIPv4(address);
    this.port = port;
    this.direction = direction;
    this.openedAt = host.now();
    this.lastActivity = this.openedAt;
  }

  get closing(): boolean {
    return this.closeReason !== undefined;
  }

  /** The machine's address this flow runs on (IPv4-mapped unmapped), once connected. */
  get localAddress(): string | undefined {
    const local = this.socketLocalAddress;
    return local === undefined ? undefined : unmapIPv4(local);
  }

  get source(): SipTransportAddress {
    return {
      transport: this.transport,
      address: this.address,
      port: this.port,
      connectionId: this.id,
    };
  }

  /** Queues one message; throws SipTransportError ERR_NO_FLOW when the connection is gone. */
  write(data: Uint8Array): void {
    if (this.closing || !this.writable) {
      throw new SipTransportError(
        'ERR_NO_FLOW',
        `${this.label} is closed (${this.closeReason ?? 'by peer'})`,
      );
    }
    if (this.bufferedBytes > MAX_WRITE_BUFFER_BYTES) {
      this.destroy('slow reader');
      throw new SipTransportError(
        'ERR_NO_FLOW',
        `${this.label} was dropped: over ${MAX_WRITE_BUFFER_BYTES} bytes unread`,
      );
    }
    this.lastActivity = this.host.now();
    this.transmit(data);
    this.host.sent(this, data.length);
  }

  /** Graceful close: queued bytes are flushed first, within CLOSE_LINGER_MS. */
  close(reason: string): void {
    if (this.closing) return;
    this.closeReason = reason;
    this.end();
    this.linger = setTimeout(() => this.kill(), CLOSE_LINGER_MS);
    this.linger.unref();
  }

  /** Drops the connection at once. */
  destroy(reason: string): void {
    this.closeReason ??= reason;
    this.kill();
  }

  /** "TCP connection 7 to 192.0.2.1:5060", for errors. */
  protected abstract get label(): string;

  protected abstract get socketLocalAddress(): string | undefined;
  /** Whether the socket still takes writes. */
  protected abstract get writable(): boolean;
  /** Bytes written and not yet sent. */
  protected abstract get bufferedBytes(): number;
  /** Hands one message to the socket. */
  protected abstract transmit(data: Uint8Array): void;
  /** Starts a graceful close of the socket. */
  protected abstract end(): void;
  /** Closes the socket at once. */
  protected abstract kill(): void;

  /** The socket has closed: reports it to the host once. */
  protected finish(reason: string): void {
    if (this.finished) return;
    this.finished = true;
    this.closeReason ??= reason;
    if (this.linger) clearTimeout(this.linger);
    this.host.closed(this);
  }
}
