// `peerbx ca`: the overlay authority of an enrolled (office) overlay. `ca init` makes the
// authority key (kept in its own directory, 0600, ideally offline) and the signed overlay
// configuration every node joins with; `ca issue` binds a user name to a user key.

import { chmodSync, existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  dataDirPaths,
  defaultOverlayConfig,
  encodeCertificate,
  ensureDataDir,
  generateKeyPair,
  issueCertificate,
  isUserName,
  loadUserKey,
  readKeyFile,
  readSavedConfig,
  signOverlayConfig,
  USER_NAME_RULE,
  userCertificatePath,
  writeFileDurably,
  writeKeyFile,
} from '@peerbx/overlay-core';
import { CA_CONFIG_FILE, CA_KEY_FILE } from '../constants.js';
import { CliError, describeError } from '../errors.js';

export interface CaInitOptions {
  caDir: string;
  domain: string;
  name?: string;
}

export interface CaInitResult {
  caDir: string;
  keyFile: string;
  configFile: string;
  authorityKey: string;
  domain: string;
}

export function caInit(o: CaInitOptions): CaInitResult {
  const caDir = resolve(o.caDir);
  const keyFile = join(caDir, CA_KEY_FILE);
  const configFile = join(caDir, CA_CONFIG_FILE);
  if (existsSync(keyFile))
    throw new CliError(
      'ERR_CA',
      `${keyFile} already exists: this directory already holds an authority; use another --ca-dir`,
    );
  mkdirSync(caDir, { recursive: true, mode: 0o700 });
  chmodSync(caDir, 0o700);
  const authority = generateKeyPair();
  writeKeyFile(keyFile, authority);
  const config = signOverlayConfig(
    guard(() =>
      defaultOverlayConfig({
        enrollment: 'enrolled',
        domain: o.domain,
        authorityKey: Buffer.from(authority.publicKey).toString('hex'),
        ...(o.name ? { name: o.name } : {}),
      }),
    ),
    authority,
  );
  writeFileDurably(configFile, `${JSON.stringify(config, null, 2)}\n`, 0o644);
  return {
    caDir,
    keyFile,
    configFile,
    authorityKey: config.authorityKey ?? '',
    domain: config.domain,
  };
}

export interface CaIssueOptions {
  caDir: string;
  user: string;
  days: number;
  /** The node data directory that holds (or gets) the user's key; the cert is written there. */
  dataDir?: string;
  /** Or: the user's public key (64 hex digits) and where to write the certificate. */
  publicKey?: string;
  out?: string;
}

export interface CaIssueResult {
  user: string;
  certFile: string;
  notAfter: string;
  /** True when the file still has to be copied into the node's users/ directory. */
  copyNeeded: boolean;
}

export function caIssue(o: CaIssueOptions): CaIssueResult {
  if (!isUserName(o.user))
    throw new CliError('ERR_USAGE', `user name "${o.user}" must be ${USER_NAME_RULE}`);
  if (!Number.isFinite(o.days) || o.days <= 0)
    throw new CliError(
      'ERR_USAGE',
      `--days must be a positive number${Number.isNaN(o.days) ? '' : `, not ${o.days}`}`,
    );
  const keyFile = join(resolve(o.caDir), CA_KEY_FILE);
  if (!existsSync(keyFile))
    throw new CliError(
      'ERR_CA',
      `no authority key at ${keyFile}; create one with \`peerbx ca init --ca-dir ${o.caDir}\``,
    );
  const authority = guard(() => readKeyFile(keyFile));
  let userKey: Uint8Array;
  let certFile: string;
  let copyNeeded = false;
  if (o.publicKey !== undefined) {
    if (!/^[0-9a-fA-F]{64}$/.test(o.publicKey))
      throw new CliError('ERR_USAGE', '--public-key must be the 64 hex digits of an Ed25519 key');
    userKey = new Uint8Array(Buffer.from(o.publicKey, 'hex'));
    certFile = resolve(o.out ?? `${o.user}.cert`);
    copyNeeded = true;
  } else {
    if (!o.dataDir) throw new CliError('ERR_USAGE', 'ca issue needs --data-dir or --public-key');
    const root = resolve(o.dataDir);
    // A certificate is of use only in a node of this authority's overlay: say so now, not as
    // a 403 to the user's phone later.
    const saved = guard(() => readSavedConfig(dataDirPaths(root))) as
      | { authorityKey?: unknown }
      | undefined;
    const config = join(resolve(o.caDir), CA_CONFIG_FILE);
    if (saved === undefined) {
      throw new CliError(
        'ERR_USAGE',
        `${root} is not a node's data directory yet; make it one first: peerbx init --overlay-config ${config} --data-dir ${o.dataDir}`,
      );
    }
    if (saved.authorityKey !== Buffer.from(authority.publicKey).toString('hex')) {
      throw new CliError(
        'ERR_USAGE',
        `the node in ${root} is of ${typeof saved.authorityKey === 'string' ? "another authority's overlay" : 'an open overlay'}, not of the authority in ${resolve(o.caDir)} (${config})`,
      );
    }
    const paths = guard(() => ensureDataDir(root));
    userKey = guard(() => loadUserKey(paths, o.user)).publicKey;
    certFile = o.out ? resolve(o.out) : userCertificatePath(paths, o.user);
    copyNeeded = o.out !== undefined;
  }
  const cert = guard(() =>
    issueCertificate(authority, o.user, userKey, Math.round(o.days * 86_400_000), Date.now()),
  );
  writeFileDurably(certFile, encodeCertificate(cert), 0o644);
  return { user: o.user, certFile, notAfter: new Date(cert.notAfter).toISOString(), copyNeeded };
}

function guard<T>(f: () => T): T {
  try {
    return f();
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw new CliError('ERR_CA', describeError(err).message, { cause: err });
  }
}
