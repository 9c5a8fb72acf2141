// Digest authentication numbers (RFC 3261 §22, RFC 7616, RFC 8760).

/** A nonce older than this is stale: the phone gets a new one with `stale=true`. */
export const NONCE_LIFETIME_MS = 5 * 60_000;
/** A nonce stamped this far in the future (clock skew between restarts) is still accepted. */
export const NONCE_FUTURE_SKEW_MS = 5_000;
/** Nonces whose nonce-count is tracked at once; beyond it the oldest are forgotten. */
export const MAX_TRACKED_NONCES = 100_000;
/** Wrong passwords (or unknown users) from one host, for one user, before it is locked out. */
export const MAX_FAILED_LOGINS = 5;
/** The same from one host for any users (a password tried on every account). */
export const MAX_FAILED_LOGINS_PER_HOST = 20;
/** Failures count within this window, and a lockout lasts as long, ms. */
export const FAILED_LOGIN_WINDOW_MS = 60_000;
/** Hosts and host-user pairs tracked for failed logins; the oldest are forgotten first. */
export const MAX_TRACKED_LOGINS = 10_000;
