/** The interop harness: real Prosody and ejabberd peers on loopback, their certificates, a test c2s client. */
export * from './common.js';
export * from './peer-certs.js';
export * from './prosody.js';
export * from './ejabberd.js';
export * from './c2s-client.js';
export { ClientStreamReader, parseElement } from './client-stream.js';
export * from './relay-gateway.js';
export * from './pool-gateway.js';
