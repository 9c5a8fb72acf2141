// The node's log: pino on stderr, human-readable when stderr is a terminal, JSON lines otherwise
// (pino-pretty is loaded only for a terminal). At most MAX_LOG_LINES_PER_S lines a second are
// written (errors ten times as many), the rest counted and reported in one line: a peer or phone that
// sends garbage on purpose must not make the node spend its time (stderr is written
// synchronously) and its disk on logging it.

import {
  type DestinationStream,
  type Logger as PinoLogger,
  pino,
  destination as pinoDestination,
} from 'pino';
import type { LogLevel } from './config/node-config.js';

export const MAX_LOG_LINES_PER_S = 100;
/** Errors past that limit: up to this many times as many again. */
const ERROR_LINES_FACTOR = 10;

/**
 * The node's logger at `level`. With `holdInfo`, info lines (and below) are dropped until
 * `started()` is called, so a start that fails is one line; from then on they are written. The
 * hold is on the destination, not the logger's level: the node's parts take child loggers
 * while it starts, and a pino child keeps the level it was made with.
 */
export async function createLogger(
  level: LogLevel,
  holdInfo = false,
): Promise<{ log: PinoLogger; started(): void }> {
  let destination: DestinationStream = pinoDestination({ dest: 2, sync: true });
  if (process.stderr.isTTY) {
    try {
      const { default: pretty } = await import('pino-pretty');
      destination = pretty({ destination: 2, colorize: true, sync: true });
    } catch {
      // No pino-pretty installed: JSON it is.
    }
  }
  const held = heldBelowWarn(rateLimited(destination), holdInfo);
  return { log: pino({ level, base: { pid: process.pid } }, held), started: held.release };
}

/** A destination that drops lines below warn while held, until `release()`. */
export function heldBelowWarn(
  destination: DestinationStream,
  held: boolean,
): DestinationStream & { release(): void } {
  return {
    write(line: string) {
      if (held && /"level":(10|20|30)[,}]/.test(line)) return;
      destination.write(line);
    },
    release() {
      held = false;
    },
  };
}

/** A destination that passes at most `perSecond` lines a second and reports what it dropped. */
export function rateLimited(
  destination: DestinationStream,
  perSecond = MAX_LOG_LINES_PER_S,
  now: () => number = Date.now,
): DestinationStream {
  let second = 0;
  let written = 0;
  let errors = 0;
  let dropped = 0;
  return {
    write(line: string) {
      const s = Math.floor(now() / 1000);
      if (s !== second) {
        if (dropped > 0) {
          destination.write(
            `${JSON.stringify({ level: 40, time: now(), pid: process.pid, msg: `${dropped} log lines dropped (over ${perSecond} a second)` })}\n`,
          );
        }
        second = s;
        written = 0;
        errors = 0;
        dropped = 0;
      }
      if (written < perSecond) {
        written++;
        destination.write(line);
      } else if (/"level":(50|60)[,}]/.test(line) && errors < perSecond * ERROR_LINES_FACTOR) {
        // Errors and fatal errors get a larger share: they are what a reader needs.
        errors++;
        destination.write(line);
      } else dropped++;
    },
  };
}
