// What TCP and WebSocket connections have in common: an identity (the flow's connectionId),
// the remote end, activity for the idle timeout, and the keep mark of a registered flow.

import type { UnframeableError } from './errors.js';
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
  /** A registration uses this flow: never closed for idleness, never evicted. */
  kept = false;
  /** Set on the first close or destroy; the reason the flow-closed event reports. */
  closeReason: string | undefined;
  protected readonly host: ConnectionHost;

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

  get source(): SipTransportAddress {
    return {
      transport: this.transport,
      address: this.address,
      port: this.port,
      connectionId: this.id,
    };
  }

  /** Queues one message; throws SipTransportError ERR_NO_FLOW when the connection is gone. */
  abstract write(data: Uint8Array): void;
  /** Graceful close: queued bytes are flushed first, within CLOSE_LINGER_MS. */
  abstract close(reason: string): void;
  /** Drops the connection at once. */
  abstract destroy(reason: string): void;
}
