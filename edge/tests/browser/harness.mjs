// Shared harness of the browser and JS client tests: real processes (switchboard-edge here; the cluster of
// nats-server nodes, routers and edges in cluster.mjs) on loopback ports they pick themselves and report in
// ready files, headless Chromium pages, bounded waits, cleanup that runs however a test ends, and diagnostics
// when it fails.
//
// The tests run through ./run.sh, which puts them into a fresh network namespace whose only usable addresses
// are loopback (see run.sh for why and how); assertIsolatedNetwork() refuses to run anywhere else, so no
// traffic, WebRTC included, can leave the machine.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, '../../..');
export const EDGE_BIN = process.env.SWITCHBOARD_EDGE_BIN || path.join(REPO, 'target/debug/switchboard-edge');
export const ROUTER_BIN = process.env.SWITCHBOARD_ROUTER_BIN || path.join(REPO, 'target/debug/switchboard-router');
// Same override the Rust testkit honours (run.sh sets it); otherwise PATH, then where Debian's package puts
// it (/usr/sbin is not on every user's PATH).
export const NATS_BIN = process.env.SWITCHBOARD_NATS_SERVER_BIN
  || [...(process.env.PATH || '').split(path.delimiter).filter(Boolean), '/usr/sbin', '/usr/bin']
    .map((dir) => path.join(dir, 'nats-server')).find((file) => fs.existsSync(file))
  || 'nats-server';
export const CHROMIUM_BIN = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
// Every run leaves screenshots of what the pages showed here, for people to look at.
export const SCREENSHOT_DIR = path.join(REPO, 'target/browser-screenshots');

// Everything is bounded: each test by its own timeout (E2E_TEST_TIMEOUT_MS for the browser tests), each step
// by the time left of it. run.sh's outer timeout must stay above the sum over all tests of all files.
export const E2E_TEST_TIMEOUT_MS = 90_000;
// Kept out of the scenario's budget so that a failing step still leaves time to print diagnostics and stop
// every process: stops run tier by tier (edges, routers, NATS), in parallel within a tier, each bounded by
// PROCESS_STOP_TIMEOUT_MS, so 3 tiers take at most 24 s.
export const CLEANUP_RESERVE_MS = 25_000;
// One process writing its ready file (the edge's and router's take milliseconds once started).
export const READY_TIMEOUT_MS = 15_000;
// SIGTERM, then SIGKILL if the process is still there after this. Routers and edges use SIGTERM to hand
// slots over and to tell clients, which takes at most their --shutdown-grace (5 s by default; the routers
// currently always use all of it, see stopTier); nats-server exits within milliseconds.
export const PROCESS_STOP_TIMEOUT_MS = 8_000;
// Any single wait (a join, ICE, the first video frames) fails after this, so a broken step is named quickly.
export const STEP_TIMEOUT_MS = 20_000;
// How often start-up conditions (ready files, HTTP endpoints) are polled.
export const POLL_INTERVAL_MS = 25;
// Lines of each process's output printed when a test fails.
export const LOG_TAIL_LINES = 80;

// Browser flags. Playwright adds its own automation defaults (no background networking, no component
// updates, no throttling of background pages, ...); these are the ones the tests depend on.
export const CHROMIUM_ARGS = [
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


// ---------------------------------------------------------------------------------------------------------
// Cleanup. Each test owns a scope: a stack of idempotent cleanup steps, run from the test's finally. A test
// that times out keeps running in the background until its own bounded waits fail, and then cleans up its
// own scope, not the next test's; after() is the backstop for a scope still open when the file ends. (Should
// node itself die, run.sh's PID namespace takes every process with it.)
const openScopes = new Set();
export function newScope() {
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

export function deadlineFrom(ms) {
  const end = Date.now() + ms;
  return () => Math.max(1, end - Date.now());
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Refuse to run unless every non-loopback address is an IPv6 link-local address on the veth pair that
// run.sh creates inside the namespace (it exists only so Chromium believes it is online, see run.sh).
export function assertIsolatedNetwork() {
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
export function ringLog(limit = 400, { timed = false } = {}) {
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
export function spawnService(name, bin, args) {
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
    /** Resolves with {code, signal} once the process has exited. */
    exitPromise,
    /** Sends `signalName` (SIGKILL, SIGSTOP, SIGCONT, ...) and returns at once. */
    signal(signalName) {
      if (!exited) child.kill(signalName);
    },
    async stop() {
      if (exited) return;
      child.kill('SIGTERM');
      // A stopped process (SIGSTOP) acts on SIGTERM only once it runs again.
      child.kill('SIGCONT');
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
export function stopTier(scope) {
  const tier = [];
  scope.defer(() => Promise.all(tier.map((s) => s.stop())));
  return tier;
}

// Polls `check` until it returns a value other than undefined/false, failing after `timeoutMs` or as soon as
// one of `services` exits. A throwing check counts as "not yet" (e.g. a port not accepting connections
// yet); its last error is reported on timeout.
export async function pollUntil(what, timeoutMs, services, check) {
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
export async function readReadyFile(service, readyFile, timeoutMs) {
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
export function httpGet(url, timeoutMs = 2_000) {
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
export async function freePorts(count) {
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


// ---- standalone: one switchboard-edge, with its embedded router. `args` are added to its flags; `listen`
// is its public address (a free port by default; an earlier edge's address to restart it). Resolves with
// [{name, listen, admin_listen, service}] once it listens.
export async function startStandalone({ scope, tmpDir, services }, args = [],
  { name = 'edge', listen = '127.0.0.1:0' } = {}) {
  const tier = stopTier(scope);
  const readyFile = path.join(tmpDir, `${name}.ready.json`);
  const edge = spawnService(name, EDGE_BIN,
    ['--listen', listen, '--admin-listen', '127.0.0.1:0', '--ready-file', readyFile, ...args]);
  tier.push(edge);
  services.push(edge);
  const ready = await readReadyFile(edge, readyFile, READY_TIMEOUT_MS);
  assert.match(ready.listen, /:\d+$/, `ready file has no listen address: ${JSON.stringify(ready)}`);
  return [{ name, ...ready, service: edge }];
}

// ---------------------------------------------------------------------------------------------------------
// Browser side.

// launch() gives the browser a fresh temporary profile and removes it on close.
export async function launchBrowser({ scope, remaining }) {
  const browser = await chromium.launch({
    executablePath: CHROMIUM_BIN,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: remaining(),
  });
  scope.defer(() => browser.close());
  return browser;
}

// A page in its own browser context (separate storage, like two people on two machines), loaded from `url`.
// Everything the page logs, throws, fails to load, and sends or receives on its WebSockets (observed via
// CDP, not patched in) goes to the test's console log. `describe()` returns what to print about the page if
// the test fails. `initScript` (a function) runs in the page before any of its own scripts.
export async function openPage({ consoleLog, participants }, browser, label, url, describe = async () => '',
  { initScript } = {}) {
  const context = await browser.newContext();
  if (initScript) await context.addInitScript(initScript);
  const page = await context.newPage();
  page.on('console', (m) => consoleLog.push(`[${label} console.${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => consoleLog.push(`[${label} pageerror] ${e.message}`));
  page.on('requestfailed', (r) => consoleLog.push(`[${label} requestfailed] ${r.url()} ${r.failure()?.errorText}`));
  page.on('websocket', (ws) => {
    const clip = (payload) => (typeof payload === 'string' && payload.length > 300 ? `${payload.slice(0, 300)}...` : payload);
    consoleLog.push(`[${label} ws open] ${ws.url()}`);
    ws.on('framesent', (f) => consoleLog.push(`[${label} ws >>] ${clip(f.payload)}`));
    ws.on('framereceived', (f) => consoleLog.push(`[${label} ws <<] ${clip(f.payload)}`));
    ws.on('socketerror', (e) => consoleLog.push(`[${label} ws error] ${e}`));
    ws.on('close', () => consoleLog.push(`[${label} ws closed]`));
  });
  const participant = { label, page, context, describe: () => describe(page) };
  participants.push(participant);
  await page.goto(url);
  return participant;
}

// Saves what `page` shows as target/browser-screenshots/<name>.png; returns the file.
export async function saveScreenshot(page, name) {
  fs.mkdirSync(SCREENSHOT_DIR, { recursive: true });
  const file = path.join(SCREENSHOT_DIR, `${name}.png`);
  await page.screenshot({ path: file });
  return file;
}

// Diagnostics for a failed test: what each page saw, what the browser said, what every server logged.
async function printDiagnostics({ name, participants, consoleLog, services }) {
  for (const p of participants) {
    try {
      console.error(`--- ${p.label} ---\n${await p.describe()}`);
      if (!p.page.isClosed()) {
        const file = await saveScreenshot(p.page, `${slug(name)}-${p.label}-failure`);
        console.error(`--- ${p.label}: screenshot ${file}`);
      }
    } catch (e) {
      console.error(`--- ${p.label}: could not describe the page: ${e.message}`);
    }
  }
  console.error(`--- browser console ---\n${consoleLog.dump()}`);
  for (const s of services) {
    console.error(`--- ${s.name} output, last ${LOG_TAIL_LINES} lines (exit: ${JSON.stringify(s.exited)}) ---\n` +
      s.log.dump(LOG_TAIL_LINES));
  }
}

export const slug = (text) => text.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 60);

// One test with real processes: `body(ctx)` starts what it needs through ctx and runs its scenario. ctx has
// scope (cleanup), tmpDir, remaining() (time left before the cleanup reserve), step() (the bound for one
// wait), consoleLog, participants (pages, see openPage), services (processes, see spawnService), and
// serversReady() to mark the end of start-up in the timings line. Every service must still be running at the
// end, unless the test stopped it on purpose and said so with ctx.retire(service). On failure the diagnostics are
// printed before everything is stopped. `cleanupReserve` is the part of `timeout` kept for that.
export function e2eTest(name, {
  timeout = E2E_TEST_TIMEOUT_MS, cleanupReserve = CLEANUP_RESERVE_MS, browser = true,
} = {}, body) {
  test(name, { timeout }, async () => {
    assertIsolatedNetwork();
    if (browser) assert.ok(fs.existsSync(CHROMIUM_BIN), `chromium not found at ${CHROMIUM_BIN} (apt-get install chromium)`);

    const scope = newScope();
    const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-browser-'));
    scope.defer(() => fs.rmSync(tmpDir, { recursive: true, force: true }));
    const t0 = performance.now();
    let tReady;
    let tDone;
    const remaining = deadlineFrom(timeout - cleanupReserve);
    const ctx = {
      name,
      scope,
      tmpDir,
      remaining,
      step: () => Math.min(STEP_TIMEOUT_MS, remaining()),
      consoleLog: ringLog(1000, { timed: true }),
      participants: [],
      services: [],
      serversReady: () => { tReady = performance.now(); },
      // A service the test stopped on purpose: the end-of-test check that every service still runs skips it.
      retire: (service) => { ctx.services.splice(ctx.services.indexOf(service), 1); },
    };
    try {
      await body(ctx);
      for (const s of ctx.services) assert.equal(s.exited, null, `${s.name} is still running`);
      tDone = performance.now();
    } catch (err) {
      await printDiagnostics(ctx);
      throw err;
    } finally {
      const tCleanup = performance.now();
      await scope.close();
      const ms = (a, b) => (a === undefined || b === undefined ? '-' : `${Math.round(b - a)} ms`);
      console.log(`timings: servers ready ${ms(t0, tReady)}, scenario ${ms(tReady ?? t0, tDone)}, ` +
        `cleanup ${ms(tCleanup, performance.now())}`);
    }
  });
}
