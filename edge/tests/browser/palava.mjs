// Driving palava.html, the page that runs the unmodified palava-client 2.2.1 bundle: serving it, opening it,
// starting a session, and waiting for palava's own session events. Used by palava.test.mjs and by the
// interop test in demo.test.mjs.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

import { HERE, openPage } from './harness.mjs';

const BUNDLE = path.join(HERE, 'node_modules/palava-client/palava.bundle.js');
const PAGE = path.join(HERE, 'palava.html');

// palava fails a join (room_join_error) when joined_room has not arrived this long after getUserMedia
// resolved, and by default that is 1 s. On a busy machine (measured: 2 CPUs, load average 6) opening the
// WebSocket alone took 800 ms of that, which is the browser's and the machine's time, not the server's; so
// the page gets a longer timeout, and the server's part of the join, which palava's timer also counts, is
// measured and held to palava's default instead (see joinLatency in palava.test.mjs).
export const JOIN_TIMEOUT_MS = 10_000;
export const PALAVA_DEFAULT_JOIN_TIMEOUT_MS = 1_000;

// palava-client insists on a STUN URL. Nothing listens on this loopback port, so gathering a server-reflexive
// candidate simply fails, quickly and locally.
export const STUN_URL = 'stun:127.0.0.1:3478';

// Session events after which waiting for anything else is pointless.
const FATAL_EVENTS = [
  'argument_error', 'webrtc_no_support', 'signaling_not_reachable', 'signaling_error', 'signaling_close',
  'room_join_error', 'local_stream_error', 'peer_connection_failed',
];

// Serve the test page and the untouched palava bundle from loopback; resolves with the base URL.
export async function startStaticServer(scope) {
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

// Opens palava.html from `baseUrl` (see startStaticServer) as participant `label`; `options` go to openPage.
export function openPalavaPage(ctx, browser, label, baseUrl, options = {}) {
  return openPage(ctx, browser, label, `${baseUrl}/palava.html`, describePalavaPage, options);
}

async function describePalavaPage(page) {
  const events = await page.evaluate(() => window.palavaEvents);
  const states = await page.evaluate(() => window.peerConnectionStates());
  return `palava events:\n${events.map((e) => JSON.stringify(e)).join('\n')}\n` +
    `peer connections:\n${JSON.stringify(states, null, 1)}`;
}

// Creates a palava Session on the page and connects it: it asks for camera and microphone, then joins.
// `turnUrls` is palava's option of that name: the TURN URLs it uses with the turn_user and turn_password of
// joined_room. Resolves with palava's view of the browser ({userAgent, userAgentVersion}).
export function startPalava(p, { webSocketAddress, roomId, name, turnUrls }) {
  return p.page.evaluate((o) => window.startPalava(o),
    { webSocketAddress, roomId, stun: STUN_URL, name, joinTimeout: JOIN_TIMEOUT_MS, turnUrls });
}

// Wait until `predicate(entry)` matches one of the page's palava events, or fail early on a fatal event.
// The predicate is serialized into the page, so it must be self-contained.
export async function waitForPalavaEvent(p, description, predicate, timeout) {
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

// Resolves once the page's remote <video> has decoded a few frames of the peer's camera; returns its
// numbers ({frames, width, height, audioTracks, videoTracks}).
export async function waitForPalavaRemoteVideo(p, timeout) {
  await p.page.waitForFunction(() => window.remoteVideo.frames >= 5 && window.remoteVideo.width > 0,
    null, { timeout, polling: 50 }).catch((e) => {
    throw new Error(`${p.label}: remote video is not playing (${e.message.split('\n')[0]})`, { cause: e });
  });
  return p.page.evaluate(() => window.remoteVideo);
}
