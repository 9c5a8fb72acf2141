// The node's log: pino on stderr, human-readable when stderr is a terminal, JSON lines otherwise
// (pino-pretty is loaded only for a terminal).

import {
  type DestinationStream,
  type Logger as PinoLogger,
  pino,
  destination as pinoDestination,
} from 'pino';
import type { LogLevel } from './config/node-config.js';

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
  return pino({ level, base: { pid: process.pid } }, destination);
}
