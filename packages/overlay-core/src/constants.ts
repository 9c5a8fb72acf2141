// Every tunable number of the overlay layer, with its default.

/** Wire format version this code speaks. */
export const WIRE_VERSION = 1;
/** Hops an overlay message may still travel. */
export const DEFAULT_TTL = 32;
/** Leading zero bits SHA-256(node-ID) must have: ~2^10 key generations, about 50 ms here. */
export const DEFAULT_PUZZLE_BITS = 10;
/** Messages older or newer than this (by the sender's clock) are refused as replays. */
export const REPLAY_WINDOW_MS = 60_000;

/** Kind IDs, as in RELOAD's registry spirit: small integers on the wire. */
export const KIND_SIP_REGISTRATION = 1;
export const KIND_NAME_CLAIM = 2;
export const KIND_NODE_INFO = 3;

/**
 * Contacts per routing-table bucket when the overlay's replication factor (dht.k) is smaller:
 * an office overlay of up to about this many nodes that stores each record on 3 of them still
 * has every node know every other, so a registration is stored on its 3 holders at once (3
 * STOREs) instead of after a lookup (measured, 10 nodes, k = 3: 6.1 requests a new user
 * before, 2.6 after). A local choice, not part of the overlay configuration.
 */
export const MIN_BUCKET_SIZE = 20;

/** Default SIP domain of a new overlay. */
export const DEFAULT_DOMAIN = 'peerbx.local';
export const DEFAULT_OVERLAY_NAME = 'peerbx';

/**
 * How often a node checks its upkeep: the nodes holding its records and those closest to the
 * records it holds (a record one of them held is stored again when it stopped answering), and
 * stores that missed a target (tried again).
 */
export const DEFAULT_MAINTENANCE_INTERVAL_MS = 60_000;
/**
 * Records stored everywhere are stored again (by their publisher) or replicated (by a holder,
 * when nobody refreshed them) every this many maintenance periods: an hour by default, as in
 * Kademlia. Every period instead, a node that published 8,000 registrations re-stored 133 a
 * second, as much overlay work as it could do at all.
 */
export const REPUBLISH_PERIODS = 60;
/** Lifetime of a NODE-INFO record; a node stores a fresh one every half lifetime. */
export const NODE_INFO_LIFETIME_MS = 10 * 60_000;
/** Lifetime of an open-mode name claim unless refreshed. */
export const NAME_CLAIM_LIFETIME_MS = 24 * 60 * 60_000;

/**
 * The most keys records one other node wrote may have brought to a node's store: a quarter of
 * what a store holds (100,000 keys), so that one member cannot fill it (StorerShares).
 */
export const MAX_KEYS_PER_STORER = 25_000;
