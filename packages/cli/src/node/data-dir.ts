// What `init` does and `start` does first: the data directory, its node key, and the overlay
// configuration it belongs to (a given document, the one saved earlier, or a new open overlay).

import { readFileSync } from 'node:fs';
import {
  checkConfigSignature,
  configHash,
  type DataDirPaths,
  defaultOverlayConfig,
  ensureDataDir,
  loadNodeKey,
  nodeIdOf,
  type OverlayConfig,
  readSavedConfig,
  validateOverlayConfig,
  writeSavedConfig,
} from '@peerbx/overlay-core';
import type { NodeSettings } from '../config/node-config.js';
import { CliError, describeError } from '../errors.js';

export interface PreparedDataDir {
  paths: DataDirPaths;
  config: OverlayConfig;
  nodeId: string;
  created: boolean;
}

/** Creates (or checks) the data directory; never starts anything. */
export function prepareDataDir(settings: NodeSettings, domainGiven: boolean): PreparedDataDir {
  const paths = ensureDataDir(settings.dataDir);
  const saved = wrap(() => readSavedConfig(paths));
  let config: OverlayConfig;
  let created = false;
  if (settings.overlayConfig) {
    const given = readOverlayDocument(settings.overlayConfig);
    if (saved !== undefined) {
      const current = wrap(() => validateOverlayConfig(saved));
      if (Buffer.compare(configHash(current), configHash(given)) !== 0) {
        throw new CliError(
          'ERR_CONFIG',
          `data directory ${paths.root} belongs to another overlay ("${current.name}", domain ${current.domain}) than ${settings.overlayConfig}; use another --data-dir`,
        );
      }
    }
    config = given;
  } else if (saved !== undefined) {
    config = wrap(() => validateOverlayConfig(saved));
    wrap(() => checkConfigSignature(config));
  } else {
    config = defaultOverlayConfig({ domain: settings.domain });
    created = true;
  }
  if (domainGiven && config.domain !== settings.domain) {
    throw new CliError(
      'ERR_CONFIG',
      `bad setting "domain": this data directory's overlay serves ${config.domain}, not ${settings.domain}; drop --domain or use another --data-dir`,
    );
  }
  if (saved === undefined || settings.overlayConfig) {
    created = created || saved === undefined;
    writeSavedConfig(paths, config);
  }
  const keys = wrap(() => loadNodeKey(paths, config.puzzleBits));
  return {
    paths,
    config,
    nodeId: Buffer.from(nodeIdOf(keys.publicKey)).toString('hex'),
    created,
  };
}

function readOverlayDocument(path: string): OverlayConfig {
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new CliError(
      'ERR_CONFIG',
      `cannot read overlay configuration ${path}: ${(err as Error).message}`,
    );
  }
  const config = wrap(() => validateOverlayConfig(doc));
  wrap(() => checkConfigSignature(config));
  return config;
}

/** Overlay errors keep their code and message; the CLI only makes them CliErrors. */
function wrap<T>(f: () => T): T {
  try {
    return f();
  } catch (err) {
    if (err instanceof CliError) throw err;
    const { message } = describeError(err);
    throw new CliError('ERR_CONFIG', message, { cause: err });
  }
}
