/**
 * The s2s listeners (`listen` in gateway.yaml): plain TCP on which every connection starts an
 * inbound stream (STARTTLS negotiated inside the stream, RFC 6120 section 5).
 */
import net, { type AddressInfo, type Server, type Socket } from 'node:net';

export interface Listener {
  readonly host: string;
  readonly port: number;
  close(): Promise<void>;
}

export function listen(host: string, port: number, onConnection: (socket: Socket) => void): Promise<Listener> {
  return new Promise((resolve, reject) => {
    const server: Server = net.createServer({ noDelay: true }, onConnection);
    server.once('error', reject);
    server.listen({ host, port }, () => {
      server.removeListener('error', reject);
      const address = server.address() as AddressInfo;
      resolve({
        host,
        port: address.port,
        close: () => new Promise<void>((done) => server.close(() => done())),
      });
    });
  });
}
