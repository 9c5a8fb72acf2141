// Runs a full PeerBX node in this process: the overlay node, the SIP node on top of it, and the
// control endpoint. Turns the lower layers' failures into the CLI's one-line errors.

import { createSocket } from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { createSecureContext } from 'node:tls';
import { idFromHex, idToHex } from '@peerbx/dht-kademlia';
import {
  dataDirDamage,
  dataDirPaths,
  isUserName,
  KIND_NAME_CLAIM,
  KIND_SIP_REGISTRATION,
  type ListenAddress,
  type Logger,
  OverlayError,
  OverlayNode,
  resourceId,
  SOFTWARE_VERSION,
  USER_NAME_RULE,
} from '@peerbx/overlay-core';
import {
  authRequired,
  decodeRegistrationValue,
  FileBindingsStore,
  loadRouteSecret,
  SipNode,
  type SipTransportStats,
} from '@peerbx/sip-adapter';
import { formatHostPort, parseHostPort } from '../config/address.js';
import type { NodeSettings } from '../config/node-config.js';
import {
  type ControlRequest,
  controlSocketPath,
  type LookupView,
  type PeerView,
  type PingView,
  type StatusView,
  type TraceView,
} from '../control/protocol.js';
import { ControlServer } from '../control/server.js';
import { CliError, describeError } from '../errors.js';
import { prepareDataDir } from './data-dir.js';

export interface RunningNode {
  overlay: OverlayNode;
  sip: SipNode;
  control: ControlServer;
  /** The line printed on stdout when ready. */
  readyLine: string;
  /** Leaves the overlay (gracefully unless told otherwise) and closes everything. */
  stop(graceful?: boolean): Promise<void>;
}

export async function startNode(settings: NodeSettings, log: Logger): Promise<RunningNode> {
  const sipHosts = [settings.sip.host, ...(settings.ws ? [settings.ws.host] : [])];
  // Before the login check below: a mistyped host is that, not a reason to configure users.
  for (const [flag, at] of [
    ['--sip', settings.sip],
    ['--ws', settings.ws],
  ] as const) {
    if (at) await assertLocalHost(flag, at);
  }
  if (authRequired(settings.auth, sipHosts) && Object.keys(settings.users).length === 0) {
    // No phone could register: refused here rather than found out from phones failing.
    throw new CliError(
      'ERR_CONFIG',
      settings.auth === 'always'
        ? 'auth is "always" but no users are configured, so no phone could register; add accounts under "users" in the config file (--config), or set auth to never or auto'
        : `SIP listens beyond loopback (${[...new Set(sipHosts)].join(', ')}), so phones must log in, but no users are configured; add accounts under "users" in the config file (--config), or start with --auth never`,
    );
  }
  // Said before prepareDataDir makes a new node key in place of a lost one.
  for (const what of dataDirDamage(dataDirPaths(settings.dataDir))) {
    log.warn({ dataDir: settings.dataDir }, what);
  }
  const { paths, config } = prepareDataDir(settings, settings.domainGiven);
  const bootstrap = await resolveBootstrap(
    settings.bootstrap.length > 0 ? settings.bootstrap : config.bootstrap,
  );
  const overlayAt = settings.overlay;
  let overlay: OverlayNode;
  try {
    overlay = await OverlayNode.start({
      dataDir: paths.root,
      config,
      udp: overlayAt,
      // Links listen on the overlay's TCP port when it is fixed; a free one otherwise.
      stream: { host: overlayAt.host, port: overlayAt.port },
      bootstrap,
      logger: log,
    });
  } catch (err) {
    throw overlayStartError(err, overlayAt, bootstrap);
  }
  let sip: SipNode;
  let control: ControlServer;
  try {
    sip = await SipNode.start({
      overlay,
      sip: settings.sip,
      ws: settings.ws && {
        ...settings.ws,
        origins: settings.wsOrigins,
        ...(settings.wsTls ? { tls: readTls(settings.wsTls) } : {}),
      },
      domain: config.domain,
      logger: log,
      auth: settings.auth,
      users: settings.users,
      authAlgorithms: settings.authAlgorithms,
      relayExternal: settings.relayExternal,
      aliases: settings.sipAliases,
      ...(settings.ringTimeout === undefined ? {} : { ringTimeoutMs: settings.ringTimeout * 1000 }),
      // Record-Route tokens survive a restart too: calls in progress go on unchallenged.
      routeSecret: loadRouteSecret(paths.root),
      // Bindings survive a restart: phones need not re-register to be reachable again.
      bindingsStore: new FileBindingsStore({ dataDir: paths.root, logger: log }),
    }).catch((err: unknown) => {
      throw sipStartError(err, settings);
    });
    const startedAt = Date.now();
    control = await ControlServer.listen(
      controlSocketPath(paths.root),
      (req) => controlOp(req, overlay, sip, paths.root, startedAt),
      log,
    ).catch((err: unknown) => {
      void sip.close();
      throw new CliError(
        'ERR_CONTROL',
        `cannot open the control socket in ${paths.root}: ${(err as Error).message}`,
      );
    });
  } catch (err) {
    await overlay.close();
    throw err;
  }
  const a = sip.addresses;
  const readyLine = [
    'peerbx ready',
    `node=${idToHex(overlay.nodeId)}`,
    `overlay=${overlay.udpAddress}`,
    `sip=${formatHostPort({ host: a.udp.address, port: a.udp.port })}`,
    // A secure WebSocket says so: a browser page must use wss:// there.
    `${a.ws && sip.wsSecure ? 'wss' : 'ws'}=${a.ws ? formatHostPort({ host: a.ws.address, port: a.ws.port }) : 'off'}`,
  ].join(' ');
  let stopping: Promise<void> | undefined;
  return {
    overlay,
    sip,
    control,
    readyLine,
    stop(graceful = true) {
      stopping ??= (async () => {
        await control.close().catch(() => undefined);
        await sip.close().catch(() => undefined);
        if (graceful) await overlay.leave();
        else await overlay.close();
      })();
      return stopping;
    },
  };
}

/**
 * A listening address's host must name this machine: tried with a UDP socket on a free port
 * (so whatever the system binds passes: any spelling of an address, a wildcard, a non-local
 * bind it allows), and a name must resolve.
 */
async function assertLocalHost(flag: string, at: ListenAddress): Promise<void> {
  const host = at.host.replace(/^\[|\]$/g, '');
  const socket = createSocket(isIP(host) === 6 ? 'udp6' : 'udp4');
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(0, host, () => resolve());
    });
  } catch (err) {
    const { code } = describeError(err);
    if (/^(ENOTFOUND|EAI_AGAIN|EAI_NONAME|EAI_NODATA|EAI_FAIL)$/.test(code)) {
      throw new CliError(
        'ERR_CONFIG',
        `${flag} host "${at.host}" does not resolve (${code}); give an address of this machine, 127.0.0.1, or 0.0.0.0 for all`,
        { cause: err },
      );
    }
    if (code === 'EADDRNOTAVAIL') {
      throw new CliError(
        'ERR_CONFIG',
        `${flag} ${formatHostPort(at)} is not an address of this machine; give one of its addresses, 127.0.0.1, or 0.0.0.0 for all`,
        { cause: err },
      );
    }
    // Anything else is the listener's own bind to report.
  } finally {
    try {
      socket.close();
    } catch {
      // Not bound: nothing to close.
    }
  }
}

/** Bootstrap HOST:PORTs with host names resolved: the overlay dials IP addresses. */
function resolveBootstrap(entries: readonly string[]): Promise<string[]> {
  return Promise.all(
    entries.map(async (entry) => {
      const at = parseHostPort(entry);
      if (!at || isIP(at.host) !== 0) return entry;
      try {
        const { address } = await lookup(at.host);
        return formatHostPort({ host: address, port: at.port });
      } catch (err) {
        throw new CliError(
          'ERR_UNREACHABLE',
          `bootstrap host "${at.host}" does not resolve (${describeError(err).code}); give --bootstrap the IP:PORT of a running node, or a name this machine resolves`,
          { cause: err },
        );
      }
    }),
  );
}

function overlayStartError(err: unknown, at: ListenAddress, bootstrap: string[]): Error {
  if (/EADDRNOTAVAIL/.test(describeError(err).message)) {
    return new CliError(
      'ERR_CONFIG',
      `overlay address ${formatHostPort(at)} is not an address of this machine; give --overlay one of its addresses, or 0.0.0.0 for all`,
      { cause: err },
    );
  }
  if (err instanceof OverlayError) {
    if (/EADDRINUSE/.test(err.message)) {
      const proto = /TCP/.test(err.message) ? 'TCP' : 'UDP';
      return new CliError(
        'ERR_PORT_IN_USE',
        `overlay address ${formatHostPort(at)} (${proto}) is already in use, probably by another node; pick another with --overlay HOST:PORT (port 0 picks a free one)`,
        { cause: err },
      );
    }
    if (err.code === 'ERR_UNREACHABLE' && /configuration mismatch/.test(err.message))
      return new CliError(
        'ERR_CONFIG',
        `the node at ${bootstrap.join(', ')} is in an overlay with another configuration (its name, domain, enrolment, authority key, puzzle, DHT settings or kinds differ from this node's); join with that overlay's own: copy overlay.json from that node's data directory and start with --overlay-config FILE, without --domain`,
        { cause: err },
      );
    if (err.code === 'ERR_UNREACHABLE' && /claims this node id/.test(err.message))
      return new CliError(
        'ERR_CONFIG',
        `--bootstrap ${bootstrap.join(', ')} is this node's own overlay address; give the overlay HOST:PORT of another running node, or no --bootstrap to found an overlay`,
        { cause: err },
      );
    if (err.code === 'ERR_UNREACHABLE')
      return new CliError(
        'ERR_UNREACHABLE',
        `no bootstrap node answered at ${bootstrap.join(', ')} (${err.message.replace(/^.*\): /, '')}); check that --bootstrap names the overlay address (HOST:PORT) of a running node and that UDP gets through`,
        { cause: err },
      );
    if (err.code === 'ERR_DATA_DIR_LOCKED')
      return new CliError('ERR_DATA_DIR_LOCKED', err.message, { cause: err });
  }
  if (err instanceof CliError) return err;
  const { message } = describeError(err);
  return new CliError('ERR_CONFIG', message, { cause: err });
}

function sipStartError(err: unknown, settings: NodeSettings): Error {
  const { message } = describeError(err);
  if (/EADDRNOTAVAIL/.test(message)) {
    return new CliError(
      'ERR_CONFIG',
      `a SIP address (--sip ${formatHostPort(settings.sip)}${settings.ws ? `, --ws ${formatHostPort(settings.ws)}` : ''}) is not an address of this machine; give one of its addresses, 127.0.0.1, or 0.0.0.0 for all`,
      { cause: err },
    );
  }
  if (/EADDRINUSE/.test(message)) {
    const ws = settings.ws;
    const isWs =
      /WebSocket|\bWS\b/i.test(message) ||
      (ws &&
        ws.port !== 0 &&
        message.includes(`:${ws.port}`) &&
        !message.includes(`:${settings.sip.port}`));
    const at = isWs && ws ? ws : settings.sip;
    return new CliError(
      'ERR_PORT_IN_USE',
      isWs
        ? `SIP WebSocket address ${formatHostPort(at)} is already in use; pick another with --ws HOST:PORT (port 0 picks a free one)`
        : `SIP address ${formatHostPort(at)} (UDP/TCP) is already in use, perhaps by another SIP server or node; pick another with --sip HOST:PORT (port 0 picks a free one)`,
      { cause: err },
    );
  }
  return new CliError('ERR_CONFIG', message, { cause: err });
}

/** Normalises "alice", "sip:alice@dom" or "alice@dom" to the overlay resource "alice@dom". */
export function aorResource(aor: string, domain: string): string {
  const bare = bareAor(aor);
  const at = bare.indexOf('@');
  // A user part is case-sensitive (RFC 3261 §19.1.4), its host not.
  const user = at < 0 ? bare : bare.slice(0, at);
  const host = at < 0 ? domain : bare.slice(at + 1).toLowerCase();
  if (!isUserName(user)) {
    throw new CliError(
      'ERR_USAGE',
      `"${user.length > 80 ? `${user.slice(0, 80)}...` : user}" is not a user name: the registrar takes ${USER_NAME_RULE}`,
    );
  }
  // The names phones on this machine use for the domain (as the registrar takes them).
  const bareHost = host.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1');
  if (bareHost === domain || bareHost === 'localhost' || isIP(bareHost) !== 0)
    return `${user}@${domain}`;
  throw new CliError(
    'ERR_USAGE',
    `${bare} is not of this overlay, whose domain is ${domain}; look up ${user}@${domain}`,
  );
}

/** True for alice, alice@domain or sip:alice@domain: a user, and one @ with a host at most. */
export function isAor(aor: string): boolean {
  return /^[^@\s<>]+(?:@[^@\s<>]+)?$/.test(bareAor(aor));
}

function bareAor(aor: string): string {
  return aor
    .trim()
    .replace(/^sips?:/i, '')
    .replace(/[;>].*$/, '');
}

async function controlOp(
  req: ControlRequest,
  overlay: OverlayNode,
  sip: SipNode,
  dataDir: string,
  startedAt: number,
): Promise<unknown> {
  const now = Date.now();
  switch (req.op) {
    case 'status': {
      const s = overlay.stats();
      const a = sip.addresses;
      const view: StatusView = {
        version: SOFTWARE_VERSION,
        pid: process.pid,
        uptimeS: Math.round((now - startedAt) / 1000),
        nodeId: s.nodeId,
        overlayName: overlay.config.name,
        enrollment: overlay.config.enrollment,
        domain: sip.domain,
        dataDir,
        overlay: s.udp,
        stream: s.stream,
        sip: {
          udp: formatHostPort({ host: a.udp.address, port: a.udp.port }),
          tcp: formatHostPort({ host: a.tcp.address, port: a.tcp.port }),
          ...(a.ws ? { ws: formatHostPort({ host: a.ws.address, port: a.ws.port }) } : {}),
          ...(a.ws && sip.wsSecure ? { wsTls: true } : {}),
        },
        routingTable: s.routingTable,
        records: s.records,
        links: s.links,
        ...registered(sip, now),
        registrationWrites: { done: sip.publisher.writes, ...sip.publisher.pending },
        dht: {
          lookups: s.messages.lookups,
          requestsOut: s.messages.requestsOut,
          requestFailures: s.messages.requestFailures,
          requestsIn: Object.values(s.messages.requestsIn).reduce((a, n) => a + n, 0),
          handOvers: s.messages.handOvers,
          keysHandedOver: s.messages.keysHandedOver,
          staleRepaired: s.messages.staleRepaired,
          keysReplicated: s.messages.keysReplicated,
        },
        current: current(sip),
        proxy: {
          forwarded: sip.proxy.stats.forwarded,
          acksForwarded: sip.proxy.stats.acksForwarded,
          locationRechecks: sip.proxy.stats.locationRechecks,
          lateBranches: sip.proxy.stats.lateBranches,
        },
        refused: {
          overlay: {
            malformed: s.rejections.malformed,
            // The codec's "malformed" are the datagrams the transport counts as malformed.
            byReason: Object.fromEntries(
              Object.entries(s.rejections.byReason).filter(
                ([reason, n]) => n > 0 && reason !== 'malformed',
              ),
            ),
            unmatched: s.messages.unmatched,
            // A STORE refused as not-responsible is routine (routing tables differ a while).
            stores: Object.fromEntries(
              Object.entries(s.rejections.stores).filter(
                ([reason, n]) => (n ?? 0) > 0 && reason !== 'not-responsible',
              ),
            ) as Record<string, number>,
            contactsRefused: s.rejections.contactsRefused,
            fetchedDropped: s.rejections.fetchedDropped,
            contestedFetches: s.rejections.contestedFetches,
            claimsReplaced: s.rejections.claimsReplaced,
            claimsChecked: s.rejections.claimsChecked,
            claimChecksWaiting: s.rejections.claimChecksWaiting,
            clientRequestsMalformed: s.rejections.clientRequestsMalformed,
            links: {
              // Dials of ours that found nobody are not refusals.
              handshakesFailed: Object.fromEntries(
                Object.entries(overlay.links.stats.handshakesFailed).filter(
                  ([reason, n]) => n > 0 && reason !== 'unreachable',
                ),
              ),
              // Frames that did not decode after the handshake (those before it fail it).
              framesMalformed:
                overlay.links.stats.framesMalformed -
                overlay.links.stats.handshakesFailed.malformed,
              overLimit: overlay.links.stats.linksOverLimit,
            },
          },
          sip: {
            notSip: notSip(sip.transports.stats),
            badRequestsAnswered: sip.stats.badRequestsAnswered,
            malformedDropped: sip.stats.malformedDropped,
            versionRejected: sip.stats.versionRejected,
            strayResponsesDropped: sip.proxy.stats.strayResponsesDropped,
            registrarBusy: sip.publisher.busyRefusals,
            registrationsRefused: sip.registrar.refusedByOverlay,
            locatorBusy: sip.proxy.stats.lookupsBusy,
            overloaded: sip.overload.stats.refused,
            transactionsFull: sip.transactions.stats.refusedFull,
            logins: {
              failed: (sip.auth?.failures.wrong ?? 0) + (sip.auth?.failures['unknown-user'] ?? 0),
              throttled: sip.auth?.failures.locked ?? 0,
              asOtherUser: sip.stats.sentAsOther + sip.registrar.registeredAsOther,
            },
          },
        },
      };
      return view;
    }
    case 'peers': {
      const linked = new Set(overlay.links.links().map((l) => l.remoteNodeId));
      const peers: PeerView[] = [];
      const table = overlay.dht.table;
      for (let i = 0; i < table.bucketCount; i++) {
        for (const e of table.bucket(i).entries) {
          const id = idToHex(e.contact.id);
          peers.push({
            nodeId: id,
            address: e.contact.address,
            lastSeenS: Math.max(0, Math.round((now - e.lastSeen) / 1000)),
            failures: e.failures,
            link: linked.has(id),
          });
        }
      }
      return peers;
    }
    case 'lookup': {
      const aor = requireArg(req, 'an AOR such as alice or alice@peerbx.local');
      const resource = aorResource(aor, sip.domain);
      // Every kind: the name claim (open overlays) says which key owns the name.
      const records = await overlay.fetch(resource);
      const claim = records.find((r) => r.kind === KIND_NAME_CLAIM);
      const view: LookupView = {
        aor: `sip:${resource}`,
        resource,
        ...(claim ? { owner: Buffer.from(claim.value).toString('hex') } : {}),
        locations: [],
        local: [],
      };
      for (const r of records) {
        if (r.kind !== KIND_SIP_REGISTRATION || !r.dictionaryKey || r.value.length === 0) continue;
        try {
          const v = decodeRegistrationValue(r.value);
          if (v.expiresAt <= now || v.devices === 0) continue;
          const address = overlay.dht.table.get(r.dictionaryKey)?.address;
          view.locations.push({
            nodeId: idToHex(r.dictionaryKey),
            devices: v.devices,
            expiresInS: Math.round((v.expiresAt - now) / 1000),
            ...(idToHex(r.dictionaryKey) === idToHex(overlay.nodeId)
              ? { address: overlay.udpAddress }
              : address
                ? { address }
                : {}),
          });
        } catch {
          // A value this version cannot read: not shown.
        }
      }
      view.local = sip.bindings
        .lookup(view.aor, now)
        .map((b) => ({ uri: b.uri, expiresInS: Math.round((b.expiresAt - now) / 1000) }));
      return view;
    }
    case 'ping': {
      const id = parseNodeId(requireArg(req, 'a node-ID (64 hex digits)'));
      if (idToHex(id) === idToHex(overlay.nodeId))
        throw new CliError(
          'ERR_USAGE',
          `${idToHex(id)} is this node's own node-ID; \`peerbx peers\` lists the others`,
        );
      const r = await overlay.ping(id);
      const view: PingView = { nodeId: r.nodeId, address: r.address, rttMs: r.rttMs };
      return view;
    }
    case 'trace': {
      const target = requireArg(req, 'a node-ID (64 hex digits) or an AOR');
      const isNode = /^[0-9a-fA-F]{64}$/.test(target);
      const resource = isNode ? undefined : aorResource(target, sip.domain);
      const id = isNode ? idFromHex(target.toLowerCase()) : resourceId(resource as string);
      const steps = await overlay.trace(id);
      const view: TraceView = {
        target: idToHex(id),
        targetKind: isNode ? 'node' : 'aor',
        ...(resource ? { resource } : {}),
        steps: steps.map((s) => ({
          hop: s.hop,
          path: s.path,
          nodeId: idToHex(s.contact.id),
          address: s.contact.address,
          outcome: s.outcome,
          returned: s.returned,
        })),
      };
      return view;
    }
  }
}

function requireArg(req: ControlRequest, what: string): string {
  if (typeof req.arg !== 'string' || req.arg.trim() === '')
    throw new CliError('ERR_USAGE', `${req.op} needs ${what}`);
  return req.arg.trim();
}

/** A node-ID as typed (64 hex digits); a usage error saying so otherwise. */
export function parseNodeId(text: string) {
  if (!/^[0-9a-fA-F]{64}$/.test(text))
    throw new CliError(
      'ERR_USAGE',
      `"${text}" is not a node-ID: give the 64 hex digits that \`peerbx peers\` or \`peerbx status\` shows`,
    );
  return idFromHex(text.toLowerCase());
}

/** What the SIP transports dropped as not SIP: malformed datagrams/frames, unframeable streams. */
function notSip(t: SipTransportStats): number {
  const sum = (o: object) => Object.values(o).reduce((a: number, n) => a + Number(n), 0);
  return sum(t.malformed) + sum(t.unframeable);
}

/** What the node holds now: transactions, phone connections, memory. */
function current(sip: SipNode): NonNullable<StatusView['current']> {
  const active = sip.transactions.stats.active;
  const open = sip.transports.stats.connectionsOpen;
  const memory = process.memoryUsage();
  const mb = (bytes: number) => Math.round(bytes / 2 ** 20);
  return {
    transactions: active.client + active.server,
    invitesAwaitingFinal: sip.transactions.invitesAwaitingFinal(),
    connections: { tcp: open.tcp, ws: open.ws },
    memoryMb: { rss: mb(memory.rss), heapUsed: mb(memory.heapUsed) },
  };
}

/** The users with a live binding at this node, and their devices in all. */
function registered(sip: SipNode, now: number) {
  const registeredAors: string[] = [];
  let registeredDevices = 0;
  for (const aor of sip.bindings.aors()) {
    const devices = sip.bindings.lookup(aor, now).length;
    if (devices === 0) continue;
    registeredAors.push(aor);
    registeredDevices += devices;
  }
  return { registeredAors, registeredDevices };
}

/** The wss certificate and key, checked to make a TLS context: a bad one is a one-line error. */
function readTls(files: { cert: string; key: string }): { cert: Buffer; key: Buffer } {
  const read = (what: string, path: string) => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new CliError(
        'ERR_CONFIG',
        `bad setting "wsTls": cannot read the ${what} file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      );
    }
  };
  const tls = { cert: read('certificate', files.cert), key: read('key', files.key) };
  try {
    createSecureContext(tls);
  } catch (err) {
    throw new CliError(
      'ERR_CONFIG',
      `bad setting "wsTls": ${files.cert} and ${files.key} are not a PEM certificate and its key (${(err as Error).message})`,
    );
  }
  return tls;
}
