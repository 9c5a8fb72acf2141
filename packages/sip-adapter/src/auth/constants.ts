// Digest authentication numbers (RFC 3261 §22, RFC 7616, RFC 8760).

/** A nonce older than this is stale: the phone gets a new one with `stale=true`. */
export const NONCE_LIFETIME_MS = 5 * 60_000;
/** A nonce stamped this far in the future (clock skew between restarts) is still accepted. */
export const NONCE_FUTURE_SKEW_MS = 5_000;
/** Nonces whose nonce-count is tracked at once; beyond it the oldest are forgotten. */
export const MAX_TRACKED_NONCES = 100_000;
