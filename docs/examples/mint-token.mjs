// Minting Switchboard join tokens in a Node backend, with npm's `jsonwebtoken` (docs/hosting.md).
//
// Your backend decides who may join which room; the token carries that decision to the edge. Call
// joinToken() in the route your signed-in users fetch their token from, and hand the token to the page
// (`new SwitchboardClient(url, { token })`, or `?access_token=` in a palava-client's URL).
//
// Run as a script, it prints one token:
//   KEY_ID=acme-2026-11 KEY_SECRET='…' node mint-token.mjs ROOM USER [NAME]                   # HS256
//   KEY_ID=acme-es256 PRIVATE_KEY_FILE=acme-es256.pem node mint-token.mjs ROOM USER [NAME]    # ES256
// (jsonwebtoken does not sign EdDSA; for Ed25519 keys use the `jose` package, or the Python example.)
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';

import jwt from 'jsonwebtoken';

/**
 * A join token: `user` may join `room` (only that one) as `name` for the next `ttlSeconds`.
 *
 * @param {object} o
 * @param {string} o.keyId the key's `id` in the tenants file: the edge finds the key, and your tenant, by it
 * @param {string} [o.secret] an HS256 key's secret (the same as in the tenants file)
 * @param {string} [o.privateKey] or an ES256 key's private key (PEM); the tenants file has its public key
 * @param {string} o.room the only room the token may join
 * @param {string} o.user your id for the user (`sub`)
 * @param {string} [o.name] the name the others see; it replaces whatever the client sends
 * @param {number} [o.ttlSeconds] how long the token may be used to connect (the edge's maximum is 24 h)
 */
export function joinToken({ keyId, secret, privateKey, room, user, name, ttlSeconds = 600 }) {
  const claims = { sub: user, room, grants: ['join', 'send'] };
  if (name) claims.name = name;
  const [key, algorithm] = privateKey ? [privateKey, 'ES256'] : [secret, 'HS256'];
  // jsonwebtoken adds `iat`, and `exp` from expiresIn; keyid becomes the header's `kid`.
  return jwt.sign(claims, key, { algorithm, keyid: keyId, expiresIn: ttlSeconds });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [room, user, name] = process.argv.slice(2);
  const { KEY_ID: keyId, KEY_SECRET: secret, PRIVATE_KEY_FILE: keyFile } = process.env;
  if (!room || !user || !keyId || !(secret || keyFile)) {
    console.error('usage: KEY_ID=… (KEY_SECRET=… | PRIVATE_KEY_FILE=…) node mint-token.mjs ROOM USER [NAME]');
    process.exit(64);
  }
  const privateKey = keyFile ? fs.readFileSync(keyFile, 'utf8') : undefined;
  console.log(joinToken({ keyId, secret, privateKey, room, user, name }));
}
