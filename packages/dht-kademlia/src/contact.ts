// A contact is what the DHT knows of another node: its ID and where to reach it.

import { compareDistance, type NodeId } from './node-id.js';

export interface Contact {
  readonly id: NodeId;
  /** Transport address, opaque to the DHT ("127.0.0.1:7400" over UDP, "n42" in the simulator). */
  readonly address: string;
}

/** Sorts contacts in place by XOR distance to target, closest first. */
export function sortByDistance<T extends Contact>(target: NodeId, contacts: T[]): T[] {
  return contacts.sort((a, b) => compareDistance(target, a.id, b.id));
}
