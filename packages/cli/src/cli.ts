// The command line: parses arguments with yargs, runs one command, turns any failure into one
// line on stderr and an exit code (2: usage, 1: anything else).

import { closeSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { isatty } from 'node:tty';
import {
  dataDirPaths,
  exportUserKey,
  isUserName,
  readSavedConfig,
  SOFTWARE_VERSION,
  USER_NAME_RULE,
  userKeyOf,
  userKeyPath,
} from '@peerbx/overlay-core';
import type yargsFactory from 'yargs';
import type { Argv } from 'yargs';
import { caInit, caIssue } from './commands/ca.js';
import {
  expandHome,
  isDomainName,
  loadDataDir,
  loadSettings,
  type RawSettings,
} from './config/node-config.js';
import {
  DEFAULT_CERT_DAYS,
  DEFAULT_DOMAIN,
  DEFAULT_LOG_LEVEL,
  DEFAULT_OVERLAY_LISTEN,
  DEFAULT_SIP_LISTEN,
  DEFAULT_WS_LISTEN,
  ENV,
  LEAVE_TIMEOUT_MS,
  LOG_LEVELS,
} from './constants.js';
import { controlRequest } from './control/client.js';
import type {
  ControlOp,
  LookupView,
  PeerView,
  PingView,
  StatusView,
  TraceView,
} from './control/protocol.js';
import { runDemo } from './demo/demo.js';
import { CliError, describeError } from './errors.js';
import {
  formatLookup,
  formatPeers,
  formatPing,
  formatStatus,
  formatTrace,
} from './format/views.js';
import { createLogger } from './logger.js';
import { prepareDataDir } from './node/data-dir.js';
import { isAor, parseNodeId, startNode } from './node/runner.js';
import { onNpmParentGone } from './parent.js';

/**
 * yargs' CommonJS build: its ESM build lays help out with a wrap that cuts words in two
 * ("127.0" / ".0.1:5066"); the CommonJS one wraps between words.
 */
const yargs = createRequire(import.meta.url)('yargs') as typeof yargsFactory;

// A reader that went away (`peerbx demo | head -1`) is no failure: what is left to print is
// dropped, and the command finishes (the demo stops its nodes and removes its files).
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE' && err.code !== 'ERR_STREAM_DESTROYED') throw err;
});
const out = (text: string) => {
  if (!process.stdout.destroyed) process.stdout.write(`${text}\n`);
};

interface NodeFlags {
  'data-dir'?: string;
  overlay?: string;
  bootstrap?: string[];
  sip?: string;
  ws?: string;
  domain?: string;
  'log-level'?: string;
  'overlay-config'?: string;
  auth?: string;
  config?: string;
}

function dataDirFlags<T>(y: Argv<T>) {
  return y
    .option('data-dir', {
      type: 'string',
      describe: `node data directory [env ${ENV.dataDir}] (default ~/.peerbx)`,
    })
    .option('config', {
      type: 'string',
      describe: `settings file, JSON or YAML [env ${ENV.config}]`,
    });
}

/** What `init` takes: the data directory and the overlay it is to belong to. */
function initFlags<T>(y: Argv<T>) {
  return dataDirFlags(y)
    .option('domain', {
      type: 'string',
      describe: `SIP domain of a new overlay [env ${ENV.domain}] (default ${DEFAULT_DOMAIN})`,
    })
    .option('overlay-config', {
      type: 'string',
      describe: `overlay configuration to join, e.g. the signed one from \`peerbx ca init\` [env ${ENV.overlayConfig}]`,
    });
}

function nodeFlags<T>(y: Argv<T>) {
  return initFlags(y)
    .option('overlay', {
      type: 'string',
      describe: `overlay listen HOST:PORT, UDP (and TCP links) [env ${ENV.overlay}] (default ${DEFAULT_OVERLAY_LISTEN})`,
    })
    .option('bootstrap', {
      type: 'string',
      array: true,
      requiresArg: true,
      describe: `overlay HOST:PORT of a running node to join through; repeatable; none founds a new overlay [env ${ENV.bootstrap}, comma-separated]`,
    })
    .option('sip', {
      type: 'string',
      describe: `SIP listen HOST:PORT, UDP and TCP [env ${ENV.sip}] (default ${DEFAULT_SIP_LISTEN})`,
    })
    .option('ws', {
      type: 'string',
      describe: `SIP over WebSocket listen HOST:PORT, or "off" [env ${ENV.ws}] (default ${DEFAULT_WS_LISTEN})`,
    })
    .option('log-level', {
      type: 'string',
      describe: `${LOG_LEVELS.join(', ')} [env ${ENV.logLevel}] (default ${DEFAULT_LOG_LEVEL})`,
    })
    .option('auth', {
      type: 'string',
      describe: `digest authentication of phones: auto (when SIP listens beyond loopback), always, never; accounts go under "users" in the config file [env ${ENV.auth}] (default auto)`,
    });
}

function settingsOf(a: NodeFlags) {
  const flags: RawSettings & { config?: string } = {
    dataDir: a['data-dir'],
    overlay: a.overlay,
    bootstrap: a.bootstrap && a.bootstrap.length > 0 ? a.bootstrap : undefined,
    sip: a.sip,
    ws: a.ws,
    domain: a.domain,
    logLevel: a['log-level'],
    overlayConfig: a['overlay-config'],
    auth: a.auth,
  };
  if (a.config !== undefined) flags.config = a.config;
  return loadSettings(flags);
}

/** A second stop signal this soon after the first is the same stop, not an insistence, ms. */
const SIGNAL_REPEAT_MS = 500;

/**
 * Lets go of the standard streams that were a terminal at start, once that terminal hung up
 * (SIGHUP). Node restores a terminal's settings at exit and aborts (SIGABRT, a core dump) when
 * the terminal is gone; a closed descriptor it skips. Asked once hung up, isatty says no.
 */
function releaseTerminal(terminals: readonly number[]): void {
  for (const fd of terminals) {
    try {
      closeSync(fd);
    } catch {
      // Closed already: nothing to let go of.
    }
  }
}

async function startCommand(a: NodeFlags): Promise<void> {
  const terminals = [0, 1, 2].filter((fd) => isatty(fd));
  const settings = settingsOf(a);
  // Until ready, info lines are held back (unless debugging), so a failed start is one line.
  const { log, started } = await createLogger(settings.logLevel, settings.logLevel === 'info');
  const node = await startNode(settings, log);
  started();
  log.info({ node: node.overlay.stats().nodeId }, 'ready');
  // Handlers go in before the ready line, so a signal right after it is a graceful leave.
  // Its terminal hung up: let go of it before any exit.
  let hungUp = false;
  const stopped = new Promise<void>((resolve) => {
    let signalledAt: number | undefined;
    const onSignal = (signal: NodeJS.Signals) => {
      if (signal === 'SIGHUP') hungUp = true;
      if (signalledAt !== undefined) {
        // One stop sent twice at once (timeout(1) signals the node and its process group, a
        // supervisor both the npm wrapper and the node) is one request to leave; a second one
        // later is the user insisting.
        if (Date.now() - signalledAt < SIGNAL_REPEAT_MS) return;
        log.warn({ signal }, 'second signal: exiting without a graceful leave');
        if (hungUp) releaseTerminal(terminals);
        process.exit(1);
      }
      signalledAt = Date.now();
      log.info({ signal }, 'leaving the overlay');
      const timer = setTimeout(() => {
        log.warn({ timeoutMs: LEAVE_TIMEOUT_MS }, 'graceful leave took too long; closing');
        void node.stop(false).then(resolve, resolve);
      }, LEAVE_TIMEOUT_MS);
      node.stop(true).then(
        () => {
          clearTimeout(timer);
          log.info({}, 'stopped');
          resolve();
        },
        (err: unknown) => {
          clearTimeout(timer);
          log.error({ err: describeError(err).message }, 'leave failed');
          resolve();
        },
      );
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    // Its terminal or SSH session closed: a leave, not the abrupt exit SIGHUP's default is
    // (the settings are read at start only; there is nothing to reload).
    process.on('SIGHUP', onSignal);
    // Run by npm: the parent gone is the SIGTERM it did not pass on (parent.ts).
    onNpmParentGone(() => onSignal('SIGTERM'));
  });
  out(node.readyLine);
  await stopped;
  if (hungUp) releaseTerminal(terminals);
}

async function initCommand(a: NodeFlags & { json?: boolean }): Promise<void> {
  const settings = settingsOf(a);
  const p = prepareDataDir(settings, settings.domainGiven);
  const view = {
    dataDir: p.paths.root,
    nodeId: p.nodeId,
    overlay: p.config.name,
    enrollment: p.config.enrollment,
    domain: p.config.domain,
    created: p.created,
  };
  if (a.json) out(JSON.stringify(view));
  else
    out(
      `${p.created ? 'initialised' : 'already initialised:'} ${view.dataDir}: node ${view.nodeId}, overlay "${view.overlay}" (${view.enrollment}), domain ${view.domain}`,
    );
}

/**
 * Which key owns a user's name in the overlay, asked of the node running with `dataDir`:
 * `key` (hex) once the name is claimed; `checked` false, with why, when no node answered.
 */
async function nameOwner(
  dataDir: string,
  user: string,
): Promise<{ checked: true; key?: string } | { checked: false; key?: undefined; why: string }> {
  try {
    const view = (await controlRequest(dataDir, { op: 'lookup', arg: user })) as LookupView;
    return view.owner === undefined ? { checked: true } : { checked: true, key: view.owner };
  } catch (err) {
    const { code, message } = describeError(err);
    return {
      checked: false,
      why: code === 'ERR_NOT_RUNNING' ? 'no node is running with this data directory' : message,
    };
  }
}

/** A command's outcome a script can test, told by its exit code once its output is out. */
class ExitStatus extends Error {
  constructor(readonly status: number) {
    super(`exit ${status}`);
  }
}

/** `peerbx lookup`'s exit code for a user registered nowhere (as `systemctl is-active` 3). */
export const EXIT_NOT_REGISTERED = 3;

/** 0 for a user registered somewhere: phones bound here ring, the overlay's record written or not. */
export function lookupExitStatus(v: Pick<LookupView, 'locations' | 'local'>): number {
  return v.locations.length === 0 && v.local.length === 0 ? EXIT_NOT_REGISTERED : 0;
}

async function controlCommand(
  op: ControlOp,
  a: NodeFlags & { json?: boolean; arg?: string },
  render: (result: unknown, dataDir: string) => string | Promise<string>,
  exitStatus?: (result: unknown) => number,
): Promise<void> {
  const dataDir = loadDataDir({
    dataDir: a['data-dir'],
    ...(a.config ? { config: a.config } : {}),
  });
  // The node's other settings come from its config file: started without it, it would not
  // be the node asked for.
  const arg = (path: string) => (/\s/.test(path) ? `'${path}'` : path);
  const startWith = a.config
    ? `--config ${arg(a.config)}${a['data-dir'] ? ` --data-dir ${arg(dataDir)}` : ''}`
    : undefined;
  const result = await controlRequest(
    dataDir,
    { op, ...(a.arg !== undefined ? { arg: String(a.arg) } : {}) },
    undefined,
    startWith,
  );
  out(a.json ? JSON.stringify(result) : await render(result, dataDir));
  const status = exitStatus?.(result) ?? 0;
  if (status !== 0) throw new ExitStatus(status);
}

function buildParser(argv: string[]) {
  const defaultCaDir = join(homedir(), '.peerbx-ca');
  return yargs(argv)
    .scriptName('peerbx')
    .usage(
      '$0 <command> [options]\n\nServerless SIP: a registrar and proxy on a peer-to-peer overlay.',
    )
    .command(
      'start',
      'run a node in the foreground (prints one "peerbx ready ..." line on stdout)',
      (y) => nodeFlags(y),
      (a) => startCommand(a),
    )
    .command(
      'init',
      'create the data directory, node key and overlay configuration without starting',
      // The listen addresses and the rest are start's: init takes none (strict: a usage error).
      (y) => initFlags(y).option('json', { type: 'boolean', describe: 'machine-readable output' }),
      (a) => initCommand(a),
    )
    .command(
      'status',
      'show the running node of a data directory',
      (y) => dataDirFlags(y).option('json', { type: 'boolean', describe: 'JSON output' }),
      (a) => controlCommand('status', a, (r) => formatStatus(r as StatusView)),
    )
    .command(
      'peers',
      "list the node's routing table",
      (y) => dataDirFlags(y).option('json', { type: 'boolean', describe: 'JSON output' }),
      (a) =>
        controlCommand('peers', a, async (r, dataDir) => {
          const peers = r as PeerView[];
          if (peers.length > 0) return formatPeers(peers);
          // None: alone, or cut off and rejoining? The status knows.
          const status = (await controlRequest(dataDir, { op: 'status' })) as StatusView;
          return formatPeers(peers, status.routingTable.isolated);
        }),
    )
    .command(
      'lookup <aor>',
      'find where a user is registered (alice, alice@domain or sip:alice@domain); exit 3 when nowhere',
      (y) =>
        dataDirFlags(y)
          .positional('aor', { type: 'string', demandOption: true })
          .option('json', { type: 'boolean', describe: 'JSON output' })
          .check((a) => {
            if (isAor(a.aor)) return true;
            throw new CliError(
              'ERR_USAGE',
              `"${a.aor}" is not an AOR; give a user such as alice, alice@peerbx.local or sip:alice@peerbx.local`,
            );
          }),
      (a) =>
        controlCommand(
          'lookup',
          { ...a, arg: a.aor },
          (r) => formatLookup(r as LookupView),
          (r) => lookupExitStatus(r as LookupView),
        ),
    )
    .command(
      'ping <node-id>',
      'ping a node of the overlay by its node-ID (64 hex digits)',
      (y) =>
        dataDirFlags(y)
          .positional('node-id', { type: 'string', demandOption: true })
          .option('json', { type: 'boolean', describe: 'JSON output' })
          // Before asking the node: with none running, that would be all it said (QA).
          .check((a) => parseNodeId(String(a['node-id'])) !== undefined),
      (a) => controlCommand('ping', { ...a, arg: a['node-id'] }, (r) => formatPing(r as PingView)),
    )
    .command(
      'trace <target>',
      'show the lookup path to a node-ID or to the resource of an AOR',
      (y) =>
        dataDirFlags(y)
          .positional('target', { type: 'string', demandOption: true, describe: 'node-ID or AOR' })
          .option('json', { type: 'boolean', describe: 'JSON output' }),
      (a) => controlCommand('trace', { ...a, arg: a.target }, (r) => formatTrace(r as TraceView)),
    )
    .command(
      'user-key <user>',
      "write the key that owns a user's name at this node, to copy to other nodes of the user",
      (y) =>
        dataDirFlags(y)
          .positional('user', { type: 'string', demandOption: true })
          .option('out', {
            type: 'string',
            describe: 'write it here instead of <data-dir>/users/<user>.key',
          })
          .option('json', { type: 'boolean', describe: 'JSON output' }),
      async (a) => {
        const dataDir = loadDataDir({
          dataDir: a['data-dir'],
          ...(a.config ? { config: a.config } : {}),
        });
        const paths = dataDirPaths(dataDir);
        const saved = readSavedConfig(paths) as { enrollment?: unknown } | undefined;
        if (saved?.enrollment === 'enrolled') {
          throw new CliError(
            'ERR_USAGE',
            `this node's overlay is enrolled: a user's key goes with a certificate; run peerbx ca issue ${a.user} --data-dir DIR for each node of the user`,
          );
        }
        if (!isUserName(a.user))
          throw new CliError('ERR_USAGE', `user name "${a.user}" must be ${USER_NAME_RULE}`);
        // Checked before anything is written: a key that does not own the name, copied to the
        // node that registered the user first, would take its place there.
        const owner = await nameOwner(dataDir, a.user);
        const ours = Buffer.from(userKeyOf(paths, a.user).publicKey).toString('hex');
        if (owner.key !== undefined && owner.key !== ours) {
          // A key file here that is not the owner's may be a wrong one copied in.
          const file = existsSync(userKeyPath(paths, a.user))
            ? `; if ${a.user} first registered here, delete users/${a.user}.key`
            : '';
          throw new CliError(
            'ERR_CONFIG',
            `${a.user}'s name is owned by another key (${owner.key.slice(0, 16)}...) than this node's (${ours.slice(0, 16)}...): run peerbx user-key ${a.user} on the node where ${a.user} first registered (peerbx lookup ${a.user} lists the nodes it is registered on)${file}`,
          );
        }
        const to = a.out === undefined ? undefined : resolve(expandHome(a.out));
        const r = exportUserKey(paths, a.user, to);
        const publicKey = Buffer.from(r.publicKey).toString('hex');
        if (a.json) {
          out(
            JSON.stringify({ user: a.user, file: r.file, publicKey, ownerChecked: owner.checked }),
          );
          return;
        }
        out(`key of ${a.user}: ${r.file} (mode 0600; public key ${publicKey})`);
        if (!owner.checked) {
          out(
            `not checked against the overlay (${owner.why}): copy it only from the node where ${a.user} first registered`,
          );
        }
        out(`copy it, keeping its mode, to <data dir>/users/${a.user}.key on the other nodes`);
      },
    )
    .command('ca', 'the overlay authority of an enrolled (office) overlay', (y) =>
      y
        .command(
          'init',
          'create the authority key and the signed enrolled overlay configuration',
          (z) =>
            z
              .option('ca-dir', {
                type: 'string',
                default: defaultCaDir,
                describe: 'authority directory (keep it offline)',
              })
              .option('domain', { type: 'string', default: DEFAULT_DOMAIN, describe: 'SIP domain' })
              .option('name', { type: 'string', describe: 'overlay name (default peerbx)' })
              .option('json', { type: 'boolean', describe: 'JSON output' }),
          (a) => {
            const r = caInit({
              caDir: expandHome(a['ca-dir']),
              domain: a.domain,
              ...(a.name ? { name: a.name } : {}),
            });
            if (a.json) {
              out(JSON.stringify(r));
              return;
            }
            out(`authority key        ${r.keyFile} (mode 0600; keep it offline)`);
            out(`overlay config       ${r.configFile} (enrolled, domain ${r.domain}, signed)`);
            out(`authority public key ${r.authorityKey}`);
            out(`next: on each node   peerbx init --overlay-config ${r.configFile} --data-dir DIR`);
            // The authority directory only when it is not the default: the hint runs as printed.
            const caDir = resolve(expandHome(a['ca-dir']));
            const caFlag = caDir === resolve(defaultCaDir) ? '' : ` --ca-dir ${caDir}`;
            out(`      for each user  peerbx ca issue USER${caFlag} --data-dir DIR`);
          },
        )
        .command(
          'issue <user>',
          "issue a user certificate into a node's data directory (or for a given public key)",
          (z) =>
            z
              .positional('user', { type: 'string', demandOption: true })
              .option('ca-dir', {
                type: 'string',
                default: defaultCaDir,
                describe: 'authority directory',
              })
              .option('data-dir', {
                type: 'string',
                describe:
                  "node data directory: the user's key is made there, the cert written to users/<user>.cert",
              })
              .option('public-key', {
                type: 'string',
                describe: "the user's Ed25519 public key (hex), when the node is elsewhere",
              })
              .option('out', { type: 'string', describe: 'write the certificate here instead' })
              .option('days', { type: 'number', default: DEFAULT_CERT_DAYS, describe: 'validity' })
              .option('json', { type: 'boolean', describe: 'JSON output' }),
          (a) => {
            const dataDir =
              a['public-key'] === undefined
                ? expandHome(
                    a['data-dir'] ?? process.env[ENV.dataDir] ?? join(homedir(), '.peerbx'),
                  )
                : undefined;
            const r = caIssue({
              caDir: expandHome(a['ca-dir']),
              user: a.user,
              days: a.days,
              ...(dataDir ? { dataDir } : {}),
              ...(a['public-key'] ? { publicKey: a['public-key'] } : {}),
              ...(a.out ? { out: a.out } : {}),
            });
            if (a.json) {
              out(JSON.stringify(r));
              return;
            }
            out(`certificate for ${r.user} (valid until ${r.notAfter}): ${r.certFile}`);
            if (r.copyNeeded)
              out(
                `copy it to <node data dir>/users/${r.user}.cert on the node where ${r.user} registers`,
              );
          },
        )
        .demandCommand(1, 'name a ca command: init or issue'),
    )
    .command(
      'demo',
      'run a small overlay on this machine and place demo calls between alice, bob and carol',
      (y) =>
        y
          .option('nodes', {
            type: 'string',
            requiresArg: true,
            default: '3',
            describe: 'node processes to start (2-8)',
          })
          .option('keep', {
            type: 'boolean',
            default: false,
            describe: 'keep the nodes running for a real softphone (Ctrl-C stops them)',
          })
          .option('domain', { type: 'string', default: DEFAULT_DOMAIN, describe: 'SIP domain' }),
      async (a) => {
        const nodes = /^\d+$/.test(a.nodes.trim()) ? Number(a.nodes) : Number.NaN;
        if (!(nodes >= 2 && nodes <= 8))
          throw new CliError(
            'ERR_USAGE',
            `--nodes must be an integer from 2 to 8, not ${JSON.stringify(a.nodes)}`,
          );
        // Checked here: else the first node refuses it, after "Starting 3 nodes".
        if (!isDomainName(a.domain.toLowerCase()))
          throw new CliError(
            'ERR_USAGE',
            `bad --domain: ${JSON.stringify(a.domain)} is not a DNS name such as peerbx.local`,
          );
        await runDemo({ nodes, keep: a.keep, domain: a.domain, print: out });
      },
    )
    .demandCommand(1, 'name a command; see peerbx --help')
    .check((a) => {
      // yargs makes a repeated flag an array; only --bootstrap is meant to repeat.
      for (const [key, value] of Object.entries(a)) {
        if (!Array.isArray(value) || key === '_' || key === 'bootstrap' || /[A-Z]/.test(key))
          continue;
        throw new CliError(
          'ERR_USAGE',
          `--${key} given ${value.length} times (${value.join(', ')}); give it once`,
        );
      }
      return true;
    }, true)
    .strict()
    .version(SOFTWARE_VERSION)
    .help()
    .alias('h', 'help')
    .wrap(Math.min(110, process.stdout.columns || 100))
    .exitProcess(false)
    .fail((msg, err) => {
      // yargs' own complaints (a flag without its value, say) are usage errors too.
      if (err && err.name !== 'YError') throw err;
      // yargs capitalises its messages; the line reads "peerbx: error: unknown argument ...".
      const yargsSaid = msg ?? err?.message ?? 'bad command line';
      const said = yargsSaid.charAt(0).toLowerCase() + yargsSaid.slice(1);
      const text = usageProblem(argv, said) ?? said;
      throw new CliError('ERR_USAGE', /--help/.test(text) ? text : `${text}; see peerbx --help`);
    });
}

/** What each command takes as its argument, for a command given without it. */
const COMMAND_ARGUMENTS: Record<string, string> = {
  lookup: 'an AOR: a user such as alice, alice@peerbx.local or sip:alice@peerbx.local',
  ping: 'the node-ID of a node (64 hex digits; peerbx peers lists them)',
  trace: 'a node-ID (64 hex digits) or an AOR such as alice',
  'user-key': 'a user name such as alice',
};
const COMMANDS = [
  'start',
  'init',
  'status',
  'peers',
  'lookup',
  'ping',
  'trace',
  'user-key',
  'ca',
  'demo',
];

/**
 * A clearer word than yargs' for the usual slips: a misspelt command (yargs lists it among
 * "unknown arguments" with every flag), a command without its argument.
 */
function usageProblem(argv: readonly string[], said: string): string | undefined {
  const command = argv[0];
  if (command === undefined || command.startsWith('-')) return undefined;
  if (!COMMANDS.includes(command))
    return `unknown command "${command}" (commands: ${COMMANDS.join(', ')})`;
  const wanted = COMMAND_ARGUMENTS[command];
  if (wanted && /^not enough non-option arguments/.test(said)) return `${command} needs ${wanted}`;
  const unknown = /^unknown arguments?: (.*)$/.exec(said);
  if (!unknown?.[1]) return undefined;
  // yargs lists --foo-bar twice, as foo-bar and as fooBar.
  const listed = unknown[1].split(', ');
  const camel = (n: string) => n.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
  const names = listed.filter((n) => !listed.some((m) => m !== n && camel(m) === n));
  const startOnly = names.find((n) => START_ONLY_FLAGS.includes(n) && given(argv, n) !== undefined);
  if (command !== 'start' && startOnly) {
    return `${command} takes no --${startOnly}: that is a setting of peerbx start (or of the config file)`;
  }
  // yargs names a flag without its dashes: "unknown argument: sip" for --sip.
  const flags = names.map((n) => given(argv, n)).filter((f) => f !== undefined);
  const others = names.filter((n) => given(argv, n) === undefined).map((n) => `"${n}"`);
  return [
    flags.length > 0 ? `unknown flag${flags.length > 1 ? 's' : ''} ${flags.join(', ')}` : '',
    others.length > 0
      ? `unexpected argument${others.length > 1 ? 's' : ''} ${others.join(', ')}`
      : '',
  ]
    .filter(Boolean)
    .join('; ');
}

/** Flags of peerbx start that other commands do not take. */
const START_ONLY_FLAGS = ['overlay', 'bootstrap', 'sip', 'ws', 'log-level', 'auth'];

/** The flag `name` as the command line gives it (--name, --name=value, -n, --no-name), if it does. */
function given(argv: readonly string[], name: string): string | undefined {
  const forms = name.length === 1 ? [`-${name}`, `--${name}`] : [`--${name}`];
  for (const a of argv) {
    if (a === `--no-${name}`) return a;
    const form = forms.find((f) => a === f || a.startsWith(`${f}=`));
    if (form) return form;
  }
  return undefined;
}

/** Runs the command line; resolves to the exit code. */
export async function main(argv: string[]): Promise<number> {
  try {
    await buildParser(argv).parseAsync();
    return 0;
  } catch (err) {
    if (err instanceof ExitStatus) return err.status;
    const { code, message } = describeError(err);
    process.stderr.write(`peerbx: error: ${message}\n`);
    return code === 'ERR_USAGE' ? 2 : 1;
  }
}
