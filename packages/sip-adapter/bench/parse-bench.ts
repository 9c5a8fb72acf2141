// npm run bench:sip-parse — parse + read two headers + serialise, per message type (an INVITE
// with SDP, a REGISTER, a 200 OK with SDP), in messages per second, against the 50,000/s
// target and against drachtio-srf's lib/sip-parser doing the same work on the same bytes.
//
// Flags: --ms 1500 (measuring time per case)  --json FILE

import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { benchFlags, describeMachine, machineInfo, table } from '@peerbx/dht-kademlia/bench';
import { parseSipMessage, serialize } from '../src/index.js';
import { invite, ok200, register } from '../test/fixtures/messages.js';

const TARGET_PER_S = 50_000; // the target for the whole parse + serialise path
const DRACHTIO_MEASURED_PER_S = 105_000; // DESIGN.md "Measured facts", for context

interface DrachtioMessage {
  get(name: string): string | undefined;
  toString(): string;
}
const require = createRequire(import.meta.url);
const DrachtioSipMessage = require('drachtio-srf/lib/sip-parser/message.js') as new (
  raw: string,
) => DrachtioMessage;

const flags = benchFlags('parse-bench', { ms: '1500', json: 'FILE' });

let sink = 0; // keeps the work observable so it is not optimised away

function rate(fn: () => void, ms: number): number {
  const warm = performance.now() + Math.min(300, ms / 4);
  while (performance.now() < warm) fn();
  let n = 0;
  const t0 = performance.now();
  const end = t0 + ms;
  let now = t0;
  while (now < end) {
    for (let i = 0; i < 200; i++) fn();
    n += 200;
    now = performance.now();
  }
  return n / ((now - t0) / 1000);
}

function main(): void {
  const ms = flags.number('ms', 1500, 1);
  const json = flags.string('json', '');
  const machine = machineInfo();
  console.log(describeMachine(machine));

  const cases = [
    { name: 'INVITE + SDP', bytes: invite },
    { name: 'REGISTER', bytes: register },
    { name: '200 OK + SDP', bytes: ok200 },
  ];
  const results = cases.map(({ name, bytes }) => {
    const ours = rate(() => {
      const m = parseSipMessage(bytes);
      sink += m.callId.length + m.cseq.seq;
      sink += serialize(m).length;
    }, ms);
    const drachtio = rate(() => {
      const m = new DrachtioSipMessage(bytes.toString('utf8'));
      sink += (m.get('call-id')?.length ?? 0) + (m.get('cseq')?.length ?? 0);
      sink += m.toString().length;
    }, ms);
    return { name, bytes: bytes.length, perSecond: ours, drachtioPerSecond: drachtio };
  });

  console.log(
    `\nparse + read Call-ID and CSeq + serialise, messages/s (target ${TARGET_PER_S.toLocaleString('en-US')}/s;` +
      ` drachtio measured ~${DRACHTIO_MEASURED_PER_S.toLocaleString('en-US')}/s in DESIGN.md)\n`,
  );
  console.log(
    table(
      [
        'message',
        'bytes',
        'peerbx msg/s',
        'µs/msg',
        'vs target',
        'drachtio msg/s',
        'peerbx/drachtio',
      ],
      results.map((r) => [
        r.name,
        r.bytes,
        Math.round(r.perSecond).toLocaleString('en-US'),
        (1e6 / r.perSecond).toFixed(1),
        `${(r.perSecond / TARGET_PER_S).toFixed(2)}x ${r.perSecond >= TARGET_PER_S ? 'ok' : 'BELOW'}`,
        Math.round(r.drachtioPerSecond).toLocaleString('en-US'),
        `${(r.perSecond / r.drachtioPerSecond).toFixed(2)}x`,
      ]),
    ),
  );
  console.log(
    '\npeerbx parse also validates the start line, CSeq, Content-Length and parses Via, From and To;' +
      '\ndrachtio (lazy mode) splits lines only and keeps the body as a string.',
  );
  if (json) {
    writeFileSync(
      json,
      JSON.stringify({ machine, targetPerSecond: TARGET_PER_S, results }, null, 2),
    );
    console.log(`wrote ${json}`);
  }
  if (sink === 42) console.log('');
}

main();
