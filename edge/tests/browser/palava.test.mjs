// End-to-end: the unmodified palava-client 2.2.1 bundle, in two headless Chromium sessions, joins one room
// through Switchboard and reaches `peer_connection_established` with media flowing both ways. The same
// scenario runs twice, against different servers:
//   - standalone: one switchboard-edge (with its embedded router); both participants use it;
//   - cluster: a 3-node nats-server cluster with JetStream, 2 switchboard-routers and 2 switchboard-edges;
//     alice uses edge A and bob edge B, so every signaling message between them crosses NATS.
//
// Run it through ./run.sh: that puts the servers, the browser and this file into a fresh network namespace
// whose only usable addresses are loopback (see run.sh for why and how). This file refuses to run in a
// namespace that has any other address, so no traffic, WebRTC included, can leave the machine.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '../../..');
const EDGE_BIN = process.env.SWITCHBOARD_EDGE_BIN || path.join(REPO, 'target/debug/switchboard-edge');
const ROUTER_BIN = process.env.SWITCHBOARD_ROUTER_BIN || path.join(REPO, 'target/debug/switchboard-router');
// Same override the Rust testkit honours (run.sh sets it); otherwise PATH, then where Debian's package puts
// it (/usr/sbin is not on every user's PATH).
const NATS_BIN = process.env.SWITCHBOARD_NATS_SERVER_BIN
  || [...(process.env.PATH || '').split(path.delimiter).filter(Boolean), '/usr/sbin', '/usr/bin']
    .map((dir) => path.join(dir, 'nats-server')).find((file) => fs.existsSync(file))
  || 'nats-server';
const CHROMIUM_BIN = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const BUNDLE = path.join(HERE, 'node_modules/palava-client/palava.bundle.js');
const PAGE = path.join(HERE, 'palava.html');

// Everything is bounded: each test by TEST_TIMEOUT_MS, each step by the time left of it. run.sh's outer
// timeout must stay above the sum over all tests.
const TEST_TIMEOUT_MS = 90_000;
// Kept out of the scenario's budget so that a failing step still leaves time to print diagnostics and stop
// every process: stops run tier by tier (edges, routers, NATS), in parallel within a tier, each bounded by
// PROCESS_STOP_TIMEOUT_MS, so 3 tiers take at most 24 s.
const CLEANUP_RESERVE_MS = 25_000;
// One process writing its ready file (the edge's and router's take milliseconds once started).
const READY_TIMEOUT_MS = 15_000;
// The whole cluster becoming usable: NATS routes + JetStream meta leader (under a second on 2.9.10 with
// fresh nodes), then the routers' KV buckets and slot leases, then the edges' NATS connections.
const CLUSTER_READY_TIMEOUT_MS = 30_000;
// SIGTERM, then SIGKILL if the process is still there after this. Routers and edges use SIGTERM to hand
// slots over and to tell clients, which takes at most their --shutdown-grace (5 s by default; the routers
// currently always use all of it, see stopTier); nats-server exits within milliseconds.
const PROCESS_STOP_TIMEOUT_MS = 8_000;
// Any single wait (a join, ICE, the first video frames) fails after this, so a broken step is named quickly.
const STEP_TIMEOUT_MS = 20_000;
// How often start-up conditions (ready files, HTTP endpoints) are polled.
const POLL_INTERVAL_MS = 25;
// Lines of each process's output printed when a test fails.
const LOG_TAIL_LINES = 80;

// The cluster's shape. Every router and edge gets the URLs of all NATS nodes, so the NATS client can fail
// over; the routers split the slots between them.
const NATS_NODES = 3;
const ROUTERS = 2;
const EDGES = 2;
// Must match the routers' and edges' default --slots.
const SLOTS = 64;

// Browser flags. Playwright adds its own automation defaults (no background networking, no component
// updates, no throttling of background pages, ...); these are the ones this test depends on.
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox', // we run as root in a namespace; the sandbox needs setuid/userns helpers we do not have
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  // getUserMedia without a permission prompt, from a synthetic camera (moving test pattern) and microphone
  // (beeps), so the remote <video> has real frames to decode.
  '--use-fake-ui-for-media-stream',
  '--use-fake-device-for-media-stream',
  // WebRTC never gathers loopback candidates unless told to, and loopback is all the namespace has.
  '--allow-loopback-in-peer-connection',
  // Keep host candidates as plain IPs instead of random `<uuid>.local` mDNS names (which would need
  // multicast DNS to resolve). Chromium already skips the mDNS names once the page holds camera/microphone
  // permission, as it does here; this makes the test independent of that rule. Chromium merges repeated
  // --disable-features switches, so Playwright's own list still applies.
  '--disable-features=WebRtcHideLocalIpsWithMdns',
];

// palava fails a join (room_join_error) when joined_room has not arrived this long after getUserMedia
// resolved, and by default that is 1 s. On a busy machine (measured: 2 CPUs, load average 6) opening the
// WebSocket alone took 800 ms of that, which is the browser's and the machine's time, not the server's; so
// the page gets a longer timeout, and the server's part of the join, which palava's timer also counts, is
// measured and held to palava's default instead (see joinLatency).
const JOIN_TIMEOUT_MS = 10_000;
const PALAVA_DEFAULT_JOIN_TIMEOUT_MS = 1_000;

// palava-client insists on a STUN URL. Nothing listens on this loopback port, so gathering a server-reflexive
// candidate simply fails, quickly and locally.
const STUN_URL = 'stun:127.0.0.1:3478';

// Session events after which waiting for anything else is pointless.
const FATAL_EVENTS = [
  'argument_error', 'webrtc_no_support', 'signaling_not_reachable', 'signaling_error', 'signaling_close',
  'room_join_error', 'local_stream_error', 'peer_connection_failed',
];

// ---------------------------------------------------------------------------------------------------------
// Cleanup. Each test owns a scope: a stack of idempotent cleanup steps, run from the test's finally. A test
// that times out keeps running in the background until its own bounded waits fail, and then cleans up its
// own scope, not the next test's; after() is the backstop for a scope still open when the file ends. (Should
// node itself die, run.sh's PID namespace takes every process with it.)
const openScopes = new Set();
function newScope() {
  const steps = [];
  const scope = {
    defer(fn) { steps.push(fn); },
    async close() {
      while (steps.length) {
        const fn = steps.pop();
        try { await fn(); } catch (e) { console.error('cleanup failed:', e); }
      }
      openScopes.delete(scope);
    },
  };
  openScopes.add(scope);
  return scope;
}
after(async () => { for (const scope of [...openScopes]) await scope.close(); });

function deadlineFrom(ms) {
  const end = Date.now() + ms;
  return () => Math.max(1, end - Date.now());
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Refuse to run unless every non-loopback address is an IPv6 link-local address on the veth pair that
// run.sh creates inside the namespace (it exists only so Chromium believes it is online, see run.sh).
function assertIsolatedNetwork() {
  const allowed = new Set((process.env.SWITCHBOARD_NETNS_LINKS || '').split(',').filter(Boolean));
  const offending = [];
  for (const [name, addrs] of Object.entries(os.networkInterfaces())) {
    for (const a of addrs) {
      if (a.internal) continue;
      const linkLocal = a.family === 'IPv6' && /^fe[89ab][0-9a-f]:/i.test(a.address);
      if (!(linkLocal && allowed.has(name))) offending.push(`${name} ${a.address}`);
    }
  }
  assert.deepEqual(offending, [],
    'this test must only reach loopback: run it via edge/tests/browser/run.sh, which isolates it in a ' +
    `fresh network namespace (found non-loopback addresses: ${offending.join(', ')})`);
}

// A bounded ring of log lines, for diagnostics on failure without flooding a passing run. With `timed`, each
// line starts with the milliseconds since the ring was made (for logs that carry no timestamps of their own).
function ringLog(limit = 400, { timed = false } = {}) {
  const lines = [];
  const t0 = performance.now();
  return {
    push(line) {
      lines.push(timed ? `${String(Math.round(performance.now() - t0)).padStart(6)} ${line}` : line);
      if (lines.length > limit) lines.shift();
    },
    dump(last = limit) { return lines.slice(-last).join('\n'); },
  };
}

// ---------------------------------------------------------------------------------------------------------
// Server processes.

// Starts `bin` with `args`, collecting its output in a ring log. The process is not registered for cleanup
// here: callers stop processes in tiers (see stopTier), so a tier must be registered before it is started.
function spawnService(name, bin, args) {
  assert.ok(fs.existsSync(bin), `${name}: binary not found at ${bin} (build it with \`cargo build --bins\` ` +
    'in the repository, or set SWITCHBOARD_EDGE_BIN / SWITCHBOARD_ROUTER_BIN / SWITCHBOARD_NATS_SERVER_BIN)');
  const log = ringLog();
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let exited = null;
  const exitPromise = new Promise((resolve) => child.on('exit', (code, signal) => {
    exited = { code, signal };
    resolve(exited);
  }));
  child.on('error', (e) => log.push(`[spawn error] ${e.message}`));
  for (const [stream, tag] of [[child.stdout, 'out'], [child.stderr, 'err']]) {
    let partial = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk) => {
      const parts = (partial + chunk).split('\n');
      partial = parts.pop();
      for (const line of parts) log.push(`[${name} ${tag}] ${line}`);
    });
  }
  return {
    name,
    log,
    get exited() { return exited; },
    async stop() {
      if (exited) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => {
        log.push(`[test] ${name} still running ${PROCESS_STOP_TIMEOUT_MS} ms after SIGTERM: SIGKILL`);
        child.kill('SIGKILL');
      }, PROCESS_STOP_TIMEOUT_MS);
      await exitPromise;
      clearTimeout(timer);
    },
  };
}

// A group of processes stopped together, in parallel, when the scope closes. Tiers are registered in start
// order, so they stop in reverse: clients of a tier (edges, routers) go before what they depend on (NATS),
// and can shut down cleanly instead of waiting on a server that is already gone. In parallel because each
// switchboard-router takes its whole --shutdown-grace (5 s) to exit on SIGTERM, as of this writing: its
// slots never report released, so it waits the grace out; one at a time, that would be 5 s per router.
function stopTier(scope) {
  const tier = [];
  scope.defer(() => Promise.all(tier.map((s) => s.stop())));
  return tier;
}

// Polls `check` until it returns a value other than undefined/false, failing after `timeoutMs` or as soon as
// one of `services` exits. A throwing check counts as "not yet" (e.g. a port not accepting connections
// yet); its last error is reported on timeout.
async function pollUntil(what, timeoutMs, services, check) {
  const end = Date.now() + timeoutMs;
  let lastError;
  for (;;) {
    const dead = services.find((s) => s.exited);
    if (dead) throw new Error(`${dead.name} exited (${JSON.stringify(dead.exited)}) while waiting for ${what}`);
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
      lastError = undefined;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() >= end) {
      throw new Error(`${what}: not within ${timeoutMs} ms${lastError ? ` (last error: ${lastError.message})` : ''}`);
    }
    await sleep(POLL_INTERVAL_MS);
  }
}

// Waits for a ready file and returns its JSON. Switchboard writes it atomically (temp file + rename), so
// once it exists it is complete.
async function readReadyFile(service, readyFile, timeoutMs) {
  await pollUntil(`${service.name} ready file`, timeoutMs, [service], () => fs.existsSync(readyFile));
  const text = fs.readFileSync(readyFile, 'utf8');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${service.name}: ready file is not complete JSON (it must be written atomically): ` +
      JSON.stringify(text), { cause: e });
  }
}

// A bounded GET; resolves with { status, body } (any status), rejects on connection errors and timeout.
function httpGet(url, timeoutMs = 2_000) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => { body += chunk; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

// Free loopback ports, for nats-server's routes: every node's configuration must name the others' cluster
// ports before any of them starts. All sockets are held open together, so the ports are distinct, and closed
// just before the nodes start. Nothing else in the namespace binds ports meanwhile (run.sh's namespace holds
// only this test's processes); should a node still find its port taken, it exits and the test says so.
async function freePorts(count) {
  const servers = [];
  try {
    for (let i = 0; i < count; i++) {
      const server = net.createServer();
      servers.push(server);
      await new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', resolve);
      });
    }
    return servers.map((s) => s.address().port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(() => resolve()))));
  }
}

// ---- standalone: one switchboard-edge, with its embedded router; both participants use it.
async function startStandalone({ scope, tmpDir, services }) {
  const tier = stopTier(scope);
  const readyFile = path.join(tmpDir, 'edge.ready.json');
  const edge = spawnService('edge', EDGE_BIN,
    ['--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--ready-file', readyFile]);
  tier.push(edge);
  services.push(edge);
  const ready = await readReadyFile(edge, readyFile, READY_TIMEOUT_MS);
  assert.match(ready.listen, /:\d+$/, `ready file has no listen address: ${JSON.stringify(ready)}`);
  const wsUrl = `ws://${ready.listen}/`;
  return { alice: wsUrl, bob: wsUrl };
}

// ---- cluster: 3 NATS nodes (JetStream), 2 routers, 2 edges; alice on edge A, bob on edge B.
async function startCluster({ scope, tmpDir, services, remaining }) {
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
      '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--ready-file', readyFile]);
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
  return { alice: `ws://${edges[0].ready.listen}/`, bob: `ws://${edges[1].ready.listen}/` };
}

// ---------------------------------------------------------------------------------------------------------
// Browser side.

// Serve the test page and the untouched palava bundle from loopback.
async function startStaticServer(scope) {
  const routes = {
    '/palava.html': [PAGE, 'text/html; charset=utf-8'],
    '/palava.bundle.js': [BUNDLE, 'text/javascript; charset=utf-8'],
  };
  const httpServer = http.createServer((req, res) => {
    const route = routes[new URL(req.url, 'http://x').pathname];
    if (!route || req.method !== 'GET') { res.writeHead(404).end(); return; }
    res.writeHead(200, { 'content-type': route[1], 'cache-control': 'no-store' });
    fs.createReadStream(route[0]).pipe(res);
  });
  await new Promise((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(0, '127.0.0.1', resolve);
  });
  scope.defer(() => new Promise((resolve) => { httpServer.closeAllConnections(); httpServer.close(resolve); }));
  return `http://127.0.0.1:${httpServer.address().port}`;
}

// One browser context per participant: separate storage, like two people on two machines.
async function openParticipant(browser, label, baseUrl, consoleLog) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on('console', (m) => consoleLog.push(`[${label} console.${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => consoleLog.push(`[${label} pageerror] ${e.message}`));
  page.on('requestfailed', (r) => consoleLog.push(`[${label} requestfailed] ${r.url()} ${r.failure()?.errorText}`));
  // The signaling traffic exactly as the browser sent and received it (observed via CDP, not patched in).
  page.on('websocket', (ws) => {
    const clip = (payload) => (typeof payload === 'string' && payload.length > 300 ? `${payload.slice(0, 300)}...` : payload);
    consoleLog.push(`[${label} ws open] ${ws.url()}`);
    ws.on('framesent', (f) => consoleLog.push(`[${label} ws >>] ${clip(f.payload)}`));
    ws.on('framereceived', (f) => consoleLog.push(`[${label} ws <<] ${clip(f.payload)}`));
    ws.on('socketerror', (e) => consoleLog.push(`[${label} ws error] ${e}`));
    ws.on('close', () => consoleLog.push(`[${label} ws closed]`));
  });
  await page.goto(`${baseUrl}/palava.html`);
  return { label, page, context };
}

// Wait until `predicate(entry)` matches one of the page's palava events, or fail early on a fatal event.
// The predicate is serialized into the page, so it must be self-contained.
async function waitForEvent(p, description, predicate, timeout) {
  const handle = await p.page.waitForFunction(({ predicateSrc, fatal }) => {
    const match = new Function(`return (${predicateSrc})`)();
    for (const e of window.palavaEvents) {
      if (match(e)) return { ok: e };
      if (fatal.includes(e.event)) return { fatal: e };
    }
    return null;
  }, { predicateSrc: predicate.toString(), fatal: FATAL_EVENTS }, { timeout, polling: 50 }).catch((e) => {
    throw new Error(`${p.label}: no ${description} (${e.message.split('\n')[0]})`, { cause: e });
  });
  const result = await handle.jsonValue();
  if (result.fatal) {
    throw new Error(`${p.label}: got fatal palava event ${JSON.stringify(result.fatal)} while waiting for ${description}`);
  }
  return result.ok;
}

const isLoopback = (address) => /^127\./.test(address) || address === '::1';

// How long the server took to answer a participant's join, from the page's own event times. palava calls
// join() when getUserMedia resolves (local_stream_ready) and the channel sends join_room at once, or, if the
// WebSocket is still connecting, as soon as it opens (just before signaling_open); room_joined fires when
// joined_room arrives.
function joinLatency(events) {
  const at = (name) => events.find((e) => e.event === name)?.t;
  const sent = Math.max(at('local_stream_ready'), at('signaling_open'));
  return at('room_joined') - sent;
}

// The scenario both tests share: alice (on `urls.alice`) and bob (on `urls.bob`) join one room, see each
// other, connect, see each other's video; bob leaves and alice is told.
async function palavaScenario({ scope, remaining, consoleLog, participants }, urls) {
  const step = () => Math.min(STEP_TIMEOUT_MS, remaining());
  const baseUrl = await startStaticServer(scope);

  // launch() gives the browser a fresh temporary profile and removes it on close.
  const browser = await chromium.launch({
    executablePath: CHROMIUM_BIN,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: remaining(),
  });
  scope.defer(() => browser.close());
  console.log(`chromium ${browser.version()}, alice -> ${urls.alice}, bob -> ${urls.bob}, page ${baseUrl}/palava.html`);

  const alice = await openParticipant(browser, 'alice', baseUrl, consoleLog);
  const bob = await openParticipant(browser, 'bob', baseUrl, consoleLog);
  participants.push(alice, bob);
  const roomId = `e2e-${crypto.randomBytes(8).toString('hex')}`;
  const start = (p) => p.page.evaluate(
    (o) => window.startPalava(o),
    { webSocketAddress: urls[p.label], roomId, stun: STUN_URL, name: p.label, joinTimeout: JOIN_TIMEOUT_MS });

  // Alice joins first, alone; then Bob joins and must see her. Sequencing the joins makes the roles
  // deterministic (palava decides who sends the offer from join order and the peer's user_agent).
  const { userAgent } = await start(alice);
  console.log(`palava.browser.getUserAgent() = ${JSON.stringify(userAgent)}`);
  const aliceJoined = await waitForEvent(alice, 'room_joined', (e) => e.event === 'room_joined', step());
  assert.deepEqual(aliceJoined.remotePeers, [], 'alice joined an empty room');
  assert.ok(aliceJoined.ownId, 'joined_room carried own_id');

  await start(bob);
  const bobJoined = await waitForEvent(bob, 'room_joined', (e) => e.event === 'room_joined', step());
  assert.notEqual(bobJoined.ownId, aliceJoined.ownId);
  assert.equal(bobJoined.remotePeers.length, 1, 'bob sees exactly one peer in joined_room');
  assert.equal(bobJoined.remotePeers[0].peerId, aliceJoined.ownId, 'bob sees alice by her own_id');
  assert.equal(bobJoined.remotePeers[0].status.name, 'alice', 'alice\'s status name reached bob');

  const aliceSawBob = await waitForEvent(alice, 'peer_joined', (e) => e.event === 'peer_joined', step());
  assert.equal(aliceSawBob.peerId, bobJoined.ownId, 'new_peer announced bob by his own_id');
  assert.equal(aliceSawBob.status.name, 'bob', 'bob\'s status name reached alice');

  // The event this test is about: ICE connected, on both sides, for the right peer.
  const established = (p, other) => waitForEvent(p, 'peer_connection_established',
    new Function('e', `return e.event === 'peer_connection_established' && e.peerId === ${JSON.stringify(other)}`),
    step());
  await Promise.all([established(alice, bobJoined.ownId), established(bob, aliceJoined.ownId)]);

  // What a user would notice: the other person's camera picture is moving on screen.
  for (const p of participants) {
    await p.page.waitForFunction(() => window.remoteVideo.frames >= 5 && window.remoteVideo.width > 0,
      null, { timeout: step(), polling: 50 }).catch((e) => {
      throw new Error(`${p.label}: remote video is not playing (${e.message.split('\n')[0]})`, { cause: e });
    });
    const video = await p.page.evaluate(() => window.remoteVideo);
    assert.equal(video.videoTracks, 1, `${p.label} receives a video track`);
    assert.equal(video.audioTracks, 1, `${p.label} receives an audio track`);
    console.log(`${p.label}: remote video ${video.width}x${video.height}, ${video.frames} frames decoded`);
  }

  // Palava's own event sequence, as an application sees it. Alice, already in the room, makes the offer
  // (she sees Bob's user_agent "chrome" in new_peer); Bob answers. Only orderings palava guarantees are
  // checked: the socket opening and getUserMedia race each other, both precede the join. `peer_stream_ready`
  // also fires for the local stream, so the remote one is marked `r:` here.
  for (const p of participants) {
    const events = await p.page.evaluate(() => window.palavaEvents);
    const names = events
      .map((e) => (e.local === false && e.event === 'peer_stream_ready' ? `r:${e.event}` : e.event));
    console.log(`${p.label} events: ${names.join(' ')}`);
    const chains = p === alice
      ? [['signaling_open', 'room_joined', 'peer_joined', 'peer_answer', 'peer_connection_established'],
        ['local_stream_ready', 'room_joined', 'r:peer_stream_ready']]
      : [['signaling_open', 'room_joined', 'peer_offer', 'peer_connection_established'],
        ['local_stream_ready', 'room_joined', 'r:peer_stream_ready']];
    for (const chain of chains) {
      const positions = chain.map((name) => names.indexOf(name));
      assert.ok(positions.every((pos, i) => pos >= 0 && (i === 0 || pos > positions[i - 1])),
        `${p.label}: expected events in this order: ${chain.join(' ')}`);
    }
    // A server this slow would fail joins in palava applications that keep the default timeout.
    const joinMs = joinLatency(events);
    console.log(`${p.label}: join answered in ${joinMs} ms`);
    assert.ok(joinMs < PALAVA_DEFAULT_JOIN_TIMEOUT_MS,
      `${p.label}: the join took ${joinMs} ms, over palava's default join timeout`);
  }

  // Every ICE candidate, local and remote, and the selected pair are loopback.
  for (const p of participants) {
    const [stats] = await p.page.evaluate(() => window.collectIceStats());
    for (const c of stats.candidates) {
      console.log(`${p.label} ${c.kind} ${c.candidateType} ${c.protocol} ${c.address}:${c.port}`);
    }
    assert.ok(stats.candidates.length > 0, `${p.label} has ICE candidates`);
    const foreign = stats.candidates.filter((c) => !isLoopback(c.address));
    assert.deepEqual(foreign, [], `${p.label}: only loopback ICE candidates`);
    assert.ok(stats.selectedPair, `${p.label} has a selected candidate pair`);
    const byId = Object.fromEntries(stats.candidates.map((c) => [c.id, c]));
    const pair = [byId[stats.selectedPair.local], byId[stats.selectedPair.remote]];
    console.log(`${p.label} selected pair: ${pair.map((c) => `${c.address}:${c.port}`).join(' <-> ')}`);
    assert.ok(pair.every((c) => c && isLoopback(c.address)), `${p.label}: selected pair is loopback`);
  }

  // Bob leaves (palava sends leave_room and closes the socket); alice is told.
  await bob.page.evaluate(() => window.palavaSession.destroy());
  const left = await waitForEvent(alice, 'peer_left', (e) => e.event === 'peer_left', step());
  assert.equal(left.peerId, bobJoined.ownId, 'peer_left names bob');
}

// Diagnostics for a failed test: what each page saw, what the browser said, what every server logged.
async function printDiagnostics({ participants, consoleLog, services }) {
  for (const p of participants) {
    try {
      const events = await p.page.evaluate(() => window.palavaEvents);
      console.error(`--- ${p.label} palava events ---\n${events.map((e) => JSON.stringify(e)).join('\n')}`);
      const states = await p.page.evaluate(() => window.peerConnectionStates());
      console.error(`--- ${p.label} peer connections ---\n${JSON.stringify(states, null, 1)}`);
    } catch (e) {
      console.error(`--- ${p.label}: could not read events: ${e.message}`);
    }
  }
  console.error(`--- browser console ---\n${consoleLog.dump()}`);
  for (const s of services) {
    console.error(`--- ${s.name} output, last ${LOG_TAIL_LINES} lines (exit: ${JSON.stringify(s.exited)}) ---\n` +
      s.log.dump(LOG_TAIL_LINES));
  }
}

// One end-to-end test: `startServers(ctx)` brings up the servers and returns the WebSocket URL for each
// participant ({ alice, bob }); the scenario then runs against them.
function e2eTest(name, startServers) {
  test(name, { timeout: TEST_TIMEOUT_MS }, async () => {
    assertIsolatedNetwork();
    assert.ok(fs.existsSync(CHROMIUM_BIN), `chromium not found at ${CHROMIUM_BIN} (apt-get install chromium)`);

    const scope = newScope();
    const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-browser-'));
    scope.defer(() => fs.rmSync(tmpDir, { recursive: true, force: true }));
    const ctx = {
      scope,
      tmpDir,
      remaining: deadlineFrom(TEST_TIMEOUT_MS - CLEANUP_RESERVE_MS),
      consoleLog: ringLog(1000, { timed: true }),
      participants: [],
      services: [],
    };
    const t0 = performance.now();
    let tReady;
    let tDone;
    try {
      const urls = await startServers(ctx);
      tReady = performance.now();
      await palavaScenario(ctx, urls);
      for (const s of ctx.services) assert.equal(s.exited, null, `${s.name} is still running`);
      tDone = performance.now();
    } catch (err) {
      await printDiagnostics(ctx);
      throw err;
    } finally {
      const tCleanup = performance.now();
      await scope.close();
      const ms = (a, b) => (a === undefined || b === undefined ? '-' : `${Math.round(b - a)} ms`);
      console.log(`timings: servers ready ${ms(t0, tReady)}, scenario ${ms(tReady, tDone)}, ` +
        `cleanup ${ms(tCleanup, performance.now())}`);
    }
  });
}

e2eTest('unmodified palava-client 2.2.1 sessions connect through switchboard-edge', startStandalone);
e2eTest('unmodified palava-client 2.2.1 sessions connect through a switchboard cluster (3 NATS, 2 routers, 2 edges)',
  startCluster);
