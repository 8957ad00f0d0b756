// Preloaded into the gateway process by the benchmark only (`node --import bench/gw-probe.mjs`,
// see gateway-process.ts); never part of the gateway. A tiny HTTP listener on the loopback
// address in XGW_BENCH_PROBE ('127.0.0.x:port') answers:
//   GET /mem         {"rss","heapUsed","heapTotal","external","arrayBuffers"} after a full GC
//                    (the process runs with --expose-gc)
//   GET /loop/start  starts recording event-loop delay (perf_hooks.monitorEventLoopDelay, 1 ms
//                    resolution; off otherwise, so it costs nothing during throughput runs)
//   GET /loop/stop   stops and answers {"maxMs","p99Ms","meanMs","count"} since /loop/start
//   GET /pauses      how often sockets were paused (the gateway's backpressure: a stream it feeds
//                    is congested or has too many unconfirmed stanzas) and for how long in total,
//                    since the last /pauses; counted by wrapping net.Socket's pause/resume
import http from 'node:http';
import net from 'node:net';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';

const where = process.env.XGW_BENCH_PROBE;
if (where) {
  const [host, port] = [where.slice(0, where.lastIndexOf(':')), Number(where.slice(where.lastIndexOf(':') + 1))];
  const h = monitorEventLoopDelay({ resolution: 1 });
  const pauses = { count: 0, totalMs: 0 };
  const pausedAt = new WeakMap();
  const { pause, resume } = net.Socket.prototype;
  net.Socket.prototype.pause = function benchPause() {
    if (!pausedAt.has(this)) {
      pausedAt.set(this, performance.now());
      pauses.count++;
    }
    return pause.call(this);
  };
  net.Socket.prototype.resume = function benchResume() {
    const t = pausedAt.get(this);
    if (t !== undefined) {
      pausedAt.delete(this);
      pauses.totalMs += performance.now() - t;
    }
    return resume.call(this);
  };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://probe');
    let body;
    if (url.pathname === '/mem') {
      if (typeof globalThis.gc === 'function') {
        globalThis.gc();
        globalThis.gc();
      }
      body = process.memoryUsage();
    } else if (url.pathname === '/loop/start') {
      h.reset();
      h.enable();
      body = { ok: true };
    } else if (url.pathname === '/loop/stop') {
      h.disable();
      body = { maxMs: h.max / 1e6, p99Ms: h.percentile(99) / 1e6, meanMs: h.mean / 1e6, count: h.count };
    } else if (url.pathname === '/pauses') {
      body = { ...pauses };
      pauses.count = 0;
      pauses.totalMs = 0;
    } else {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  });
  server.listen(port, host);
  server.unref();
}
