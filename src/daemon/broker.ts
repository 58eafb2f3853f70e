// The embedded broker, so that `bonsai serve` + `bonsai ask` work on a machine with nothing else
// installed. It listens on loopback; anything wider requires a user name and password, because an
// open broker on a LAN would let anyone drive the model and read every answer.
import net from 'node:net';
import { timingSafeEqual } from 'node:crypto';
import { Aedes } from 'aedes';

export interface EmbeddedBrokerOptions {
  host: string;
  port: number;
  username?: string;
  password?: string;
}

export interface EmbeddedBroker {
  /** mqtt://host:port of the listening socket (the real port when 0 was asked). */
  url: string;
  port: number;
  close(): Promise<void>;
}

export class BrokerError extends Error {
  override name = 'BrokerError';
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

export async function startEmbeddedBroker(options: EmbeddedBrokerOptions): Promise<EmbeddedBroker> {
  const auth = options.username && options.password ? { username: options.username, password: options.password } : undefined;
  if (!isLoopback(options.host) && !auth) {
    throw new BrokerError(
      `refusing to open the embedded broker on ${options.host}: beyond loopback it needs embedded.username and embedded.password`,
    );
  }
  const broker = await Aedes.createBroker();
  if (auth) {
    broker.authenticate = (_client, username, password, done) => {
      const ok = username !== undefined && password !== undefined && sameSecret(username, auth.username) && sameSecret(password.toString('utf8'), auth.password);
      done(null, ok);
    };
  }
  // noDelay: small MQTT packets must not wait for delayed ACKs (see connect.ts).
  const server = net.createServer({ noDelay: true }, broker.handle);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new BrokerError(`embedded broker cannot listen on ${options.host}:${options.port}: ${err.message}`)));
    server.listen(options.port, options.host, () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;
  const urlHost = options.host.includes(':') ? `[${options.host}]` : options.host;
  return {
    url: `mqtt://${urlHost}:${port}`,
    port,
    close: async () => {
      // The broker first: it disconnects its clients, which lets the server finish closing.
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}
