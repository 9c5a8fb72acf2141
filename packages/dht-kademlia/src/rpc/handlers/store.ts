// STORE: checks size, lifetime and the layer above's validator before keeping a value.

import { MAX_VALUE_TTL_MS } from '../../constants.js';
import type { NodeId } from '../../node-id.js';
import type { ValueStore } from '../../storage/value-store.js';
import { refusal, type StoreRejection, type StoreResult } from '../messages.js';

/**
 * The layer above's verdict on a value: undefined accepts, a rejection refuses. `forged`: the
 * value is not what it claims to be (unreadable, or its signature fails), as no honest sender
 * stores; the rest of its STORE is then refused unchecked.
 */
export type ValueValidator = (
  key: NodeId,
  value: Uint8Array,
  sender: NodeId,
) => { reason: StoreRejection; detail?: string; forged?: boolean } | undefined;

/**
 * A STORE's verdict on one value, whether the value was forged, and whether it changed what
 * the store held (neither is sent back).
 */
export type StoreOutcome = StoreResult & { readonly forged?: boolean; readonly changed?: boolean };

export function handleStore(
  store: ValueStore,
  validate: ValueValidator | undefined,
  key: NodeId,
  value: Uint8Array,
  ttlMs: number,
  sender: NodeId,
  now: number,
): StoreOutcome {
  if (value.length > store.maxValueBytes) return { ok: false, reason: 'too-large' };
  const verdict = validate?.(key, value, sender);
  if (verdict) {
    const r = refusal(verdict.reason, verdict.detail);
    return verdict.forged ? { ...r, forged: true } : r;
  }
  const ttl = Math.min(ttlMs, MAX_VALUE_TTL_MS);
  const put = store.put(key, value, now + ttl, now);
  return put.ok ? { ok: true, changed: put.changed } : { ok: false, reason: put.reason };
}
