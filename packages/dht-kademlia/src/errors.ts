// Typed errors of the DHT, each with a stable code.

export type DhtErrorCode =
  | 'ERR_TIMEOUT'
  | 'ERR_NO_PEERS'
  | 'ERR_INVALID_ID'
  | 'ERR_MALFORMED'
  | 'ERR_TOO_LARGE'
  | 'ERR_REJECTED'
  | 'ERR_STOPPED';

export class DhtError extends Error {
  readonly code: DhtErrorCode;
  constructor(code: DhtErrorCode, message: string) {
    super(message);
    this.name = 'DhtError';
    this.code = code;
  }
}

/** No bootstrap node answered; `silent`: none refused either, each only timed out. */
export class NoPeersError extends DhtError {
  constructor(
    message: string,
    readonly silent: boolean,
  ) {
    super('ERR_NO_PEERS', message);
  }
}

/** A request got no reply in time (or its peer is gone). */
export class TimeoutError extends DhtError {
  constructor(message = 'request timed out') {
    super('ERR_TIMEOUT', message);
    this.name = 'TimeoutError';
  }
}

/** Bytes that do not decode as a DHT message. */
export class MalformedMessageError extends DhtError {
  constructor(message: string) {
    super('ERR_MALFORMED', message);
    this.name = 'MalformedMessageError';
  }
}
