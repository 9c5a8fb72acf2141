// Every default and tunable number of the command line.

import { homedir } from 'node:os';
import { join } from 'node:path';

export const DEFAULT_DATA_DIR = join(homedir(), '.peerbx');
export const DEFAULT_OVERLAY_LISTEN = '0.0.0.0:7400';
export const DEFAULT_SIP_LISTEN = '127.0.0.1:5060';
export const DEFAULT_WS_LISTEN = '127.0.0.1:5066';
export const DEFAULT_DOMAIN = 'peerbx.local';
export const DEFAULT_LOG_LEVEL = 'info';
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

/** Environment variable of each setting. */
export const ENV = {
  dataDir: 'PEERBX_DATA_DIR',
  overlay: 'PEERBX_OVERLAY',
  bootstrap: 'PEERBX_BOOTSTRAP',
  sip: 'PEERBX_SIP',
  ws: 'PEERBX_WS',
  domain: 'PEERBX_DOMAIN',
  logLevel: 'PEERBX_LOG_LEVEL',
  overlayConfig: 'PEERBX_OVERLAY_CONFIG',
  auth: 'PEERBX_AUTH',
  sipAliases: 'PEERBX_SIP_ALIASES',
  config: 'PEERBX_CONFIG',
} as const;

/** The control socket's file name inside the data directory. */
export const CONTROL_SOCKET = 'control.sock';
/** How long a control command waits for the node's answer. */
export const CONTROL_TIMEOUT_MS = 30_000;
/** How long a graceful leave may take before the node exits anyway. */
export const LEAVE_TIMEOUT_MS = 5_000;

/** Certificate lifetime `peerbx ca issue` uses unless told otherwise. */
export const DEFAULT_CERT_DAYS = 365;
export const CA_KEY_FILE = 'authority.key';
export const CA_CONFIG_FILE = 'overlay.json';
