// FIND_VALUE: the values stored under the key when this node holds any, plus closer contacts
// either way, so that a quorum lookup can go on.

import type { NodeId } from '../../node-id.js';
import type { RoutingTable } from '../../routing-table/routing-table.js';
import type { ValueStore } from '../../storage/value-store.js';
import type { ResponseBody } from '../messages.js';
import { closestForRequester } from './find-node.js';

export function handleFindValue(
  table: RoutingTable,
  store: ValueStore,
  key: NodeId,
  requester: NodeId,
  k: number,
  now: number,
  offset = 0,
): ResponseBody {
  const contacts = closestForRequester(table, key, requester, k);
  const all = store.get(key, now);
  if (all.length === 0) return { type: 'NODES', contacts };
  // Values past the offset; the transport truncates what does not fit one datagram.
  const stored = all.slice(offset);
  return {
    type: 'VALUE',
    values: stored.map((v) => ({ value: v.value, ttlMs: v.expiresAt - now })),
    contacts,
  };
}
