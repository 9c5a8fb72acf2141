// What the SIP adapter needs of the overlay: an OverlayNode (a peer) or an OverlayClient
// (attached to a peer) both provide it.

import type { NodeId } from '@peerbx/dht-kademlia';
import type { Channel, PublishParams, StoredRecord } from '@peerbx/overlay-core';

export interface OverlayAccess {
  readonly nodeId: NodeId;
  publish(params: PublishParams): Promise<{ record: StoredRecord; replicas: number }>;
  /** `othersOnly`: this node's own copy does not count toward the quorum (OverlayNode.fetch). */
  fetch(
    resource: string,
    kind?: number,
    options?: { othersOnly?: boolean },
  ): Promise<StoredRecord[]>;
  connect(nodeId: NodeId, application: string): Promise<Channel>;
  /**
   * Whether the node was heard from within the last `ms` (OverlayNode.heardWithin); a node
   * without a routing table of its own (an attached client) leaves it out.
   */
  heardWithin?(nodeId: NodeId, ms: number): boolean;
  /**
   * This node's own live records of the kind, in the slot of `dictionaryKey`
   * (OverlayNode.ownRecords), including those from before a restart; a node without them (an
   * attached client) leaves it out.
   */
  ownRecords?(kind: number, dictionaryKey?: Uint8Array): Promise<StoredRecord[]>;
}
