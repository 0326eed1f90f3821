// A Switchboard cluster for the browser tests: 3 nats-server nodes with JetStream, 2 switchboard-routers and 2
// switchboard-edges, on loopback ports picked just now or by the processes themselves (see harness.mjs).
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import {
  EDGE_BIN, NATS_BIN, ROUTER_BIN, deadlineFrom, freePorts, httpGet, pollUntil, readReadyFile, spawnService,
  stopTier,
} from './harness.mjs';

// The whole cluster becoming usable: NATS routes + JetStream meta leader (under a second on 2.9.10 with
// fresh nodes), then the routers' KV buckets and slot leases, then the edges' NATS connections.
const CLUSTER_READY_TIMEOUT_MS = 30_000;

// The cluster's shape. Every router and edge gets the URLs of all NATS nodes, so the NATS client can fail
// over; the routers split the slots between them.
const NATS_NODES = 3;
const ROUTERS = 2;
const EDGES = 2;
// Must match the routers' and edges' default --slots.
const SLOTS = 64;

// ---- cluster: 3 NATS nodes (JetStream), 2 routers, 2 edges. `edgeArgs` are added to every edge's flags.
// Resolves with the edges, each {name, listen, admin_listen}, once the cluster serves every room.
export async function startCluster({ scope, tmpDir, services, remaining }, { edgeArgs = [] } = {}) {
  const clusterDeadline = deadlineFrom(Math.min(CLUSTER_READY_TIMEOUT_MS, remaining()));

  // NATS: one configuration file per node, all on fixed loopback ports picked just now, each node routing to
  // the other two (a full mesh from the start, nothing left to gossip).
  const ports = await freePorts(3 * NATS_NODES);
  const nodes = Array.from({ length: NATS_NODES }, (_, i) => ({
    name: `n${i + 1}`,
    client: ports[3 * i],
    cluster: ports[3 * i + 1],
    monitoring: ports[3 * i + 2],
  }));
  const natsTier = stopTier(scope);
  for (const node of nodes) {
    const dir = path.join(tmpDir, `nats-${node.name}`);
    fs.mkdirSync(dir);
    const routes = nodes.filter((other) => other !== node)
      .map((other) => JSON.stringify(`nats-route://127.0.0.1:${other.cluster}`));
    // JSON strings are valid nats-server configuration strings. The JetStream limits are small because the
    // test stores little, and the defaults (a share of the machine's memory and disk) are not.
    const config = [
      `server_name: ${JSON.stringify(node.name)}`,
      `listen: "127.0.0.1:${node.client}"`,
      `http: "127.0.0.1:${node.monitoring}"`,
      'jetstream {',
      `  store_dir: ${JSON.stringify(path.join(dir, 'store'))}`,
      '  max_memory_store: 268435456',
      '  max_file_store: 1073741824',
      '}',
      'cluster {',
      '  name: "switchboard-browser-e2e"',
      `  listen: "127.0.0.1:${node.cluster}"`,
      `  routes: [${routes.join(', ')}]`,
      '}',
      '',
    ].join('\n');
    const configFile = path.join(dir, 'nats.conf');
    fs.writeFileSync(configFile, config);
    const service = spawnService(`nats-${node.name}`, NATS_BIN, ['-c', configFile]);
    natsTier.push(service);
    services.push(service);
  }
  const natsUrls = nodes.map((n) => `nats://127.0.0.1:${n.client}`).join(',');

  // Usable means, on every node: /healthz answers 200 (on 2.9 that includes JetStream: a known meta leader
  // the node is current with), and the node is routed to both others. Before that, the routers' creation of
  // replicated KV buckets would fail or stall.
  for (const node of nodes) {
    const monitor = `http://127.0.0.1:${node.monitoring}`;
    await pollUntil(`nats ${node.name} healthy (JetStream) and routed to the other nodes`, clusterDeadline(),
      natsTier, async () => {
        const health = await httpGet(`${monitor}/healthz`);
        if (health.status !== 200) throw new Error(`/healthz ${health.status}: ${health.body.trim()}`);
        const routez = JSON.parse((await httpGet(`${monitor}/routez`)).body);
        if (routez.num_routes < NATS_NODES - 1) throw new Error(`${routez.num_routes} routes`);
        return true;
      });
  }

  // Routers and edges start together: neither needs the other to come up, only NATS. Every edge of a cluster
  // must hash room ids with the same secret, so that both edges map one room to the same slot and key.
  const roomKeySecret = crypto.randomBytes(32).toString('hex');
  const routerTier = stopTier(scope);
  const routers = [];
  for (let i = 0; i < ROUTERS; i++) {
    const name = `router-${'ab'[i]}`;
    const readyFile = path.join(tmpDir, `${name}.ready.json`);
    const service = spawnService(name, ROUTER_BIN, ['--nats', natsUrls, '--router-id', name,
      '--admin-listen', '127.0.0.1:0', '--ready-file', readyFile]);
    routerTier.push(service);
    services.push(service);
    routers.push({ service, readyFile });
  }
  const edgeTier = stopTier(scope);
  const edges = [];
  for (let i = 0; i < EDGES; i++) {
    const name = `edge-${'ab'[i]}`;
    const readyFile = path.join(tmpDir, `${name}.ready.json`);
    const service = spawnService(name, EDGE_BIN, ['--nats', natsUrls, '--room-key-secret', roomKeySecret,
      '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--ready-file', readyFile, ...edgeArgs]);
    edgeTier.push(service);
    services.push(service);
    edges.push({ service, readyFile });
  }

  for (const router of routers) {
    router.ready = await readReadyFile(router.service, router.readyFile, clusterDeadline());
  }
  for (const edge of edges) {
    edge.ready = await readReadyFile(edge.service, edge.readyFile, clusterDeadline());
    assert.match(edge.ready.listen, /:\d+$/, `${edge.service.name} ready file: ${JSON.stringify(edge.ready)}`);
  }

  // The cluster serves every room once the routers together hold every slot, each exactly once (a slot held
  // twice would mean two routers disagreeing about one room).
  let layout;
  await pollUntil(`routers serving all ${SLOTS} slots, each once`, clusterDeadline(), services, async () => {
    const held = [];
    layout = [];
    for (const router of routers) {
      const { status, body } = await httpGet(`http://${router.ready.admin_listen}/slots`);
      if (status !== 200) throw new Error(`${router.service.name} /slots ${status}`);
      const { router: id, slots } = JSON.parse(body);
      layout.push(`${id}: ${slots.length}`);
      held.push(...slots);
    }
    held.sort((a, b) => a - b);
    return held.length === SLOTS && held.every((slot, i) => slot === i);
  });
  // And an edge accepts clients usefully once it is connected to NATS.
  for (const edge of edges) {
    await pollUntil(`${edge.service.name} /readyz`, clusterDeadline(), services,
      async () => (await httpGet(`http://${edge.ready.admin_listen}/readyz`)).status === 200);
  }
  console.log(`cluster: nats ${natsUrls}; slots ${layout.join(', ')}; ` +
    `edges ${edges.map((e) => `${e.service.name} ${e.ready.listen}`).join(', ')}`);
  return edges.map((e) => ({ name: e.service.name, ...e.ready }));
}
