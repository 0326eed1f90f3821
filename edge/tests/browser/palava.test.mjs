// End-to-end: the unmodified palava-client 2.2.1 bundle, in two headless Chromium sessions, joins one room
// through switchboard-edge and reaches `peer_connection_established` with media flowing both ways.
//
// Run it through ./run.sh: that puts the server, the browser and this file into a fresh network namespace
// whose only usable addresses are loopback (see run.sh for why and how). This file refuses to run in a
// namespace that has any other address, so no traffic, WebRTC included, can leave the machine.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '../../..');
const SERVER_BIN = process.env.SWITCHBOARD_EDGE_BIN || path.join(REPO, 'target/debug/switchboard-edge');
const CHROMIUM_BIN = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const BUNDLE = path.join(HERE, 'node_modules/palava-client/palava.bundle.js');
const PAGE = path.join(HERE, 'palava.html');

// Everything is bounded: the whole test by TEST_TIMEOUT_MS, each step by the time left of it.
const TEST_TIMEOUT_MS = 60_000;
const READY_TIMEOUT_MS = 15_000;
const SERVER_STOP_TIMEOUT_MS = 10_000;
// Any single wait (a join, ICE, the first video frames) fails after this, so a broken step is named quickly.
const STEP_TIMEOUT_MS = 20_000;

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

// palava-client insists on a STUN URL. Nothing listens on this loopback port, so gathering a server-reflexive
// candidate simply fails, quickly and locally.
const STUN_URL = 'stun:127.0.0.1:3478';

// Session events after which waiting for anything else is pointless.
const FATAL_EVENTS = [
  'argument_error', 'webrtc_no_support', 'signaling_not_reachable', 'signaling_error', 'signaling_close',
  'room_join_error', 'local_stream_error', 'peer_connection_failed',
];

// ---------------------------------------------------------------------------------------------------------
// Cleanup runs from the test's finally and again from after(): the latter covers a test that timed out while
// still awaiting something. Every step is idempotent.
const cleanups = [];
async function cleanupAll() {
  while (cleanups.length) {
    const fn = cleanups.pop();
    try { await fn(); } catch (e) { console.error('cleanup failed:', e); }
  }
}
after(cleanupAll);

function deadlineFrom(ms) {
  const end = Date.now() + ms;
  return () => Math.max(1, end - Date.now());
}

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

// A bounded ring of log lines, for diagnostics on failure without flooding a passing run.
function ringLog(limit = 400) {
  const lines = [];
  return {
    push(line) { lines.push(line); if (lines.length > limit) lines.shift(); },
    dump() { return lines.join('\n'); },
  };
}

// Start switchboard-edge on ephemeral ports and wait for its ready file.
async function startServer(tmpDir) {
  assert.ok(fs.existsSync(SERVER_BIN),
    `server binary not found at ${SERVER_BIN} (build it with \`cargo build -p switchboard-edge\` or set SWITCHBOARD_EDGE_BIN)`);
  const readyFile = path.join(tmpDir, 'ready.json');
  const log = ringLog();
  const child = spawn(SERVER_BIN,
    ['--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--ready-file', readyFile],
    { stdio: ['ignore', 'pipe', 'pipe'] });
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
      for (const line of parts) log.push(`[server ${tag}] ${line}`);
    });
  }

  const server = {
    log,
    get exited() { return exited; },
    async stop() {
      if (exited) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), SERVER_STOP_TIMEOUT_MS);
      await exitPromise;
      clearTimeout(timer);
    },
  };
  cleanups.push(() => server.stop());

  // The server writes the file atomically (temp file + rename), so once it exists it is complete JSON.
  const remaining = deadlineFrom(READY_TIMEOUT_MS);
  while (!fs.existsSync(readyFile)) {
    if (exited) throw new Error(`server exited before becoming ready (${JSON.stringify(exited)})\n${log.dump()}`);
    if (remaining() <= 1) throw new Error(`server not ready after ${READY_TIMEOUT_MS} ms\n${log.dump()}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  const readyText = fs.readFileSync(readyFile, 'utf8');
  let ready;
  try {
    ready = JSON.parse(readyText);
  } catch (e) {
    throw new Error(`ready file is not complete JSON (it must be written atomically): ${JSON.stringify(readyText)}`, { cause: e });
  }
  assert.match(ready.listen, /:\d+$/, `ready file has no listen address: ${JSON.stringify(ready)}`);
  server.ready = ready;
  return server;
}

// Serve the test page and the untouched palava bundle from loopback.
async function startStaticServer() {
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
  cleanups.push(() => new Promise((resolve) => { httpServer.closeAllConnections(); httpServer.close(resolve); }));
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

test('unmodified palava-client 2.2.1 sessions connect through switchboard-edge', { timeout: TEST_TIMEOUT_MS }, async () => {
  assertIsolatedNetwork();
  assert.ok(fs.existsSync(CHROMIUM_BIN), `chromium not found at ${CHROMIUM_BIN} (apt-get install chromium)`);

  const remaining = deadlineFrom(TEST_TIMEOUT_MS - 8_000); // leave time for diagnostics and cleanup
  const step = () => Math.min(STEP_TIMEOUT_MS, remaining());
  const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-browser-'));
  cleanups.push(() => fs.rmSync(tmpDir, { recursive: true, force: true }));
  const consoleLog = ringLog(1000);
  const participants = [];
  let server;

  try {
    server = await startServer(tmpDir);
    const wsUrl = `ws://${server.ready.listen}/`;
    const baseUrl = await startStaticServer();

    // launch() gives the browser a fresh temporary profile and removes it on close.
    const browser = await chromium.launch({
      executablePath: CHROMIUM_BIN,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: remaining(),
    });
    cleanups.push(() => browser.close());
    console.log(`chromium ${browser.version()}, server ${wsUrl}, page ${baseUrl}/palava.html`);

    const alice = await openParticipant(browser, 'alice', baseUrl, consoleLog);
    const bob = await openParticipant(browser, 'bob', baseUrl, consoleLog);
    participants.push(alice, bob);
    const roomId = `e2e-${crypto.randomBytes(8).toString('hex')}`;
    const start = (p) => p.page.evaluate(
      (o) => window.startPalava(o), { webSocketAddress: wsUrl, roomId, stun: STUN_URL, name: p.label });

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
      const names = (await p.page.evaluate(() => window.palavaEvents))
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

    assert.equal(server.exited, null, 'the server is still running');
  } catch (err) {
    // Diagnostics: what each page saw, what the browser said, what the server logged.
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
    if (server) console.error(`--- server output (exit: ${JSON.stringify(server.exited)}) ---\n${server.log.dump()}`);
    throw err;
  } finally {
    await cleanupAll();
  }
});
