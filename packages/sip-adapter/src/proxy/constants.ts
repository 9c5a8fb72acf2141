// Numbers of the stateful proxy (RFC 3261 §16).

/** §16.6 step 11: Timer C, how long an INVITE branch may stay without a final response (> 3 min). */
export const TIMER_C_MS = 181_000;
/**
 * Retry-After (seconds) on a 503 when the overlay could not say where a user is: nobody
 * answered, or most of the nodes that would hold the record were silent.
 */
export const OVERLAY_RETRY_AFTER_S = 30;
/** Retry-After (seconds) on a 503 when too many location lookups were waiting (as REGISTER's). */
export const LOOKUPS_BUSY_RETRY_AFTER_S = 10;
/** How long opening an overlay channel to the callee's node may take before the branch is 480. */
export const NODE_CONNECT_TIMEOUT_MS = 5_000;
/**
 * How long an INVITE forked to a callee's cached location may go unanswered before the proxy
 * asks again for devices registered at other nodes since (proxy.ts, recheckLocation). A call
 * answered sooner costs no lookup; a device found late starts ringing this much later.
 */
export const LOCATION_RECHECK_MS = 200;
/**
 * A recheck takes a location looked up at most this long ago (by another call's recheck, say)
 * rather than asking the overlay again: calls to one callee cost at most one lookup a second.
 */
export const LOCATION_RECHECK_MAX_AGE_MS = 1_000;
/** How long that lookup may hold back the answer to a call whose branches have all ended. */
export const LOCATION_RECHECK_TIMEOUT_MS = 2_000;
/** Via parameter naming the PeerBX node that added the Via (routes stray responses back). */
export const VIA_NODE_PARAM = 'pbx-node';
/** Methods whose out-of-dialog requests create dialogs, so the proxy Record-Routes them. */
export const DIALOG_METHODS: ReadonlySet<string> = new Set([
  'INVITE',
  'SUBSCRIBE',
  'REFER',
  'NOTIFY',
]);
/**
 * Methods whose requests, and their answers with a To tag, set a dialog's remote target: its
 * Contact replaces the one the dialog began with (RFC 3261 §12.2, RFC 3311, RFC 3515, RFC 6665).
 */
export const TARGET_REFRESH_METHODS: ReadonlySet<string> = new Set([
  'INVITE',
  'UPDATE',
  'SUBSCRIBE',
  'NOTIFY',
  'REFER',
]);
/** Dialogs whose phone here changed its target (Proxy.learnTarget), remembered at most. */
export const REFRESHED_DIALOGS_MAX = 10_000;
/**
 * RFC 3261 §18.1.1: a request larger than this (the path MTU unknown) goes over a congestion
 * controlled transport: to a phone registered over UDP, over TCP to its Contact address.
 */
export const UDP_REQUEST_MAX_BYTES = 1300;
/** How long a phone may take to accept that TCP connection before the request goes over UDP. */
export const LARGE_REQUEST_TCP_WAIT_MS = 500;
/** A phone that refused it is sent large requests over UDP, without trying, this long. */
export const NO_TCP_REMEMBER_MS = 10 * 60_000;
