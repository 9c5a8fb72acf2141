// Every tunable number of the DHT, with the default a node starts from.
// Values follow the Kademlia paper (Maymounkov & Mazières 2002) unless a comment says otherwise.

/** Bits in a node-ID or key: SHA-256 sized. */
export const ID_BITS = 256;
export const ID_BYTES = ID_BITS / 8;

/** Bucket size and replication factor. */
export const DEFAULT_K = 20;
/** Parallel requests in flight per lookup path. */
export const DEFAULT_ALPHA = 3;
/** Disjoint lookup paths (S/Kademlia); 1 is plain Kademlia. */
export const DEFAULT_DISJOINT_PATHS = 1;

/** How long one RPC may take before the peer counts as unresponsive. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 2_000;
/** Hard cap on requests one lookup may send, so a lookup against liars always ends. */
export const DEFAULT_MAX_LOOKUP_REQUESTS = 200;

/** A bucket with no lookup in this long is refreshed with a lookup of a random ID in it. */
export const DEFAULT_REFRESH_INTERVAL_MS = 60 * 60 * 1000;
/** Original publishers re-store their values this often. */
export const DEFAULT_REPUBLISH_INTERVAL_MS = 60 * 60 * 1000;
/**
 * A value of ours that reached fewer holders than it should (they were silent) is stored again
 * this long after, the wait doubling while it stays so, up to the upkeep check interval: a
 * registration changed during an outage (a phone gone, say) reaches the overlay within
 * seconds of it ending, not at the next upkeep check.
 */
export const INCOMPLETE_RETRY_MS = 5_000;
/**
 * Storing nodes re-replicate to the current k closest what nobody stored for this long (and a
 * key at once when one of its k closest nodes died).
 */
export const DEFAULT_REPLICATE_INTERVAL_MS = 60 * 60 * 1000;
/** Expired values are purged this often. */
export const DEFAULT_EXPIRE_CHECK_INTERVAL_MS = 60 * 1000;
/** Lifetime of a value stored without an explicit TTL. */
export const DEFAULT_VALUE_TTL_MS = 24 * 60 * 60 * 1000;
/** Longest lifetime a storing node accepts; longer TTLs are clamped. */
export const MAX_VALUE_TTL_MS = 7 * 24 * 60 * 60 * 1000;

/**
 * Failed requests in a row after which a contact leaves the routing table even with no
 * replacement (with one waiting, the first failure swaps it in). Each is a timeout of a
 * request resent meanwhile (UDP_RETRANSMIT_INITIAL_MS), or a reply from another node-ID.
 */
export const MAX_CONTACT_FAILURES = 2;
/** Replacement-cache entries kept per bucket. */
export const REPLACEMENT_CACHE_SIZE = 20;
/**
 * A full bucket's least-recently-seen contact is pinged before eviction only when it was last
 * seen this long ago; one seen more recently stays without a PING. (60 s doubled the lookup
 * p95 under bench:dht's 2-hour churn at N=1,000, dead contacts staying longer; 10 s did not.)
 */
export const EVICTION_PING_MIN_AGE_MS = 10_000;
/**
 * A STORE refused as not-responsible PINGs the closer contacts that made it so, except those
 * that answered a request within this long (at most half an upkeep period): see checkCloser.
 */
export const CLOSER_CHECK_MIN_AGE_MS = 10_000;

/**
 * A contact (a node-ID at an address) whose last two requests went unanswered, one sent after
 * the other had timed out, both within this long, is presumed dead: lookups count it silent
 * without asking it when other nodes name it (see KademliaNode.runLookup).
 */
export const PRESUMED_DEAD_MS = 60_000;

/** Values per key a storing node keeps (distinct slots), so nobody can fill up a peer. */
export const DEFAULT_MAX_VALUES_PER_KEY = 64;
/** Largest value the DHT stores; keeps a STORE inside one UDP datagram. */
export const DEFAULT_MAX_VALUE_BYTES = 1_000;
/** Keys one node stores for others. */
export const DEFAULT_MAX_KEYS = 100_000;

/** UDP: datagrams stay under the IPv6 minimum MTU less headers. */
export const MAX_DATAGRAM_BYTES = 1_200;
/** UDP: first retransmission after this long, doubling each time (RFC 3261 T1 style). */
export const UDP_RETRANSMIT_INITIAL_MS = 250;
/** UDP: replies to duplicate requests are served from this cache for this long. */
export const UDP_REPLY_CACHE_MS = 10_000;

/** How often a node checks that it has been running (see STALL_MS). */
export const STALL_CHECK_MS = 1000;
/**
 * A check this much later than due says the node did not run meanwhile (SIGSTOP, a laptop
 * suspended, a frozen VM): its peers dropped it, as it answered nothing, and it tells them it
 * is back (KademliaNode, afterStall).
 */
export const STALL_MS = 5000;

/**
 * Addresses a node keeps for rejoining when it lost every contact: those it joined through,
 * and as many of the contacts its routing table dropped last.
 */
export const MAX_REJOIN_ADDRESSES = 16;
/**
 * A node that lost every contact and reached none of them again in this many rejoin rounds
 * (one when the table emptied, then one per upkeep check) takes the others to be gone: it is
 * alone (after about 20 minutes at the overlay's 1-minute maintenance period), and tries
 * again only at every REJOIN_SLOW_EVERY-th check: an office whose line was down for an hour
 * is back in the overlay within 4 minutes of the line, for a few PINGs every 4 minutes.
 */
export const ALONE_AFTER_REJOIN_ROUNDS = 20;
export const REJOIN_SLOW_EVERY = 4;
/** PINGs sent to a bootstrap address before giving up on it. */
export const BOOTSTRAP_PING_ATTEMPTS = 3;
/** UDP: most replies the duplicate-request cache holds, so a flood cannot grow it unbounded. */
export const UDP_REPLY_CACHE_MAX_ENTRIES = 10_000;

/** Pages of values a lookup fetches from one holder whose reply was truncated. */
export const MAX_VALUE_PAGES = 16;

/** Republish and replication stores in flight at once per node. */
export const UPKEEP_PARALLELISM = 8;
/**
 * A hand-over that a silent newcomer stopped (a STORE timed out) goes on this much later
 * when the newcomer is still listed, and otherwise when it is heard from again.
 */
export const HAND_OVER_RETRY_MS = 5_000;
/** Newcomers whose hand-over waits (stopped by silence) remembered at most, the oldest going. */
export const MAX_HAND_OVERS_WAITING = 256;
/**
 * Contacts dropped from the routing table that one replication check weighs at most (a held
 * key one of them was among the k closest to is replicated); more wait for the interval.
 */
export const MAX_DROPPED_PER_CHECK = 256;
/** Holders of published values pinged at one upkeep check at most (in turn over checks). */
export const MAX_HOLDER_PINGS = 64;

/** Contacts an answer carries at most when k is small (a datagram holds about this many). */
export const ANSWER_CONTACTS_CAP = 20;

/** Floor of the adaptive request timeout: room for one retransmission of a lost datagram. */
export const DEFAULT_MIN_REQUEST_TIMEOUT_MS = 500;

/**
 * Nodes that hand a newcomer each key it is now among the closest to: the two closest before
 * it arrived, so that a lying one among them is not its only source.
 */
export const HAND_OVER_SENDERS = 2;
/** Keys a leaving node hands over at once (each to its k closest other nodes). */
export const LEAVE_KEYS_IN_FLIGHT = 32;
/** How long a leaving node hands its keys over before it sends its LEAVEs anyway, ms. */
export const LEAVE_HAND_OVER_MS = 3000;
/** LEAVE notices a leaving node has out at once (one per routing-table contact in all). */
export const LEAVE_NOTICES_IN_FLIGHT = 32;
/**
 * How long a leaving node waits for each LEAVE to be acknowledged, ms: a contact that does not
 * answer finds out by its own timeouts, as before; the leave is not held up for it.
 */
export const LEAVE_NOTICE_TIMEOUT_MS = 500;
/**
 * A node that said it leaves is not PINGed by a rejoin for this long, ms: it answers while it
 * still tells its other contacts (LEAVE_NOTICE_TIMEOUT_MS for each silent one), then stops.
 */
export const LEFT_QUIET_MS = 10_000;
