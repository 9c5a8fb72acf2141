// The SIP message module: round trips of the messages of a call, a registration, IM and
// presence; header access by any name; URIs, name-addrs and Via; responses per RFC 3261
// §8.2.6; identifiers; stream framing; and agreement with drachtio's parser on typical input.

import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { describe, it } from 'node:test';
import {
  contactExpires,
  contactQ,
  createBadRequest,
  createResponse,
  createVia,
  formatNameAddr,
  formatUri,
  formatVia,
  generateBranch,
  generateCallId,
  generateTag,
  isRfc3261Branch,
  isSipUri,
  type NameAddr,
  parseCSeq,
  parseExpires,
  parseMaxForwards,
  parseNameAddr,
  parseSipMessage,
  parseUri,
  parseVia,
  type SipMessage,
  SipParseError,
  SipRequest,
  type SipUri,
  serialize,
  sipMessageLength,
} from '../src/index.js';
import { typical } from './fixtures/messages.js';
import { msg } from './fixtures/torture.js';

const req = (bytes: Buffer | string) => {
  const m = parseSipMessage(bytes);
  assert.equal(m.kind, 'request');
  return m as SipRequest;
};
const sipUri = (u: unknown) => {
  assert.ok(isSipUri(u as SipUri));
  return u as SipUri;
};
const contacts = (m: SipMessage): NameAddr[] => {
  const c = m.contacts;
  assert.notEqual(c, '*');
  return c as NameAddr[];
};

describe('parse and serialise typical messages', () => {
  for (const [name, bytes] of Object.entries(typical)) {
    it(`${name}: serialise(parse(x)) gives back x byte for byte`, () => {
      const m = parseSipMessage(bytes);
      assert.deepEqual(serialize(m), bytes);
      // and the re-parsed message has the same typed values
      const again = parseSipMessage(serialize(m));
      assert.equal(again.callId, m.callId);
      assert.deepEqual(again.cseq, m.cseq);
      assert.deepEqual(again.via, m.via);
      assert.deepEqual(again.body, m.body);
    });
  }

  it('INVITE: typed start line, headers and SDP body', () => {
    const m = req(typical.invite);
    assert.equal(m.method, 'INVITE');
    assert.equal(m.version, 'SIP/2.0');
    const uri = sipUri(m.requestUri);
    assert.equal(uri.user, 'bob');
    assert.equal(uri.host, 'biloxi.example.com');
    assert.deepEqual(m.cseq, { seq: 314159, method: 'INVITE' });
    assert.equal(m.maxForwards, 70);
    assert.equal(m.from.displayName, 'Alice');
    assert.equal(m.fromTag, '1928301774');
    assert.equal(m.toTag, undefined);
    assert.equal(m.topVia?.branch, 'z9hG4bK776asdhds');
    assert.equal(m.topVia?.rport, null);
    assert.equal(m.topVia?.port, 5060);
    assert.equal(m.contentType, 'application/sdp');
    assert.ok(m.body.toString().startsWith('v=0\r\n'));
    assert.equal(sipUri(contacts(m)[0]?.uri).params.transport, 'udp');
  });

  it('200 OK: status, reason, Via list, Record-Route', () => {
    const m = parseSipMessage(typical.ok200);
    assert.equal(m.kind, 'response');
    if (m.kind !== 'response') return;
    assert.equal(m.status, 200);
    assert.equal(m.reason, 'OK');
    assert.equal(m.via.length, 2);
    assert.equal(m.via[1]?.received, '192.0.2.10');
    assert.equal(m.via[1]?.rport, 5060);
    assert.equal(sipUri(m.recordRoutes[0]?.uri).params.lr, null);
    assert.equal(m.toTag, 'a6c85cf');
  });

  it('REGISTER: several Contacts over several lines, expires and q, Expires', () => {
    const m = req(typical.register);
    const c = contacts(m);
    assert.equal(c.length, 3);
    assert.deepEqual(
      c.map((x) => [sipUri(x.uri).host, contactExpires(x), contactQ(x)]),
      [
        ['192.0.2.4', 3600, 0.8],
        ['198.51.100.7', undefined, 0.5],
        ['[2001:db8::7]', 60, undefined],
      ],
    );
    assert.equal(c[1]?.displayName, 'Bob mobile');
    assert.equal(sipUri(c[1]?.uri).port, 5062);
    assert.equal(m.expires, 7200);
  });

  it('MESSAGE: a UTF-8 body is counted in bytes', () => {
    const m = parseSipMessage(typical.message);
    assert.equal(m.body.toString('utf8'), 'Watson, come here. Ĉu vi aŭdas min? 🙂');
    assert.equal(Number(m.header('Content-Length')), m.body.length);
    assert.notEqual(m.body.length, m.body.toString().length);
  });

  it('SUBSCRIBE / NOTIFY: Event, Expires, unknown headers kept', () => {
    const s = req(typical.subscribe);
    assert.equal(s.header('o'), 'presence');
    assert.equal(s.expires, 600);
    const n = req(typical.notify);
    assert.equal(n.header('subscription-state'), 'active;expires=599');
    assert.equal(n.contentType, 'application/pidf+xml');
  });

  it('serialise writes the real Content-Length after the body changes', () => {
    const m = req(typical.options);
    m.body = Buffer.from('hello');
    m.headers.set('Content-Type', 'text/plain');
    const out = serialize(m).toString();
    assert.match(out, /\r\nContent-Length: 5\r\n\r\nhello$/);
    assert.equal(out.match(/Content-Length/g)?.length, 1);
  });

  it('keeps header bytes that are no UTF-8 as they came, through a copy and into a response', () => {
    const text = typical.options.toString();
    const at = text.indexOf('\r\n') + 2;
    const bytes = Buffer.concat([
      Buffer.from(text.slice(0, at), 'latin1'),
      Buffer.from([...Buffer.from('X-Bin: a'), 0xff, 0x62, 0xc3, 0x28, 0x63, 0x0d, 0x0a]),
      Buffer.from(text.slice(at), 'latin1'),
    ]);
    const m = req(bytes);
    assert.equal(m.header('x-bin'), 'a\u00ffb\u00c3(c', 'a byte a character');
    assert.deepEqual(serialize(m), bytes);
    const forwarded = m.copy();
    forwarded.headers.prepend('Via', 'SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-p');
    assert.ok(serialize(forwarded).includes(Buffer.from([0x61, 0xff, 0x62, 0xc3, 0x28, 0x63])));
    // The 400 or 404 echoes From and To as they came.
    const named = Buffer.from(
      bytes.toString('latin1').replace(/From: [^<]*</, 'From: "M\u00fcller" <'),
      'latin1',
    );
    const answer = serialize(createResponse(req(named), 404));
    assert.ok(
      answer.includes(Buffer.from([0x4d, 0xfc, 0x6c])),
      'M\xfcl, not a replacement character',
    );
    // Valid UTF-8 is read as such.
    const utf8 = req(Buffer.from(text.replace(/From: [^<]*</, 'From: "Müller" <')));
    assert.match(utf8.header('from') ?? '', /"Müller"/);
  });

  it('a string input works the same as bytes', () => {
    assert.deepEqual(serialize(parseSipMessage(typical.bye.toString())), typical.bye);
  });
});

describe('header access', () => {
  const m = parseSipMessage(
    msg(
      [
        'OPTIONS sip:a@example.com SIP/2.0',
        'v: SIP/2.0/UDP h1;branch=z9hG4bK1',
        'VIA: SIP/2.0/TCP h2;branch=z9hG4bK2, SIP/2.0/UDP h3:5070;branch=z9hG4bK3',
        't: <sip:a@example.com>',
        'f: <sip:b@example.com>;tag=x',
        'i: compact-1@h1',
        'CSEQ: 1 OPTIONS',
        'm: <sip:b@h1>',
        'k: path, gruu',
        'k: outbound',
        's: hello',
        'e: gzip',
        'o: dialog',
        'r: <sip:c@example.com>',
        'u: presence, dialog',
        'x: 1800;refresher=uac',
        'c: text/plain',
        'l: 2',
      ],
      'hi',
    ),
  );

  it('compact and full names, any case, reach the same header', () => {
    assert.equal(m.header('i'), 'compact-1@h1');
    assert.equal(m.header('Call-ID'), 'compact-1@h1');
    assert.equal(m.header('CALL-id'), 'compact-1@h1');
    assert.equal(m.callId, 'compact-1@h1');
    const pairs: [string, string, string][] = [
      ['s', 'Subject', 'hello'],
      ['e', 'Content-Encoding', 'gzip'],
      ['o', 'Event', 'dialog'],
      ['r', 'Refer-To', '<sip:c@example.com>'],
      ['u', 'Allow-Events', 'presence, dialog'],
      ['x', 'Session-Expires', '1800;refresher=uac'],
      ['c', 'content-type', 'text/plain'],
      ['l', 'content-length', '2'],
      ['f', 'FROM', '<sip:b@example.com>;tag=x'],
      ['t', 'To', '<sip:a@example.com>'],
      ['m', 'Contact', '<sip:b@h1>'],
    ];
    for (const [compact, full, value] of pairs) {
      assert.equal(m.header(compact), value, compact);
      assert.equal(m.header(full), value, full);
    }
  });

  it('list headers span lines and commas; Via is a list', () => {
    assert.deepEqual(m.headers.getList('Supported'), ['path', 'gruu', 'outbound']);
    assert.deepEqual(
      m.via.map((v) => [v.transport, v.host, v.port, v.branch]),
      [
        ['UDP', 'h1', undefined, 'z9hG4bK1'],
        ['TCP', 'h2', undefined, 'z9hG4bK2'],
        ['UDP', 'h3', 5070, 'z9hG4bK3'],
      ],
    );
  });

  it('serialise writes canonical names for compact forms', () => {
    const out = serialize(m).toString();
    assert.match(out, /\r\nCall-ID: compact-1@h1\r\n/);
    assert.match(out, /\r\nVia: SIP\/2.0\/UDP h1;branch=z9hG4bK1\r\n/);
    assert.match(out, /\r\nCSeq: 1 OPTIONS\r\n/);
    assert.match(out, /\r\nSession-Expires: 1800;refresher=uac\r\n/);
    assert.deepEqual(parseSipMessage(out).via, m.via);
  });

  it('a proxy edits: prepend Via, pop Route, decrement Max-Forwards; views follow', () => {
    const p = req(
      msg([
        'INVITE sip:bob@example.com SIP/2.0',
        'Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa',
        'Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>',
        'Max-Forwards: 10',
        'To: <sip:bob@example.com>',
        'From: <sip:alice@example.com>;tag=1',
        'Call-ID: x@y',
        'CSeq: 1 INVITE',
        'Content-Length: 0',
      ]),
    );
    const mine = createVia({
      transport: 'udp',
      host: '192.0.2.9',
      port: 5060,
      branch: 'z9hG4bKmine',
    });
    p.headers.prepend('Via', formatVia(mine));
    assert.equal(p.headers.shift('Route'), '<sip:p1.example.com;lr>');
    p.headers.set('Max-Forwards', String((p.maxForwards ?? 70) - 1));
    assert.equal(p.via[0]?.branch, 'z9hG4bKmine');
    assert.equal(p.via.length, 2);
    assert.equal(p.routes.length, 1);
    assert.equal(sipUri(p.routes[0]?.uri).host, 'p2.example.com');
    assert.equal(p.maxForwards, 9);
    const out = parseSipMessage(serialize(p));
    assert.equal(out.via[0]?.rport, null);
    assert.equal(out.maxForwards, 9);
  });

  it('Contact: * is its own value, and may not be mixed', () => {
    const base = [
      'REGISTER sip:example.com SIP/2.0',
      'Via: SIP/2.0/UDP h;branch=z9hG4bKw',
      'To: <sip:a@example.com>',
      'From: <sip:a@example.com>;tag=1',
      'Call-ID: w@h',
      'CSeq: 2 REGISTER',
      'Expires: 0',
    ];
    assert.equal(parseSipMessage(msg([...base, 'Contact: *', 'l: 0'])).contacts, '*');
    const mixed = parseSipMessage(msg([...base, 'Contact: *', 'Contact: <sip:a@h>', 'l: 0']));
    assert.throws(() => mixed.contacts, SipParseError);
    assert.deepEqual(parseSipMessage(msg([...base, 'l: 0'])).contacts, []);
  });
});

describe('parsed views and copies', () => {
  const original = () =>
    req(
      msg([
        'INVITE sip:bob@example.com SIP/2.0',
        'Via: SIP/2.0/UDP h1;branch=z9hG4bK1',
        'From: <sip:alice@example.com>;tag=a',
        'To: <sip:bob@example.com>',
        'Call-ID: views-1@h1',
        'CSeq: 1 INVITE',
        'Max-Forwards: 70',
        'Content-Length: 0',
      ]),
    );

  it('a change to one header re-parses that header only', () => {
    const m = original();
    const from = m.from;
    const via = m.via;
    m.headers.prepend('Via', 'SIP/2.0/TCP h0;branch=z9hG4bK0');
    assert.equal(m.from, from, 'From untouched: the same view');
    assert.notEqual(m.via, via);
    assert.deepEqual(
      m.via.map((v) => v.host),
      ['h0', 'h1'],
    );
    m.headers.set('From', '<sip:carol@example.com>;tag=c');
    assert.equal(sipUri(m.from.uri).user, 'carol');
    m.headers.delete('Max-Forwards');
    assert.equal(m.maxForwards, undefined);
    m.headers.shift('Via');
    assert.deepEqual(
      m.via.map((v) => v.host),
      ['h1'],
    );
  });

  it('a copy shares the views until its own headers change, and never changes the original', () => {
    const m = original();
    const to = m.to;
    const copy = m.copy();
    assert.equal(copy.to, to);
    assert.equal(copy.requestUri, m.requestUri);
    copy.headers.prepend('Via', 'SIP/2.0/TCP h0;branch=z9hG4bK0');
    copy.headers.set('To', '<sip:bob@example.com>;tag=b');
    copy.uri = 'sip:bob@h9';
    assert.equal(copy.via.length, 2);
    assert.equal(copy.toTag, 'b');
    assert.equal(sipUri(copy.requestUri).host, 'h9');
    assert.equal(m.via.length, 1);
    assert.equal(m.toTag, undefined);
    assert.equal(m.to, to);
    assert.equal(sipUri(m.requestUri).host, 'example.com');
    assert.equal(serialize(copy).toString().split('\r\n')[0], 'INVITE sip:bob@h9 SIP/2.0');
  });
});

describe('URIs, name-addrs and Via', () => {
  it('parses every part of a SIP URI and formats it back', () => {
    const text =
      'sips:alice:secret@[2001:db8::1]:5061;transport=tcp;lr;maddr=239.255.255.1?subject=project%20x&priority=urgent';
    const u = sipUri(parseUri(text));
    assert.equal(u.scheme, 'sips');
    assert.equal(u.user, 'alice');
    assert.equal(u.password, 'secret');
    assert.equal(u.host, '[2001:db8::1]');
    assert.equal(u.port, 5061);
    assert.deepEqual(u.params, { transport: 'tcp', lr: null, maddr: '239.255.255.1' });
    assert.deepEqual(u.headers, { subject: 'project x', priority: 'urgent' });
    assert.equal(formatUri(u), text);
  });

  it('formatting escapes what decoding unescaped', () => {
    const u = sipUri(parseUri('sip:I%20have%20spaces@example.net'));
    assert.equal(u.user, 'I have spaces');
    assert.equal(formatUri(u), 'sip:I%20have%20spaces@example.net');
  });

  it('keeps other schemes opaque', () => {
    assert.deepEqual(parseUri('tel:+1-201-555-0123;phone-context=example.com'), {
      scheme: 'tel',
      opaque: '+1-201-555-0123;phone-context=example.com',
    });
  });

  it('rejects malformed URIs', () => {
    for (const bad of [
      'sip:',
      'sip:@h',
      'sip:a@',
      'sip:a@h:99999',
      'sip:a b@h',
      'sip:a@h;',
      'sip:%zz@h',
      'nocolon',
      '1x:y',
    ]) {
      assert.throws(
        () => parseUri(bad),
        (e: unknown) => e instanceof SipParseError && e.code === 'ERR_SIP_URI',
        bad,
      );
    }
  });

  it('name-addr with quoted display name, addr-spec with header params', () => {
    const a = parseNameAddr(
      '"Alice \\"A\\" Smith" <sip:alice@example.com;transport=tcp>;tag=9fx;expires=60',
    );
    assert.equal(a.displayName, 'Alice "A" Smith');
    assert.equal(sipUri(a.uri).params.transport, 'tcp');
    assert.deepEqual(a.params, { tag: '9fx', expires: '60' });
    assert.equal(
      formatNameAddr(a),
      '"Alice \\"A\\" Smith" <sip:alice@example.com;transport=tcp>;tag=9fx;expires=60',
    );
    // addr-spec: the ;params after the URI belong to the header (RFC 3261 §20.10)
    const b = parseNameAddr('sip:bob@example.com;tag=5');
    assert.deepEqual(sipUri(b.uri).params, {});
    assert.equal(b.params.tag, '5');
  });

  it('Via: every typed field', () => {
    const [v] = parseVia(
      'SIP/2.0/ws df7jal23ls0d.invalid:8443;branch=z9hG4bK56sdasks;received=192.0.2.7;rport=62001;maddr=224.2.0.1;ttl=16',
    );
    assert.ok(v);
    assert.equal(v.protocol, 'SIP');
    assert.equal(v.version, '2.0');
    assert.equal(v.transport, 'WS');
    assert.equal(v.host, 'df7jal23ls0d.invalid');
    assert.equal(v.port, 8443);
    assert.equal(v.branch, 'z9hG4bK56sdasks');
    assert.equal(v.received, '192.0.2.7');
    assert.equal(v.rport, 62001);
    assert.equal(v.maddr, '224.2.0.1');
    assert.equal(v.ttl, 16);
    assert.equal(
      formatVia(v),
      'SIP/2.0/WS df7jal23ls0d.invalid:8443;branch=z9hG4bK56sdasks;received=192.0.2.7;rport=62001;maddr=224.2.0.1;ttl=16',
    );
  });

  it('scalar header values', () => {
    assert.deepEqual(parseCSeq('  4711   INVITE '), { seq: 4711, method: 'INVITE' });
    assert.throws(() => parseCSeq('2147483648 INVITE'), SipParseError);
    assert.throws(() => parseCSeq('-1 INVITE'), SipParseError);
    assert.throws(() => parseCSeq('1'), SipParseError);
    assert.equal(parseMaxForwards('0'), 0);
    assert.throws(() => parseMaxForwards('256'), SipParseError);
    assert.equal(parseExpires('99999999999999'), 2 ** 32 - 1);
    assert.throws(() => parseExpires('soon'), SipParseError);
  });
});

describe('responses (RFC 3261 §8.2.6)', () => {
  it('copies Via, From, To, Call-ID, CSeq and adds a To tag', () => {
    const r = req(typical.invite);
    const res = createResponse(r, 180, {
      toTag: 'uas1',
      headers: [{ name: 'Contact', value: '<sip:bob@192.0.2.4>' }],
    });
    assert.equal(res.status, 180);
    assert.equal(res.reason, 'Ringing');
    assert.deepEqual(res.headers.getAll('via'), r.headers.getAll('via'));
    assert.equal(res.header('from'), r.header('from'));
    assert.equal(res.header('to'), `${r.header('to')};tag=uas1`);
    assert.equal(res.callId, r.callId);
    assert.deepEqual(res.cseq, r.cseq);
    const wire = parseSipMessage(serialize(res));
    assert.equal(wire.kind === 'response' && wire.status, 180);
    assert.equal(wire.toTag, 'uas1');
  });

  it('keeps an existing To tag, and 100 Trying needs none but echoes Timestamp', () => {
    const inDialog = req(typical.notify);
    assert.equal(createResponse(inDialog, 200).header('to'), inDialog.header('to'));
    const r = req(typical.invite);
    r.headers.append('Timestamp', '54');
    const trying = createResponse(r, 100);
    assert.equal(trying.toTag, undefined);
    assert.equal(trying.header('Timestamp'), '54');
    assert.ok(createResponse(r, 486).toTag);
  });

  it('builds a 400 from a request that failed to parse', () => {
    const bad = msg([
      'OPTIONS sip:a@example.com SIP/2.0',
      'Via: SIP/2.0/UDP h;branch=z9hG4bKq',
      'To: <sip:a@example.com>',
      'From: <sip:b@example.com>;tag=7',
      'Call-ID: q@h',
      'CSeq: 99999999999 OPTIONS',
      'l: 0',
    ]);
    const err = (() => {
      try {
        parseSipMessage(bad);
      } catch (e) {
        return e;
      }
      assert.fail('parsed');
    })();
    assert.ok(err instanceof SipParseError);
    assert.equal(err.code, 'ERR_SIP_CSEQ');
    assert.equal(err.canReply400, true);
    const res = createBadRequest(err, { toTag: 't' });
    assert.ok(res);
    assert.equal(res.status, 400);
    assert.equal(res.reason, 'Bad Request (bad CSeq)');
    assert.equal(res.header('CSeq'), '99999999999 OPTIONS');
    assert.equal(res.header('To'), '<sip:a@example.com>;tag=t');
  });
});

describe('a malformed ACK', () => {
  // baresip 1.0 as the transferee of an attended transfer: the Replaces parameter left unquoted
  // in the URI, the request line does not parse. Its INVITE gets a 400; its ACK nothing.
  const line = (method: string) =>
    Buffer.from(
      [
        `${method} <sip:carol@peerbx.local?Replaces=abc SIP/2.0`,
        'Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKack1',
        'To: <sip:carol@peerbx.local>;tag=c',
        'From: <sip:alice@peerbx.local>;tag=a',
        'Call-ID: ack@h',
        `CSeq: 1 ${method}`,
        'Max-Forwards: 70',
        'Content-Length: 0',
        '',
        '',
      ].join('\r\n'),
    );
  const failure = (bytes: Buffer): SipParseError => {
    try {
      parseSipMessage(bytes);
    } catch (e) {
      assert.ok(e instanceof SipParseError);
      return e;
    }
    assert.fail('parsed');
  };

  it('gets no 400 (RFC 3261 §17: an ACK is not answered), where an INVITE like it does', () => {
    assert.equal(failure(line('INVITE')).canReply400, true);
    const ack = failure(line('ACK'));
    assert.equal(ack.canReply400, false);
    assert.equal(createBadRequest(ack), undefined);
    // Known by its CSeq when the request line is past reading.
    const garbled = Buffer.from(
      line('ACK').toString('latin1').replace(/^ACK /, '\u0001 '),
      'latin1',
    );
    assert.equal(failure(garbled).canReply400, false);
  });
});

describe('identifiers', () => {
  it('branch carries the magic cookie; tags and Call-IDs are tokens; randomness is injected', () => {
    const b = generateBranch();
    assert.ok(isRfc3261Branch(b));
    assert.notEqual(generateBranch(), b);
    const zero = (n: number) => new Uint8Array(n);
    assert.equal(generateBranch(zero), `z9hG4bK${'A'.repeat(16)}`);
    assert.equal(generateTag(zero), 'AAAAAAAAAAA');
    assert.match(generateCallId('pc33.example.com'), /^[\w-]{22}@pc33\.example\.com$/);
    assert.equal(isRfc3261Branch('z9hG4bK'), false);
    assert.equal(isRfc3261Branch('1234'), false);
  });
});

describe('stream framing', () => {
  it('cuts messages from a byte stream by Content-Length', () => {
    const stream = Buffer.concat([Buffer.from('\r\n\r\n'), typical.invite, typical.bye]);
    assert.equal(sipMessageLength(stream), 4);
    const rest = stream.subarray(4);
    assert.equal(sipMessageLength(rest), typical.invite.length);
    assert.equal(sipMessageLength(rest.subarray(0, typical.invite.length - 1)), undefined);
    assert.equal(sipMessageLength(rest.subarray(0, 20)), undefined);
    assert.throws(
      () => sipMessageLength(msg(['OPTIONS sip:a@b SIP/2.0', 'Via: x'])),
      SipParseError,
    );
  });

  it('a keep-alive alone is not a message', () => {
    assert.throws(
      () => parseSipMessage('\r\n\r\n'),
      (e: unknown) => e instanceof SipParseError && e.code === 'ERR_SIP_EMPTY',
    );
  });
});

describe('agreement with drachtio-srf lib/sip-parser on typical messages', () => {
  const require = createRequire(import.meta.url);
  const DrachtioMessage = require('drachtio-srf/lib/sip-parser/message.js') as new (
    s: string,
  ) => { method?: string; uri?: string; status?: number; body: string; get(h: string): string };

  for (const [name, bytes] of Object.entries(typical)) {
    it(name, () => {
      const ours = parseSipMessage(bytes);
      const theirs = new DrachtioMessage(bytes.toString('utf8'));
      if (ours.kind === 'request') {
        assert.equal(theirs.method, ours.method);
        assert.equal(theirs.uri, ours.uri);
      } else assert.equal(theirs.status, ours.status);
      assert.equal(theirs.get('call-id'), ours.callId);
      assert.equal(theirs.get('cseq'), ours.header('cseq'));
      assert.equal(theirs.get('from'), ours.header('from'));
      assert.equal(theirs.body, ours.body.toString('utf8'));
    });
  }
});

it('a SipRequest built in code serialises and parses back', () => {
  const r = new SipRequest({
    method: 'OPTIONS',
    uri: 'sip:carol@chicago.example.com',
    headers: [
      {
        name: 'Via',
        value: formatVia(
          createVia({ transport: 'UDP', host: '192.0.2.1', branch: generateBranch() }),
        ),
      },
      { name: 'Max-Forwards', value: '70' },
      { name: 'To', value: '<sip:carol@chicago.example.com>' },
      { name: 'From', value: `<sip:alice@atlanta.example.com>;tag=${generateTag()}` },
      { name: 'Call-ID', value: generateCallId('192.0.2.1') },
      { name: 'CSeq', value: '1 OPTIONS' },
    ],
  });
  const back = req(serialize(r));
  assert.equal(back.method, 'OPTIONS');
  assert.ok(isRfc3261Branch(back.topVia?.branch));
  assert.equal(back.body.length, 0);
});
