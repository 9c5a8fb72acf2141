// What the SIP adapter needs of the overlay: an OverlayNode (a peer) or an OverlayClient
// (attached to a peer) both provide it.

import type { NodeId } from '@peerbx/dht-kademlia';
import type { Channel, PublishParams, StoredRecord } from '@peerbx/overlay-core';

export interface OverlayAccess {
  readonly nodeId: NodeId;
  publish(params: PublishParams): Promise<{ record: StoredRecord; replicas: number }>;
  fetch(resource: string, kind?: number): Promise<StoredRecord[]>;
  connect(nodeId: NodeId, application: string): Promise<Channel>;
  /**
   * This node's own live record of the kind for the resource, in the slot of `dictionaryKey`
   * (OverlayNode.ownRecord), including one from before a restart; a node without it (an
   * attached client) leaves it out.
   */
  ownRecord?(
    resource: string,
    kind: number,
    dictionaryKey?: Uint8Array,
  ): Promise<StoredRecord | undefined>;
  /** All of them, whatever the resource (OverlayNode.ownRecords). */
  ownRecords?(kind: number, dictionaryKey?: Uint8Array): Promise<StoredRecord[]>;
}
