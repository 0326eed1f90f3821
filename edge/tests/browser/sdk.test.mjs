// The JS client (edge/web/sdk/switchboard.js), run in node against a real switchboard-edge spawned on a free
// loopback port: what an application built on it relies on. Joining and signaling between two clients,
// typed errors for the server's error texts and for connection failures, ping/pong, the keepalive noticing
// a server that stopped answering, and reconnecting (then rejoining the room) after the edge was killed and
// restarted or announced a shutdown. Nothing is mocked: restarts, crashes and freezes are real processes
// getting real signals.
//
// Run it through ./run.sh (see harness.mjs and run.sh: the tests only ever reach loopback).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import WebSocket from 'ws';

import { HERE, e2eTest, freePorts, httpGet, startStandalone } from './harness.mjs';
import {
  CLIENT_ERROR_CODES, SwitchboardClient, SwitchboardError, iceServersOf, mergeIceServers,
} from '../../web/sdk/switchboard.js';
import {
  ACME_KEY, nowSeconds, signHs256, startHostedEdge, tenantsToml, tokenCommand,
} from './tokens.mjs';

const SDK_SOURCE = path.join(HERE, '../../web/sdk/switchboard.js');

// One test: an edge and a few clients, 30 s at most (run.sh's OUTER_TIMEOUT counts on that); a single edge
// stops within 8 s, so 10 s of it are kept for that. A passing test takes a few seconds at most.
const TEST_OPTIONS = { timeout: 30_000, cleanupReserve: 10_000, browser: false };

// Fast timers, so that reconnects and keepalive failures happen within a test's seconds.
const FAST = {
  WebSocket,
  pingInterval: 200,
  pongTimeout: 1_000,
  connectTimeout: 1_000,
  requestTimeout: 3_000,
  reconnectDelay: 100,
  reconnectMaxDelay: 800,
};

function client(ctx, edge, options = {}) {
  const c = new SwitchboardClient(`ws://${edge.listen}/`, { ...FAST, ...options });
  // Registered after the edge, so closed before it is stopped.
  ctx.scope.defer(() => c.close());
  return c;
}

// The next `type` event of `c` for which `filter` holds, or a failure naming what was awaited.
function next(c, type, timeout, filter = () => true) {
  return Promise.race([
    c.once(type, filter),
    new Promise((_, reject) => setTimeout(
      () => reject(new Error(`no ${type} event within ${timeout} ms (client state: ${c.state})`)), timeout).unref()),
  ]);
}

async function rejects(promise, code, message) {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof SwitchboardError, `a SwitchboardError, not ${e}`);
    assert.equal(e.code, code);
    if (message) assert.equal(e.message, message);
    return true;
  });
}

e2eTest('JS client: join, peers, offer/answer/ICE/message, status, info, ping, leave', TEST_OPTIONS, async (ctx) => {
  const [edge] = await startStandalone(ctx);
  ctx.serversReady();
  const { step } = ctx;
  const a = client(ctx, edge);
  const b = client(ctx, edge);

  const aJoined = await a.join('sdk-signaling', { name: 'ann' });
  assert.deepEqual(aJoined.peers, []);
  assert.equal(a.state, 'open');
  assert.equal(a.room.ownId, aJoined.ownId);
  const aSeesB = next(a, 'peer_joined', step());
  const bJoined = await b.join('sdk-signaling', { name: 'bob', user_agent: 'chrome' });
  assert.deepEqual(bJoined.peers, [{ peerId: aJoined.ownId, status: { name: 'ann' } }]);
  assert.equal(bJoined.iceServers, null, 'this server sends no ice_servers');
  assert.deepEqual(await aSeesB, { peerId: bJoined.ownId, status: { name: 'bob', user_agent: 'chrome' } });
  assert.deepEqual([...a.peers.keys()], [bJoined.ownId]);

  const offer = { type: 'offer', sdp: 'v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n' };
  const gotOffer = next(b, 'offer', step());
  a.sendOffer(bJoined.ownId, offer);
  assert.deepEqual(await gotOffer, { peerId: aJoined.ownId, description: offer });

  const answer = { type: 'answer', sdp: 'v=0\r\n' };
  const gotAnswer = next(a, 'answer', step());
  b.sendAnswer(aJoined.ownId, answer);
  assert.deepEqual(await gotAnswer, { peerId: bJoined.ownId, description: answer });

  // ICE candidates keep their order (they depend on it) and palava-client's field names on the wire.
  const candidates = [0, 1, 2].map((i) => ({
    candidate: `candidate:${i} 1 udp 2122260223 127.0.0.1 ${50000 + i} typ host`, sdpMid: '0', sdpMLineIndex: 0,
  }));
  const received = [];
  const allThree = new Promise((resolve) => b.on('ice_candidate', (e) => {
    received.push(e);
    if (received.length === 3) resolve();
  }));
  for (const c of candidates) a.sendIceCandidate(bJoined.ownId, c);
  a.sendIceCandidate(bJoined.ownId, null); // end of candidates: nothing to send
  await allThree;
  assert.deepEqual(received, candidates.map((candidate) => ({ peerId: aJoined.ownId, candidate })));

  const gotMessage = next(b, 'message', step());
  a.sendMessage(bJoined.ownId, { type: 'chat', text: 'hi bob' });
  assert.deepEqual(await gotMessage, { peerId: aJoined.ownId, data: { type: 'chat', text: 'hi bob' } });

  const aSeesRename = next(a, 'peer_status', step());
  assert.deepEqual(await b.updateStatus({ name: 'bobby' }), { name: 'bobby' });
  assert.deepEqual(await aSeesRename, { peerId: bJoined.ownId, status: { name: 'bobby' }, own: false });
  assert.equal(a.peers.get(bJoined.ownId).status.name, 'bobby');

  assert.equal((await a.info()).protocol_version, '1.0.0');
  const rtt = await a.ping();
  assert.ok(Number.isInteger(rtt) && rtt >= 0 && rtt < step(), `ping round trip ${rtt} ms`);

  const aSeesLeave = next(a, 'peer_left', step());
  await b.leave();
  assert.deepEqual(await aSeesLeave, { peerId: bJoined.ownId, reason: 'left' });
  assert.equal(a.peers.size, 0);
  assert.equal(b.room, null);
  // After leaving, the same connection can join again.
  assert.equal((await b.join('sdk-signaling', { name: 'bob' })).peers.length, 1);
});

e2eTest('JS client: typed errors for server error texts and connection failures', TEST_OPTIONS, async (ctx) => {
  const [edge] = await startStandalone(ctx);
  ctx.serversReady();
  const a = client(ctx, edge);

  await rejects(a.join(''), 'no_room_id', 'no room id given');
  await rejects(a.join('x'.repeat(51)), 'room_id_too_long', 'room id too long');
  await rejects(a.join('sdk-errors', { name: '   ' }), 'blank_name', 'blank name not allowed');
  await rejects(a.join('sdk-errors', { name: 'n'.repeat(51) }), 'name_too_long', 'name too long');
  assert.throws(() => a.sendMessage('someone', 'hi'), (e) => e.code === 'not_in_room');
  // None of that broke anything: the same client joins.
  const { ownId } = await a.join('sdk-errors', { name: 'ann' });
  await rejects(a.join('elsewhere'), 'already_joined');
  await rejects(a.updateStatus({ user_agent: 'netscape' }), 'unknown_user_agent', 'unknown user agent');

  // Errors that answer no request of the client's arrive as `error` events.
  const unknownPeer = next(a, 'error', ctx.step());
  a.sendMessage('00000000-0000-4000-8000-000000000000', 'hi');
  const error = await unknownPeer;
  assert.ok(error instanceof SwitchboardError);
  assert.deepEqual([error.code, error.serverText], ['unknown_peer', 'unknown peer']);
  assert.throws(() => a.sendToPeer(ownId, 'raw'), (e) => e.code === 'invalid_argument');

  // Nothing listens on this port (it was free a moment ago, and nothing else runs in the namespace).
  const [port] = await freePorts(1);
  const nowhere = client(ctx, { listen: `127.0.0.1:${port}` });
  await rejects(nowhere.join('sdk-errors'), CLIENT_ERROR_CODES.CONNECTION_FAILED);
  assert.equal(nowhere.state, 'idle', 'a failed first connection is not retried behind the caller\'s back');

  a.close();
  assert.equal(a.state, 'closed');
  await rejects(a.ping(), 'closed');
  await rejects(a.join('sdk-errors'), 'closed');
});

// Kill -9 and a restart on the same port: both clients notice, retry with growing delays while nothing
// listens, and are back in the room with each other once the edge is back.
e2eTest('JS client: reconnects with backoff and rejoins after the edge is killed and restarted', TEST_OPTIONS,
  async (ctx) => {
    const [edge] = await startStandalone(ctx);
    ctx.serversReady();
    const { step } = ctx;
    const a = client(ctx, edge);
    const b = client(ctx, edge);
    await a.join('sdk-restart', { name: 'ann' });
    await b.join('sdk-restart', { name: 'bob' });

    const attempts = [];
    a.on('reconnecting', (e) => attempts.push(e));
    const aLostB = next(a, 'peer_left', step());
    const aBack = next(a, 'joined', step(), (e) => e.rejoin);
    const bBack = next(b, 'joined', step(), (e) => e.rejoin);
    edge.service.signal('SIGKILL');
    await edge.service.exitPromise;
    ctx.retire(edge.service);
    assert.equal((await aLostB).reason, 'disconnected');
    await next(a, 'reconnecting', step(), (e) => e.attempt >= 3);
    assert.equal(a.state, 'reconnecting');
    assert.equal(attempts[0].error.code, 'connection_lost');
    assert.equal(attempts[1].error.code, 'connection_failed');
    // Exponential backoff with jitter: attempt n waits between half and all of min(100 * 2^(n-1), 800) ms.
    for (const { attempt, delay } of attempts) {
      const ceiling = Math.min(100 * 2 ** (attempt - 1), 800);
      assert.ok(delay >= ceiling / 2 && delay <= ceiling, `attempt ${attempt} waited ${delay} ms`);
    }

    await startStandalone(ctx, [], { name: 'edge-restarted', listen: edge.listen });
    const [aJoined, bJoined] = await Promise.all([aBack, bBack]);
    assert.equal(aJoined.roomId, 'sdk-restart');
    assert.equal(a.state, 'open');
    // Whoever rejoined second found the other one in the room.
    const together = aJoined.peers.some((p) => p.peerId === bJoined.ownId)
      || bJoined.peers.some((p) => p.peerId === aJoined.ownId);
    assert.ok(together, 'both clients are in the room again, with each other');
    assert.deepEqual((await b.updateStatus({ name: 'bob again' })).name, 'bob again');
  });

// SIGTERM with a long grace: the edge announces `shutdown`, the client leaves at once instead of waiting to
// be cut off, so the edge stops long before its grace is over; the client then rejoins the new edge.
e2eTest('JS client: leaves at a shutdown announcement and rejoins the restarted edge', TEST_OPTIONS, async (ctx) => {
  const [edge] = await startStandalone(ctx, ['--shutdown-grace', '60s']);
  ctx.serversReady();
  const { step } = ctx;
  const a = client(ctx, edge);
  await a.join('sdk-shutdown', { name: 'ann' });

  const announced = next(a, 'shutdown', step());
  const reconnecting = next(a, 'reconnecting', step());
  const back = next(a, 'joined', step(), (e) => e.rejoin);
  const t0 = performance.now();
  edge.service.signal('SIGTERM');
  assert.deepEqual(await announced, { seconds: 60 });
  assert.equal((await reconnecting).error.code, 'shutdown');
  const exited = await edge.service.exitPromise;
  ctx.retire(edge.service);
  const stoppedMs = performance.now() - t0;
  assert.equal(exited.code, 0, 'the edge stopped cleanly');
  assert.ok(stoppedMs < 10_000, `the edge stopped ${Math.round(stoppedMs)} ms after SIGTERM, not after its grace`);

  await startStandalone(ctx, [], { name: 'edge-restarted', listen: edge.listen });
  const joined = await back;
  assert.equal(joined.roomId, 'sdk-shutdown');
  assert.equal(a.state, 'open');
});

// SIGSTOP freezes the edge with its sockets open: TCP still accepts, nothing answers. The keepalive notices
// the silence (timeout), connection attempts time out too, and once the edge runs again the client is back.
e2eTest('JS client: keepalive replaces a connection whose server stopped answering', TEST_OPTIONS, async (ctx) => {
  const [edge] = await startStandalone(ctx);
  ctx.serversReady();
  const { step } = ctx;
  const a = client(ctx, edge);
  await a.join('sdk-keepalive', { name: 'ann' });
  // The keepalive pings are answered: the connection stays up well past the pong timeout.
  await new Promise((resolve) => setTimeout(resolve, 3 * FAST.pongTimeout));
  assert.equal(a.state, 'open');
  assert.ok(await a.ping() >= 0);

  const lost = next(a, 'reconnecting', step());
  const connectTimedOut = next(a, 'reconnecting', step(), (e) => e.attempt >= 2);
  const back = next(a, 'joined', step(), (e) => e.rejoin);
  edge.service.signal('SIGSTOP');
  const t0 = performance.now();
  const { error } = await lost;
  const noticedMs = performance.now() - t0;
  assert.equal(error.code, 'timeout');
  assert.ok(noticedMs < FAST.pongTimeout + 2 * FAST.pingInterval + 500, `silence noticed after ${noticedMs} ms`);
  assert.equal((await connectTimedOut).error.code, 'timeout', 'a connection that is never answered times out');

  edge.service.signal('SIGCONT');
  assert.equal((await back).roomId, 'sdk-keepalive');
});

e2eTest('JS client: the edge serves exactly the tested source', TEST_OPTIONS, async (ctx) => {
  const [edge] = await startStandalone(ctx);
  ctx.serversReady();
  const served = await httpGet(`http://${edge.listen}/sdk/switchboard.js`);
  assert.equal(served.status, 200);
  assert.ok(served.body === fs.readFileSync(SDK_SOURCE, 'utf8'),
    'GET /sdk/switchboard.js differs from edge/web/sdk/switchboard.js: rebuild the edge (cargo build --bins)');
});

e2eTest('JS client: an edge with TURN settings hands each join fresh TURN credentials', TEST_OPTIONS, async (ctx) => {
  const secrets = path.join(ctx.tmpDir, 'turn-secrets');
  fs.writeFileSync(secrets, 'sdk-test-secret\n');
  const turnUrl = 'turn:127.0.0.1:3478?transport=udp';
  const [edge] = await startStandalone(ctx, ['--turn-url', turnUrl, '--turn-secret-file', secrets]);
  ctx.serversReady();
  const a = client(ctx, edge);
  const joined = await a.join('sdk-turn', { name: 'ann' });
  assert.equal(joined.iceServers.length, 1, JSON.stringify(joined.iceServers));
  const [server] = joined.iceServers;
  assert.deepEqual(server.urls, [turnUrl]);
  assert.equal(server.username.split(':')[1], joined.ownId, 'the TURN user is the connection');
  assert.ok(Number(server.username.split(':')[0]) > Date.now() / 1000, 'not expired');
  assert.match(server.credential, /^[A-Za-z0-9+/]{27}=$/);
});

test('JS client: ice_servers in joined_room (an extension) become RTCIceServer entries', () => {
  assert.equal(iceServersOf({ event: 'joined_room', own_id: 'x', peers: [] }), null);
  assert.deepEqual(iceServersOf({
    ice_servers: [
      { urls: 'turn:turn.example.org:3478', username: 'u', credential: 'c' },
      { urls: ['stun:a.example.org', 'stun:b.example.org'] },
      { urls: [] }, null, 'stun:not-an-object', { username: 'no urls' },
    ],
  }), [
    { urls: ['turn:turn.example.org:3478'], username: 'u', credential: 'c' },
    { urls: ['stun:a.example.org', 'stun:b.example.org'] },
  ]);
});

test('JS client: joined_room ICE servers come first, configured ones fill in the URLs they lack', () => {
  const turn = { urls: ['turn:127.0.0.1:3478'], username: '1700000000:x', credential: 'fresh' };
  const configured = [
    { urls: ['stun:stun.example.org'] },
    { urls: ['turn:127.0.0.1:3478', 'turns:t.example.org:5349'], username: 'static', credential: 'old' },
  ];
  assert.deepEqual(mergeIceServers([turn], configured), [
    turn,
    { urls: ['stun:stun.example.org'] },
    { urls: ['turns:t.example.org:5349'], username: 'static', credential: 'old' },
  ]);
  assert.deepEqual(mergeIceServers(null, configured), configured, 'no joined_room servers: the configured ones');
  assert.deepEqual(mergeIceServers([turn]), [turn]);
  assert.deepEqual(mergeIceServers([{ urls: 'stun:s' }], [{ urls: 'stun:s' }]), [{ urls: 'stun:s' }]);
});

// Hosted mode: the `token` option puts the join token into the URL (as `access_token`), from a string or from
// a function asked again for every connection; refused upgrades are typed where the WebSocket reveals their
// HTTP status (node's `ws` does; browsers do not); a join the token does not allow rejects with its code.
e2eTest('JS client: joins with a token (a string or a function) and types the refusals', TEST_OPTIONS, async (ctx) => {
  const edge = await startHostedEdge(ctx, tenantsToml());
  ctx.serversReady();
  const { step } = ctx;
  const aliceToken = await tokenCommand(edge.tenantsFile, ['--key', ACME_KEY.id, '--room', 'sdk-hosted', '--name', 'Alice']);
  const alice = client(ctx, edge, { token: aliceToken });
  const { ownId } = await alice.join('sdk-hosted', { name: 'not alice' });
  assert.equal(alice.url, `ws://${edge.listen}/`, 'the token stays out of the URL the client shows');

  // A function: asked for a token at every connection, also when it reconnects.
  let asked = 0;
  const bob = client(ctx, edge, {
    token: async () => {
      asked += 1;
      return tokenCommand(edge.tenantsFile, ['--key', ACME_KEY.id, '--name', `Bob ${asked}`]);
    },
  });
  const bobJoined = await bob.join('sdk-hosted', {});
  assert.deepEqual(bobJoined.peers, [{ peerId: ownId, status: { name: 'Alice' } }], 'the token\'s name is shown');
  assert.equal(asked, 1);
  const back = next(bob, 'joined', step(), (e) => e.rejoin);
  const aliceBack = next(alice, 'joined', step(), (e) => e.rejoin);
  edge.service.signal('SIGKILL');
  await edge.service.exitPromise;
  ctx.retire(edge.service);
  await startStandalone(ctx, ['--auth', 'tokens', '--tenants-file', edge.tenantsFile],
    { name: 'edge-restarted', listen: edge.listen });
  const [bobAgain, aliceAgain] = await Promise.all([back, aliceBack]);
  assert.equal(bobAgain.roomId, 'sdk-hosted');
  assert.ok(asked >= 2, `a fresh token for the reconnect (asked ${asked} times)`);
  const together = aliceAgain.peers.some((p) => p.peerId === bobAgain.ownId)
    || bobAgain.peers.some((p) => p.peerId === aliceAgain.ownId);
  assert.ok(together, 'both are back in the room, with each other');

  // Alice's token allows one room only: the join rejects at once with its code (not a timeout).
  await alice.leave();
  await rejects(alice.join('elsewhere'), 'room_not_allowed', 'room not allowed by token');

  // Refused upgrades: the status `ws` reveals becomes the code.
  const expired = signHs256(ACME_KEY.id, ACME_KEY.secret, { exp: nowSeconds() - 600 });
  const cases = [
    [{}, 'unauthorized', 401, 'no valid token'],
    [{ token: expired }, 'unauthorized', 401, 'no valid token'],
    [{ token: 'not.a.jwt' }, 'unauthorized', 401, 'no valid token'],
  ];
  for (const [options, code, httpStatus, text] of cases) {
    const refused = client(ctx, edge, options);
    await assert.rejects(refused.join('sdk-hosted'), (e) => {
      assert.ok(e instanceof SwitchboardError);
      assert.deepEqual([e.code, e.httpStatus], [code, httpStatus], JSON.stringify(options));
      assert.equal(e.message, `cannot connect to ws://${edge.listen}/ (HTTP ${httpStatus}: ${text})`);
      return true;
    });
    assert.equal(refused.state, 'idle');
  }
  // A token source that fails: nothing to connect with.
  const broken = client(ctx, edge, { token: () => Promise.reject(new Error('backend down')) });
  await rejects(broken.join('sdk-hosted'), 'token_failed', 'no token: backend down');
});

e2eTest('JS client: a page origin the tenant does not allow is refused as forbidden', TEST_OPTIONS, async (ctx) => {
  const edge = await startHostedEdge(ctx, tenantsToml({ origins: ['https://app.acme.test'], allowMissingOrigin: false }));
  ctx.serversReady();
  const token = await tokenCommand(edge.tenantsFile, ['--key', ACME_KEY.id]);
  // node's `ws` sends an Origin only when told to: a WebSocket class that says where the "page" is.
  const from = (origin) => class extends WebSocket {
    constructor(url) { super(url, origin ? { origin } : {}); }
  };
  for (const origin of ['https://evil.test', null]) {
    const refused = client(ctx, edge, { token, WebSocket: from(origin) });
    await assert.rejects(refused.join('sdk-origin'), (e) => {
      assert.deepEqual([e.code, e.httpStatus], ['forbidden', 403], `origin ${origin}`);
      return true;
    });
  }
  const allowed = client(ctx, edge, { token, WebSocket: from('https://app.acme.test') });
  assert.deepEqual((await allowed.join('sdk-origin')).peers, []);
});
