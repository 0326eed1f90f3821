// The token-minting examples of docs/hosting.md, run as a customer would run them (docs/examples/: Node with
// npm's jsonwebtoken, Python with PyJWT), against a real switchboard-edge in hosted mode: every token they
// print must get a client into its room with its name, and no other room. The tenants file has one key per
// algorithm the examples sign with: HS256 (both), ES256 (both), EdDSA (Python; jsonwebtoken has none).
//
// run.sh installs the examples' dependencies first (scripts/token-examples) and passes the Python that has
// PyJWT as SWITCHBOARD_EXAMPLES_PYTHON. Run it through ./run.sh (the tests only ever reach loopback).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

import WebSocket from 'ws';

import { REPO, e2eTest } from './harness.mjs';
import { startHostedEdge } from './tokens.mjs';
import { SwitchboardClient, SwitchboardError } from '../../web/sdk/switchboard.js';

const EXAMPLES = path.join(REPO, 'docs/examples');
const PYTHON = process.env.SWITCHBOARD_EXAMPLES_PYTHON || path.join(REPO, 'target/tools/token-examples/bin/python');
// Test-only keys (router/tenants/testdata): the tenants file has the public halves.
const TESTDATA = path.join(REPO, 'router/tenants/testdata');
const HS256 = { id: 'acme-hs256', secret: 'acme-example-secret-0123456789abcdef' };

const TEST_OPTIONS = { timeout: 30_000, cleanupReserve: 10_000, browser: false };

function tenantsToml() {
  const pem = (name) => fs.readFileSync(path.join(TESTDATA, name), 'utf8').trim();
  return `
[[tenants.acme.keys]]
id = "${HS256.id}"
secret = "${HS256.secret}"

[[tenants.acme.keys]]
id = "acme-ed25519"
algorithm = "EdDSA"
public_key = """
${pem('ed25519-public.pem')}
"""

[[tenants.acme.keys]]
id = "acme-es256"
algorithm = "ES256"
public_key = """
${pem('p256-public.pem')}
"""
`;
}

const execFileAsync = promisify(execFile);

// Runs an example as its header comment says, with only the environment it documents; returns the token.
async function runExample(command, args, env) {
  const { stdout } = await execFileAsync(command, args, {
    cwd: EXAMPLES, env: { PATH: process.env.PATH, ...env }, timeout: 15_000,
  });
  const lines = stdout.split('\n').filter(Boolean);
  assert.equal(lines.length, 1, `${path.basename(args[0])} printed one token: ${JSON.stringify(stdout)}`);
  return lines[0];
}

// The token gets a client into `room`, where a second client sees it by `name`; the same token cannot join
// another room.
async function assertAccepted(ctx, edge, token, room, name) {
  const url = `ws://${edge.listen}/`;
  const client = new SwitchboardClient(url, { WebSocket, token, reconnect: false });
  ctx.scope.defer(() => client.close());
  const { ownId } = await client.join(room, { name: 'whatever the page says' });
  const watcherToken = await runExample('node', ['mint-token.mjs', room, 'watcher'],
    { KEY_ID: HS256.id, KEY_SECRET: HS256.secret });
  const watcher = new SwitchboardClient(url, { WebSocket, token: watcherToken, reconnect: false });
  ctx.scope.defer(() => watcher.close());
  const { peers } = await watcher.join(room, {});
  assert.deepEqual(peers, [{ peerId: ownId, status: { name } }], 'the token\'s name is the one others see');
  await client.leave();
  await assert.rejects(client.join(`${room}-other`), (e) => {
    assert.ok(e instanceof SwitchboardError);
    assert.equal(e.code, 'room_not_allowed');
    return true;
  });
}

e2eTest('docs/examples/mint-token.mjs (Node, jsonwebtoken): HS256 and ES256 tokens get into their room',
  TEST_OPTIONS, async (ctx) => {
    assert.ok(fs.existsSync(path.join(EXAMPLES, 'node_modules/jsonwebtoken')),
      'jsonwebtoken is not installed in docs/examples: run scripts/token-examples (run.sh does)');
    const edge = await startHostedEdge(ctx, tenantsToml());
    ctx.serversReady();
    const hs256 = await runExample('node', ['mint-token.mjs', 'node-hs256', 'user-1', 'Ada'],
      { KEY_ID: HS256.id, KEY_SECRET: HS256.secret });
    await assertAccepted(ctx, edge, hs256, 'node-hs256', 'Ada');
    const es256 = await runExample('node', ['mint-token.mjs', 'node-es256', 'user-2', 'Grace'],
      { KEY_ID: 'acme-es256', PRIVATE_KEY_FILE: path.join(TESTDATA, 'p256-private.pem') });
    await assertAccepted(ctx, edge, es256, 'node-es256', 'Grace');
  });

e2eTest('docs/examples/mint_token.py (Python, PyJWT): HS256, EdDSA and ES256 tokens get into their room',
  TEST_OPTIONS, async (ctx) => {
    assert.ok(fs.existsSync(PYTHON),
      `no Python with PyJWT at ${PYTHON}: run scripts/token-examples (run.sh does), or set SWITCHBOARD_EXAMPLES_PYTHON`);
    const edge = await startHostedEdge(ctx, tenantsToml());
    ctx.serversReady();
    const cases = [
      ['py-hs256', 'Linus', { KEY_ID: HS256.id, KEY_SECRET: HS256.secret }],
      ['py-eddsa', 'Barbara', {
        KEY_ID: 'acme-ed25519', KEY_ALGORITHM: 'EdDSA', PRIVATE_KEY_FILE: path.join(TESTDATA, 'ed25519-private.pem'),
      }],
      ['py-es256', 'Edsger', {
        KEY_ID: 'acme-es256', KEY_ALGORITHM: 'ES256', PRIVATE_KEY_FILE: path.join(TESTDATA, 'p256-private.pem'),
      }],
    ];
    for (const [room, name, env] of cases) {
      const token = await runExample(PYTHON, ['mint_token.py', room, `user-${room}`, name], env);
      await assertAccepted(ctx, edge, token, room, name);
    }
  });
