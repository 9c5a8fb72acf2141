// STORE: checks size, lifetime and the layer above's validator before keeping a value.

import { MAX_VALUE_TTL_MS } from '../../constants.js';
import type { NodeId } from '../../node-id.js';
import type { ValueStore } from '../../storage/value-store.js';
import { refusal, type StoreRejection, type StoreResult } from '../messages.js';

/** The layer above's verdict on a value: undefined accepts, a rejection refuses. */
export type ValueValidator = (
  key: NodeId,
  value: Uint8Array,
  sender: NodeId,
) => { reason: StoreRejection; detail?: string } | undefined;

export function handleStore(
  store: ValueStore,
  validate: ValueValidator | undefined,
  key: NodeId,
  value: Uint8Array,
  ttlMs: number,
  sender: NodeId,
  now: number,
): StoreResult {
  if (value.length > store.maxValueBytes) return { ok: false, reason: 'too-large' };
  const verdict = validate?.(key, value, sender);
  if (verdict) {
    return refusal(verdict.reason, verdict.detail);
  }
  const ttl = Math.min(ttlMs, MAX_VALUE_TTL_MS);
  const put = store.put(key, value, now + ttl, now);
  return put.ok ? { ok: true } : { ok: false, reason: put.reason };
}
