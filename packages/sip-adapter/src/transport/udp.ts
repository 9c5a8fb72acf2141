// SIP over UDP (RFC 3261 §18): one socket, one message per datagram. What is not a SIP message
// is dropped here and counted by the layer; CRLF keepalives are ignored.

import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import { UDP_RECV_BUFFER_BYTES, UDP_SEND_BUFFER_BYTES } from './constants.js';
import type { BoundServer } from './tcp.js';

export interface UdpSocket extends BoundServer {
  send(data: Uint8Array, address: string, port: number): Promise<void>;
  /**
   * Sends when the current loop turn's I/O is done, after what `send` queued in it, and never
   * as the turn's first datagram: for datagrams no one waits on (queue probes), so that the
   * turn's first message, the one a phone or node waits for, still goes out at once. `data`
   * may be a function, called as the datagram leaves.
   */
  sendLater(data: Uint8Array | (() => Uint8Array), address: string, port: number): Promise<void>;
}

interface Outgoing {
  /** A function is called as the datagram leaves (a queue probe stamps its send time). */
  data: Uint8Array | (() => Uint8Array);
  address: string;
  port: number;
  done: () => void;
  fail: (err: Error) => void;
}

/** Binds a UDP socket; rejects with the system error (EADDRINUSE, ...). */
export function bindUdp(
  host: string,
  port: number,
  onDatagram: (data: Buffer, from: RemoteInfo) => void,
  onError: (err: Error) => void,
): Promise<UdpSocket> {
  const socket: Socket = createSocket({ type: isIPv6(host) ? 'udp6' : 'udp4' });
  return new Promise<UdpSocket>((resolve, reject) => {
    const failed = (err: Error) => {
      try {
        socket.close();
      } catch {
        // Never bound: nothing to close.
      }
      reject(err);
    };
    socket.once('error', failed);
    socket.bind({ address: host, port, exclusive: true }, () => {
      socket.off('error', failed);
      socket.on('error', onError);
      socket.on('message', onDatagram);
      setBufferSizes(socket);
      const bound = socket.address();
      let closed = false;
      // The first datagram of a loop turn goes out at once; the ones after it in the same turn
      // (the event loop working through a batch of incoming datagrams) go out together when
      // the turn's I/O is done (setImmediate: no timer). A receiver on this host that was
      // asleep is then woken about once per batch instead of once per datagram, and a wake-up
      // is a good part of a send's cost (measured: 15% of a node's CPU at 12,500 REGISTERs/s
      // from one SIPp), while a datagram sent alone is not held back at all.
      let queue: Outgoing[] = [];
      let turnStarted = false;
      let later: Outgoing[] = [];
      const transmit = (o: Outgoing) => {
        if (closed) {
          o.fail(new Error('socket closed'));
          return;
        }
        try {
          const data = typeof o.data === 'function' ? o.data() : o.data;
          socket.send(data, o.port, o.address, (err) => (err ? o.fail(err) : o.done()));
        } catch (err) {
          o.fail(err as Error);
        }
      };
      const flush = () => {
        // The turn's batch, then the late ones: a queue probe sent at once and queued leaves
        // before one sent late and stamped after it (probes are taken to leave in stamp order).
        const batch = queue;
        const late = later;
        queue = [];
        later = [];
        for (const o of batch) transmit(o);
        for (const o of late) transmit(o);
      };
      const endOfTurn = () => {
        turnStarted = false;
        flush();
      };
      const flushLater = () => {
        // The turn's own batch, if any, is flushed by its endOfTurn, with these after it.
        if (turnStarted) return;
        flush();
      };
      resolve({
        address: bound.address,
        port: bound.port,
        send: (data, address, toPort) =>
          new Promise<void>((done, fail) => {
            if (closed) {
              fail(new Error('socket closed'));
              return;
            }
            const o = { data, address, port: toPort, done, fail };
            if (turnStarted) {
              queue.push(o);
              return;
            }
            turnStarted = true;
            setImmediate(endOfTurn);
            transmit(o);
          }),
        sendLater: (data, address, toPort) =>
          new Promise<void>((done, fail) => {
            if (closed) {
              fail(new Error('socket closed'));
              return;
            }
            later.push({ data, address, port: toPort, done, fail });
            if (later.length === 1) setImmediate(flushLater);
          }),
        close: () =>
          new Promise<void>((done) => {
            if (closed) {
              done();
              return;
            }
            // What was sent before the close is handed to the system: the batch now, and the
            // socket closes once dgram has passed it on (its address lookup takes a tick).
            flush();
            closed = true;
            setImmediate(() => socket.close(() => done()));
          }),
      });
    });
  });
}

/** Larger socket buffers ride out event-loop pauses; a refusal leaves the system default. */
function setBufferSizes(socket: Socket): void {
  try {
    if (socket.getRecvBufferSize() < UDP_RECV_BUFFER_BYTES) {
      socket.setRecvBufferSize(UDP_RECV_BUFFER_BYTES);
    }
    if (socket.getSendBufferSize() < UDP_SEND_BUFFER_BYTES) {
      socket.setSendBufferSize(UDP_SEND_BUFFER_BYTES);
    }
  } catch {
    // Not allowed here (EPERM, ENOBUFS): the defaults work, with more retransmissions under load.
  }
}
