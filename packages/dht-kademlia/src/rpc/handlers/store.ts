// STORE: checks size, lifetime and the layer above's validator before keeping a value.

import { MAX_VALUE_TTL_MS } from '../../constants.js';
import type { NodeId } from '../../node-id.js';
import type { ValueStore } from '../../storage/value-store.js';
import type { ResponseBody, StoreRejection } from '../messages.js';

/** The layer above's verdict on a value: undefined accepts, a rejection refuses. */
export type ValueValidator = (
  key: NodeId,
  value: Uint8Array,
  sender: NodeId,
) => { reason: StoreRejection; detail?: string } | undefined;

export interface StoreOutcome {
  response: ResponseBody;
  changed: boolean;
}

export function handleStore(
  store: ValueStore,
  validate: ValueValidator | undefined,
  key: NodeId,
  value: Uint8Array,
  ttlMs: number,
  sender: NodeId,
  now: number,
): StoreOutcome {
  if (value.length > store.maxValueBytes) {
    return { response: { type: 'STORED', ok: false, reason: 'too-large' }, changed: false };
  }
  const verdict = validate?.(key, value, sender);
  if (verdict) {
    return {
      response: { type: 'STORED', ok: false, reason: verdict.reason, detail: verdict.detail },
      changed: false,
    };
  }
  const ttl = Math.min(ttlMs, MAX_VALUE_TTL_MS);
  const put = store.put(key, value, now + ttl, now);
  if (!put.ok)
    return { response: { type: 'STORED', ok: false, reason: put.reason }, changed: false };
  return { response: { type: 'STORED', ok: true }, changed: put.changed };
}
