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
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port, options.host, () => resolve());
    });
  } catch (err) {
    // The broker's timers would keep the process alive, looking up to a supervisor while serving nothing.
    await new Promise<void>((resolve) => broker.close(() => resolve()));
    throw listenError(err as NodeJS.ErrnoException, options);
  }
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

function listenError(err: NodeJS.ErrnoException, options: EmbeddedBrokerOptions): BrokerError {
  const where = `${options.host}:${options.port}`;
  if (err.code === 'EADDRINUSE') {
    return new BrokerError(
      `port ${options.port} is in use (${where}) — is another broker running? use --broker mqtt://${options.host}:${options.port} or --embedded-port N`,
    );
  }
  if (err.code === 'EACCES') return new BrokerError(`no permission to listen on ${where}: use a port above 1023 (--embedded-port N)`);
  return new BrokerError(`embedded broker cannot listen on ${where}: ${err.message}`);
}

function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}
