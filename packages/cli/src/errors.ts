// Errors the CLI shows a user: each has a stable code and a message that says what went wrong
// and what to do, printed as one line.

export type CliErrorCode =
  | 'ERR_USAGE'
  | 'ERR_CONFIG'
  | 'ERR_PORT_IN_USE'
  | 'ERR_UNREACHABLE'
  | 'ERR_DATA_DIR_LOCKED'
  | 'ERR_NOT_RUNNING'
  | 'ERR_CONTROL'
  | 'ERR_NOT_FOUND'
  | 'ERR_CA'
  | 'ERR_DEMO';

export class CliError extends Error {
  readonly code: CliErrorCode;
  constructor(code: CliErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CliError';
    this.code = code;
  }
}

/** Maps any error (ours, the overlay's, a socket's) to the code and one-line message shown. */
export function describeError(err: unknown): { code: string; message: string } {
  const e = err as { code?: unknown; message?: unknown };
  const code = typeof e?.code === 'string' ? e.code : 'ERR';
  const message = typeof e?.message === 'string' ? e.message : String(err);
  return { code, message: message.replace(/\s*\n\s*/g, '; ') };
}
