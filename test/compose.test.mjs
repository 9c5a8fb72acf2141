// docker-compose.yml cannot run here (no Docker engine); this keeps it valid and in step with
// the topology test/netns/run.sh runs for real: a bootstrap node, three nodes joining it, and
// three phones each registered at a different node.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parse } from 'yaml';

const root = new URL('..', import.meta.url);
const compose = parse(readFileSync(new URL('docker-compose.yml', root), 'utf8'));

describe('docker-compose.yml', () => {
  it('has a bootstrap node, three joining nodes and three phones', () => {
    const s = compose.services;
    for (const name of ['node1', 'node2', 'node3', 'node4', 'alice', 'bob', 'carol'])
      assert.ok(s[name], name);
    assert.equal(s.node1.environment.PEERBX_BOOTSTRAP, '');
    const node1 = s.node1.networks.peerbx.ipv4_address;
    for (const n of ['node2', 'node3', 'node4'])
      assert.equal(s[n].environment.PEERBX_BOOTSTRAP, `${node1}:7400`);
    const nodeAddresses = ['node2', 'node3', 'node4'].map(
      (n) => `${s[n].networks.peerbx.ipv4_address}:5060`,
    );
    assert.deepEqual(
      ['alice', 'bob', 'carol'].map((p) => s[p].environment.PHONE_NODE),
      nodeAddresses,
    );
  });

  it('names build contexts and Dockerfiles that exist', () => {
    for (const [name, svc] of Object.entries(compose.services)) {
      const ctx = svc.build?.context;
      if (!ctx) continue;
      const file = svc.build.dockerfile ?? 'Dockerfile';
      assert.ok(existsSync(new URL(`${ctx}/${file}`, root)), `${name}: ${ctx}/${file}`);
    }
  });

  it('puts every service on networks that are declared', () => {
    for (const [name, svc] of Object.entries(compose.services)) {
      for (const net of Object.keys(svc.networks ?? {}))
        assert.ok(compose.networks?.[net], `${name} → ${net}`);
    }
  });
});
