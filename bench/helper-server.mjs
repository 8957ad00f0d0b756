#!/usr/bin/env node
// Reference servers for the benchmark's ceilings, run as their own processes (like the gateway),
// so each gets a core of its own and its CPU time is read the same way:
//   node bench/helper-server.mjs pipe HOST PORT TARGET_HOST TARGET_PORT
//       a bare node:net pipe: every accepted connection is connected to TARGET and its bytes are
//       copied there unchanged (socket.pipe), nothing parsed
//   node bench/helper-server.mjs tls HOST PORT CERT KEY CA
//       raw mutual-TLS handshakes with node:tls: client certificate requested and verified
//       against CA, the connection is closed once the handshake is done
//   node bench/helper-server.mjs tls-hold HOST PORT CERT KEY CA
//       the same, but connections stay open, idle (memory per idle TLS connection of bare node:tls)
// Prints 'ready' on stdout once listening.
import net from 'node:net';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';

const [mode, host, port, ...rest] = process.argv.slice(2);
let server;
if (mode === 'pipe') {
  const [targetHost, targetPort] = rest;
  server = net.createServer((a) => {
    a.setNoDelay(true);
    const b = net.connect({ host: targetHost, port: Number(targetPort) });
    b.setNoDelay(true);
    a.pipe(b);
    b.pipe(a);
    a.on('error', () => b.destroy());
    b.on('error', () => a.destroy());
  });
} else if (mode === 'tls' || mode === 'tls-hold') {
  const [cert, key, ca] = rest.map((f) => readFileSync(f, 'utf8'));
  const held = [];
  server = tls.createServer({ cert, key, ca, requestCert: true, rejectUnauthorized: true, ALPNProtocols: ['xmpp-server'], minVersion: 'TLSv1.2' }, (s) => {
    s.on('error', () => {});
    if (mode === 'tls') s.end();
    else held.push(s);
  });
  server.on('tlsClientError', () => {});
} else {
  console.error(`usage: helper-server.mjs pipe|tls ...`);
  process.exit(2);
}
server.listen(Number(port), host, () => process.stdout.write('ready\n'));
process.on('SIGTERM', () => process.exit(0));
