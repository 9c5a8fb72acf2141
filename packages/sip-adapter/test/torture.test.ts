// RFC 4475 torture messages. Valid ones must parse to the right values; for each invalid one
// we decide, citing the RFC section, whether the parser rejects it (SipParseError, saying if a
// 400 can be sent) or parses it for the layer above to reject (416, 420, 483, 505, ...).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type AbsoluteUri,
  contactExpires,
  createBadRequest,
  isRfc3261Branch,
  isSipUri,
  type NameAddr,
  parseSipMessage,
  type SipErrorCode,
  type SipMessage,
  SipParseError,
  type SipRequest,
  type SipResponse,
  type SipUri,
  serialize,
} from '../src/index.js';
import * as T from './fixtures/torture.js';

const request = (b: Buffer): SipRequest => {
  const m = parseSipMessage(b);
  assert.equal(m.kind, 'request');
  return m as SipRequest;
};
const response = (b: Buffer): SipResponse => {
  const m = parseSipMessage(b);
  assert.equal(m.kind, 'response');
  return m as SipResponse;
};
const sip = (u: unknown): SipUri => {
  assert.ok(isSipUri(u as SipUri), `not a SIP URI: ${JSON.stringify(u)}`);
  return u as SipUri;
};
const list = (m: SipMessage): NameAddr[] => {
  const c = m.contacts;
  assert.notEqual(c, '*');
  return c as NameAddr[];
};

/** Asserts the parser rejects `bytes` with `code`, and whether a 400 can answer it. */
function rejects(bytes: Buffer, code: SipErrorCode, canReply400: boolean): SipParseError {
  try {
    parseSipMessage(bytes);
  } catch (err) {
    assert.ok(err instanceof SipParseError, String(err));
    assert.equal(err.code, code, err.message);
    assert.equal(err.canReply400, canReply400, err.message);
    if (canReply400) {
      const res = createBadRequest(err);
      assert.equal(res?.status, 400);
      // it copies the raw values (malformed ones included, RFC 3261 §8.2.6.2)
      assert.ok(serialize(res!).toString().startsWith('SIP/2.0 400 Bad Request ('));
      assert.deepEqual(res?.headers.getAll('via'), err.headers?.getAll('via'));
    } else assert.equal(createBadRequest(err), undefined);
    return err;
  }
  assert.fail(`expected ${code}, but it parsed`);
}

/** A lazily parsed view that must throw a 400-able header error when read. */
function viewRejects(read: () => unknown, header: string): void {
  assert.throws(read, (e: unknown) => e instanceof SipParseError && e.header === header);
}

describe('RFC 4475 §3.1.1 valid messages parse with the right values', () => {
  it('§3.1.1.1 wsinv: LWS, folding, case, compact forms, escaped quotes', () => {
    const m = request(T.wsinv);
    assert.equal(m.method, 'INVITE');
    assert.deepEqual(sip(m.requestUri).params, { unknownparam: null });
    assert.equal(m.to.params.tag, '1918181833n');
    assert.equal(sip(m.to.uri).user, 'vivekg');
    assert.equal(m.from.displayName, 'J Rosenberg \\"');
    assert.equal(m.fromTag, '98asjd8');
    assert.equal(m.maxForwards, 68);
    assert.deepEqual(m.cseq, { seq: 9, method: 'INVITE' });
    assert.equal(m.header('subject'), '');
    assert.equal(m.header('NewFangledHeader'), 'newfangled value continued newfangled value');
    assert.equal(m.header('UnknownHeaderWithUnusualValue'), ';;,,;;,;');
    assert.deepEqual(
      m.via.map((v) => [v.transport, v.host, v.branch]),
      [
        ['UDP', '192.0.2.2', '390skdjuw'],
        ['TCP', 'spindle.example.com', 'z9hG4bK9ikj8'],
        ['UDP', '192.168.255.111', 'z9hG4bK30239'],
      ],
    );
    assert.deepEqual(sip(m.routes[0]?.uri).params, {
      lr: null,
      unknownwith: 'value',
      'unknown-no-value': null,
    });
    const [c] = list(m);
    assert.equal(c?.displayName, 'Quoted string ""');
    assert.deepEqual(c?.params, { newparam: 'newvalue', secondparam: null, q: '0.33' });
    assert.equal(m.body.length, 150);
  });

  it('§3.1.1.2 intmeth: every legal character in tokens and URIs, raw UTF-8', () => {
    const m = request(T.intmeth);
    assert.equal(m.method, T.intmethMethod); // % in a method is not an escape
    const u = sip(m.requestUri);
    assert.equal(u.user, "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*");
    assert.equal(u.password, "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)");
    assert.equal(u.host, 'example.com');
    assert.equal(m.to.displayName, 'BEL:\x07 NUL:\x00 DEL:\x7f');
    assert.equal(m.from.displayName, "token1~` token2'+_ token3*%!.-");
    assert.equal(m.from.params["fromparam''~+*_!.-%"], '"работающий"');
    assert.equal(m.fromTag, "_token~1'+`*%!-.");
    assert.equal(m.callId, 'intmeth.word%ZK-!.*_+\'@word`~)(><:\\/"][?}{');
    assert.equal(m.cseq.method, T.intmethMethod);
    assert.equal(m.topVia?.branch, "z9hG4bK-.!%66*_+`'~");
    assert.equal(m.header("extensionHeader-!.%*+_`'~"), '\ufeff大停電');
  });

  it('§3.1.1.3 esc01: %-escapes decode in URI user parts and parameters', () => {
    const m = request(T.esc01);
    assert.equal(sip(m.requestUri).user, 'sips:user@example.com');
    assert.equal(sip(m.to.uri).user, 'user');
    assert.equal(sip(m.from.uri).user, 'I have spaces');
    assert.equal(m.callId, 'esc01.239409asdfakjkn23onasd0-3234');
    assert.equal(m.contentType, 'application/sdp');
    const c = sip(list(m)[0]?.uri);
    assert.equal(c.user, 'caller');
    assert.deepEqual(c.params, { lr: null, name: 'value%41' });
  });

  it('§3.1.1.4 escnull: escaped NULs are data', () => {
    const m = request(T.escnull);
    assert.equal(sip(m.to.uri).user, 'null-\x00-null');
    assert.deepEqual(
      list(m).map((c) => sip(c.uri).user),
      ['\x00', '\x00\x00'],
    );
  });

  it('§3.1.1.5 esc02: % is not an escape in methods, header names, display names', () => {
    const m = request(T.esc02);
    assert.equal(m.method, 'RE%47IST%45R'); // an unknown method, not REGISTER
    assert.equal(m.cseq.method, 'RE%47IST%45R');
    assert.equal(m.to.displayName, '%Z%45');
    assert.deepEqual(
      list(m).map((c) => sip(c.uri).user),
      ['alias1', 'alias3'],
    );
    assert.equal(m.header('C%6Fntact'), '<sip:alias2@host2.example.com>');
    assert.equal(m.topVia?.rport, null);
  });

  it('§3.1.1.6 lwsdisp: display name directly before <', () => {
    const m = request(T.lwsdisp);
    assert.equal(m.from.displayName, 'caller');
    assert.equal(sip(m.from.uri).user, 'caller');
  });

  it('§3.1.1.7 longreq: long values and 34 Vias over Via/v/V lines', () => {
    const m = request(T.longreq);
    assert.equal(m.via.length, T.longreqVias);
    assert.equal(m.via[0]?.host, 'sip33.example.com');
    assert.equal(m.via.at(-1)?.received, '192.0.2.1');
    assert.equal(m.callId, T.longreqCallId);
    assert.equal(m.fromTag, `12${'982'.repeat(50)}424`);
    assert.equal(sip(m.to.uri).port, 6000);
    assert.equal(m.body.length, Number(m.header('l')));
  });

  it('§3.1.1.8 dblreq: octets after Content-Length are ignored (RFC 3261 §18.3)', () => {
    const m = request(T.dblreq);
    assert.equal(m.method, 'REGISTER');
    assert.equal(m.body.length, 0);
    assert.equal(sip(list(m)[0]?.uri).host, 'host.example.com');
  });

  it('§3.1.1.9 semiuri: ; inside the user part', () => {
    const m = request(T.semiuri);
    const u = sip(m.requestUri);
    assert.equal(u.user, 'user;par=u@example.net');
    assert.equal(u.host, 'example.com');
    assert.deepEqual(u.params, {});
    assert.equal(m.headers.getList('Accept').length, 6);
  });

  it('§3.1.1.10 transports: known and unknown transports', () => {
    const m = request(T.transports);
    assert.deepEqual(
      m.via.map((v) => v.transport),
      ['UDP', 'SCTP', 'TLS', 'UNKNOWN', 'TCP'],
    );
    assert.equal(m.callId, 'transports.kijh4akdnaqjkwendsasfdj');
  });

  it('§3.1.1.11 mpart01: a binary multipart body survives byte for byte', () => {
    const m = request(T.mpart01);
    assert.deepEqual(m.body, T.mpart01Body);
    assert.ok(m.body.includes(T.mpart01Binary));
    assert.deepEqual(serialize(m).subarray(-m.body.length), T.mpart01Body);
    assert.equal(m.topVia?.port, 5070);
  });

  it('§3.1.1.12 unreason: a UTF-8 reason phrase', () => {
    const m = response(T.unreason);
    assert.equal(m.status, 200);
    assert.equal(m.reason, T.unreasonPhrase);
    assert.equal(m.body.length, Number(m.header('content-length')));
  });

  it('§3.1.1.13 noreason: an empty reason phrase', () => {
    const m = response(T.noreason);
    assert.equal(m.status, 100);
    assert.equal(m.reason, '');
  });
});

describe('RFC 4475 §3.1.2 invalid messages', () => {
  it('§3.1.2.1 badinv01: empty Via params and list elements: reject, 400', () => {
    const e = rejects(T.badinv01, 'ERR_SIP_HEADER', true);
    assert.equal(e.header, 'via');
  });

  it('§3.1.2.2 clerr: Content-Length beyond the datagram: reject, 400', () => {
    rejects(T.clerr, 'ERR_SIP_CONTENT_LENGTH', true);
  });

  it('§3.1.2.3 ncl: negative Content-Length: reject, 400', () => {
    rejects(T.ncl, 'ERR_SIP_CONTENT_LENGTH', true);
  });

  it('§3.1.2.4 scalar02: CSeq 2**65 (and Max-Forwards 300): reject, 400', () => {
    // CSeq must be < 2**31 (RFC 3261 §8.1.1.5). The huge Expires alone would be clamped.
    rejects(T.scalar02, 'ERR_SIP_CSEQ', true);
  });

  it('§3.1.2.5 scalarlg: a response with an overlarge CSeq: reject, drop (never answer a response)', () => {
    rejects(T.scalarlg, 'ERR_SIP_CSEQ', false);
  });

  it('§3.1.2.6 quotbal: unterminated quote in To: reject, 400', () => {
    assert.equal(rejects(T.quotbal, 'ERR_SIP_HEADER', true).header, 'to');
  });

  it('§3.1.2.7 ltgtruri: Request-URI in <>: reject, 400', () => {
    rejects(T.ltgtruri, 'ERR_SIP_START_LINE', true);
  });

  it('§3.1.2.8 lwsruri: LWS inside the Request-URI: reject, 400', () => {
    rejects(T.lwsruri, 'ERR_SIP_START_LINE', true);
  });

  it('§3.1.2.9 lwsstart: several SP in the request line: we take the strict choice, 400', () => {
    rejects(T.lwsstart, 'ERR_SIP_START_LINE', true);
  });

  it('§3.1.2.10 trws: SP after SIP-Version: we take the strict choice, 400', () => {
    rejects(T.trws, 'ERR_SIP_START_LINE', true);
  });

  it('§3.1.2.11 escruri: ?headers in the Request-URI (RFC 3261 §19.1.5): reject, 400', () => {
    rejects(T.escruri, 'ERR_SIP_START_LINE', true);
  });

  it('§3.1.2.12 baddate: a non-GMT Date parses; Date is not interpreted here', () => {
    assert.equal(request(T.baddate).header('Date'), 'Fri, 01 Jan 2010 16:00:00 EST');
  });

  it('§3.1.2.13 regbadct: addr-spec Contact with ?headers: parses; reading Contact throws (registrar: 400)', () => {
    viewRejects(() => request(T.regbadct).contacts, 'contact');
  });

  it('§3.1.2.14 badaspec: LWS inside <> in To: reject, 400', () => {
    assert.equal(rejects(T.badaspec, 'ERR_SIP_HEADER', true).header, 'to');
  });

  it('§3.1.2.15 baddn: unquoted display name with a comma: reject, 400', () => {
    assert.equal(rejects(T.baddn, 'ERR_SIP_HEADER', true).header, 'from');
  });

  it('§3.1.2.16 badvers: SIP/7.0 parses; the layer above answers 505', () => {
    const m = request(T.badvers);
    assert.equal(m.version, 'SIP/7.0');
    assert.equal(m.topVia?.version, '7.0');
  });

  it('§3.1.2.17 mismatch01: CSeq method differs: reject, 400', () => {
    rejects(T.mismatch01, 'ERR_SIP_CSEQ', true);
  });

  it('§3.1.2.18 mismatch02: unknown method and CSeq mismatch: reject, 400', () => {
    rejects(T.mismatch02, 'ERR_SIP_CSEQ', true);
  });

  it('§3.1.2.19 bigcode: status 4294967301: reject, drop', () => {
    rejects(T.bigcode, 'ERR_SIP_START_LINE', false);
  });
});

describe('RFC 4475 §3.2-3.4 transaction, application and compatibility cases', () => {
  it('§3.2.1 badbranch: the bare magic cookie parses, and is no RFC 3261 branch', () => {
    const m = request(T.badbranch);
    assert.equal(m.topVia?.branch, 'z9hG4bK');
    assert.equal(isRfc3261Branch(m.topVia?.branch), false);
  });

  it('§3.3.1 insuf: To, From, Call-ID missing: reject, 400 (as the RFC would ideally have it)', () => {
    const err = rejects(T.insuf, 'ERR_SIP_MISSING_HEADER', true);
    const res = createBadRequest(err)!;
    assert.equal(res.reason, 'Bad Request (missing From, To, Call-ID headers)');
    for (const h of ['From', 'To', 'Call-ID']) assert.equal(res.headers.has(h), false, h);
    assert.equal(res.headers.get('CSeq'), '193942 INVITE');
  });

  it('§3.3.2 unkscm: unknown Request-URI scheme parses opaque; the layer above answers 416', () => {
    const m = request(T.unkscm);
    assert.deepEqual(m.requestUri as AbsoluteUri, {
      scheme: 'nobodyknowsthisscheme',
      opaque: 'totallyopaquecontent',
    });
  });

  it('§3.3.3 novelsc: soap.beep:// parses opaque; 416 above', () => {
    const u = request(T.novelsc).requestUri as AbsoluteUri;
    assert.equal(u.scheme, 'soap.beep');
    assert.equal(u.opaque, '//192.0.2.103:3002');
  });

  it('§3.3.4 unksm2: isbn: To and http: From parse; the scheme-less Contact throws when read', () => {
    const m = request(T.unksm2);
    assert.deepEqual(m.to.uri, { scheme: 'isbn', opaque: '2983792873' });
    assert.equal((m.from.uri as AbsoluteUri).scheme, 'http');
    viewRejects(() => m.contacts, 'contact');
  });

  it('§3.3.5 bext01: unknown extensions are listed; the layer above answers 420', () => {
    const m = request(T.bext01);
    assert.deepEqual(m.headers.getList('Require'), [
      'nothingSupportsThis',
      'nothingSupportsThisEither',
    ]);
    assert.equal(m.headers.getList('Proxy-Require').length, 2);
  });

  it('§3.3.6 invut: unknown Content-Type parses with its body; 415 above', () => {
    const m = request(T.invut);
    assert.equal(m.contentType, 'application/unknownformat');
    assert.equal(m.body.toString(), T.invutBody);
  });

  it('§3.3.7 regaut01: unknown Authorization scheme parses; 401 above', () => {
    assert.equal(
      request(T.regaut01).header('authorization'),
      'NoOneKnowsThisScheme opaque-data=here',
    );
  });

  it('§3.3.8 multi01: several To/From/Call-ID/CSeq/Max-Forwards: reject, 400', () => {
    rejects(T.multi01, 'ERR_SIP_DUPLICATE_HEADER', true);
  });

  it('§3.3.9 mcl01: two Content-Length: reject, 400', () => {
    rejects(T.mcl01, 'ERR_SIP_CONTENT_LENGTH', true);
  });

  it('§3.3.10 bcast: a broadcast second Via parses; responses route on the top Via only', () => {
    const m = response(T.bcast);
    assert.equal(m.via[1]?.host, '255.255.255.255');
  });

  it('§3.3.11 zeromf: Max-Forwards 0 parses; a proxy answers 483 (OPTIONS may be answered)', () => {
    assert.equal(request(T.zeromf).maxForwards, 0);
  });

  it('§3.3.12 cparam01: addr-spec Contact: ;unknownparam is a contact-param', () => {
    const [c] = list(request(T.cparam01));
    assert.deepEqual(sip(c?.uri).params, {});
    assert.deepEqual(c?.params, { unknownparam: null });
  });

  it('§3.3.13 cparam02: <> Contact: ;unknownparam is a URI parameter', () => {
    const [c] = list(request(T.cparam02));
    assert.deepEqual(sip(c?.uri).params, { unknownparam: null });
    assert.deepEqual(c?.params, {});
  });

  it('§3.3.14 regescrt: escaped Route inside a <> Contact URI is legal', () => {
    const [c] = list(request(T.regescrt));
    assert.deepEqual(sip(c?.uri).headers, { Route: '<sip:sip.example.com>' });
    assert.equal(contactExpires(c!), undefined);
  });

  it('§3.3.15 sdp01: body type not in Accept parses; 415 above', () => {
    const m = request(T.sdp01);
    assert.equal(m.header('Accept'), 'text/nobodyKnowsThis');
    assert.equal(m.contentType, 'application/sdp');
  });

  it('§3.4.1 inv2543: RFC 2543 INVITE (no cookie, no tag, no Max-Forwards, no Content-Length)', () => {
    const m = request(T.inv2543);
    assert.equal(m.topVia?.branch, undefined);
    assert.equal(m.fromTag, undefined);
    assert.equal(m.maxForwards, undefined);
    assert.ok(m.body.toString().startsWith('v=0'));
    // To is an addr-spec: ;user=phone belongs to the header, not the URI (RFC 3261 §20.10)
    assert.deepEqual(sip(m.to.uri).params, {});
    assert.equal(m.to.params.user, 'phone');
    assert.equal(sip(m.from.uri).params.user, 'phone');
    assert.equal(sip(m.recordRoutes[0]?.uri).params.maddr, 'ss1.example.com');
  });
});

describe('hostile input', () => {
  it('rejects oversized input, truncated heads and garbage without crashing', () => {
    rejects(Buffer.alloc(70_000, 0x41), 'ERR_SIP_TOO_LARGE', false);
    rejects(T.lwsdisp.subarray(0, 60), 'ERR_SIP_INCOMPLETE', false);
    rejects(Buffer.from('\x00\x01\x02garbage\r\n\r\n'), 'ERR_SIP_START_LINE', false);
    rejects(T.msg(['OPTIONS sip:a@b SIP/2.0', ': no name', 'l: 0']), 'ERR_SIP_HEADER', false);
    // every prefix of a valid message either parses or throws SipParseError
    for (let n = 0; n < T.wsinv.length; n += 7) {
      try {
        parseSipMessage(T.wsinv.subarray(0, n));
      } catch (err) {
        assert.ok(err instanceof SipParseError, `prefix ${n}: ${err}`);
      }
    }
  });
});
