// Registrar numbers (RFC 3261 §10.2.1.1, §10.3).

/** Expiry when the phone names none: RFC 3261's recommended 3600 s. */
export const DEFAULT_EXPIRES_S = 3600;
/** Shortest registration accepted; shorter requests get 423 with Min-Expires. */
export const MIN_EXPIRES_S = 60;
/** Longest registration granted; longer requests are shortened to this. */
export const MAX_EXPIRES_S = 24 * 3600;
/** Contacts one AOR may hold at once (several devices per user). */
export const MAX_BINDINGS_PER_AOR = 16;
/** The file, in the node's data directory, that keeps bindings across restarts. */
export const BINDINGS_FILE = 'bindings.json';
