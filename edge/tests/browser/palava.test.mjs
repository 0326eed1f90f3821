// End-to-end: the unmodified palava-client 2.2.1 bundle, in two headless Chromium sessions, joins one room
// through Switchboard and reaches `peer_connection_established` with media flowing both ways. The same
// scenario runs twice, against different servers:
//   - standalone: one switchboard-edge (with its embedded router); both participants use it;
//   - cluster: a 3-node nats-server cluster with JetStream, 2 switchboard-routers and 2 switchboard-edges;
//     alice uses edge A and bob edge B, so every signaling message between them crosses NATS.
//
// Run it through ./run.sh (see harness.mjs and run.sh: the tests only ever reach loopback).
import assert from 'node:assert/strict';
import crypto from 'node:crypto';

import { startCluster } from './cluster.mjs';
import { e2eTest, launchBrowser, saveScreenshot, slug, startStandalone } from './harness.mjs';
import {
  PALAVA_DEFAULT_JOIN_TIMEOUT_MS, openPalavaPage, startPalava, startStaticServer, waitForPalavaEvent,
  waitForPalavaRemoteVideo,
} from './palava.mjs';

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
async function palavaScenario(ctx, urls) {
  const { step, participants } = ctx;
  const baseUrl = await startStaticServer(ctx.scope);
  const browser = await launchBrowser(ctx);
  console.log(`chromium ${browser.version()}, alice -> ${urls.alice}, bob -> ${urls.bob}, page ${baseUrl}/palava.html`);

  const alice = await openPalavaPage(ctx, browser, 'alice', baseUrl);
  const bob = await openPalavaPage(ctx, browser, 'bob', baseUrl);
  const roomId = `e2e-${crypto.randomBytes(8).toString('hex')}`;
  const start = (p) => startPalava(p, { webSocketAddress: urls[p.label], roomId, name: p.label });

  // Alice joins first, alone; then Bob joins and must see her. Sequencing the joins makes the roles
  // deterministic (palava decides who sends the offer from join order and the peer's user_agent).
  const { userAgent } = await start(alice);
  console.log(`palava.browser.getUserAgent() = ${JSON.stringify(userAgent)}`);
  const aliceJoined = await waitForPalavaEvent(alice, 'room_joined', (e) => e.event === 'room_joined', step());
  assert.deepEqual(aliceJoined.remotePeers, [], 'alice joined an empty room');
  assert.ok(aliceJoined.ownId, 'joined_room carried own_id');

  await start(bob);
  const bobJoined = await waitForPalavaEvent(bob, 'room_joined', (e) => e.event === 'room_joined', step());
  assert.notEqual(bobJoined.ownId, aliceJoined.ownId);
  assert.equal(bobJoined.remotePeers.length, 1, 'bob sees exactly one peer in joined_room');
  assert.equal(bobJoined.remotePeers[0].peerId, aliceJoined.ownId, 'bob sees alice by her own_id');
  assert.equal(bobJoined.remotePeers[0].status.name, 'alice', 'alice\'s status name reached bob');

  const aliceSawBob = await waitForPalavaEvent(alice, 'peer_joined', (e) => e.event === 'peer_joined', step());
  assert.equal(aliceSawBob.peerId, bobJoined.ownId, 'new_peer announced bob by his own_id');
  assert.equal(aliceSawBob.status.name, 'bob', 'bob\'s status name reached alice');

  // The event this test is about: ICE connected, on both sides, for the right peer.
  const established = (p, other) => waitForPalavaEvent(p, 'peer_connection_established',
    new Function('e', `return e.event === 'peer_connection_established' && e.peerId === ${JSON.stringify(other)}`),
    step());
  await Promise.all([established(alice, bobJoined.ownId), established(bob, aliceJoined.ownId)]);

  // What a user would notice: the other person's camera picture is moving on screen.
  for (const p of participants) {
    const video = await waitForPalavaRemoteVideo(p, step());
    assert.equal(video.videoTracks, 1, `${p.label} receives a video track`);
    assert.equal(video.audioTracks, 1, `${p.label} receives an audio track`);
    console.log(`${p.label}: remote video ${video.width}x${video.height}, ${video.frames} frames decoded`);
    await saveScreenshot(p.page, `${slug(ctx.name)}-${p.label}`);
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
  const left = await waitForPalavaEvent(alice, 'peer_left', (e) => e.event === 'peer_left', step());
  assert.equal(left.peerId, bobJoined.ownId, 'peer_left names bob');
}


// One end-to-end test: `startServers(ctx)` brings up the servers and returns their edges; alice uses the
// first, bob the last (the same one standalone).
function palavaTest(name, startServers) {
  e2eTest(name, {}, async (ctx) => {
    const edges = await startServers(ctx);
    ctx.serversReady();
    await palavaScenario(ctx, { alice: `ws://${edges[0].listen}/`, bob: `ws://${edges.at(-1).listen}/` });
  });
}

palavaTest('unmodified palava-client 2.2.1 sessions connect through switchboard-edge', startStandalone);
palavaTest('unmodified palava-client 2.2.1 sessions connect through a switchboard cluster (3 NATS, 2 routers, 2 edges)',
  startCluster);
