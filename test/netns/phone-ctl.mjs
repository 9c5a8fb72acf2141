#!/usr/bin/env node
// Drives a running baresip phone through its ctrl_tcp (run.sh runs it inside the phone's
// namespace). Steps run in order; the run fails when a wait times out.
//
//   node phone-ctl.mjs HOST:PORT STEP...
//     do:COMMAND [PARAMS]   send a command, e.g. "do:dial sip:bob@peerbx.local" (must succeed)
//     wait:EVENT[=TEXT]     wait for the next EVENT not yet waited for (whose param contains
//                           TEXT, if given), e.g. wait:CALL_ESTABLISHED or
//                           "wait:CALL_CLOSED=reset by peer"
//     registered            wait until the account's registration shows OK (reginfo)
//
// Prints "ready" once connected, one line per step done, and exits 0; on a failed step prints
// the events seen and exits 1. PHONE_CTL_TIMEOUT (seconds, default 20) bounds each wait.
import { PhoneControl, withoutColours } from '../../packages/cli/dist/test/baresip.js';

const [address, ...steps] = process.argv.slice(2);
const [host, port] = (address ?? '').split(':');
if (!host || !port || steps.length === 0) {
  console.error(
    'usage: phone-ctl.mjs HOST:PORT (do:COMMAND [PARAMS] | wait:EVENT | registered)...',
  );
  process.exit(2);
}
const timeoutMs = Number(process.env.PHONE_CTL_TIMEOUT ?? 20) * 1000;

let control;
for (const deadline = Date.now() + timeoutMs; !control; ) {
  control = await PhoneControl.connect(Number(port), host).catch(() => undefined);
  if (!control && Date.now() > deadline) {
    console.error(`no ctrl_tcp at ${address} within ${timeoutMs} ms`);
    process.exit(1);
  }
  if (!control) await new Promise((r) => setTimeout(r, 200));
}
console.log('ready');

const used = new Set();
try {
  for (const step of steps) {
    if (step.startsWith('do:')) {
      const [command, ...params] = step.slice(3).split(' ');
      const reply = await control.command(command, params.join(' '));
      if (!reply.ok) throw new Error(`${command} failed: ${reply.data}`);
    } else if (step.startsWith('wait:')) {
      const [type, text] = step.slice(5).split(/=(.*)/s);
      const e = await control.waitFor(
        type,
        (ev) => !used.has(ev) && (text === undefined || String(ev.param ?? '').includes(text)),
        timeoutMs,
      );
      used.add(e);
    } else if (step === 'registered') {
      const deadline = Date.now() + timeoutMs;
      // reginfo colours the state: look for the account's OK without the escapes.
      const registered = async () =>
        /\bOK\b/.test(withoutColours((await control.command('reginfo')).data));
      while (!(await registered())) {
        if (Date.now() > deadline) throw new Error(`not registered within ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 200));
      }
    } else {
      throw new Error(`unknown step "${step}"`);
    }
    console.log(`done ${step}`);
  }
} catch (err) {
  console.error(`FAIL at ${address}: ${err.message}`);
  console.error(`events: ${control.events.map((e) => `${e.type}(${e.param ?? ''})`).join(' ')}`);
  process.exit(1);
}
control.close();
