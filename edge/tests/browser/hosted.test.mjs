// End-to-end, hosted mode (--auth tokens): the unmodified palava-client 2.2.1 bundle in headless Chromium,
// with the join token in its `webSocketAddress` URL (`?access_token=`), as a palava application of a tenant
// would run it. Two tests:
//   - a call: two sessions with tokens printed by `switchboard-edge token` (room- and name-bound) reach
//     `peer_connection_established` with media both ways; a session of another tenant in a room of the same
//     name meets nobody;
//   - refusals: the same page with no token, an expired token, a forged signature, `alg: none`, a token of
//     another tenant's key claiming this tenant, and a valid token from a page on an origin the tenant does
//     not allow, is refused; the browser cannot read the HTTP answer, so the test proves each reason on the
//     edge: its switchboard_connections_refused_total{reason} rose by exactly the number of upgrades the page
//     attempted, and nothing else moved. A token for another room connects, and its join is refused with
//     `room not allowed by token`, which palava reports as a `signaling_error` from the server.
// The demo page's hosted-mode test is in demo.test.mjs, the JS client's in sdk.test.mjs.
//
// Run it through ./run.sh (see harness.mjs and run.sh: the tests only ever reach loopback).
import assert from 'node:assert/strict';
import crypto from 'node:crypto';

import { e2eTest, launchBrowser, pollUntil, saveScreenshot, slug } from './harness.mjs';
import {
  openPalavaPage, startPalava, startStaticServer, waitForPalavaEvent, waitForPalavaRemoteVideo,
} from './palava.mjs';
import {
  ACME_KEY, OTHER_KEY, connectionCounters, counterChanges, nowSeconds, signHs256, startHostedEdge, tenantsToml,
  tokenCommand, unsignedToken, withToken,
} from './tokens.mjs';

// Tenant acme takes browsers from `origin` only (and no native clients); tenant other takes anyone.
async function hostedSetup(ctx, origin) {
  const edge = await startHostedEdge(ctx, tenantsToml({ origins: [origin], allowMissingOrigin: false }));
  ctx.serversReady();
  return { edge, wsUrl: `ws://${edge.listen}/` };
}

// Waits for the first palava event matching `predicate` (serialized into the page: self-contained), whatever
// came before it: unlike waitForPalavaEvent, signaling_close and signaling_error are what these cases expect.
async function waitForPalavaEventAmongAny(p, description, predicate, timeout) {
  const handle = await p.page.waitForFunction((src) => {
    const match = new Function(`return (${src})`)();
    return window.palavaEvents.find((e) => match(e)) || null;
  }, predicate.toString(), { timeout, polling: 50 }).catch((e) => {
    throw new Error(`${p.label}: no ${description} (${e.message.split('\n')[0]})`, { cause: e });
  });
  return handle.jsonValue();
}

e2eTest('hosted mode: unmodified palava-client 2.2.1 sessions with join tokens in their URL call each other',
  {}, async (ctx) => {
    const { step } = ctx;
    const baseUrl = await startStaticServer(ctx.scope);
    const { edge, wsUrl } = await hostedSetup(ctx, baseUrl);
    const browser = await launchBrowser(ctx);
    const roomId = `hosted-${crypto.randomBytes(6).toString('hex')}`;
    // Bound to the room, named by the token: the names palava's identities give are not the ones shown.
    const token = (name) => tokenCommand(edge.tenantsFile,
      ['--key', ACME_KEY.id, '--room', roomId, '--name', name, '--ttl', '10m']);
    const alice = await openPalavaPage(ctx, browser, 'alice', baseUrl);
    const bob = await openPalavaPage(ctx, browser, 'bob', baseUrl);

    await startPalava(alice, { webSocketAddress: withToken(wsUrl, await token('Alice (token)')), roomId, name: 'alice' });
    const aliceJoined = await waitForPalavaEvent(alice, 'room_joined', (e) => e.event === 'room_joined', step());
    assert.deepEqual(aliceJoined.remotePeers, []);
    await startPalava(bob, { webSocketAddress: withToken(wsUrl, await token('Bob (token)')), roomId, name: 'bob' });
    const bobJoined = await waitForPalavaEvent(bob, 'room_joined', (e) => e.event === 'room_joined', step());
    assert.deepEqual(bobJoined.remotePeers.map((p) => [p.peerId, p.status.name]),
      [[aliceJoined.ownId, 'Alice (token)']], 'bob sees alice by her token\'s name');
    const aliceSawBob = await waitForPalavaEvent(alice, 'peer_joined', (e) => e.event === 'peer_joined', step());
    assert.equal(aliceSawBob.status.name, 'Bob (token)', 'alice sees bob by his token\'s name');

    const established = (p, other) => waitForPalavaEvent(p, 'peer_connection_established',
      new Function('e', `return e.event === 'peer_connection_established' && e.peerId === ${JSON.stringify(other)}`),
      step());
    await Promise.all([established(alice, bobJoined.ownId), established(bob, aliceJoined.ownId)]);
    for (const p of [alice, bob]) {
      const video = await waitForPalavaRemoteVideo(p, step());
      assert.deepEqual([video.videoTracks, video.audioTracks], [1, 1], `${p.label} receives video and audio`);
      console.log(`${p.label}: remote video ${video.width}x${video.height}, ${video.frames} frames decoded`);
      await saveScreenshot(p.page, `${slug(ctx.name)}-${p.label}`);
    }

    // Tenant other's token for a room of the same name: another tenant's room, empty; acme's members hear
    // nothing of it.
    const mallory = await openPalavaPage(ctx, browser, 'mallory', baseUrl);
    const otherToken = await tokenCommand(edge.tenantsFile, ['--key', OTHER_KEY.id, '--room', roomId]);
    await startPalava(mallory, { webSocketAddress: withToken(wsUrl, otherToken), roomId, name: 'mallory' });
    const malloryJoined = await waitForPalavaEvent(mallory, 'room_joined', (e) => e.event === 'room_joined', step());
    assert.deepEqual(malloryJoined.remotePeers, [], 'another tenant\'s room of the same name is empty');
    const aliceEvents = await alice.page.evaluate(() => window.palavaEvents.map((e) => e.event));
    assert.equal(aliceEvents.filter((e) => e === 'peer_joined').length, 1, 'alice met bob and nobody else');
  });

e2eTest('hosted mode: palava-client pages with bad tokens or from another origin are refused, each for its reason',
  {}, async (ctx) => {
    const { step } = ctx;
    const baseUrl = await startStaticServer(ctx.scope);
    // Another port is another origin: the same page, served from where tenant acme does not allow it.
    const elsewhereUrl = await startStaticServer(ctx.scope);
    const { edge, wsUrl } = await hostedSetup(ctx, baseUrl);
    const browser = await launchBrowser(ctx);
    const roomId = `refused-${crypto.randomBytes(6).toString('hex')}`;
    const claims = { exp: nowSeconds() + 600, iat: nowSeconds(), room: roomId };
    const valid = await tokenCommand(edge.tenantsFile, ['--key', ACME_KEY.id, '--room', roomId]);

    // [what, page origin, token, the reason docs/hosting.md gives (as the metric label)]
    const cases = [
      ['no token', baseUrl, null, 'missing_token'],
      ['an expired token', baseUrl,
        signHs256(ACME_KEY.id, ACME_KEY.secret, { ...claims, exp: nowSeconds() - 600 }), 'token_expired'],
      ['a forged signature', baseUrl,
        signHs256(ACME_KEY.id, 'a guessed secret of at least 32 bytes!!', claims), 'invalid_token'],
      ['alg: none', baseUrl, unsignedToken(ACME_KEY.id, claims), 'invalid_token'],
      ['another tenant\'s key', baseUrl,
        signHs256(OTHER_KEY.id, OTHER_KEY.secret, { ...claims, tenant: 'acme' }), 'invalid_token'],
      ['a page on an origin the tenant does not allow', elsewhereUrl, valid, 'origin_not_allowed'],
    ];
    for (const [what, pageUrl, token, reason] of cases) {
      const label = slug(what);
      const before = await connectionCounters(edge);
      const p = await openPalavaPage(ctx, browser, label, pageUrl);
      const upgrades = [];
      p.page.on('websocket', (ws) => upgrades.push(ws.url()));
      await startPalava(p, { webSocketAddress: token ? withToken(wsUrl, token) : wsUrl, roomId, name: label });
      // palava retries a failed socket twice, then reports a socket error; no socket ever opened.
      const failed = await waitForPalavaEventAmongAny(p, 'signaling_error',
        (e) => e.event === 'signaling_error' || e.event === 'signaling_open' || e.event === 'room_joined', step());
      assert.deepEqual([failed.event, failed.detail?.[0]], ['signaling_error', 'socket'], `${what}: the socket failed`);
      // What the edge counted, against what the page attempted (Playwright sees every upgrade the page made).
      const changes = await pollUntil(`${what}: the edge's refusal counters`, step(), [edge.service], async () => {
        const now = counterChanges(before, await connectionCounters(edge));
        return upgrades.length > 0 && now.refused[reason] === upgrades.length ? now : undefined;
      });
      assert.deepEqual(changes, { refused: { [reason]: upgrades.length }, errors: {}, accepted: 0 },
        `${what}: refused as ${reason}, once per upgrade, and nothing else`);
      console.log(`${what}: ${upgrades.length} upgrades, each refused as ${reason}`);
      await p.context.close();
    }

    // A valid token for another room: the connection is accepted, the join is refused.
    const before = await connectionCounters(edge);
    const p = await openPalavaPage(ctx, browser, 'another-room', baseUrl);
    const elsewhere = await tokenCommand(edge.tenantsFile, ['--key', ACME_KEY.id, '--room', `${roomId}-other`]);
    await startPalava(p, { webSocketAddress: withToken(wsUrl, elsewhere), roomId, name: 'another-room' });
    const refusal = await waitForPalavaEventAmongAny(p, 'an error from the server',
      (e) => e.event === 'signaling_error' || e.event === 'room_joined', step());
    assert.deepEqual([refusal.event, refusal.detail], ['signaling_error', ['server', 'room not allowed by token']]);
    const events = await p.page.evaluate(() => window.palavaEvents.map((e) => e.event));
    assert.ok(events.includes('signaling_open'), 'the connection itself was accepted');
    assert.deepEqual(counterChanges(before, await connectionCounters(edge)),
      { refused: {}, errors: { room_not_allowed: 1 }, accepted: 1 });
  });
