// The transport layer as the SIP core sees it (RFC 3261 §18, RFC 7118): whole SIP messages in
// with where they came from, whole SIP messages out to a flow or an address. Interface only;
// SipSocketTransports (layer.ts) implements it over real sockets.

import type { UnframeableReason } from './errors.js';

export type SipTransportProtocol = 'udp' | 'tcp' | 'ws';
/** Transports that carry messages over a connection (a flow, RFC 5626). */
export type SipStreamProtocol = 'tcp' | 'ws';

/** Where a message came from, or how one went out. */
export interface SipTransportAddress {
  readonly transport: SipTransportProtocol;
  /** IP literal of the remote end (IPv4-mapped IPv6 addresses are unmapped). */
  readonly address: string;
  readonly port: number;
  /** The connection (flow) for TCP and WebSocket; absent for UDP. */
  readonly connectionId?: string;
}

/**
 * Where to send: a flow (reply on the same connection, RFC 3261 §18.2.2 and RFC 5626; the only
 * way to reach a phone behind NAT or a browser), or an address (TCP reuses a connection to it
 * or opens one; WebSocket only reuses one, since browsers cannot be dialled).
 */
export type SipDestination =
  | { readonly connectionId: string }
  | {
      readonly transport: SipTransportProtocol;
      readonly address: string;
      readonly port: number;
    };

export interface SipInboundMessage {
  /** Exactly one SIP message: start line, headers, blank line, body. */
  readonly data: Buffer;
  readonly source: SipTransportAddress;
}

export interface SipFlowClosed {
  readonly connectionId: string;
  readonly transport: SipStreamProtocol;
  readonly address: string;
  readonly port: number;
  /** Why: "closed by peer", "idle", "evicted", "unframeable: <reason>", "closing", ... */
  readonly reason: string;
}

export interface SipTransportEvents {
  message: [message: SipInboundMessage];
  /** A TCP or WebSocket connection closed: bindings on that flow are no longer reachable. */
  'flow-closed': [flow: SipFlowClosed];
  /**
   * How long a probe datagram waited in our UDP socket and event loop before it was read, ms
   * (see queue-probe.ts; probes sent by probeQueue()); `lost`: a probe dropped, or away too
   * long, with how long it had been away.
   */
  'queue-delay': [sojournMs: number, lost: boolean];
}

export interface SipBoundAddress {
  readonly address: string;
  readonly port: number;
}

export interface SipListenAddresses {
  readonly udp: SipBoundAddress;
  readonly tcp: SipBoundAddress;
  /** Absent when WebSocket is disabled. */
  readonly ws?: SipBoundAddress;
}

export type PerTransport = Record<SipTransportProtocol, number>;
export type PerStream = Record<SipStreamProtocol, number>;

export interface SipTransportStats {
  messagesIn: PerTransport;
  messagesOut: PerTransport;
  bytesIn: PerTransport;
  bytesOut: PerTransport;
  /** Datagrams and WebSocket frames dropped: empty, not SIP-looking, or body shorter than Content-Length. */
  malformed: PerTransport;
  /** Streams closed because they could not be split into messages, by reason. */
  unframeable: Record<UnframeableReason, number>;
  /** CRLF keepalives received (RFC 5626 §4.4.1), and CRLF pongs sent for double-CRLF pings. */
  keepalivesIn: number;
  keepalivesOut: number;
  connectionsOpen: PerStream;
  connectionsOpened: PerStream;
  connectionsClosed: PerStream;
  /** Connections closed for idleness, or to make room under the connection limit. */
  connectionsIdleClosed: number;
  connectionsEvicted: number;
  /** Inbound connections refused: WebSocket handshakes without "sip", or no room left. */
  connectionsRefused: number;
  /** Sends that failed (socket errors, unreachable destinations, gone flows). */
  sendErrors: number;
}

export interface SipTransportLayer {
  /** The bound addresses (ports chosen by the system when 0 was asked for). */
  readonly addresses: SipListenAddresses;
  /** A snapshot of the counters. */
  readonly stats: SipTransportStats;

  on<K extends keyof SipTransportEvents>(
    event: K,
    listener: (...args: SipTransportEvents[K]) => void,
  ): this;
  off<K extends keyof SipTransportEvents>(
    event: K,
    listener: (...args: SipTransportEvents[K]) => void,
  ): this;

  /**
   * Sends one SIP message. Writes to an existing flow happen before this returns, so a reply
   * sent from a `message` listener goes out in order. Resolves with how the message went out
   * (the connectionId to use for the rest of the transaction); rejects with a
   * SipTransportError (ERR_NO_FLOW, ERR_UNREACHABLE, ERR_TOO_LARGE, ERR_DESTINATION, ...).
   */
  send(data: Uint8Array, destination: SipDestination): Promise<SipTransportAddress>;

  /**
   * Marks a flow as carrying a registration (true: never closed for idleness nor evicted) or
   * not any more. Returns false when no such connection is open.
   */
  keepFlow(connectionId: string, keep: boolean): boolean;

  /** Closes every socket and connection; the ports are free once this resolves. */
  close(): Promise<void>;
}
