// Hosted mode (--auth tokens) in the JS and browser tests: tenants files, edges that read them, join tokens
// printed by `switchboard-edge token` (the command operators use), hand-made tokens for the refusals no
// honest minting produces (expired, forged, `alg: none`), and the edge's refusal counters.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

import { EDGE_BIN, httpGet, startStandalone } from './harness.mjs';

// Test-only HS256 secrets (the edge wants at least 32 bytes).
export const ACME_KEY = { id: 'acme-1', secret: 'acme-test-secret-0123456789abcdefghij' };
export const OTHER_KEY = { id: 'other-1', secret: 'other-test-secret-0123456789abcdefghi' };

// Two tenants: `acme` (key ACME_KEY; browsers from `origins` only, none if empty means any; native
// clients only with `allowMissingOrigin`) and `other` (key OTHER_KEY, anyone).
export function tenantsToml({ origins = [], allowMissingOrigin = true } = {}) {
  return `
[tenants.acme]
allowed_origins = ${JSON.stringify(origins)}
allow_missing_origin = ${allowMissingOrigin}
keys = [{ id = "${ACME_KEY.id}", secret = "${ACME_KEY.secret}" }]

[tenants.other]
keys = [{ id = "${OTHER_KEY.id}", secret = "${OTHER_KEY.secret}" }]
`;
}

// A standalone edge in hosted mode reading `toml` as its tenants file; resolves like startStandalone, with
// `tenantsFile` added.
export async function startHostedEdge(ctx, toml, args = [], options = {}) {
  const tenantsFile = path.join(ctx.tmpDir, `${options.name || 'edge'}-tenants.toml`);
  fs.writeFileSync(tenantsFile, toml);
  const [edge] = await startStandalone(ctx, ['--auth', 'tokens', '--tenants-file', tenantsFile, ...args], options);
  return { ...edge, tenantsFile };
}

const execFileAsync = promisify(execFile);

// A token printed by `switchboard-edge token --tenants-file FILE ARGS…` (e.g. ['--key', 'acme-1', '--room',
// 'r']). The command must succeed and print exactly one line.
export async function tokenCommand(tenantsFile, args) {
  // The command reads SWITCHBOARD_TENANTS_FILE and SWITCHBOARD_TOKEN_MAX_LIFETIME: none of the test's.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SWITCHBOARD_')));
  const { stdout } = await execFileAsync(EDGE_BIN, ['token', '--tenants-file', tenantsFile, ...args],
    { env, timeout: 10_000 });
  const lines = stdout.split('\n').filter(Boolean);
  assert.equal(lines.length, 1, `switchboard-edge token printed one line: ${JSON.stringify(stdout)}`);
  return lines[0];
}

const b64url = (value) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

export const nowSeconds = () => Math.floor(Date.now() / 1000);

// An HS256 JWT of `claims` with `secret`, `kid` in its header: what a customer's backend makes.
export function signHs256(kid, secret, claims) {
  const input = `${b64url({ alg: 'HS256', typ: 'JWT', kid })}.${b64url(claims)}`;
  return `${input}.${crypto.createHmac('sha256', secret).update(input).digest('base64url')}`;
}

// An unsigned JWT (`alg: none`) naming the real key `kid`: the classic forgery.
export function unsignedToken(kid, claims) {
  return `${b64url({ alg: 'none', typ: 'JWT', kid })}.${b64url(claims)}.`;
}

// `url` with the token in the query, as the edge reads it.
export function withToken(url, token) {
  const u = new URL(url);
  u.searchParams.set('access_token', token);
  return u.href;
}

// The edge's `switchboard_connections_refused_total` by reason, `switchboard_connections_accepted_total`
// as `accepted`, and `switchboard_errors_total` by reason as `errors`.
export async function connectionCounters(edge) {
  const { status, body } = await httpGet(`http://${edge.admin_listen}/metrics`);
  assert.equal(status, 200);
  const refused = {};
  const errors = {};
  let accepted = 0;
  for (const line of body.split('\n')) {
    let m = /^switchboard_connections_refused_total\{reason="([^"]+)"\} (\S+)$/.exec(line);
    if (m) refused[m[1]] = Number(m[2]);
    m = /^switchboard_errors_total\{reason="([^"]+)"\} (\S+)$/.exec(line);
    if (m) errors[m[1]] = Number(m[2]);
    m = /^switchboard_connections_accepted_total (\S+)$/.exec(line);
    if (m) accepted = Number(m[1]);
  }
  return { refused, errors, accepted };
}

// What changed between two connectionCounters() readings: {refused: {reason: delta}, errors: {…}, accepted},
// listing only the reasons that changed.
export function counterChanges(before, after) {
  const diff = (a, b) => Object.fromEntries(Object.keys(b)
    .map((k) => [k, b[k] - (a[k] || 0)]).filter(([, d]) => d !== 0));
  return {
    refused: diff(before.refused, after.refused),
    errors: diff(before.errors, after.errors),
    accepted: after.accepted - before.accepted,
  };
}
