// The browser phone of the Chromium test (browser-phone.test.ts): sip.js's SimpleUser, the
// way a web phone uses it, with a real RTCPeerConnection (Chromium's fake microphone). It
// answers every call and tells the test what happened through window.phone.
import { Web } from '/sip.js/index.js';

const events = [];
let user;
// Where the far side's audio plays, as in a web phone (a live call has no captions to give).
const remote = document.body.appendChild(document.createElement('audio'));
remote.autoplay = true;

function note(what) {
  events.push(what);
}

window.phone = {
  events,
  /**
   * Connects over WebSocket to the node and registers; resolves when the REGISTER got its 200.
   * `reconnect`: sip.js's reconnectionAttempts and reconnectionDelay (s), when given.
   */
  async register(server, aor, reconnect) {
    user = new Web.SimpleUser(server, {
      aor,
      ...(reconnect ? { reconnectionAttempts: reconnect[0], reconnectionDelay: reconnect[1] } : {}),
      media: {
        constraints: { audio: true, video: false },
        remote: { audio: remote },
      },
      delegate: {
        onCallReceived: () => {
          note('incoming');
          user.answer().catch((err) => note(`answer failed: ${err.message}`));
        },
        onCallAnswered: () => note('answered'),
        onCallHangup: () => note('hangup'),
        onRegistered: () => note('registered'),
        onServerDisconnect: () => note('disconnected'),
        onServerConnect: () => note('connected'),
      },
    });
    await user.connect();
    await user.register();
    await new Promise((resolve, reject) => {
      const t0 = Date.now();
      const poll = setInterval(() => {
        if (events.includes('registered')) {
          clearInterval(poll);
          resolve();
        } else if (Date.now() - t0 > 10_000) {
          clearInterval(poll);
          reject(new Error('no 200 to the REGISTER within 10 s'));
        }
      }, 20);
    });
  },
  /** Calls; resolves once the INVITE got its 2xx (sip.js's onCallAnswered). */
  call(target) {
    return user.call(target);
  },
  hangup() {
    return user.hangup();
  },
  /** What the call's RTCPeerConnection received and sent so far (audio RTP). */
  async media() {
    const pc = user?.session?.sessionDescriptionHandler?.peerConnection;
    if (!pc) return { state: 'none', received: 0, sent: 0 };
    let received = 0;
    let sent = 0;
    (await pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'audio') received += s.packetsReceived ?? 0;
      if (s.type === 'outbound-rtp' && s.kind === 'audio') sent += s.packetsSent ?? 0;
    });
    return { state: pc.connectionState, received, sent };
  },
};
note('loaded');
