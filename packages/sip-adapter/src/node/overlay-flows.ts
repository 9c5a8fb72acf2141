// Overlay channels for application "sip" as SIP flows: each channel to another node is a
// reliable transport carrying one SIP message per channel message. A flow gets a connectionId
// like a TCP connection's, so transactions answer on it and the proxy routes to it.

import { idFromHex, idToHex, type NodeId } from '@peerbx/dht-kademlia';
import {
  type Channel,
  type Logger,
  OverlayError,
  setBounded,
  silentLogger,
} from '@peerbx/overlay-core';
import type { SipTransportAddress } from '../transport/transport.js';

/** The overlay application name SIP channels are opened for. */
export const SIP_APPLICATION = 'sip';
/**
 * A node a dial could not reach, after trying for SLOW_DIAL_MS or more, is not dialled again
 * for this long: a call to it fails at once, not after another dial's timeout (or the seconds
 * a LAN takes to say a host is unreachable), while its registrations stay in the overlay (a
 * node whose power failed publishes no removal). A refused connection (its host is up, the
 * node restarting, say) costs nothing to try again and is not remembered; a node the overlay
 * does not know is, briefly (NOT_FOUND_MEMORY_MS). A channel the node opens to us ends the
 * wait, and so does any message of the node's the overlay gets (a node back from a stall
 * tells its contacts so).
 */
export const UNREACHABLE_MEMORY_MS = 20_000;
/**
 * A slow dial that found no such node is not tried again for this long only: calls to it
 * fail at once, not after another slow lookup each, while a node that crashed and came back
 * (dropped from routing tables, found again once back) waits at most this long.
 */
export const NOT_FOUND_MEMORY_MS = 3_000;
/**
 * A node remembered unreachable that wrote a record this long after its dial failed (by its
 * clock: the margin takes a little skew) is up again: dialled at once (see heardOf).
 */
export const HEARD_AFTER_MARGIN_MS = 1_000;
/** A failed dial that took this long met silence, not a refusal. */
export const SLOW_DIAL_MS = 1_000;
/** Bounds that memory (a flood of lookups of made-up nodes must not grow it without end). */
const MAX_REMEMBERED_UNREACHABLE = 10_000;

export interface OverlayFlowsOptions {
  connect(nodeId: NodeId, application: string): Promise<Channel>;
  /**
   * Whether the overlay heard from the node within the last `ms`: one remembered unreachable
   * that has since (back from a stall, it told its contacts) is dialled again at once.
   */
  heardWithin?(nodeId: NodeId, ms: number): boolean;
  /** One whole SIP message from another node. */
  onMessage(data: Buffer, source: SipTransportAddress): void;
  /** A flow closed (either side, or its link died): what went out on it gets no answer. */
  onClosed?(connectionId: string): void;
  logger?: Logger;
  /** Milliseconds clock; Date.now by default. */
  now?: () => number;
}

interface Flow {
  channel: Channel;
  nodeHex: string;
  source: SipTransportAddress;
}

export class OverlayFlows {
  private readonly flows = new Map<string, Flow>();
  private readonly byNode = new Map<string, string>();
  private readonly dialing = new Map<string, Promise<string>>();
  /**
   * Nodes a dial failed to reach: when, until when they are not dialled again, and when (by
   * their clock) they had last written a record we saw before that.
   */
  private readonly unreachable = new Map<
    string,
    {
      at: number;
      until: number;
      written: number | undefined;
      /** The dial that failed was made because the overlay had heard from the node (toNode). */
      afterHeard?: boolean;
    }
  >();
  /** The newest record each node was seen to have written (heardOf), by its clock. */
  private readonly written = new Map<string, number>();
  private readonly log: Logger;
  private nextId = 1;
  private closed = false;
  messagesIn = 0;
  messagesOut = 0;

  constructor(private readonly options: OverlayFlowsOptions) {
    this.log = (options.logger ?? silentLogger).child({ component: 'sip-overlay-flows' });
  }

  /** Takes a channel (opened by us or by the other node) as a flow; returns its connectionId. */
  adopt(channel: Channel): string {
    const nodeHex = idToHex(channel.remoteNodeId);
    const connectionId = `overlay-${this.nextId++}-${nodeHex.slice(0, 8)}`;
    const source: SipTransportAddress = {
      // An overlay channel is reliable and ordered: to the transaction layer it is a stream.
      transport: 'tcp',
      address: `overlay:${nodeHex}`,
      port: 0,
      connectionId,
    };
    this.flows.set(connectionId, { channel, nodeHex, source });
    this.byNode.set(nodeHex, connectionId);
    this.unreachable.delete(nodeHex);
    channel.on('message', (data) => {
      this.messagesIn++;
      this.options.onMessage(Buffer.from(data.buffer, data.byteOffset, data.byteLength), source);
    });
    channel.on('close', (err) => {
      this.flows.delete(connectionId);
      if (this.byNode.get(nodeHex) === connectionId) this.byNode.delete(nodeHex);
      this.log.debug({ node: nodeHex, err: err?.message }, 'SIP channel closed');
      this.options.onClosed?.(connectionId);
    });
    return connectionId;
  }

  /**
   * The flow to a node: an open channel in either direction, returned as is (a call to a node
   * already linked goes out in the same turn as the request that prompted it), or a new one.
   */
  toNode(nodeHex: string): string | Promise<string> {
    if (this.closed) return Promise.reject(new OverlayError('ERR_UNREACHABLE', 'SIP node closed'));
    const open = this.byNode.get(nodeHex);
    if (open && this.flows.has(open)) return open;
    const pending = this.dialing.get(nodeHex);
    if (pending) return pending;
    const now = this.options.now ?? Date.now;
    const failed = this.unreachable.get(nodeHex);
    // Dialled again as the overlay heard from it since its dial failed: once per memory, so
    // that a node whose UDP reaches us but whose stream port does not (a firewall) costs one
    // more slow dial, not one per call.
    let afterHeard = false;
    if (failed !== undefined) {
      const remembered = now() < failed.until;
      afterHeard =
        remembered &&
        failed.afterHeard !== true &&
        this.options.heardWithin?.(idFromHex(nodeHex), now() - failed.at) === true;
      if (remembered && !afterHeard) {
        return Promise.reject(
          new OverlayError(
            'ERR_UNREACHABLE',
            `node ${nodeHex.slice(0, 16)} could not be reached ${Math.round((now() - failed.at) / 1000)} s ago`,
          ),
        );
      }
      this.unreachable.delete(nodeHex);
    }
    const started = now();
    const p = this.options
      .connect(idFromHex(nodeHex), SIP_APPLICATION)
      .then(
        (channel) => this.adopt(channel),
        (err: unknown) => {
          // Silence only: a refusal, or a lookup that found no such node (one that crashed
          // and is coming back: its contact was dropped), is no reason to wait.
          const refused = /ECONNREFUSED/.test((err as Error).message);
          const notFound = err instanceof OverlayError && err.code === 'ERR_NOT_FOUND';
          if (!refused && now() - started >= SLOW_DIAL_MS) {
            const at = now();
            const until = at + (notFound ? NOT_FOUND_MEMORY_MS : UNREACHABLE_MEMORY_MS);
            const written = this.written.get(nodeHex);
            setBounded(
              this.unreachable,
              nodeHex,
              { at, until, written, afterHeard },
              MAX_REMEMBERED_UNREACHABLE,
            );
          }
          throw err;
        },
      )
      .finally(() => this.dialing.delete(nodeHex));
    this.dialing.set(nodeHex, p);
    return p;
  }

  /**
   * A node wrote a record at `storedAt` (its registrations, published again once it is back
   * from a crash or a power cut): a dial that failed before that is forgotten, and the next
   * call dials it rather than failing at once for the rest of UNREACHABLE_MEMORY_MS. Newer
   * than the newest record of it seen before the dial failed, when one was (the same clock,
   * whatever its skew); else newer than the failure, by our clock, with a margin.
   */
  heardOf(nodeHex: string, storedAt: number): void {
    const failed = this.unreachable.get(nodeHex);
    if (failed && storedAt > (failed.written ?? failed.at + HEARD_AFTER_MARGIN_MS)) {
      this.unreachable.delete(nodeHex);
    }
    if (storedAt > (this.written.get(nodeHex) ?? 0)) {
      setBounded(this.written, nodeHex, storedAt, MAX_REMEMBERED_UNREACHABLE);
    }
  }

  has(connectionId: string): boolean {
    return this.flows.has(connectionId);
  }

  /** The node at the other end of a flow, if the connectionId is an overlay flow. */
  peerOf(connectionId: string): string | undefined {
    return this.flows.get(connectionId)?.nodeHex;
  }

  /** Sends one SIP message; throws ERR_UNREACHABLE when the channel is gone. */
  send(connectionId: string, data: Uint8Array): void {
    const flow = this.flows.get(connectionId);
    if (!flow) throw new OverlayError('ERR_UNREACHABLE', `SIP channel ${connectionId} is closed`);
    this.messagesOut++;
    flow.channel.send(data);
  }

  /** Asks the node at the other end of a flow whether it is still there (Channel.probe). */
  probe(connectionId: string): void {
    this.flows.get(connectionId)?.channel.probe();
  }

  close(): void {
    this.closed = true;
    for (const f of this.flows.values()) f.channel.close();
    this.flows.clear();
    this.byNode.clear();
  }
}
