// FIND_NODE: the contacts this node knows closest to the target, never the asker itself.

import { ANSWER_CONTACTS_CAP } from '../../constants.js';
import type { Contact } from '../../contact.js';
import { idEquals, type NodeId } from '../../node-id.js';
import type { RoutingTable } from '../../routing-table/routing-table.js';
import type { ResponseBody } from '../messages.js';

/**
 * What a node answers: its closest contacts, never the asker; k is the replication factor
 * (the table's buckets may hold more). Small k gets a few extra (up to what one datagram
 * carries anyway, ~20), so that when many of the closest nodes died at once, their live
 * neighbours still come to light.
 */
export function closestForRequester(
  table: RoutingTable,
  target: NodeId,
  requester: NodeId,
  k: number,
): Contact[] {
  return table.closest(target, answerSize(k), (c) => idEquals(c.id, requester));
}

export function answerSize(k: number): number {
  return Math.max(k, Math.min(2 * k, ANSWER_CONTACTS_CAP));
}

export function handleFindNode(
  table: RoutingTable,
  target: NodeId,
  requester: NodeId,
  k: number,
): ResponseBody {
  return { type: 'NODES', contacts: closestForRequester(table, target, requester, k) };
}
