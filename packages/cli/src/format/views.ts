// How each control answer reads in a terminal.

import type { LookupView, PeerView, PingView, StatusView, TraceView } from '../control/protocol.js';
import { duration, keyValues, table } from './table.js';

export function formatStatus(s: StatusView): string {
  const kinds = Object.entries(s.records.byKind)
    .map(([k, n]) => `${k} ${n}`)
    .join(', ');
  return keyValues([
    ['node', s.nodeId],
    ['overlay', `${s.overlayName} (${s.enrollment}), domain ${s.domain}`],
    ['listening', `overlay ${s.overlay} (links ${s.stream})`],
    ['sip', `udp+tcp ${s.sip.udp}${s.sip.ws ? `, ${s.sip.wsTls ? 'wss' : 'ws'} ${s.sip.ws}` : ''}`],
    [
      'peers',
      `${s.routingTable.contacts} in ${s.routingTable.buckets} buckets, ${s.links} links${s.routingTable.isolated ? ' (lost touch with every peer: rejoining)' : ''}`,
    ],
    ['records', `${s.records.total}${kinds ? ` (${kinds})` : ''}`],
    ['registered', registered(s)],
    ...(s.registrationWrites
      ? [['overlay writes', writes(s.registrationWrites)] as [string, string]]
      : []),
    ...(s.dht ? [['overlay traffic', traffic(s.dht)] as [string, string]] : []),
    ...(s.current ? [['now', holding(s.current)] as [string, string]] : []),
    [
      'proxied',
      `${s.proxy.forwarded} requests, ${s.proxy.acksForwarded} ACKs; ${s.proxy.locationRechecks} location rechecks added ${s.proxy.lateBranches} branches`,
    ],
    ['refused', refused(s.refused)],
    ['uptime', duration(s.uptimeS)],
    ['pid', String(s.pid)],
    ['data dir', s.dataDir],
    ['version', s.version],
  ]);
}

/** Users named in the status table at most; `--json` lists them all. */
export const STATUS_USERS_SHOWN = 10;

/** "-", or the users registered here (the first few of many) and their devices. */
function registered(s: StatusView): string {
  const n = s.registeredAors.length;
  if (n === 0) return '-';
  const d = s.registeredDevices;
  const devices = d === undefined ? `${n} users` : `${d} device${d === 1 ? '' : 's'}`;
  const names = s.registeredAors
    .slice(0, STATUS_USERS_SHOWN)
    .map((aor) => aor.replace(/^sip:/, ''));
  if (n <= STATUS_USERS_SHOWN) return `${names.join(', ')} (${devices})`;
  return `${n} users, ${devices}: ${names.join(', ')} and ${n - STATUS_USERS_SHOWN} more (--json lists all)`;
}

/** Registration writes to the overlay since start, and those pending. */
function writes(w: NonNullable<StatusView['registrationWrites']>): string {
  const waiting = w.waiting + w.background;
  const pending = w.inFlight + waiting > 0 ? `; ${w.inFlight} under way, ${waiting} waiting` : '';
  return `${w.done} registration${w.done === 1 ? '' : 's'} written since start${pending}`;
}

/** Transactions, phone connections and memory the node holds now. */
function holding(c: NonNullable<StatusView['current']>): string {
  const ringing =
    c.invitesAwaitingFinal > 0 ? ` (${c.invitesAwaitingFinal} INVITEs awaiting an answer)` : '';
  return (
    `${c.transactions} SIP transactions${ringing}, ${c.connections.tcp} TCP and ${c.connections.ws} WebSocket connections; ` +
    `memory ${c.memoryMb.rss} MB (JavaScript heap ${c.memoryMb.heapUsed} MB)`
  );
}

/** The overlay's requests both ways, and its upkeep where there was any. */
function traffic(d: NonNullable<StatusView['dht']>): string {
  const out = [
    `${d.lookups} lookups, ${d.requestsOut} requests sent (${d.requestFailures} unanswered), ${d.requestsIn} served`,
  ];
  const plural = (n: number, one: string) => `${n} ${one}${n === 1 ? '' : 's'}`;
  if (d.handOvers > 0) {
    out.push(
      `${plural(d.keysHandedOver, 'key')} handed to nodes new or back (${plural(d.handOvers, 'hand-over')})`,
    );
  }
  if (d.staleRepaired > 0) {
    out.push(`${d.staleRepaired} stale ${d.staleRepaired === 1 ? 'copy' : 'copies'} repaired`);
  }
  if (d.keysReplicated > 0) out.push(`${plural(d.keysReplicated, 'key')} replicated`);
  return out.join('; ');
}

/** "none", or each non-zero count of what was refused or dropped, with why. */
function refused(r: StatusView['refused']): string {
  const parts: string[] = [];
  const add = (n: number, what: string) => {
    if (n > 0) parts.push(`${n} ${what}`);
  };
  add(r.overlay.malformed, 'malformed overlay datagrams');
  for (const [reason, n] of Object.entries(r.overlay.byReason)) add(n, `overlay (${reason})`);
  add(r.overlay.unmatched, 'unsolicited overlay responses');
  for (const [reason, n] of Object.entries(r.overlay.stores ?? {})) {
    add(n, `overlay STOREs (${reason})`);
  }
  add(r.overlay.contactsRefused ?? 0, 'overlay contacts refused (puzzle or address)');
  add(r.overlay.fetchedDropped ?? 0, 'fetched records dropped (forged, or a name two keys claim)');
  add(r.overlay.contestedFetches ?? 0, 'lookups of a name whose holders disagree on its owner');
  add(
    r.overlay.claimsReplaced ?? 0,
    "false name claims held here, replaced by the other holders' claim",
  );
  add(r.overlay.clientRequestsMalformed ?? 0, "overlay clients' requests that did not decode");
  for (const [reason, n] of Object.entries(r.overlay.links?.handshakesFailed ?? {})) {
    add(n, `link handshakes (${reason})`);
  }
  add(r.overlay.links?.framesMalformed ?? 0, 'malformed link frames');
  add(r.overlay.links?.overLimit ?? 0, 'links closed, their node holding too many');
  add(r.sip.notSip, 'datagrams or streams that were not SIP');
  add(r.sip.badRequestsAnswered, 'bad SIP requests (400)');
  add(r.sip.malformedDropped, 'unparsable SIP messages dropped');
  add(r.sip.versionRejected, 'SIP version not 2.0 (505)');
  add(r.sip.strayResponsesDropped, 'stray SIP responses dropped');
  add(r.sip.registrarBusy, 'REGISTERs refused while overlay writes queued (503)');
  add(
    r.sip.registrationsRefused ?? 0,
    'registrations the overlay refused (403, or a renewal not made: see the log)',
  );
  add(r.sip.locatorBusy, 'calls refused while location lookups queued (503)');
  add(r.sip.overloaded, 'new requests refused while the node was overloaded (503)');
  add(r.sip.transactionsFull, 'new requests refused while too many transactions were kept (503)');
  add(r.sip.logins?.failed ?? 0, 'failed logins (wrong password or unknown user)');
  add(r.sip.logins?.throttled ?? 0, 'requests refused while their address was throttled (403)');
  add(r.sip.logins?.asOtherUser ?? 0, 'requests of a logged-in phone as another user (403)');
  return parts.length > 0 ? parts.join(', ') : 'none';
}

/** `isolated`: the node lost every contact lately and is trying to rejoin (status says so too). */
export function formatPeers(peers: PeerView[], isolated = false): string {
  if (peers.length === 0)
    return isolated
      ? 'no peers (lost touch with every peer: rejoining)'
      : 'no peers (this node is alone in its overlay)';
  return table(
    ['NODE-ID', 'ADDRESS', 'LAST-SEEN', 'FAILURES', 'LINK'],
    peers.map((p) => [
      p.nodeId,
      p.address,
      `${duration(p.lastSeenS)} ago`,
      String(p.failures),
      p.link ? 'yes' : '-',
    ]),
  );
}

export function formatLookup(v: LookupView): string {
  // The key peerbx user-key prints: the one to copy to another node of the user.
  const owner = v.owner ? `\nname owned by key ${v.owner}` : '';
  if (v.locations.length === 0 && v.local.length === 0)
    return `${v.aor} is not registered (no live SIP-REGISTRATION in the overlay)${owner}`;
  const out =
    v.locations.length === 0
      ? [`${v.aor} has no live SIP-REGISTRATION in the overlay (yet), but phones here:`]
      : [
          `${v.aor} is registered on ${v.locations.length} node${v.locations.length > 1 ? 's' : ''}:`,
          table(
            ['NODE-ID', 'ADDRESS', 'DEVICES', 'EXPIRES'],
            v.locations.map((l) => [
              l.nodeId,
              l.address ?? '?',
              String(l.devices),
              `in ${duration(l.expiresInS)}`,
            ]),
          ),
        ];
  if (v.local.length > 0) {
    if (v.locations.length > 0) out.push('', 'contacts on this node:');
    out.push(
      table(
        ['CONTACT', 'EXPIRES'],
        v.local.map((b) => [b.uri, `in ${duration(b.expiresInS)}`]),
      ),
    );
  }
  return out.join('\n') + owner;
}

export function formatPing(p: PingView): string {
  return `reply from ${p.nodeId} at ${p.address}: time=${p.rttMs.toFixed(1)} ms`;
}

export function formatTrace(t: TraceView): string {
  const head =
    t.targetKind === 'aor'
      ? `lookup of ${t.resource} (resource ${t.target})`
      : `lookup of node ${t.target}`;
  if (t.steps.length === 0) return `${head}: no requests sent (no peers known)`;
  return [
    `${head}, ${t.steps.length} requests:`,
    table(
      ['HOP', 'PATH', 'NODE-ID', 'ADDRESS', 'OUTCOME', 'RETURNED'],
      t.steps.map((s) => [
        String(s.hop),
        String(s.path),
        s.nodeId,
        s.address,
        s.outcome,
        String(s.returned),
      ]),
    ),
  ].join('\n');
}
