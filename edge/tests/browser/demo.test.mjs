// End-to-end: the demo page that switchboard-edge serves, in headless Chromium with a fake camera and
// microphone, as people use it: two participants open the same room link, see each other's video, chat,
// and one leaves. Six tests:
//   - standalone: both pages come from one switchboard-edge;
//   - cluster: 3 NATS nodes, 2 routers, 2 edges (with --demo); each page comes from, and signals through,
//     a different edge;
//   - errors: what the page shows when a join is refused and while the edge restarts;
//   - interop: a page running the unmodified palava-client 2.2.1 and the demo page call each other;
//   - TURN: the same call, relayed by a real coturn with the credentials the edge put in joined_room;
//   - hosted mode: two participants with join tokens in the page's URL (`?token=`) call each other.
// Screenshots of every page go to target/browser-screenshots/ on every run; docs/demo.png is alice's from the
// standalone test.
//
// Run it through ./run.sh (see harness.mjs and run.sh: the tests only ever reach loopback).
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import { startCluster } from './cluster.mjs';
import { startCoturn } from './coturn.mjs';
import { e2eTest, freePorts, launchBrowser, openPage, saveScreenshot, slug, startStandalone } from './harness.mjs';
import {
  openPalavaPage, startPalava, startStaticServer, waitForPalavaEvent, waitForPalavaRemoteVideo,
} from './palava.mjs';
import {
  ACME_KEY, connectionCounters, counterChanges, startHostedEdge, tenantsToml, tokenCommand,
} from './tokens.mjs';

// Opens the demo at http://<edge>/r/<room>?name=<label>[&token=<token>]: the page asks for camera and
// microphone and joins at once. Anything the page throws, and any resource the page's Content-Security-Policy
// refuses, is kept in `problems` and fails the test at the end (assertNoProblems). `token` is a join token
// for hosted mode; the other `options` go to openPage.
async function openDemo(ctx, browser, label, edge, room, { token, ...options } = {}) {
  const url = `http://${edge.listen}/r/${encodeURIComponent(room)}?name=${encodeURIComponent(label)}` +
    (token ? `&token=${encodeURIComponent(token)}` : '');
  const problems = [];
  const p = await openPage(ctx, browser, label, url, describeDemoPage, options);
  p.page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  p.page.on('console', (m) => {
    if (/Content.Security.Policy|Refused to/i.test(m.text())) problems.push(`CSP: ${m.text()}`);
  });
  p.problems = problems;
  return p;
}

async function describeDemoPage(page) {
  return page.evaluate(() => JSON.stringify({
    url: location.href,
    connection: document.getElementById('connection').textContent,
    banner: document.getElementById('banner').hidden ? null : document.getElementById('banner-text').textContent,
    tiles: [...document.querySelectorAll('.tile.remote')].map((t) => ({
      peerId: t.dataset.peerId, name: t.querySelector('.name').textContent, state: t.dataset.state,
      videoWidth: t.querySelector('video').videoWidth,
    })),
    calls: window.switchboardDemo?.describe(),
    chat: [...document.querySelectorAll('#chat-log li')].map((li) => li.textContent),
  }, null, 1));
}

function assertNoProblems(...participants) {
  for (const p of participants) assert.deepEqual(p.problems, [], `${p.label}: the page reported problems`);
}

// Waits until `p` shows a tile for the participant named `name` whose connection state reads "connected"
// and whose video is playing the other camera's moving picture (a non-zero size, frames being decoded);
// returns what the tile shows.
async function waitForRemoteTile(p, name, timeout) {
  const handle = await p.page.waitForFunction((wanted) => {
    const tile = [...document.querySelectorAll('.tile.remote')]
      .find((t) => t.querySelector('.name').textContent === wanted);
    const video = tile?.querySelector('video');
    if (!video || tile.dataset.state !== 'connected' || video.paused || video.videoWidth === 0) return null;
    const frames = video.getVideoPlaybackQuality().totalVideoFrames;
    if (frames < 5) return null;
    return {
      peerId: tile.dataset.peerId,
      stateText: tile.querySelector('.state').textContent,
      width: video.videoWidth,
      height: video.videoHeight,
      frames,
      audioTracks: video.srcObject.getAudioTracks().length,
      videoTracks: video.srcObject.getVideoTracks().length,
    };
  }, name, { timeout, polling: 50 }).catch((e) => {
    throw new Error(`${p.label}: no connected tile with ${name}'s video playing (${e.message.split('\n')[0]})`,
      { cause: e });
  });
  const tile = await handle.jsonValue();
  assert.equal(tile.stateText, 'connected', `${p.label}: ${name}'s tile says it is connected`);
  assert.equal(tile.videoTracks, 1, `${p.label} receives ${name}'s video`);
  assert.equal(tile.audioTracks, 1, `${p.label} receives ${name}'s audio`);
  console.log(`${p.label} sees ${name}: ${tile.width}x${tile.height}, ${tile.frames} frames`);
  return tile;
}

// Types `text` into `from`'s chat box and sends it with Enter; `to` must show it under `from`'s name.
async function chat(from, to, text, timeout) {
  await from.page.fill('#chat-input', text);
  await from.page.press('#chat-input', 'Enter');
  await to.page.locator('#chat-log li.theirs', { hasText: text }).waitFor({ timeout });
  const line = await to.page.locator('#chat-log li.theirs', { hasText: text }).textContent();
  assert.equal(line, `${from.label}${text}`, `${to.label} shows the line under ${from.label}'s name`);
  assert.equal(await from.page.locator('#chat-log li.own', { hasText: text }).count(), 1,
    `${from.label} sees its own line`);
}

// The scenario of the standalone and cluster tests: alice joins the room on `edges[0]`, bob on the last
// edge; they see and hear each other, chat both ways, and when bob closes his page alice's tile of him goes.
async function demoScenario(ctx, edges) {
  const { step } = ctx;
  const browser = await launchBrowser(ctx);
  const room = `demo ${crypto.randomBytes(4).toString('hex')}`;
  const alice = await openDemo(ctx, browser, 'alice', edges[0], room);
  await alice.page.locator('#connection', { hasText: 'online' }).waitFor({ timeout: step() });
  await alice.page.locator('#empty').waitFor({ state: 'visible', timeout: step() });
  const bob = await openDemo(ctx, browser, 'bob', edges.at(-1), room);
  console.log(`chromium ${browser.version()}: alice on ${edges[0].name}, bob on ${edges.at(-1).name}`);

  const [bobSeen, aliceSeen] = await Promise.all([
    waitForRemoteTile(alice, 'bob', step()),
    waitForRemoteTile(bob, 'alice', step()),
  ]);
  assert.notEqual(bobSeen.peerId, aliceSeen.peerId);
  assert.ok(await alice.page.locator('#empty').isHidden(), 'alice no longer waits for others');

  await chat(alice, bob, 'hello from alice', step());
  await chat(bob, alice, 'hi alice, bob here', step());
  for (const p of [alice, bob]) await saveScreenshot(p.page, `${slug(ctx.name)}-${p.label}`);
  assertNoProblems(alice, bob);

  await bob.context.close();
  await alice.page.locator(`.tile.remote[data-peer-id="${bobSeen.peerId}"]`)
    .waitFor({ state: 'detached', timeout: step() });
  await alice.page.locator('#empty').waitFor({ state: 'visible', timeout: step() });
  assert.equal(await alice.page.locator('.tile.remote').count(), 0, 'alice is alone again');
}

e2eTest('demo page: two participants see each other and chat through switchboard-edge', {}, async (ctx) => {
  const edges = await startStandalone(ctx);
  ctx.serversReady();
  await demoScenario(ctx, edges);
});

e2eTest('demo page: two participants on different edges of a cluster see each other and chat', {}, async (ctx) => {
  const edges = await startCluster(ctx, { edgeArgs: ['--demo'] });
  ctx.serversReady();
  await demoScenario(ctx, edges);
});

// What the page shows when things go wrong: a join the server refuses (its error text, and a way to try
// again), and a server that goes away and comes back (reconnecting, then back in the room by itself).
e2eTest('demo page: shows server errors and the reconnect state', {}, async (ctx) => {
  const [edge] = await startStandalone(ctx);
  ctx.serversReady();
  const { step } = ctx;
  const browser = await launchBrowser(ctx);
  // The lobby (the room picker at /) has tried no connection: it shows no connection state at all,
  // in particular not "offline".
  const lobby = await openPage(ctx, browser, 'lobby', `http://${edge.listen}/`, describeDemoPage);
  await lobby.page.locator('#lobby-form').waitFor({ timeout: step() });
  assert.equal(await lobby.page.locator('#connection').isHidden(), true, 'no connection state in the lobby');
  assert.equal(await lobby.page.locator('#connection').textContent(), '');
  const tooLong = 'r'.repeat(51);
  const alice = await openDemo(ctx, browser, 'alice', edge, tooLong);
  await alice.page.locator('#banner', { hasText: 'room id too long' }).waitFor({ timeout: step() });
  assert.equal(await alice.page.locator('#banner-action').textContent(), 'Try again');
  // After a connection attempt that failed, the state is shown.
  assert.equal(await alice.page.locator('#connection').textContent(), 'offline');
  assert.equal(await alice.page.locator('#connection').isVisible(), true);

  const room = `recover-${crypto.randomBytes(4).toString('hex')}`;
  await alice.page.goto(`http://${edge.listen}/r/${room}?name=alice`);
  await alice.page.locator('#connection', { hasText: 'online' }).waitFor({ timeout: step() });
  edge.service.signal('SIGKILL');
  await edge.service.exitPromise;
  ctx.retire(edge.service);
  await alice.page.locator('#connection', { hasText: 'reconnecting…' }).waitFor({ timeout: step() });
  await alice.page.locator('#banner', { hasText: 'Reconnecting in' }).waitFor({ timeout: step() });
  await saveScreenshot(alice.page, `${slug(ctx.name)}-alice-reconnecting`);

  const [restarted] = await startStandalone(ctx, [], { name: 'edge-restarted', listen: edge.listen });
  await alice.page.locator('#connection', { hasText: 'online' }).waitFor({ timeout: step() });
  await alice.page.locator('#banner', { hasText: 'Reconnected.' }).waitFor({ timeout: step() });
  // Back in the room, not just connected: someone joining now meets alice.
  const bob = await openDemo(ctx, browser, 'bob', restarted, room);
  await waitForRemoteTile(bob, 'alice', step());
  assertNoProblems(alice, bob);
});

// palava-client joins first, then the demo page. palava, already in the room, offers to the newcomer because
// the demo declares itself `chrome` (palava's rule, which the demo follows); the demo answers with palava's
// field names. Media must flow both ways, and palava leaving must remove its tile. Then a second palava page
// joins the demo, which is now the one in the room and makes the offer.
e2eTest('demo page and unmodified palava-client 2.2.1 call each other', {}, async (ctx) => {
  const [edge] = await startStandalone(ctx);
  ctx.serversReady();
  const { step } = ctx;
  const baseUrl = await startStaticServer(ctx.scope);
  const browser = await launchBrowser(ctx);
  const room = `interop-${crypto.randomBytes(4).toString('hex')}`;

  const palava = await openPalavaPage(ctx, browser, 'palava', baseUrl);
  await startPalava(palava, { webSocketAddress: `ws://${edge.listen}/`, roomId: room, name: 'palava' });
  await waitForPalavaEvent(palava, 'room_joined', (e) => e.event === 'room_joined', step());

  const demo = await openDemo(ctx, browser, 'demo', edge, room);
  const joined = await waitForPalavaEvent(palava, 'peer_joined', (e) => e.event === 'peer_joined', step());
  assert.equal(joined.status.name, 'demo', 'palava sees the demo by its name');
  assert.equal(joined.status.user_agent, 'chrome', 'the demo declares its browser as palava does');

  const palavaTile = await waitForRemoteTile(demo, 'palava', step());
  await waitForPalavaEvent(palava, 'peer_connection_established',
    new Function('e', `return e.event === 'peer_connection_established' && e.peerId === ${JSON.stringify(joined.peerId)}`),
    step());
  const video = await waitForPalavaRemoteVideo(palava, step());
  assert.equal(video.videoTracks, 1, 'palava receives the demo\'s video');
  assert.equal(video.audioTracks, 1, 'palava receives the demo\'s audio');
  console.log(`palava sees the demo: ${video.width}x${video.height}, ${video.frames} frames`);
  for (const p of [palava, demo]) await saveScreenshot(p.page, `${slug(ctx.name)}-${p.label}`);
  assertNoProblems(demo);

  await palava.page.evaluate(() => window.palavaSession.destroy());
  await demo.page.locator(`.tile.remote[data-peer-id="${palavaTile.peerId}"]`)
    .waitFor({ state: 'detached', timeout: step() });

  const second = await openPalavaPage(ctx, browser, 'palava-2', baseUrl);
  await startPalava(second, { webSocketAddress: `ws://${edge.listen}/`, roomId: room, name: 'palava-2' });
  const secondJoined = await waitForPalavaEvent(second, 'room_joined', (e) => e.event === 'room_joined', step());
  assert.deepEqual(secondJoined.remotePeers.map((p) => p.status.name), ['demo']);
  await waitForRemoteTile(demo, 'palava-2', step());
  const offered = await waitForPalavaEvent(second, 'peer_offer', (e) => e.event === 'peer_offer', step());
  assert.equal(offered.peerId, secondJoined.remotePeers[0].peerId, 'the demo made the offer');
  const secondVideo = await waitForPalavaRemoteVideo(second, step());
  assert.equal(secondVideo.videoTracks, 1, 'the second palava page receives the demo\'s video');
  assertNoProblems(demo);
});

// Runs in a page before its scripts: every RTCPeerConnection it makes may only use relayed candidates (so
// media flows only through the TURN server), and the configuration the page asked for is recorded in
// window.peerConnectionConfigs.
function relayOnly() {
  const Native = window.RTCPeerConnection;
  window.peerConnectionConfigs = [];
  window.RTCPeerConnection = class extends Native {
    constructor(config = {}, ...rest) {
      window.peerConnectionConfigs.push(JSON.parse(JSON.stringify(config)));
      super({ ...config, iceTransportPolicy: 'relay' }, ...rest);
    }
  };
}

// REST-API credentials as the edge mints them: `<expiry>:<connection id>` and a base64 HMAC-SHA1.
function assertMinted(server, url, what) {
  assert.deepEqual(server.urls, [url], `${what}: the TURN URL`);
  assert.match(server.username, /^\d{10}:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/,
    `${what}: the username is <expiry>:<connection id>`);
  assert.ok(Number(server.username.split(':')[0]) > Date.now() / 1000, `${what}: the credentials have not expired`);
  assert.match(server.credential, /^[A-Za-z0-9+/]{27}=$/, `${what}: the password is a base64 HMAC-SHA1`);
}

// With --turn-url and --turn-secret-file the edge mints TURN credentials for every joiner, and a real coturn
// sharing the secret relays the call: both pages may only use relayed candidates, so the call connects only
// if the credentials of joined_room work. The demo page takes them from the ice_servers extension, merged with
// /config.json's STUN server; palava-client takes turn_user and turn_password, with its own turnUrls.
e2eTest('demo page and palava-client call each other through coturn with joined_room\'s TURN credentials', {},
  async (ctx) => {
    const secret = crypto.randomBytes(16).toString('hex');
    const coturn = await startCoturn(ctx, [secret]);
    const secretFile = path.join(ctx.tmpDir, 'turn-secrets');
    fs.writeFileSync(secretFile, `${secret}\n`);
    const stun = `stun:127.0.0.1:${coturn.port}`;
    const [edge] = await startStandalone(ctx,
      ['--turn-url', coturn.url, '--turn-secret-file', secretFile, '--ice-server', stun]);
    ctx.serversReady();
    const { step } = ctx;
    const baseUrl = await startStaticServer(ctx.scope);
    const browser = await launchBrowser(ctx);
    const room = `turn-${crypto.randomBytes(4).toString('hex')}`;

    const demo = await openDemo(ctx, browser, 'demo', edge, room, { initScript: relayOnly });
    await demo.page.locator('#connection', { hasText: 'online' }).waitFor({ timeout: step() });
    const palava = await openPalavaPage(ctx, browser, 'palava', baseUrl, { initScript: relayOnly });
    await startPalava(palava, {
      webSocketAddress: `ws://${edge.listen}/`, roomId: room, name: 'palava', turnUrls: [coturn.url],
    });
    await waitForPalavaEvent(palava, 'room_joined', (e) => e.event === 'room_joined', step());

    await waitForRemoteTile(demo, 'palava', step());
    const video = await waitForPalavaRemoteVideo(palava, step());
    assert.equal(video.videoTracks, 1, 'palava receives the demo\'s video through the relay');
    for (const p of [palava, demo]) await saveScreenshot(p.page, `${slug(ctx.name)}-${p.label}`);
    assertNoProblems(demo);

    const [demoConfig] = await demo.page.evaluate(() => window.peerConnectionConfigs);
    assert.equal(demoConfig.iceServers.length, 2, JSON.stringify(demoConfig));
    assertMinted(demoConfig.iceServers[0], coturn.url, 'the demo page');
    assert.deepEqual(demoConfig.iceServers[1], { urls: [stun] }, '/config.json\'s STUN server stays');
    const palavaConfig = (await palava.page.evaluate(() => window.peerConnectionConfigs))
      .find((c) => c.iceServers?.some((s) => s.username));
    assert.ok(palavaConfig, 'palava made a peer connection with TURN credentials');
    assertMinted(palavaConfig.iceServers.find((s) => s.username), coturn.url, 'palava');
  });

// Hosted mode: the page takes its join token from `?token=`. The tenant allows the edge's own origin (the page
// comes from the edge), so its port is picked first. The tokens name the participants: each page shows its
// own token's name, and the other participant sees it too. A page without a token is refused and says how
// to get in.
e2eTest('demo page: two participants with join tokens call each other through an edge in hosted mode', {},
  async (ctx) => {
    const [port] = await freePorts(1);
    const origin = `http://127.0.0.1:${port}`;
    const edge = await startHostedEdge(ctx, tenantsToml({ origins: [origin], allowMissingOrigin: false }), [],
      { listen: `127.0.0.1:${port}` });
    ctx.serversReady();
    const { step } = ctx;
    const browser = await launchBrowser(ctx);
    const room = `hosted demo ${crypto.randomBytes(4).toString('hex')}`;
    const token = (name) => tokenCommand(edge.tenantsFile, ['--key', ACME_KEY.id, '--room', room, '--name', name]);

    const alice = await openDemo(ctx, browser, 'alice', edge, room, { token: await token('Alice Token') });
    await alice.page.locator('#connection', { hasText: 'online' }).waitFor({ timeout: step() });
    assert.equal(await alice.page.locator('#local-name').textContent(), 'Alice Token', 'the page shows the token\'s name');
    const bob = await openDemo(ctx, browser, 'bob', edge, room, { token: await token('Bob Token') });
    await Promise.all([waitForRemoteTile(alice, 'Bob Token', step()), waitForRemoteTile(bob, 'Alice Token', step())]);
    // Chat lines are signed with the token's name, too.
    await alice.page.fill('#chat-input', 'hello with a token');
    await alice.page.press('#chat-input', 'Enter');
    const line = bob.page.locator('#chat-log li.theirs', { hasText: 'hello with a token' });
    await line.waitFor({ timeout: step() });
    assert.equal(await line.textContent(), 'Alice Tokenhello with a token');
    for (const p of [alice, bob]) await saveScreenshot(p.page, `${slug(ctx.name)}-${p.label}`);
    // The share link is for others: it never carries this participant's token.
    assert.ok(!(await alice.page.locator('#share-link').getAttribute('href')).includes('token'));
    assertNoProblems(alice, bob);

    const before = await connectionCounters(edge);
    const carol = await openDemo(ctx, browser, 'carol', edge, room);
    await carol.page.locator('#banner', { hasText: 'open this page with ?token=' }).waitFor({ timeout: step() });
    const changes = counterChanges(before, await connectionCounters(edge));
    assert.deepEqual(Object.keys(changes.refused), ['missing_token'], 'the page without a token was refused');
    assert.equal(changes.accepted, 0);
  });
