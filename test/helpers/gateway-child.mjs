// The real gateway (built dist/, as `serve` runs it) in a process of its own, for measurements
// that must not include the test runner: started by gateway-process.ts with --expose-gc, it
// answers 'memory' messages with process.memoryUsage() after full garbage collections.
import { readFileSync } from 'node:fs';
import { parseGatewayConfig } from '../../dist/config/schema.js';
import { startGateway } from '../../dist/gateway.js';
import { createLogger } from '../../dist/log.js';

const file = process.argv[2];
const log = createLogger('info', (line) => process.stderr.write(line));
const gateway = await startGateway(parseGatewayConfig(readFileSync(file, 'utf8'), file), log);
process.send({ type: 'ready', port: gateway.listeners[0].port, adminPort: gateway.admin?.port ?? 0 });
process.on('message', (msg) => {
  if (msg?.type === 'memory') {
    for (let i = 0; i < 3; i++) globalThis.gc();
    const streams = [...gateway.streams];
    process.send({
      type: 'memory',
      ...process.memoryUsage(),
      streams: streams.filter((s) => !s.closed).length,
      bytesIn: streams.reduce((n, s) => n + s.bytesIn, 0),
    });
  } else if (msg?.type === 'close') {
    void gateway.close().then(() => process.exit(0));
  }
});
