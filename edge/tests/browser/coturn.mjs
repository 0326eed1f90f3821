// coturn for the browser tests: turnserver on 127.0.0.1 with the REST-API secrets Switchboard mints TURN
// credentials with (use-auth-secret, one static-auth-secret line per secret), as the Rust testkit's Coturn
// runs it. Inside run.sh's namespace only this test's processes bind ports, so its relays keep coturn's
// default range; its log goes to the test's ring log. Ready once it answers a STUN binding request.
import dgram from 'node:dgram';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import { READY_TIMEOUT_MS, freePorts, pollUntil, spawnService, stopTier } from './harness.mjs';

// SWITCHBOARD_TURNSERVER_BIN (e.g. a coturn built from source); otherwise PATH, then where Debian's coturn
// package puts it.
export const TURNSERVER_BIN = process.env.SWITCHBOARD_TURNSERVER_BIN
  || [...(process.env.PATH || '').split(path.delimiter).filter(Boolean), '/usr/bin', '/usr/sbin']
    .map((dir) => path.join(dir, 'turnserver')).find((file) => fs.existsSync(file))
  || 'turnserver';

// Starts coturn with `secrets`; resolves with {url: 'turn:127.0.0.1:<port>', port, service} once it answers.
export async function startCoturn({ scope, tmpDir, services }, secrets) {
  if (!fs.existsSync(TURNSERVER_BIN)) {
    throw new Error(`turnserver not found (${TURNSERVER_BIN}): install Debian's coturn package (scripts/test does)`);
  }
  const [port] = await freePorts(1);
  const dir = fs.mkdtempSync(path.join(tmpDir, 'coturn-'));
  const config = path.join(dir, 'turnserver.conf');
  fs.writeFileSync(config, [
    'listening-ip=127.0.0.1',
    'relay-ip=127.0.0.1',
    `listening-port=${port}`,
    'use-auth-secret',
    ...secrets.map((secret) => `static-auth-secret=${secret}`),
    'realm=switchboard.test',
    // Both ends of a relayed call are on this machine.
    'allow-loopback-peers',
    'no-tls',
    'no-dtls',
    'no-cli',
    'no-rfc5780',
    'log-file=stdout',
    'simple-log',
    `userdb=${path.join(dir, 'turndb')}`,
    `pidfile=${path.join(dir, 'turnserver.pid')}`,
    '',
  ].join('\n'));
  const tier = stopTier(scope);
  // -c: without it turnserver would read /etc/turnserver.conf as well.
  const service = spawnService('coturn', TURNSERVER_BIN, ['-c', config]);
  tier.push(service);
  services.push(service);
  await pollUntil('coturn answering STUN', READY_TIMEOUT_MS, [service], () => stunBinding(port));
  return { url: `turn:127.0.0.1:${port}`, port, service };
}

// Whether a STUN binding request (RFC 8489) to 127.0.0.1:`port` gets its success response within 200 ms.
function stunBinding(port) {
  return new Promise((resolve) => {
    const socket = dgram.createSocket('udp4');
    const transaction = crypto.randomBytes(12);
    const done = (answered) => {
      clearTimeout(timer);
      socket.close();
      resolve(answered);
    };
    const timer = setTimeout(() => done(false), 200);
    socket.on('error', () => done(false));
    socket.on('message', (message) => {
      done(message.length >= 20 && message.readUInt16BE(0) === 0x0101
        && message.subarray(8, 20).equals(transaction));
    });
    // Binding request, no attributes, the magic cookie, the transaction id.
    const request = Buffer.concat([Buffer.from([0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42]), transaction]);
    socket.send(request, port, '127.0.0.1');
  });
}
