// `peerbx demo`: a small overlay of node processes on loopback, demo phones alice, bob and carol
// registered on different nodes, calls and a MESSAGE between them through the overlay, and a
// summary. With keep, the nodes stay up for a real softphone until Ctrl-C.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_DOMAIN } from '../constants.js';
import { controlRequest } from '../control/client.js';
import type { LookupView } from '../control/protocol.js';
import { CliError } from '../errors.js';
import { table } from '../format/table.js';
import { onNpmParentGone } from '../parent.js';
import { NodeProcess } from './node-process.js';
import { type CallResult, DemoPhone } from './phone.js';

export interface DemoOptions {
  nodes: number;
  keep: boolean;
  domain?: string;
  /** Where progress lines go. */
  print: (line: string) => void;
}

const NODE_START_MS = 20_000;
const CALL_HOLD_MS = 300;
const USERS = ['alice', 'bob', 'carol'] as const;

export async function runDemo(o: DemoOptions): Promise<void> {
  const domain = o.domain ?? DEFAULT_DOMAIN;
  const root = mkdtempSync(join(tmpdir(), 'peerbx-demo-'));
  const nodes: NodeProcess[] = [];
  const phones: DemoPhone[] = [];
  const t0 = performance.now();
  const p = o.print;
  const nameOf = (hex: string) =>
    nodes.find((n) => n.info.nodeId === hex)?.name ?? `${hex.slice(0, 8)}…`;
  let failed = true;
  try {
    // 1. The overlay: the first node founds it, the others join through it.
    p(`Starting ${o.nodes} nodes on 127.0.0.1 (data in ${root})`);
    const common = ['--sip', '127.0.0.1:0', '--ws', '127.0.0.1:0', '--overlay', '127.0.0.1:0'];
    const logArgs = ['--log-level', 'info', '--domain', domain];
    const first = await NodeProcess.start(
      'node-1',
      join(root, 'node-1'),
      [...common, ...logArgs],
      NODE_START_MS,
    );
    nodes.push(first);
    p(
      `  ✓ node-1 founded the overlay   id ${first.info.nodeId.slice(0, 16)}…  overlay ${first.info.overlay}  sip ${fmt(first.info.sip)}`,
    );
    const rest = await Promise.all(
      Array.from({ length: o.nodes - 1 }, (_, i) =>
        NodeProcess.start(
          `node-${i + 2}`,
          join(root, `node-${i + 2}`),
          [...common, ...logArgs, '--bootstrap', first.info.overlay],
          NODE_START_MS,
        ),
      ),
    );
    for (const n of rest) {
      nodes.push(n);
      p(
        `  ✓ ${n.name} joined              id ${n.info.nodeId.slice(0, 16)}…  overlay ${n.info.overlay}  sip ${fmt(n.info.sip)}`,
      );
    }

    // 2. Phones, each on its own node.
    p('Registering demo phones');
    for (const [i, user] of USERS.entries()) {
      const node = nodes[i % nodes.length] as NodeProcess;
      const phone = await DemoPhone.open(user, domain, node.info.sip);
      phones.push(phone);
      await phone.register(300);
      p(`  ✓ ${user}@${domain} registered on ${node.name} (phone at 127.0.0.1:${phone.port})`);
    }

    // 3. Every node can find every user through the overlay.
    p('Looking users up through the overlay');
    for (const [i, user] of USERS.entries()) {
      const asker = nodes[(i + 1) % nodes.length] as NodeProcess;
      const home = nodes[i % nodes.length] as NodeProcess;
      const view = (await controlRequest(asker.dataDir, { op: 'lookup', arg: user })) as LookupView;
      const found = view.locations.map((l) => nameOf(l.nodeId));
      if (!found.includes(home.name))
        throw new CliError(
          'ERR_DEMO',
          `${asker.name} could not find ${user} (expected on ${home.name}, got ${found.join(', ') || 'nothing'})`,
        );
      p(`  ✓ ${asker.name}: ${user} is on ${found.join(', ')}`);
    }

    // 4. Calls around the ring, then a MESSAGE.
    p('Placing calls (INVITE, 180, 200, ACK, BYE)');
    const calls: CallResult[] = [];
    for (const [i, user] of USERS.entries()) {
      const callee = USERS[(i + 1) % USERS.length] as string;
      const phone = phones[i] as DemoPhone;
      const result = await phone.call(callee, CALL_HOLD_MS);
      const answeredBy = phones[(i + 1) % USERS.length] as DemoPhone;
      if (answeredBy.answered.size === 0)
        throw new CliError('ERR_DEMO', `${callee} never saw the call from ${user}`);
      calls.push(result);
      p(
        `  ✓ ${user} → ${callee}: answered in ${result.setupMs.toFixed(0)} ms via ${result.nodes.map(nameOf).join(' → ')}, hung up`,
      );
    }
    p('Sending a MESSAGE');
    const [alice, , carol] = phones as [DemoPhone, DemoPhone, DemoPhone];
    const text = 'Hello Carol, this came through the overlay.';
    const msgMs = await alice.message('carol', text);
    if (!carol.received.some((m) => m.text === text))
      throw new CliError('ERR_DEMO', 'carol did not receive the MESSAGE from alice');
    p(`  ✓ alice → carol: "${text}" delivered in ${msgMs.toFixed(0)} ms`);

    // 5. Summary.
    p('');
    p('Summary');
    p(
      table(
        ['CALL', 'SETUP', 'RINGING', 'NODES CROSSED', 'RESULT'],
        [
          ...calls.map((c) => [
            `${c.from} → ${c.to}`,
            `${c.setupMs.toFixed(0)} ms`,
            c.ringingMs !== undefined ? `${c.ringingMs.toFixed(0)} ms` : '-',
            c.nodes.map(nameOf).join(' → '),
            'ok',
          ]),
          ['alice ⇢ carol (MESSAGE)', `${msgMs.toFixed(0)} ms`, '-', '-', 'delivered'],
        ],
      ),
    );
    p(
      `${calls.length} calls and 1 message over ${nodes.length} nodes in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );

    // The demo phones step aside so real phones can take the names.
    for (const phone of phones) await phone.register(0).catch(() => undefined);
    failed = false;
    if (o.keep) {
      p('');
      p(keepInstructions(nodes, domain));
      await waitForSignal();
    }
  } finally {
    for (const phone of phones) phone.close();
    await Promise.all(nodes.map((n) => n.stop()));
    if (!failed || !o.keep) rmSync(root, { recursive: true, force: true });
  }
}

function keepInstructions(nodes: NodeProcess[], domain: string): string {
  const lines = [
    'The nodes keep running; press Ctrl-C to stop them. Point softphones at them:',
    '',
    table(
      ['NODE', 'SIP (UDP/TCP)', 'WEBSOCKET', 'DATA DIR'],
      nodes.map((n) => [n.name, fmt(n.info.sip), n.info.ws, n.dataDir]),
    ),
    '',
  ];
  for (const [i, user] of USERS.entries()) {
    const n = nodes[i % nodes.length] as NodeProcess;
    const at = fmt(n.info.sip);
    lines.push(
      `${user} on ${n.name}:`,
      `  Linphone: Use a SIP account → username ${user}, SIP domain ${domain}, proxy sip:${at};transport=udp,`,
      '            password empty, "outbound proxy" on, transport UDP',
      `  baresip:  <sip:${user}@${domain}>;outbound="sip:${at};transport=udp";regint=300`,
    );
  }
  lines.push('', `Then call another user by name, e.g. sip:bob@${domain}.`);
  return lines.join('\n');
}

function fmt(a: { host: string; port: number }): string {
  return `${a.host}:${a.port}`;
}

/** Ctrl-C, a SIGTERM, or (run by npm) npm gone: parent.ts. */
function waitForSignal(): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      process.off('SIGINT', done);
      process.off('SIGTERM', done);
      resolve();
    };
    process.on('SIGINT', done);
    process.on('SIGTERM', done);
    onNpmParentGone(done);
  });
}
