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

export async function createLogger(level: LogLevel): Promise<PinoLogger> {
  let destination: DestinationStream = pinoDestination({ dest: 2, sync: true });
  if (process.stderr.isTTY) {
    try {
      const { default: pretty } = await import('pino-pretty');
      destination = pretty({ destination: 2, colorize: true, sync: true });
    } catch {
      // No pino-pretty installed: JSON it is.
    }
  }
  return pino({ level, base: { pid: process.pid } }, rateLimited(destination));
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
