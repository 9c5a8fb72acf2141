// The node's settings, built from defaults, a config file (JSON or YAML), environment variables
// and flags, in that order, and validated once: every failure is one line naming the setting.

import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { ListenAddress } from '@peerbx/overlay-core';
import { isMap, isScalar, parseDocument, parse as parseYaml } from 'yaml';
import {
  DEFAULT_DATA_DIR,
  DEFAULT_DOMAIN,
  DEFAULT_LOG_LEVEL,
  DEFAULT_OVERLAY_LISTEN,
  DEFAULT_SIP_LISTEN,
  DEFAULT_WS_LISTEN,
  ENV,
  LOG_LEVELS,
} from '../constants.js';
import { CliError } from '../errors.js';
import { parseHostPort } from './address.js';

export type LogLevel = (typeof LOG_LEVELS)[number];

export interface NodeSettings {
  dataDir: string;
  overlay: ListenAddress;
  bootstrap: string[];
  sip: ListenAddress;
  /** SIP over WebSocket; false: none. */
  ws: ListenAddress | false;
  domain: string;
  logLevel: LogLevel;
  /** Whether the domain came from a file, the environment or a flag (not the default). */
  domainGiven: boolean;
  /** An overlay configuration document to join (say the signed one from `peerbx ca init`). */
  overlayConfig?: string;
  /** Digest authentication of phones: auto (only when SIP listens beyond loopback), always, never. */
  auth: 'auto' | 'always' | 'never';
  /** Phone accounts (config file only): user → { password } or { ha1: { md5?, sha256? } }. */
  users: Record<string, { password: string } | { ha1: { md5?: string; sha256?: string } }>;
  /** Digest algorithms offered, in order of preference (config file only). */
  authAlgorithms: ('SHA-256' | 'MD5')[];
  /** Let phones reach SIP hosts outside the overlay through this node (config file only). */
  relayExternal: boolean;
  /**
   * Other HOST:PORTs phones reach this node's SIP at (a port Docker publishes, a router
   * forwards): a Route or Request-URI naming one names this node.
   */
  sipAliases: ListenAddress[];
  /** Seconds a call may ring before it is cancelled and answered 480 (config file only). */
  ringTimeout?: number;
  /** Web page origins besides this machine's whose phones may use the WebSocket (config file only). */
  wsOrigins: string[];
  /** Certificate and key files (PEM) for secure WebSocket, wss (config file only). */
  wsTls?: { cert: string; key: string };
}

/** Settings as given by one source, not yet checked. */
export interface RawSettings {
  dataDir?: unknown;
  overlay?: unknown;
  bootstrap?: unknown;
  sip?: unknown;
  ws?: unknown;
  domain?: unknown;
  logLevel?: unknown;
  overlayConfig?: unknown;
  auth?: unknown;
  users?: unknown;
  authAlgorithms?: unknown;
  relayExternal?: unknown;
  sipAliases?: unknown;
  ringTimeout?: unknown;
  wsOrigins?: unknown;
  wsTls?: unknown;
}

const FIELDS: Record<string, keyof RawSettings> = {
  dataDir: 'dataDir',
  'data-dir': 'dataDir',
  overlay: 'overlay',
  bootstrap: 'bootstrap',
  sip: 'sip',
  ws: 'ws',
  domain: 'domain',
  logLevel: 'logLevel',
  'log-level': 'logLevel',
  overlayConfig: 'overlayConfig',
  'overlay-config': 'overlayConfig',
  auth: 'auth',
  users: 'users',
  authAlgorithms: 'authAlgorithms',
  relayExternal: 'relayExternal',
  sipAliases: 'sipAliases',
  ringTimeout: 'ringTimeout',
  wsOrigins: 'wsOrigins',
  wsTls: 'wsTls',
};

export const DEFAULT_SETTINGS: RawSettings = {
  dataDir: DEFAULT_DATA_DIR,
  overlay: DEFAULT_OVERLAY_LISTEN,
  bootstrap: [],
  sip: DEFAULT_SIP_LISTEN,
  ws: DEFAULT_WS_LISTEN,
  domain: DEFAULT_DOMAIN,
  logLevel: DEFAULT_LOG_LEVEL,
  auth: 'auto',
  users: {},
  authAlgorithms: ['SHA-256', 'MD5'],
  relayExternal: false,
  sipAliases: [],
  wsOrigins: [],
};

/**
 * YAML reads an unquoted user name of digits (an extension, 0103) as a number: 0103 would
 * become user 103, and its phone's logins fail with nothing to say why. Such names must be
 * quoted.
 */
function numericUserNames(path: string, text: string): void {
  const users = parseDocument(text).get('users', true);
  if (!isMap(users)) return;
  for (const { key } of users.items) {
    if (isScalar(key) && typeof key.value !== 'string') {
      const written = key.source ?? String(key.value);
      throw new CliError(
        'ERR_CONFIG',
        `config file ${path}: user name ${written} reads as ${typeof key.value === 'number' ? 'a number' : `${JSON.stringify(key.value)}, not text,`} in YAML; quote it: "${written}":`,
      );
    }
  }
}

/** Reads a JSON or YAML config file; its paths are relative to the file's directory. */
export function readConfigFile(path: string): RawSettings {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new CliError(
      'ERR_CONFIG',
      code === 'ENOENT'
        ? `config file ${path} does not exist; check the path given to --config (or ${ENV.config})`
        : `cannot read config file ${path}: ${code ?? (err as Error).message}`,
    );
  }
  let doc: unknown;
  try {
    doc = /\.json$/i.test(path) ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new CliError(
      'ERR_CONFIG',
      `config file ${path} is not valid ${/\.json$/i.test(path) ? 'JSON' : 'YAML'}: ${(err as Error).message.split('\n')[0]?.replace(/:\s*$/, '')}`,
    );
  }
  if (!/\.json$/i.test(path)) numericUserNames(path, text);
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    throw new CliError('ERR_CONFIG', `config file ${path} must hold a map of settings`);
  }
  const out: RawSettings = {};
  for (const [key, value] of Object.entries(doc)) {
    const field = FIELDS[key];
    if (!field) {
      throw new CliError(
        'ERR_CONFIG',
        `config file ${path}: unknown setting "${key}" (known: ${Object.keys(FIELDS)
          .filter((k) => !k.includes('-'))
          .join(', ')})`,
      );
    }
    out[field] = value;
  }
  const base = resolve(path, '..');
  if (typeof out.dataDir === 'string') out.dataDir = resolve(base, expandHome(out.dataDir));
  if (typeof out.overlayConfig === 'string')
    out.overlayConfig = resolve(base, expandHome(out.overlayConfig));
  const tls = out.wsTls as Record<string, unknown> | undefined;
  if (tls && typeof tls === 'object' && typeof tls.cert === 'string' && typeof tls.key === 'string')
    out.wsTls = {
      cert: resolve(base, expandHome(tls.cert)),
      key: resolve(base, expandHome(tls.key)),
    };
  return out;
}

/** Settings from PEERBX_* variables; PEERBX_BOOTSTRAP is a comma- or space-separated list. */
export function settingsFromEnv(env: NodeJS.ProcessEnv): RawSettings {
  const out: RawSettings = {};
  const keys: Exclude<
    keyof RawSettings,
    'users' | 'authAlgorithms' | 'relayExternal' | 'ringTimeout' | 'wsOrigins' | 'wsTls'
  >[] = [
    'dataDir',
    'overlay',
    'bootstrap',
    'sip',
    'ws',
    'domain',
    'logLevel',
    'overlayConfig',
    'auth',
    'sipAliases',
  ];
  for (const key of keys) {
    const v = env[ENV[key]];
    if (v === undefined || v === '') continue;
    out[key] = key === 'bootstrap' || key === 'sipAliases' ? v.split(/[\s,]+/).filter(Boolean) : v;
  }
  return out;
}

/** Merges the sources (later wins) and checks every setting. */
export function resolveSettings(sources: { name: string; settings: RawSettings }[]): NodeSettings {
  const merged: RawSettings = {};
  const origin: Partial<Record<keyof RawSettings, string>> = {};
  for (const { name, settings } of sources) {
    for (const [k, v] of Object.entries(settings) as [keyof RawSettings, unknown][]) {
      if (v === undefined) continue;
      merged[k] = v;
      origin[k] = name;
    }
  }
  const bad = (key: keyof RawSettings, what: string): never => {
    const from = origin[key] ?? 'defaults';
    // A flag is a usage error (exit 2), named as typed; a variable is named too.
    if (from === 'flags') {
      const flag = key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
      throw new CliError('ERR_USAGE', `bad --${flag}: ${what}`);
    }
    const where =
      from === 'environment' && key in ENV
        ? `environment variable ${ENV[key as keyof typeof ENV]}`
        : from;
    throw new CliError('ERR_CONFIG', `bad setting "${key}" (from ${where}): ${what}`);
  };
  const str = (key: keyof RawSettings, what = 'must be a non-empty string'): string => {
    const v = merged[key];
    if (typeof v !== 'string' || v === '')
      bad(key, v === '' || v === undefined ? what : `${what}, not ${JSON.stringify(v)}`);
    return v as string;
  };
  const address = (key: keyof RawSettings, or = ''): ListenAddress => {
    const a = parseHostPort(str(key, 'must be HOST:PORT, such as 127.0.0.1:5060'));
    if (!a)
      bad(
        key,
        `"${String(merged[key])}" is not HOST:PORT (an IP address or host name, and a port 0-65535; 0 picks a free port)${or}`,
      );
    return a as ListenAddress;
  };
  let bootstrap = merged.bootstrap ?? [];
  if (typeof bootstrap === 'string') bootstrap = [bootstrap];
  if (!Array.isArray(bootstrap) || !bootstrap.every((b) => typeof b === 'string'))
    bad('bootstrap', 'must be a list of HOST:PORT');
  for (const b of bootstrap as string[]) {
    const a = parseHostPort(b);
    if (!a || a.port === 0) bad('bootstrap', `"${b}" is not HOST:PORT of a running node`);
  }
  let aliases = merged.sipAliases ?? [];
  if (typeof aliases === 'string') aliases = [aliases];
  if (!Array.isArray(aliases) || !aliases.every((x) => typeof x === 'string'))
    bad('sipAliases', 'must be a list of HOST:PORT, such as 127.0.0.1:5060');
  const sipAliases = (aliases as string[]).map((x) => {
    const a = parseHostPort(x);
    if (!a || a.port === 0 || a.host === '0.0.0.0' || a.host === '::')
      bad('sipAliases', `"${x}" is not HOST:PORT of an address phones reach this node at`);
    return a as ListenAddress;
  });
  const domain = str('domain').toLowerCase();
  if (!isDomainName(domain)) bad('domain', `"${domain}" is not a DNS name such as peerbx.local`);
  const logLevel = str('logLevel').toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel))
    bad('logLevel', `"${str('logLevel')}" is not one of ${LOG_LEVELS.join(', ')}`);
  const wsText = str('ws');
  const auth = str('auth').toLowerCase();
  if (auth !== 'auto' && auth !== 'always' && auth !== 'never')
    bad('auth', `"${auth}" is not auto, always or never`);
  const algorithms = merged.authAlgorithms ?? ['SHA-256', 'MD5'];
  if (
    !Array.isArray(algorithms) ||
    algorithms.length === 0 ||
    !algorithms.every((a) => a === 'SHA-256' || a === 'MD5')
  ) {
    bad('authAlgorithms', 'must be a non-empty list of SHA-256 and/or MD5, in order of preference');
  }
  if (merged.relayExternal !== undefined && typeof merged.relayExternal !== 'boolean') {
    bad('relayExternal', 'must be true or false');
  }
  const ring = merged.ringTimeout;
  if (
    ring !== undefined &&
    !(Number.isInteger(ring) && (ring as number) >= 5 && (ring as number) <= 180)
  ) {
    bad(
      'ringTimeout',
      'must be a whole number of seconds from 5 to 180 (leave it out to ring until Timer C, 3 minutes)',
    );
  }
  const wsOrigins = merged.wsOrigins ?? [];
  if (!Array.isArray(wsOrigins))
    bad('wsOrigins', 'must be a list of origins such as https://phone.example.com');
  for (const o of wsOrigins as unknown[]) {
    if (!isOrigin(o))
      bad(
        'wsOrigins',
        `${JSON.stringify(o)} is not an origin such as https://phone.example.com (or * for any page, null for a page opened from a file)`,
      );
  }
  const tls = merged.wsTls as Record<string, unknown> | undefined;
  if (
    tls !== undefined &&
    (typeof tls !== 'object' ||
      tls === null ||
      typeof tls.cert !== 'string' ||
      typeof tls.key !== 'string' ||
      Object.keys(tls).length !== 2)
  ) {
    bad('wsTls', 'must be { cert: FILE, key: FILE }, PEM files of the certificate and its key');
  }
  // A stored hash is the digest HA1 of "user:realm:password", the realm being the SIP domain;
  // one for each algorithm the node offers, else a phone that answers that challenge never
  // gets in (RFC 8760: it takes the first it supports).
  // Without a domain setting, an overlay configuration (--overlay-config, or the one in the
  // data directory) may name another: the realm is the overlay's domain, known only then.
  const domainSet = origin.domain !== undefined && origin.domain !== 'defaults';
  const realm = domainSet ? domain : 'DOMAIN';
  const realmNote = domainSet
    ? ''
    : `, DOMAIN being the overlay's SIP domain (${domain} unless its overlay configuration names another; peerbx status shows it)`;
  const checkHa1 = (name: string, ha1: Record<string, unknown>): void => {
    const fix = (alg: 'md5' | 'sha256') =>
      `hex of ${alg === 'md5' ? 'MD5' : 'SHA-256'}("${name}:${realm}:PASSWORD")${realmNote}`;
    for (const [alg, hex] of Object.entries(ha1)) {
      const length = alg === 'md5' ? 32 : alg === 'sha256' ? 64 : 0;
      if (length === 0)
        bad('users', `entry "${name}": ha1 takes md5 and sha256, not ${JSON.stringify(alg)}`);
      if (typeof hex !== 'string' || !new RegExp(`^[0-9a-fA-F]{${length}}$`).test(hex))
        bad('users', `entry "${name}": ha1.${alg} must be the ${fix(alg as 'md5' | 'sha256')}`);
    }
    for (const a of algorithms as string[]) {
      const alg = a === 'MD5' ? 'md5' : 'sha256';
      if (ha1[alg] === undefined)
        bad(
          'users',
          `entry "${name}": ha1 has no ${alg} while authAlgorithms offers ${a}; add ${alg}: the ${fix(alg)}, or leave ${a} out of authAlgorithms`,
        );
    }
  };
  const users = merged.users ?? {};
  if (typeof users !== 'object' || users === null || Array.isArray(users))
    bad('users', 'must be a map of user name → { password }');
  for (const [name, cred] of Object.entries(users as Record<string, unknown>)) {
    const c = cred as Record<string, unknown> | null;
    const password = c !== null && typeof c === 'object' ? c.password : undefined;
    if (typeof password === 'number' || typeof password === 'boolean') {
      bad('users', `entry "${name}": the password must be text; quote it ("${password}")`);
    }
    const ok =
      c !== null &&
      typeof c === 'object' &&
      ((typeof c.password === 'string' && c.password !== '') ||
        (typeof c.ha1 === 'object' && c.ha1 !== null));
    if (!/^[a-zA-Z0-9._~+-]{1,64}$/.test(name) || !ok) {
      bad(
        'users',
        `entry "${name}" must be a user name with { password: "..." } or { ha1: { md5, sha256 } }`,
      );
    }
    // A misspelt key ("pasword") would otherwise leave an account other than meant.
    const extra = Object.keys(c as object).filter((k) => k !== 'password' && k !== 'ha1');
    if (extra.length > 0) {
      bad(
        'users',
        `entry "${name}" takes password or ha1, not ${extra.map((k) => JSON.stringify(k)).join(', ')}`,
      );
    }
    if (c?.password === undefined) checkHa1(name, c?.ha1 as Record<string, unknown>);
  }
  const settings: NodeSettings = {
    dataDir: resolve(expandHome(str('dataDir'))),
    overlay: address('overlay'),
    bootstrap: bootstrap as string[],
    sip: address('sip'),
    ws: /^(off|none|false)$/i.test(wsText) ? false : address('ws', ', or off'),
    domain,
    logLevel: logLevel as LogLevel,
    domainGiven: domainSet,
    auth: auth as NodeSettings['auth'],
    users: users as NodeSettings['users'],
    authAlgorithms: algorithms as NodeSettings['authAlgorithms'],
    relayExternal: merged.relayExternal === true,
    sipAliases,
    wsOrigins: wsOrigins as string[],
  };
  if (tls) settings.wsTls = { cert: tls.cert as string, key: tls.key as string };
  if (ring !== undefined) settings.ringTimeout = ring as number;
  if (merged.overlayConfig !== undefined)
    settings.overlayConfig = resolve(expandHome(str('overlayConfig')));
  return settings;
}

/** Builds the settings of a command from all four sources. */
export function loadSettings(flags: RawSettings & { config?: string }): NodeSettings {
  return resolveSettings(settingSources(flags, (s) => s));
}

/**
 * The data directory alone, for the commands that only talk to a running node (status, ...):
 * a setting only `start` reads (PEERBX_SIP in the environment, say) is none of their business.
 */
export function loadDataDir(flags: { dataDir?: string | undefined; config?: string }): string {
  const only = (s: RawSettings): RawSettings =>
    s.dataDir === undefined ? {} : { dataDir: s.dataDir };
  // Every other setting from the defaults, which always pass.
  const [, ...given] = settingSources(flags, only);
  return resolveSettings([{ name: 'defaults', settings: DEFAULT_SETTINGS }, ...given]).dataDir;
}

function settingSources(
  flags: RawSettings & { config?: string },
  keep: (s: RawSettings) => RawSettings,
): { name: string; settings: RawSettings }[] {
  const env = settingsFromEnv(process.env);
  const configPath = flags.config ?? process.env[ENV.config];
  const file = configPath ? readConfigFile(resolve(expandHome(configPath))) : {};
  const { config: _ignored, ...flagSettings } = flags;
  return [
    { name: 'defaults', settings: keep(DEFAULT_SETTINGS) },
    { name: `config file ${configPath}`, settings: keep(file) },
    { name: 'environment', settings: keep(env) },
    { name: 'flags', settings: keep(flagSettings) },
  ];
}

/** A DNS name such as peerbx.local (lower case): what a SIP domain must be. */
export function isDomainName(domain: string): boolean {
  return /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/.test(domain);
}

export function expandHome(p: string): string {
  return p === '~' || p.startsWith('~/') ? `${process.env.HOME ?? ''}${p.slice(1)}` : p;
}

/** An origin as a browser sends it (scheme://host[:port], http or https), `*` or `null`. */
function isOrigin(value: unknown): boolean {
  if (value === '*' || value === 'null') return true;
  if (typeof value !== 'string') return false;
  try {
    const url = new URL(value);
    return (
      (url.protocol === 'http:' || url.protocol === 'https:') &&
      !url.username &&
      url.pathname === '/' &&
      !url.search &&
      !url.hash
    );
  } catch {
    return false;
  }
}
