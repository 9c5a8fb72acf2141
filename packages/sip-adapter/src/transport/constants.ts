// Every tunable number of the SIP transports (RFC 3261 §18, RFC 5626, RFC 7118). Options of
// SipSocketTransports override the ones a deployment or a test may want to change.

import { MAX_MESSAGE_BYTES } from '../constants.js';

/** Where phones find us by default: UDP and TCP share this address. */
export const DEFAULT_SIP_HOST = '127.0.0.1';
export const DEFAULT_SIP_PORT = 5060;
/** WebSocket (browser phones) listens apart, as RFC 7118 deployments usually do. */
export const DEFAULT_WS_HOST = '127.0.0.1';
export const DEFAULT_WS_PORT = 5066;

/** The WebSocket subprotocol a SIP client must ask for (RFC 7118 §4.1). */
export const WS_SUBPROTOCOL = 'sip';

/** Largest UDP payload over IPv4 (65,535 - 8 UDP - 20 IP header bytes). */
export const MAX_UDP_MESSAGE_BYTES = 65_507;
/**
 * The UDP socket buffers asked for. A garbage-collection pause of 50 ms at 15,000 requests/s
 * queues 750 datagrams; the kernel's default receive buffer (208 KiB) holds about 400 of them
 * and drops the rest, which then come back as retransmissions half a second later. The kernel
 * caps the request at net.core.rmem_max / wmem_max.
 */
export const UDP_RECV_BUFFER_BYTES = 4 * 1024 * 1024;
export const UDP_SEND_BUFFER_BYTES = 1024 * 1024;
/**
 * Largest SIP message (header block and body) accepted on a stream or in a WebSocket frame:
 * the parser's limit, so that a connection never holds more than one message the node would
 * refuse anyway (1,024 connections, 64 MiB at most).
 */
export const MAX_STREAM_MESSAGE_BYTES = MAX_MESSAGE_BYTES;

/**
 * A TCP or WebSocket connection with no whole message (nor keepalive) this long is closed,
 * unless a registration keeps its flow.
 */
export const IDLE_TIMEOUT_MS = 10 * 60_000;
/** TCP and WebSocket connections open at once; the oldest idle one makes room for a new one. */
export const MAX_CONNECTIONS = 1024;
/**
 * Of those, from one remote host (loopback excepted): one host that opens connections cannot
 * push every phone's out, while a few hundred phones behind one NAT address still fit.
 */
export const MAX_CONNECTIONS_PER_HOST = 256;
/** An inbound TCP connection that brought no whole SIP message by then is closed. */
export const FIRST_MESSAGE_TIMEOUT_MS = 30_000;
/** An outbound TCP connection not established by then fails. */
export const CONNECT_TIMEOUT_MS = 5_000;
/** A WebSocket ping goes out this often; a connection that missed the previous pong is dropped. */
export const WS_PING_INTERVAL_MS = 30_000;
/** A connection closed for unframeable input gets this long to flush a last reply. */
export const CLOSE_LINGER_MS = 1_000;
/** Bytes queued for a slow reader before its connection is dropped. */
export const MAX_WRITE_BUFFER_BYTES = 4 * 1024 * 1024;
