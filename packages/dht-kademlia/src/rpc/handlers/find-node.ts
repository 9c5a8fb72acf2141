// FIND_NODE: the k contacts this node knows closest to the target, never the asker itself.

import type { Contact } from '../../contact.js';
import { idEquals, type NodeId } from '../../node-id.js';
import type { RoutingTable } from '../../routing-table/routing-table.js';
import type { ResponseBody } from '../messages.js';

export function closestForRequester(
  table: RoutingTable,
  target: NodeId,
  requester: NodeId,
): Contact[] {
  return table.closest(target, table.k, (c) => idEquals(c.id, requester));
}

export function handleFindNode(
  table: RoutingTable,
  target: NodeId,
  requester: NodeId,
): ResponseBody {
  return { type: 'NODES', contacts: closestForRequester(table, target, requester) };
}
