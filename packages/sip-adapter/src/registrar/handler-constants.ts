// Numbers of the REGISTER handler and the proxy's overlay failure answers.

/** Retry-After (seconds) on a 503 when the overlay could not be reached. */
export const REGISTER_RETRY_AFTER_S = 30;

/** Retry-After (seconds) on a 503 when too many overlay writes are waiting already. */
export const REGISTER_BUSY_RETRY_AFTER_S = 10;

/** Hosts every node answers to as the overlay's domain: softphones pointed at localhost use them. */
export const LOCAL_HOST_ALIASES: readonly string[] = ['localhost', '127.0.0.1', '[::1]'];
