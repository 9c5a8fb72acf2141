// The node's web phone (served at its WebSocket address, web-phone.ts): sip.js's SimpleUser
// registered at this node over the WebSocket the page came from, with the browser's microphone
// and WebRTC media. The node passes the SDP through; media goes between the phones.
// document.body.dataset.state says where the phone is: signed-out, registering, registered,
// calling, ringing, in-call.
import { Web } from '/sip.js/index.js';

const $ = (id) => document.getElementById(id);
const remote = document.body.appendChild(document.createElement('audio'));
remote.autoplay = true;

let user;
let domain = 'peerbx.local';
/** Why the last call did not go through (its final response), shown when it ends. */
let refused;
/** The connection to the node was lost: registered again once it is back. */
let reconnecting = false;

function show(state, text) {
  document.body.dataset.state = state;
  $('status').textContent = text;
  $('login').hidden = state !== 'signed-out';
  $('dial').hidden = state !== 'registered';
  $('incoming').hidden = state !== 'ringing';
  $('hangup').hidden = state !== 'calling' && state !== 'in-call';
}

function failed(what) {
  return (err) => show(user ? 'registered' : 'signed-out', `${what}: ${err.message ?? err}`);
}

/** "bob", "bob@example.net" or "sip:bob@example.net" to a SIP URI. */
function targetUri(text) {
  const t = text.trim();
  if (/^sips?:/i.test(t)) return t;
  return t.includes('@') ? `sip:${t}` : `sip:${t}@${domain}`;
}

/** A MESSAGE received (RFC 3428): its sender and text, newest first. */
function received(from, text) {
  const item = document.createElement('li');
  item.textContent = `${from ? `${from.user}@${from.host}` : 'someone'}: ${text ?? ''}`;
  $('messages').prepend(item);
  $('messages').hidden = false;
}

/** The far side of the call, as a person reads it. */
function farSide() {
  const uri = user?.session?.remoteIdentity?.uri;
  return uri ? `${uri.user}@${uri.host}` : 'someone';
}

async function register(name, password) {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  user = new Web.SimpleUser(`${scheme}://${location.host}`, {
    aor: `sip:${name}@${domain}`,
    // A restarted node is back within seconds: keep trying a while (sip.js's default is 3).
    reconnectionAttempts: 30,
    reconnectionDelay: 2,
    media: { constraints: { audio: true, video: false }, remote: { audio: remote } },
    userAgentOptions: {
      displayName: name,
      ...(password ? { authorizationUsername: name, authorizationPassword: password } : {}),
    },
    delegate: {
      onRegistered: () => {
        reconnecting = false;
        show('registered', `Registered as ${name}@${domain}`);
      },
      onUnregistered: () => {
        if (reconnecting) show('registering', 'Lost the node; connecting again');
        else show('signed-out', 'Not registered');
      },
      onCallReceived: () => {
        refused = undefined;
        show('ringing', `${farSide()} is calling`);
      },
      onCallAnswered: () => show('in-call', `In a call with ${farSide()}`),
      // sip.js ends the session before it tells the INVITE's delegate of the final response.
      onCallHangup: () =>
        setTimeout(() => {
          show('registered', refused ?? `Call ended. Registered as ${name}@${domain}`);
          refused = undefined;
        }),
      // With an error only when the connection failed (not when this page closed it).
      onServerDisconnect: (error) => {
        if (!error) return;
        reconnecting = true;
        show('registering', 'Lost the node; connecting again');
      },
    },
  });
  // SimpleUser tells its delegate a MESSAGE's text alone (after its 200); its session
  // manager is told the whole request, sender included.
  const manager = user.sessionManager;
  if (manager?.delegate) {
    manager.delegate.onMessageReceived = (m) => received(m.request.from?.uri, m.request.body);
  }
  show('registering', `Registering ${name}@${domain}`);
  await user.connect();
  await user.register({
    requestDelegate: {
      onReject: (r) => {
        const why = `${r.message.statusCode} ${r.message.reasonPhrase}`;
        user.disconnect().catch(() => undefined);
        user = undefined;
        show('signed-out', `The node refused the registration: ${why}`);
      },
    },
  });
}

$('login').addEventListener('submit', (e) => {
  e.preventDefault();
  register($('user').value.trim(), $('password').value).catch(failed('Cannot register'));
});

$('dial').addEventListener('submit', (e) => {
  e.preventDefault();
  const to = targetUri($('target').value);
  show('calling', `Calling ${to}`);
  refused = undefined;
  user
    .call(to, undefined, {
      requestDelegate: {
        onReject: (r) => {
          // 487: the call this page hung up while it rang, ended already.
          if (r.message.statusCode === 487) return;
          refused = `${to}: ${r.message.statusCode} ${r.message.reasonPhrase}`;
        },
      },
    })
    .catch(failed('Cannot call'));
});

$('answer').addEventListener('click', () => user.answer().catch(failed('Cannot answer')));
$('decline').addEventListener('click', () => user.decline().catch(failed('Cannot decline')));
$('hangup').addEventListener('click', () => user.hangup().catch(failed('Cannot hang up')));

fetch('/peerbx.json')
  .then((r) => r.json())
  .then((info) => {
    domain = info.domain;
  })
  .catch(() => undefined)
  .finally(() => show('signed-out', 'Not registered'));
