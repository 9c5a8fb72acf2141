// Typed errors of the overlay, each with a stable code. Protocol errors carry the numeric
// overlay error code that goes back on the wire.

export type OverlayErrorCode =
  | 'ERR_CONFIG'
  | 'ERR_CONFIG_MISMATCH'
  | 'ERR_KEY_FILE'
  | 'ERR_PUZZLE'
  | 'ERR_SIGNATURE'
  | 'ERR_CERTIFICATE'
  | 'ERR_MALFORMED'
  | 'ERR_VERSION'
  | 'ERR_REPLAY'
  | 'ERR_FORBIDDEN'
  | 'ERR_LIMIT'
  /** The nodes that would hold a record have no room for it. */
  | 'ERR_FULL'
  | 'ERR_NOT_FOUND'
  | 'ERR_UNREACHABLE'
  | 'ERR_DATA_DIR_LOCKED'
  | 'ERR_STOPPED';

export class OverlayError extends Error {
  readonly code: OverlayErrorCode;
  constructor(code: OverlayErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'OverlayError';
    this.code = code;
  }
}
