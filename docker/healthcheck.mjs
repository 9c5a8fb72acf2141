// Container healthcheck: sends one SIP OPTIONS over UDP to the node's own SIP port and exits 0
// on any final response. The node binds its SIP port only after it has joined the overlay, so
// an answer means "ready". Reads PEERBX_SIP (HOST:PORT, default 0.0.0.0:5060).
import { createSocket } from 'node:dgram';

const [host0, port0] = (process.env.PEERBX_SIP || '0.0.0.0:5060').split(/:(?=\d+$)/);
const host = !host0 || host0 === '0.0.0.0' ? '127.0.0.1' : host0;
const port = Number(port0 || 5060);
const sock = createSocket('udp4');
const timer = setTimeout(() => {
  console.error(`no SIP answer from ${host}:${port}`);
  process.exit(1);
}, 3000);

sock.on('message', (m) => {
  const line = m.toString().split('\r\n')[0] || '';
  if (/^SIP\/2\.0 [2-6]\d\d/.test(line)) {
    clearTimeout(timer);
    console.log(line);
    process.exit(0);
  }
});
sock.bind(0, host === '127.0.0.1' ? '127.0.0.1' : undefined, () => {
  const local = sock.address();
  const tag = Math.random().toString(36).slice(2);
  const msg = [
    `OPTIONS sip:${host}:${port} SIP/2.0`,
    `Via: SIP/2.0/UDP ${local.address}:${local.port};branch=z9hG4bK-hc-${tag};rport`,
    `From: <sip:healthcheck@${host}>;tag=${tag}`,
    `To: <sip:${host}:${port}>`,
    `Call-ID: hc-${tag}@healthcheck`,
    'CSeq: 1 OPTIONS',
    'Max-Forwards: 70',
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n');
  sock.send(msg, port, host);
});
