// Every tunable number and protocol constant of the SIP adapter.

/** RFC 3261 §8.1.1.7: a branch starting with this cookie was made by an RFC 3261 element. */
export const BRANCH_MAGIC_COOKIE = 'z9hG4bK';

/** RFC 3261 §8.1.1.6: the Max-Forwards a UAC or proxy starts from. */
export const DEFAULT_MAX_FORWARDS = 70;

/** RFC 3261 §20.22: Max-Forwards is an integer in 0..255. */
export const MAX_MAX_FORWARDS = 255;

/** RFC 3261 §8.1.1.5: the CSeq sequence number MUST be less than 2**31. */
export const MAX_CSEQ = 2 ** 31 - 1;

/** RFC 3261 §20.19 / §10.2.1.1: Expires and expires= are 32-bit; larger values are clamped. */
export const MAX_EXPIRES = 2 ** 32 - 1;

/** The largest message we parse: well above any UDP datagram, bounds a TCP/WS frame. */
export const MAX_MESSAGE_BYTES = 65_535;

/** The only SIP version this adapter speaks; others get 505 from the layer above. */
export const SIP_VERSION = 'SIP/2.0';

/** Random bytes in a generated branch, tag and Call-ID (before encoding). */
export const BRANCH_RANDOM_BYTES = 12;
export const TAG_RANDOM_BYTES = 8;
export const CALL_ID_RANDOM_BYTES = 16;
