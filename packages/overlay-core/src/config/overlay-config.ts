// The overlay configuration document: what every node of one overlay must agree on. Its hash
// goes into every message, so a node with a different configuration is refused with a clear
// error. In enrolled mode the overlay authority signs it.

import { createHash } from 'node:crypto';
import { DEFAULT_ALPHA, DEFAULT_DISJOINT_PATHS, DEFAULT_K } from '@peerbx/dht-kademlia';
import {
  DEFAULT_DOMAIN,
  DEFAULT_MAINTENANCE_INTERVAL_MS,
  DEFAULT_OVERLAY_NAME,
  DEFAULT_PUZZLE_BITS,
  KIND_NAME_CLAIM,
  KIND_NODE_INFO,
  KIND_SIP_REGISTRATION,
} from '../constants.js';
import { OverlayError } from '../errors.js';
import { type KeyPair, sign, verify } from '../identity/keys.js';

export type EnrollmentMode = 'open' | 'enrolled';
export type DataModel = 'single' | 'array' | 'dictionary';
export type AccessPolicy = 'USER-MATCH' | 'NODE-MATCH' | 'USER-NODE-MATCH';

export interface KindDefinition {
  id: number;
  name: string;
  model: DataModel;
  policy: AccessPolicy;
  /** Largest encoded value accepted, in bytes. */
  maxValueBytes: number;
  /** Most entries (array items, dictionary keys) under one resource. */
  maxCount: number;
  /** Longest lifetime a writer may ask for. */
  maxLifetimeMs: number;
}

export interface DhtParameters {
  k: number;
  alpha: number;
  disjointPaths: number;
  maintenanceIntervalMs: number;
}

export interface OverlayConfig {
  /** Overlay name; part of the hash, so two overlays never mix. */
  name: string;
  /** The SIP domain of addresses-of-record in this overlay. */
  domain: string;
  enrollment: EnrollmentMode;
  /** Hex of the authority's raw Ed25519 public key (enrolled mode). */
  authorityKey?: string;
  puzzleBits: number;
  dht: DhtParameters;
  kinds: KindDefinition[];
  /** host:port of nodes to join through. Not part of the hash: each node has its own. */
  bootstrap: string[];
  /** Hex signature of the authority over the canonical document (enrolled mode). */
  signature?: string;
}

export const DEFAULT_KINDS: KindDefinition[] = [
  {
    id: KIND_SIP_REGISTRATION,
    name: 'SIP-REGISTRATION',
    model: 'dictionary',
    policy: 'USER-NODE-MATCH',
    maxValueBytes: 256,
    maxCount: 16,
    maxLifetimeMs: 24 * 3600_000,
  },
  {
    id: KIND_NAME_CLAIM,
    name: 'NAME-CLAIM',
    model: 'single',
    policy: 'USER-MATCH',
    maxValueBytes: 64,
    maxCount: 1,
    maxLifetimeMs: 7 * 24 * 3600_000,
  },
  {
    id: KIND_NODE_INFO,
    name: 'NODE-INFO',
    model: 'single',
    policy: 'NODE-MATCH',
    maxValueBytes: 256,
    maxCount: 1,
    maxLifetimeMs: 24 * 3600_000,
  },
];

export function defaultOverlayConfig(overrides: Partial<OverlayConfig> = {}): OverlayConfig {
  return validateOverlayConfig({
    name: DEFAULT_OVERLAY_NAME,
    domain: DEFAULT_DOMAIN,
    enrollment: 'open',
    puzzleBits: DEFAULT_PUZZLE_BITS,
    dht: {
      k: DEFAULT_K,
      alpha: DEFAULT_ALPHA,
      disjointPaths: DEFAULT_DISJOINT_PATHS,
      maintenanceIntervalMs: DEFAULT_MAINTENANCE_INTERVAL_MS,
    },
    kinds: DEFAULT_KINDS,
    bootstrap: [],
    ...overrides,
  });
}

const DOMAIN_RE = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/;

/** Checks every field; each failure is one line naming the field and what it must be. */
export function validateOverlayConfig(input: unknown): OverlayConfig {
  const bad = (field: string, what: string): never => {
    throw new OverlayError('ERR_CONFIG', `overlay configuration: "${field}" ${what}`);
  };
  if (typeof input !== 'object' || input === null) bad('(document)', 'must be an object');
  const c = input as Record<string, unknown>;
  if (typeof c.name !== 'string' || !/^[\w.-]{1,64}$/.test(c.name)) {
    bad('name', 'must be 1-64 letters, digits, "_", "." or "-"');
  }
  if (typeof c.domain !== 'string' || !DOMAIN_RE.test(c.domain)) {
    bad('domain', 'must be a lower-case DNS name such as peerbx.local');
  }
  if (c.enrollment !== 'open' && c.enrollment !== 'enrolled')
    bad('enrollment', 'must be "open" or "enrolled"');
  if (
    c.enrollment === 'enrolled' &&
    (typeof c.authorityKey !== 'string' || !/^[0-9a-f]{64}$/.test(c.authorityKey))
  ) {
    bad('authorityKey', 'must be the 64-hex-digit authority public key in enrolled mode');
  }
  if (
    !Number.isInteger(c.puzzleBits) ||
    (c.puzzleBits as number) < 0 ||
    (c.puzzleBits as number) > 24
  ) {
    bad('puzzleBits', 'must be an integer from 0 to 24');
  }
  const dht = c.dht as Record<string, unknown> | undefined;
  if (typeof dht !== 'object' || dht === null) bad('dht', 'must be an object');
  const posInt = (v: unknown, field: string, max: number) => {
    if (!Number.isInteger(v) || (v as number) < 1 || (v as number) > max)
      bad(field, `must be an integer from 1 to ${max}`);
  };
  posInt(dht?.k, 'dht.k', 64);
  posInt(dht?.alpha, 'dht.alpha', 16);
  posInt(dht?.disjointPaths, 'dht.disjointPaths', 16);
  posInt(dht?.maintenanceIntervalMs, 'dht.maintenanceIntervalMs', 24 * 3600_000);
  if (!Array.isArray(c.kinds) || c.kinds.length === 0) bad('kinds', 'must be a non-empty list');
  const ids = new Set<number>();
  for (const [i, k] of (c.kinds as Record<string, unknown>[]).entries()) {
    const f = `kinds[${i}]`;
    posInt(k.id, `${f}.id`, 65535);
    if (ids.has(k.id as number)) bad(`${f}.id`, 'is used twice');
    ids.add(k.id as number);
    if (typeof k.name !== 'string' || k.name.length === 0) bad(`${f}.name`, 'must be a name');
    if (!['single', 'array', 'dictionary'].includes(k.model as string))
      bad(`${f}.model`, 'must be single, array or dictionary');
    if (!['USER-MATCH', 'NODE-MATCH', 'USER-NODE-MATCH'].includes(k.policy as string)) {
      bad(`${f}.policy`, 'must be USER-MATCH, NODE-MATCH or USER-NODE-MATCH');
    }
    posInt(k.maxValueBytes, `${f}.maxValueBytes`, 900);
    posInt(k.maxCount, `${f}.maxCount`, 1024);
    posInt(k.maxLifetimeMs, `${f}.maxLifetimeMs`, 30 * 24 * 3600_000);
  }
  if (
    !Array.isArray(c.bootstrap) ||
    !c.bootstrap.every((b) => typeof b === 'string' && /^.+:\d{1,5}$/.test(b))
  ) {
    bad('bootstrap', 'must be a list of "host:port" strings');
  }
  return c as unknown as OverlayConfig;
}

/** The bytes that are hashed and signed: every field but bootstrap and signature, in a fixed order. */
export function canonicalConfigBytes(c: OverlayConfig): Uint8Array {
  const doc = {
    name: c.name,
    domain: c.domain,
    enrollment: c.enrollment,
    authorityKey: c.authorityKey ?? null,
    puzzleBits: c.puzzleBits,
    dht: {
      k: c.dht.k,
      alpha: c.dht.alpha,
      disjointPaths: c.dht.disjointPaths,
      maintenanceIntervalMs: c.dht.maintenanceIntervalMs,
    },
    kinds: [...c.kinds]
      .sort((a, b) => a.id - b.id)
      .map((k) => [k.id, k.name, k.model, k.policy, k.maxValueBytes, k.maxCount, k.maxLifetimeMs]),
  };
  return new TextEncoder().encode(JSON.stringify(doc));
}

/** SHA-256 of the canonical document: nodes with different hashes are in different overlays. */
export function configHash(c: OverlayConfig): Uint8Array {
  return new Uint8Array(createHash('sha256').update(canonicalConfigBytes(c)).digest());
}

export function signOverlayConfig(c: OverlayConfig, authority: KeyPair): OverlayConfig {
  const signed = { ...c, authorityKey: Buffer.from(authority.publicKey).toString('hex') };
  return {
    ...signed,
    signature: Buffer.from(sign(authority, canonicalConfigBytes(signed))).toString('hex'),
  };
}

/** In enrolled mode the document must carry a valid authority signature. */
export function checkConfigSignature(c: OverlayConfig): void {
  if (c.enrollment !== 'enrolled') return;
  const ok =
    typeof c.signature === 'string' &&
    verify(
      Buffer.from(c.authorityKey ?? '', 'hex'),
      canonicalConfigBytes(c),
      Buffer.from(c.signature, 'hex'),
    );
  if (!ok) {
    throw new OverlayError(
      'ERR_SIGNATURE',
      'overlay configuration is not signed by its authority key; get a signed copy from the overlay admin (peerbx ca)',
    );
  }
}

export function kindById(c: OverlayConfig, id: number): KindDefinition | undefined {
  return c.kinds.find((k) => k.id === id);
}
